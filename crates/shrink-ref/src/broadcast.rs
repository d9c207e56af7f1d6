//! Shape helpers shared by the op families: multidirectional broadcasting, strides, axis
//! normalization — all with checked arithmetic so bad shapes become errors, not panics.
use crate::EvalError;

/// The broadcast of several shapes (numpy rules; the shared rule
/// [`shrink_ir::rules::broadcast_dims`]).
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>, EvalError> {
    Ok(shrink_ir::rules::broadcast_dims(shapes)?)
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// For each element of `out_dims` (row-major), the flat index into a tensor of `in_dims` that
/// broadcasts to it. `in_dims` must be broadcast-compatible with `out_dims`.
pub fn broadcast_indices(in_dims: &[usize], out_dims: &[usize]) -> Vec<usize> {
    let n: usize = out_dims.iter().product();
    let rank = out_dims.len();
    let off = rank - in_dims.len();
    let in_strides = strides(in_dims);
    // Stride 0 on broadcast dims.
    let eff: Vec<usize> = (0..rank)
        .map(|i| {
            if i < off || in_dims[i - off] == 1 {
                0
            } else {
                in_strides[i - off]
            }
        })
        .collect();
    let mut idx = vec![0usize; rank];
    let mut out = Vec::with_capacity(n);
    let mut flat = 0usize;
    for _ in 0..n {
        out.push(flat);
        for d in (0..rank).rev() {
            idx[d] += 1;
            flat += eff[d];
            if idx[d] < out_dims[d] {
                break;
            }
            flat -= eff[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

/// Normalizes a possibly negative axis against `rank` (valid range `-rank..rank`; the shared rule
/// [`shrink_ir::rules::norm_axis`]).
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, EvalError> {
    Ok(shrink_ir::rules::norm_axis(axis, rank)?)
}
