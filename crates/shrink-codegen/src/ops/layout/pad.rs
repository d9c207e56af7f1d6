//! Pad in its four modes (constant, reflect, edge, wrap). Negative pads crop first; positive pads
//! are then filled relative to the cropped tensor, as the interpreter does. Each padded axis
//! becomes a table of source coordinates (-1 for "the constant") built here from the constant
//! pads, so all modes share one [`copy`].
use super::{Access, Coord, check_dims, const_ints, copy, norm_axes, opt_const_ints, zero_of};
use crate::loops::{Builder, Expr, Ty, strides_of};
use crate::ops::{LowerResult, NodeCtx};
use shrink_ir::op::PadMode;

pub(super) fn pad(b: &mut Builder, cx: &NodeCtx, mode: PadMode) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let pads = const_ints(cx, 1, "Pad pads")?;
    let rank = x.rank();
    let axes = match opt_const_ints(cx, 3, "Pad axes")? {
        Some(a) => norm_axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut begin = vec![0i128; rank];
    let mut end = vec![0i128; rank];
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = pads[i] as i128;
        end[a] = pads[axes.len() + i] as i128;
    }
    let mut dims = Vec::with_capacity(rank);
    for a in 0..rank {
        let d = x.dims[a] as i128 + begin[a] + end[a];
        let d = usize::try_from(d).map_err(|_| {
            format!(
                "pads {pads:?} crop axis {a} of size {} below zero",
                x.dims[a]
            )
        })?;
        dims.push(d);
    }
    check_dims(y, &dims)?;
    if y.numel() == 0 {
        return Ok(());
    }
    let ty = Ty::storage(y.dtype).ok_or("string tensors are not supported")?;
    // The constant: element 0 of input 2 when present and non-empty (read at run time, so it
    // need not be a graph constant), else zero.
    let fill = match cx.opt_input(2).filter(|t| t.numel() > 0) {
        Some(f) if f.dtype != y.dtype => {
            return Err(format!(
                "Pad constant_value is {} but the data is {}",
                f.dtype, y.dtype
            ));
        }
        Some(f) => {
            let v = b.load_raw(f, Expr::idx(0));
            b.let_(v)
        }
        None => zero_of(ty),
    };
    let st = strides_of(&x.dims);
    let mut src = Vec::with_capacity(rank);
    for a in 0..rank {
        let s = st[a] as i64;
        src.push(if begin[a] == 0 && end[a] == 0 {
            Coord::Lin(s)
        } else {
            Coord::Table(axis_map(x.dims[a], begin[a], end[a], dims[a], mode)?, s)
        });
    }
    copy(
        b,
        &dims,
        x,
        &Access { base: 0, axes: src },
        y,
        &Access::dense(&dims, 0),
        Some(&fill),
    );
    Ok(())
}

/// The source coordinate in `0..dim` of each of the `out_dim` output coordinates of one axis,
/// -1 where the constant is written.
pub(super) fn axis_map(
    dim: usize,
    begin: i128,
    end: i128,
    out_dim: usize,
    mode: PadMode,
) -> Result<Vec<i64>, String> {
    // The cropped window of the source is `lo .. lo + kept`.
    let lo = (-begin).max(0);
    let kept = dim as i128 - lo - (-end).max(0);
    let pad_lo = begin.max(0);
    if kept <= 0 && out_dim > 0 && mode != PadMode::Constant {
        return Err(format!(
            "cannot pad an empty axis in {} mode",
            mode.as_str()
        ));
    }
    Ok((0..out_dim as i128)
        .map(|o| {
            let j = o - pad_lo;
            let j = if (0..kept).contains(&j) {
                j
            } else {
                match mode {
                    PadMode::Constant => return -1,
                    PadMode::Edge => j.clamp(0, kept - 1),
                    PadMode::Wrap => j.rem_euclid(kept),
                    PadMode::Reflect if kept == 1 => 0,
                    PadMode::Reflect => {
                        // Reflection without repeating the edge has period 2(kept-1).
                        let p = 2 * (kept - 1);
                        let m = j.rem_euclid(p);
                        if m >= kept { p - m } else { m }
                    }
                }
            };
            (lo + j) as i64
        })
        .collect())
}
