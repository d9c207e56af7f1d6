//! Interpreter for the `Layout` family: ops that move elements without looking at their values
//! (Reshape … Pad) and ops that compute shapes or generate values (Shape, ConstantOfShape, Range).
//!
//! Element-moving ops are written once for every dtype: each describes, for an output position,
//! which source element to copy (see [`remap`]), and the copy itself is instantiated per storage
//! type with `dispatch_any!`. Sizes derived from input *values* (shapes, repeats, pads, ranges) go
//! through `ctx.check_alloc` before anything is allocated.
mod movement;
mod pad;
mod shape;
#[cfg(test)]
mod tests;

use crate::{EvalCtx, EvalError};
use shrink_ir::op::Layout;
use shrink_ir::{DType, Element, Tensor, ValueType};

pub fn eval(
    op: &Layout,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let one = |t: Result<Tensor, EvalError>| t.map(|t| vec![t]);
    match op {
        Layout::Reshape { allowzero } => one(shape::reshape(ins, *allowzero)),
        Layout::Flatten { axis } => one(shape::flatten(ins, *axis)),
        Layout::Squeeze => one(shape::squeeze(ins)),
        Layout::Unsqueeze => one(shape::unsqueeze(ins)),
        Layout::Shape { start, end } => one(shape::shape(ins, *start, *end)),
        Layout::ConstantOfShape { value } => {
            one(shape::constant_of_shape(ins, value.as_ref(), outs, ctx))
        }
        Layout::Range => one(shape::range(ins, ctx)),
        Layout::Transpose { perm } => one(movement::transpose(ins, perm.as_deref(), ctx)),
        Layout::Concat { axis } => one(movement::concat(ins, *axis, ctx)),
        Layout::Gather { axis } => one(movement::gather(ins, *axis, ctx)),
        Layout::Slice => one(movement::slice(ins, ctx)),
        Layout::Split { axis, num_outputs } => {
            movement::split(ins, *axis, *num_outputs, outs.len(), ctx)
        }
        Layout::Expand => one(movement::expand(ins, ctx)),
        Layout::Tile => one(movement::tile(ins, ctx)),
        Layout::Pad { mode } => one(pad::pad(ins, *mode, ctx)),
    }
}

/// Builds a tensor of `src`'s dtype and shape `dims`: for every output position (row-major
/// multi-index), `pick` names the flat index of the source element to copy, or `None` to write
/// `fill` (element 0 of a tensor of the same dtype; zero bits when absent).
fn remap(
    src: &Tensor,
    dims: Vec<usize>,
    fill: Option<&Tensor>,
    ctx: &EvalCtx,
    pick: impl FnMut(&[usize]) -> Option<usize>,
) -> Result<Tensor, EvalError> {
    let n = ctx.check_alloc(src.dtype(), &dims)?;
    crate::dispatch_any!(src.dtype(), T => remap_typed::<T>(src, dims, n, fill, pick))
}

fn remap_typed<T: Element + Default>(
    src: &Tensor,
    dims: Vec<usize>,
    n: usize,
    fill: Option<&Tensor>,
    mut pick: impl FnMut(&[usize]) -> Option<usize>,
) -> Result<Tensor, EvalError> {
    let dtype = src.dtype();
    let fill = match fill {
        Some(f) => {
            read_elem::<T>(f, 0).ok_or_else(|| EvalError::invalid("the fill value is empty"))?
        }
        None => T::default(),
    };
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let v = match pick(&idx) {
            Some(i) => read_elem::<T>(src, i).ok_or_else(|| {
                EvalError::invalid(format!("element {i} is out of range for {src:?}"))
            })?,
            None => fill,
        };
        out.push(v);
        next_index(&mut idx, &dims);
    }
    Ok(Tensor::from_vec_as(dtype, dims, out))
}

/// Element `i` of `t` read as storage type `T` (which `dispatch_any!` chose for `t`'s dtype).
fn read_elem<T: Element>(t: &Tensor, i: usize) -> Option<T> {
    let s = T::DTYPE.size();
    if s != t.dtype().size() {
        return None;
    }
    let start = i.checked_mul(s)?;
    t.bytes().get(start..start.checked_add(s)?).map(T::read_le)
}

/// Advances a row-major multi-index over `dims`, wrapping to all zeros after the last position.
fn next_index(idx: &mut [usize], dims: &[usize]) {
    for d in (0..dims.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// Row-major strides. Saturating because an empty tensor may have dims whose product overflows;
/// its strides are never used, and a non-empty tensor's strides always fit.
fn strides_of(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(dims[i + 1]);
    }
    s
}

/// Product of `dims`, or an error if it overflows.
fn checked_prod(dims: &[usize]) -> Result<usize, EvalError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| EvalError::TooLarge(format!("the element count of {dims:?} overflows")))
}

/// A shape-like integer input as dims (every entry must be non-negative).
fn dims_input(t: &Tensor, what: &str) -> Result<Vec<usize>, EvalError> {
    super::int_list(t)?
        .into_iter()
        .map(|d| {
            usize::try_from(d)
                .map_err(|_| EvalError::invalid(format!("{what} has a negative entry {d}")))
        })
        .collect()
}

/// Normalizes a list of possibly negative axes against `rank`, rejecting duplicates.
fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, EvalError> {
    Ok(shrink_ir::rules::norm_axes(axes, rank)?)
}

/// Output tensors must carry exactly the declared dtypes.
fn same_dtype(a: DType, b: DType, what: &str) -> Result<(), EvalError> {
    if a != b {
        return Err(EvalError::invalid(format!("{what}: expected {a}, got {b}")));
    }
    Ok(())
}
