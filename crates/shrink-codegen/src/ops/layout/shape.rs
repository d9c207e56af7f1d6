//! Ops that only relabel a shape (Reshape, Flatten, Squeeze, Unsqueeze: a flat copy, since the
//! output dims are already inferred) or that generate values (Shape, ConstantOfShape, Range).
use super::{Access, check_dims, copy, raw_literal, zero_of};
use crate::loops::{Builder, Expr, Ty};
use crate::ops::{LowerResult, NodeCtx};
use shrink_ir::{DType, Tensor};

/// The same elements in the same order under the output's dims.
pub(super) fn same_bytes(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    if x.numel() != y.numel() || x.dtype != y.dtype {
        return Err(format!(
            "cannot relabel {:?} {} as {:?} {}",
            x.dims, x.dtype, y.dims, y.dtype
        ));
    }
    let n = [x.numel()];
    copy(
        b,
        &n,
        x,
        &Access::dense(&n, 0),
        y,
        &Access::dense(&n, 0),
        None,
    );
    Ok(())
}

/// The static dims `start..end` of the input (the interpreter's clamping) as i64 literals.
pub(super) fn shape(b: &mut Builder, cx: &NodeCtx, start: i64, end: Option<i64>) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let r = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims = x.dims.get(s..e.max(s)).unwrap_or(&[]).to_vec();
    check_dims(y, &[dims.len()])?;
    if y.dtype != DType::I64 {
        return Err(format!("Shape output declared {}", y.dtype));
    }
    for (i, d) in dims.iter().enumerate() {
        b.store_raw(y, Expr::idx(i as i64), Expr::idx(*d as i64));
    }
    Ok(())
}

/// Every element is element 0 of the `value` attribute (zero bits when absent).
pub(super) fn constant_of_shape(
    b: &mut Builder,
    cx: &NodeCtx,
    value: Option<&Tensor>,
) -> LowerResult {
    let y = cx.output(0);
    let ty = Ty::storage(y.dtype).ok_or("string tensors are not supported")?;
    let v = match value {
        Some(t) => {
            if t.dtype() != y.dtype {
                return Err(format!(
                    "ConstantOfShape value is {} but the output is {}",
                    t.dtype(),
                    y.dtype
                ));
            }
            raw_literal(t, 0)?
        }
        None => zero_of(ty),
    };
    b.for_(y.numel(), |b, i| b.store_raw(y, i, v));
    Ok(())
}

/// `out[i] = start + i · delta` (the spec's formula, as the interpreter computes it: integers
/// exactly, f32/f16/bf16 in f32, f64 in f64). The element count is the output's static dim, so
/// start and delta are read at run time and need not be constants.
pub(super) fn range(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let (start, delta, y) = (cx.input(0), cx.input(2), cx.output(0));
    if start.dtype != y.dtype || delta.dtype != y.dtype {
        return Err("Range inputs and output must share a dtype".into());
    }
    if start.numel() != 1 || delta.numel() != 1 || cx.input(1).numel() != 1 {
        return Err("Range inputs must be scalars".into());
    }
    let ct = y.compute_ty();
    let work = match y.dtype {
        DType::I16 | DType::I32 | DType::I64 => Ty::I64,
        DType::F64 => Ty::F64,
        DType::F32 | DType::F16 | DType::BF16 => Ty::F32,
        d => return Err(format!("Range of {d} is not supported")),
    };
    if y.numel() == 0 {
        return Ok(());
    }
    let s = b.load(start, Expr::idx(0));
    let s = b.let_(s.cast(work));
    let d = b.load(delta, Expr::idx(0));
    let d = b.let_(d.cast(work));
    b.for_(y.numel(), |b, i| {
        // Every value lies between start and limit, so the integer result fits the dtype.
        let v = s.add(i.clone().cast(work).mul(d)).cast(ct);
        b.store(y, i, v);
    });
    Ok(())
}
