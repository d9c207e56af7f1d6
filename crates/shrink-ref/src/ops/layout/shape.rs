//! Ops that only change or report a shape (Reshape, Flatten, Squeeze, Unsqueeze, Shape) and ops
//! that generate values from scalars (ConstantOfShape, Range). Reshape-like ops share the input's
//! bytes instead of copying them.
use super::{checked_prod, dims_input, norm_axes, same_dtype};
use crate::ops::{int_list, optional, required};
use crate::{EvalCtx, EvalError};
use shrink_ir::{DType, Element, Tensor, ValueType};

/// The same bytes under new dims (the caller has checked the element count).
fn with_dims(t: &Tensor, dims: Vec<usize>) -> Result<Tensor, EvalError> {
    t.reshaped(dims)
        .map_err(|e| EvalError::invalid(e.to_string()))
}

pub(super) fn reshape(ins: &[Option<&Tensor>], allowzero: bool) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let shape = int_list(required(ins, 1)?)?;
    if allowzero && shape.contains(&0) && shape.contains(&-1) {
        return Err(EvalError::invalid(
            "with allowzero, the shape may not contain both 0 and -1",
        ));
    }
    let mut dims = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        let d = match s {
            -1 if infer.is_some() => {
                return Err(EvalError::invalid("the shape has more than one -1"));
            }
            -1 => {
                infer = Some(i);
                1
            }
            0 if !allowzero => *data.dims().get(i).ok_or_else(|| {
                EvalError::invalid(format!(
                    "shape[{i}] = 0 copies input dim {i}, but the input has rank {}",
                    data.rank()
                ))
            })?,
            s => usize::try_from(s)
                .map_err(|_| EvalError::invalid(format!("invalid shape entry {s}")))?,
        };
        dims.push(d);
    }
    let total = data.len();
    let known = checked_prod(&dims)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(EvalError::invalid(format!(
                "cannot infer -1 in {shape:?} for {} elements",
                total
            )));
        }
        dims[i] = total / known;
    } else if known != total {
        return Err(EvalError::invalid(format!(
            "cannot reshape {:?} to {shape:?}",
            data.dims()
        )));
    }
    with_dims(data, dims)
}

pub(super) fn flatten(ins: &[Option<&Tensor>], axis: i64) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let r = data.rank() as i64;
    if axis < -r || axis > r {
        return Err(EvalError::invalid(format!(
            "axis {axis} is out of range for rank {r}"
        )));
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let (outer, inner) = data.dims().split_at(a);
    let dims = vec![checked_prod(outer)?, checked_prod(inner)?];
    with_dims(data, dims)
}

pub(super) fn squeeze(ins: &[Option<&Tensor>]) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    // An empty axes tensor squeezes every 1-dim, as ONNX Runtime does.
    let axes = match optional(ins, 1).map(int_list).transpose()? {
        Some(a) if !a.is_empty() => Some(norm_axes(&a, data.rank())?),
        _ => None,
    };
    let mut dims = Vec::with_capacity(data.rank());
    for (i, &d) in data.dims().iter().enumerate() {
        match &axes {
            Some(axes) if axes.contains(&i) => {
                if d != 1 {
                    return Err(EvalError::invalid(format!(
                        "cannot squeeze axis {i} of size {d}"
                    )));
                }
            }
            Some(_) => dims.push(d),
            None if d == 1 => {}
            None => dims.push(d),
        }
    }
    with_dims(data, dims)
}

pub(super) fn unsqueeze(ins: &[Option<&Tensor>]) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let axes = int_list(required(ins, 1)?)?;
    let rank = data.rank() + axes.len();
    let axes = norm_axes(&axes, rank)?;
    let mut src = data.dims().iter();
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        // The axes are distinct, so exactly `data.rank()` positions take an input dim.
        let d = if axes.contains(&i) {
            1
        } else {
            src.next().copied().unwrap_or(1)
        };
        dims.push(d);
    }
    with_dims(data, dims)
}

pub(super) fn shape(
    ins: &[Option<&Tensor>],
    start: i64,
    end: Option<i64>,
) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let r = data.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = data
        .dims()
        .get(s..e.max(s))
        .unwrap_or(&[])
        .iter()
        .map(|&d| d as i64)
        .collect();
    Ok(Tensor::from_vec(vec![dims.len()], dims))
}

pub(super) fn constant_of_shape(
    ins: &[Option<&Tensor>],
    value: Option<&Tensor>,
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let dims = dims_input(required(ins, 0)?, "the shape")?;
    let dtype = outs
        .first()
        .map(|o| o.dtype)
        .or(value.map(|v| v.dtype()))
        .unwrap_or(DType::F32);
    if let Some(v) = value {
        same_dtype(dtype, v.dtype(), "ConstantOfShape value")?;
    }
    let n = ctx.check_alloc(dtype, &dims)?;
    crate::dispatch_any!(dtype, T => fill_typed::<T>(dtype, dims, n, value))
}

fn fill_typed<T: Element + Default>(
    dtype: DType,
    dims: Vec<usize>,
    n: usize,
    value: Option<&Tensor>,
) -> Result<Tensor, EvalError> {
    let v = match value {
        Some(t) => super::read_elem::<T>(t, 0)
            .ok_or_else(|| EvalError::invalid("the value tensor is empty"))?,
        None => T::default(),
    };
    Ok(Tensor::from_vec_as(dtype, dims, vec![v; n]))
}

/// Range: `count = max(ceil((limit - start) / delta), 0)` and `out[i] = start + i * delta`
/// (the spec's formula, not repeated addition). Integers are exact; f16/bf16 compute in f32
/// (the default `stash_type`), f32/f64 in their own type.
pub(super) fn range(ins: &[Option<&Tensor>], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let [start, limit, delta] = [0, 1, 2].map(|i| required(ins, i));
    let (start, limit, delta) = (start?, limit?, delta?);
    let dtype = start.dtype();
    for t in [start, limit, delta] {
        same_dtype(dtype, t.dtype(), "Range inputs")?;
        if t.len() != 1 {
            return Err(EvalError::invalid(format!(
                "Range inputs must be scalars, got {:?}",
                t.dims()
            )));
        }
    }
    match dtype {
        DType::I16 | DType::I32 | DType::I64 => {
            let (s, l, d) = (
                start.get_i64(0) as i128,
                limit.get_i64(0) as i128,
                delta.get_i64(0) as i128,
            );
            if d == 0 {
                return Err(EvalError::invalid("Range delta is zero"));
            }
            let diff = l - s;
            let mut count = diff / d;
            if diff % d != 0 && (diff > 0) == (d > 0) {
                count += 1;
            }
            let n = ctx.check_alloc(
                dtype,
                &[usize::try_from(count.max(0)).unwrap_or(usize::MAX)],
            )?;
            // Every value lies between start and limit, so it fits the dtype.
            let vals = (0..n as i128).map(|i| (s + i * d) as i64);
            Ok(match dtype {
                DType::I16 => Tensor::from_vec(vec![n], vals.map(|v| v as i16).collect()),
                DType::I32 => Tensor::from_vec(vec![n], vals.map(|v| v as i32).collect()),
                _ => Tensor::from_vec(vec![n], vals.collect()),
            })
        }
        DType::F64 => {
            let (s, l, d) = (start.get_f64(0), limit.get_f64(0), delta.get_f64(0));
            let n = float_count((l - s) / d, dtype, ctx)?;
            Ok(Tensor::from_vec(
                vec![n],
                (0..n).map(|i| s + i as f64 * d).collect(),
            ))
        }
        DType::F32 | DType::F16 | DType::BF16 => {
            let (s, l, d) = (
                start.get_f64(0) as f32,
                limit.get_f64(0) as f32,
                delta.get_f64(0) as f32,
            );
            let n = float_count(((l - s) / d) as f64, dtype, ctx)?;
            let vals = (0..n).map(|i| s + i as f32 * d);
            Ok(match dtype {
                DType::F16 => Tensor::from_vec(vec![n], vals.map(half::f16::from_f32).collect()),
                DType::BF16 => Tensor::from_vec(vec![n], vals.map(half::bf16::from_f32).collect()),
                _ => Tensor::from_vec(vec![n], vals.collect()),
            })
        }
        d => Err(EvalError::unsupported(format!("Range of {d}"))),
    }
}

/// The element count of a float Range from `(limit - start) / delta`.
fn float_count(q: f64, dtype: DType, ctx: &EvalCtx) -> Result<usize, EvalError> {
    if !q.is_finite() {
        return Err(EvalError::invalid(format!(
            "Range has no finite element count ((limit - start) / delta = {q})"
        )));
    }
    // `as` saturates, and check_alloc rejects the saturated count.
    ctx.check_alloc(dtype, &[q.ceil().max(0.0) as usize])
}
