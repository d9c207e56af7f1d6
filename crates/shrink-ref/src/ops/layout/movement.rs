//! Element-moving ops whose output position maps to one source element: Transpose, Concat,
//! Gather, Slice, Split, Expand, Tile.
use super::{checked_prod, dims_input, remap, same_dtype, strides_of};
use crate::broadcast::{broadcast_shapes, norm_axis};
use crate::ops::{int_list, optional, required};
use crate::{EvalCtx, EvalError};
use shrink_ir::rules::layout::{AxisSlice, slice_axes, transpose_perm};
use shrink_ir::{Element, Tensor};

pub(super) fn transpose(
    ins: &[Option<&Tensor>],
    perm: Option<&[i64]>,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let rank = data.rank();
    let perm = transpose_perm(perm, rank)?;
    let dims = perm.iter().map(|&a| data.dims()[a]).collect();
    let st = strides_of(data.dims());
    remap(data, dims, None, ctx, |idx| {
        Some(idx.iter().zip(&perm).map(|(&i, &a)| i * st[a]).sum())
    })
}

pub(super) fn concat(
    ins: &[Option<&Tensor>],
    axis: i64,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let parts = (0..ins.len())
        .map(|i| required(ins, i))
        .collect::<Result<Vec<_>, _>>()?;
    let first = *parts
        .first()
        .ok_or_else(|| EvalError::invalid("Concat needs at least one input"))?;
    let a = norm_axis(axis, first.rank())?;
    let mut dims = first.dims().to_vec();
    dims[a] = 0;
    for t in &parts {
        same_dtype(first.dtype(), t.dtype(), "Concat inputs")?;
        let same_rest = t.rank() == first.rank()
            && t.dims()
                .iter()
                .zip(first.dims())
                .enumerate()
                .all(|(i, (x, y))| i == a || x == y);
        if !same_rest {
            return Err(EvalError::invalid(format!(
                "cannot concat {:?} and {:?} on axis {a}",
                first.dims(),
                t.dims()
            )));
        }
        dims[a] = dims[a]
            .checked_add(t.dims()[a])
            .ok_or_else(|| EvalError::TooLarge("concat axis overflows".into()))?;
    }
    let n = ctx.check_alloc(first.dtype(), &dims)?;
    crate::dispatch_any!(first.dtype(), T => concat_typed::<T>(&parts, dims, a, n))
}

fn concat_typed<T: Element>(
    parts: &[&Tensor],
    dims: Vec<usize>,
    a: usize,
    n: usize,
) -> Result<Tensor, EvalError> {
    if n == 0 {
        // The outer/inner products of an empty shape may overflow; there is nothing to copy.
        return Ok(Tensor::from_vec_as(parts[0].dtype(), dims, Vec::<T>::new()));
    }
    let outer = checked_prod(&dims[..a])?;
    let inner = checked_prod(&dims[a + 1..])?;
    let vals = parts
        .iter()
        .map(|t| {
            t.to_vec::<T>()
                .ok_or_else(|| EvalError::invalid("Concat input has an unexpected dtype"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(n);
    // The output is, for each outer index, one contiguous block from every input in turn.
    for o in 0..outer {
        for (t, v) in parts.iter().zip(&vals) {
            let block = t.dims()[a] * inner;
            let chunk = v
                .get(o * block..(o + 1) * block)
                .ok_or_else(|| EvalError::invalid("Concat input too short"))?;
            out.extend_from_slice(chunk);
        }
    }
    Ok(Tensor::from_vec_as(parts[0].dtype(), dims, out))
}

pub(super) fn gather(
    ins: &[Option<&Tensor>],
    axis: i64,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let indices = required(ins, 1)?;
    let a = norm_axis(axis, data.rank())?;
    let ddims = data.dims();
    let mut dims = ddims[..a].to_vec();
    dims.extend_from_slice(indices.dims());
    dims.extend_from_slice(&ddims[a + 1..]);
    if ctx.check_alloc(data.dtype(), &dims)? == 0 {
        return remap(data, dims, None, ctx, |_| None);
    }
    let size = ddims[a] as i64;
    let idx: Vec<usize> = int_list(indices)?
        .into_iter()
        .map(|i| {
            // Negative indices count from the end, once.
            let j = if i < 0 { i + size } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < ddims[a])
                .ok_or_else(|| {
                    EvalError::invalid(format!(
                        "index {i} is out of range for axis {a} of size {size}"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let st = strides_of(ddims);
    let ist = strides_of(indices.dims());
    let ir = indices.rank();
    remap(data, dims, None, ctx, |o| {
        let k: usize = o[a..a + ir].iter().zip(&ist).map(|(i, s)| i * s).sum();
        let before: usize = o[..a].iter().zip(&st).map(|(i, s)| i * s).sum();
        let after: usize = o[a + ir..]
            .iter()
            .zip(&st[a + 1..])
            .map(|(i, s)| i * s)
            .sum();
        idx.get(k).map(|&j| before + j * st[a] + after)
    })
}

/// Copies the slice of `data` described per axis (axes not listed are taken whole).
fn take_slices(data: &Tensor, sl: &[AxisSlice], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let dims = sl.iter().map(|s| s.count).collect();
    let st = strides_of(data.dims());
    remap(data, dims, None, ctx, |o| {
        let mut flat = 0usize;
        for ((&i, s), &stride) in o.iter().zip(sl).zip(&st) {
            flat += usize::try_from(s.start as i128 + i as i128 * s.step as i128).ok()? * stride;
        }
        Some(flat)
    })
}

fn whole(dims: &[usize]) -> Vec<AxisSlice> {
    dims.iter().map(|&d| AxisSlice::whole(d)).collect()
}

pub(super) fn slice(ins: &[Option<&Tensor>], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let starts = int_list(required(ins, 1)?)?;
    let ends = int_list(required(ins, 2)?)?;
    let axes = optional(ins, 3).map(int_list).transpose()?;
    let steps = optional(ins, 4).map(int_list).transpose()?;
    let sl = slice_axes(
        data.dims(),
        &starts,
        &ends,
        axes.as_deref(),
        steps.as_deref(),
    )?;
    take_slices(data, &sl, ctx)
}

/// Split into `n_outs` pieces along `axis`: by the sizes input, else `num_outputs` pieces of
/// `ceil(dim / n)` (the last one smaller), else equal pieces (the dim must divide evenly).
pub(super) fn split(
    ins: &[Option<&Tensor>],
    axis: i64,
    num_outputs: Option<i64>,
    n_outs: usize,
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let data = required(ins, 0)?;
    let a = norm_axis(axis, data.rank())?;
    let dim = data.dims()[a];
    let sizes = match optional(ins, 1).filter(|t| !t.is_empty()) {
        Some(t) => {
            let s = dims_input(t, "split")?;
            if s.len() != n_outs
                || s.iter().try_fold(0usize, |acc, &x| acc.checked_add(x)) != Some(dim)
            {
                return Err(EvalError::invalid(format!(
                    "split {s:?} does not cut {dim} into {n_outs} outputs"
                )));
            }
            s
        }
        None => {
            let n = match num_outputs {
                Some(n) if usize::try_from(n).ok() != Some(n_outs) => {
                    return Err(EvalError::invalid(format!(
                        "num_outputs is {n} but {n_outs} outputs are declared"
                    )));
                }
                _ => n_outs,
            };
            if n == 0 {
                return Err(EvalError::invalid("Split has no outputs"));
            }
            if dim % n == 0 {
                vec![dim / n; n]
            } else if num_outputs.is_some() {
                let chunk = dim.div_ceil(n);
                let last = dim.checked_sub(chunk * (n - 1)).ok_or_else(|| {
                    EvalError::invalid(format!("{dim} cannot be split into {n} chunks of {chunk}"))
                })?;
                let mut s = vec![chunk; n - 1];
                s.push(last);
                s
            } else {
                return Err(EvalError::invalid(format!(
                    "dim {dim} cannot be split evenly into {n} outputs"
                )));
            }
        }
    };
    let mut sl = whole(data.dims());
    let mut pos = 0usize;
    let mut outs = Vec::with_capacity(n_outs);
    for s in sizes {
        sl[a] = AxisSlice {
            start: i64::try_from(pos).map_err(|_| EvalError::invalid("split offset overflows"))?,
            step: 1,
            count: s,
        };
        outs.push(take_slices(data, &sl, ctx)?);
        pos += s;
    }
    Ok(outs)
}

pub(super) fn expand(ins: &[Option<&Tensor>], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let shape = dims_input(required(ins, 1)?, "the Expand shape")?;
    let dims = broadcast_shapes(&[data.dims(), &shape])?;
    let ddims = data.dims();
    let st = strides_of(ddims);
    let off = dims.len() - ddims.len();
    remap(data, dims, None, ctx, |o| {
        // Size-1 input dims repeat: they contribute nothing to the source index.
        Some(
            o[off..]
                .iter()
                .zip(ddims)
                .zip(&st)
                .map(|((&i, &d), &s)| if d == 1 { 0 } else { i * s })
                .sum(),
        )
    })
}

pub(super) fn tile(ins: &[Option<&Tensor>], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let data = required(ins, 0)?;
    let repeats = dims_input(required(ins, 1)?, "the Tile repeats")?;
    let ddims = data.dims();
    if repeats.len() != ddims.len() {
        return Err(EvalError::invalid(format!(
            "{} repeats for rank {}",
            repeats.len(),
            ddims.len()
        )));
    }
    let dims = ddims
        .iter()
        .zip(&repeats)
        .map(|(&d, &r)| {
            d.checked_mul(r)
                .ok_or_else(|| EvalError::TooLarge("Tile output dim overflows".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let st = strides_of(ddims);
    remap(data, dims, None, ctx, |o| {
        Some(
            o.iter()
                .zip(ddims)
                .zip(&st)
                .map(|((&i, &d), &s)| (i % d.max(1)) * s)
                .sum(),
        )
    })
}
