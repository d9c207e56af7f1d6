//! Pad in its four modes. Negative pads crop first; positive pads are then filled relative to the
//! cropped tensor (ONNX Runtime's reading, since the spec's numpy reference rejects negative pads).
use super::{norm_axes, remap, same_dtype, strides_of};
use crate::ops::{int_list, optional, required};
use crate::{EvalCtx, EvalError};
use shrink_ir::Tensor;
use shrink_ir::op::PadMode;

pub(super) fn pad(
    ins: &[Option<&Tensor>],
    mode: PadMode,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let pads = int_list(required(ins, 1)?)?;
    let fill = optional(ins, 2).filter(|t| !t.is_empty());
    if let Some(f) = fill {
        same_dtype(data.dtype(), f.dtype(), "Pad constant_value")?;
    }
    let rank = data.rank();
    let axes = match optional(ins, 3) {
        Some(t) => norm_axes(&int_list(t)?, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(EvalError::invalid(format!(
            "{} pads for {} axes",
            pads.len(),
            axes.len()
        )));
    }
    let mut begin = vec![0i128; rank];
    let mut end = vec![0i128; rank];
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = pads[i] as i128;
        end[a] = pads[axes.len() + i] as i128;
    }
    let ddims = data.dims();
    let mut dims = Vec::with_capacity(rank);
    for a in 0..rank {
        let d = ddims[a] as i128 + begin[a] + end[a];
        let d = usize::try_from(d).map_err(|_| {
            EvalError::invalid(format!(
                "pads {pads:?} crop axis {a} of size {} below zero",
                ddims[a]
            ))
        })?;
        dims.push(d);
    }
    if ctx.check_alloc(data.dtype(), &dims)? == 0 {
        return remap(data, dims, fill, ctx, |_| None);
    }
    // Per axis, the source coordinate of every output coordinate (None = the constant).
    let maps = (0..rank)
        .map(|a| axis_map(ddims[a], begin[a], end[a], dims[a], mode))
        .collect::<Result<Vec<_>, _>>()?;
    let st = strides_of(ddims);
    remap(data, dims, fill, ctx, |o| {
        let mut flat = 0usize;
        for ((&i, m), &s) in o.iter().zip(&maps).zip(&st) {
            flat += (*m.get(i)?)? * s;
        }
        Some(flat)
    })
}

/// Maps each of `out_dim` output coordinates of one axis to a source coordinate in `0..dim`.
fn axis_map(
    dim: usize,
    begin: i128,
    end: i128,
    out_dim: usize,
    mode: PadMode,
) -> Result<Vec<Option<usize>>, EvalError> {
    // The cropped window of the source is `lo .. lo + kept`.
    let lo = (-begin).max(0);
    let kept = dim as i128 - lo - (-end).max(0);
    let pad_lo = begin.max(0);
    if kept <= 0 && out_dim > 0 && mode != PadMode::Constant {
        return Err(EvalError::invalid(format!(
            "cannot pad an empty axis in {} mode",
            mode.as_str()
        )));
    }
    let map = (0..out_dim as i128)
        .map(|o| {
            let j = o - pad_lo;
            let j = if (0..kept).contains(&j) {
                j
            } else {
                match mode {
                    PadMode::Constant => return None,
                    PadMode::Edge => j.clamp(0, kept - 1),
                    PadMode::Wrap => j.rem_euclid(kept),
                    PadMode::Reflect if kept == 1 => 0,
                    PadMode::Reflect => {
                        // Reflection without repeating the edge is periodic with period 2(kept-1).
                        let p = 2 * (kept - 1);
                        let m = j.rem_euclid(p);
                        if m >= kept { p - m } else { m }
                    }
                }
            };
            usize::try_from(lo + j).ok()
        })
        .collect();
    Ok(map)
}
