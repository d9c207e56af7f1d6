//! Pad in its four modes. Negative pads crop first; positive pads are then filled relative to the
//! cropped tensor (ONNX Runtime's reading, since the spec's numpy reference rejects negative pads).
//! The extents and the per-axis source map are the rules the code generator shares
//! ([`shrink_ir::rules::layout`]).
use super::{remap, same_dtype, strides_of};
use crate::ops::{int_list, optional, required};
use crate::{EvalCtx, EvalError};
use shrink_ir::Tensor;
use shrink_ir::op::PadMode;
use shrink_ir::rules::layout::{PadExtents, pad_axis_map, pad_extents};

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
    let axes = optional(ins, 3).map(int_list).transpose()?;
    let PadExtents { begin, end, dims } = pad_extents(data.dims(), &pads, axes.as_deref())?;
    let ddims = data.dims();
    if ctx.check_alloc(data.dtype(), &dims)? == 0 {
        return remap(data, dims, fill, ctx, |_| None);
    }
    // Per axis, the source coordinate of every output coordinate (None = the constant).
    let maps = (0..rank)
        .map(|a| pad_axis_map(ddims[a], begin[a], end[a], dims[a], mode))
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
