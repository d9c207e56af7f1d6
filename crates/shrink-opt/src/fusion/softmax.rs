//! Decomposed softmax → `Softmax` / `LogSoftmax` (opset-13 semantics, one axis).
//!
//! - `e = Exp(x − ReduceMax(x, [a], keepdims))`, `e / ReduceSum(e, [a], keepdims)` ⇒ `Softmax{a}`;
//!   also without the max shift, `Exp(x) / ReduceSum(Exp(x))`;
//! - `d − Log(ReduceSum(Exp(d), [a], keepdims))` with `d = x − ReduceMax(x, [a])` (or `d = x`)
//!   ⇒ `LogSoftmax{a}`.
//!
//! The shift by the maximum cancels exactly in real arithmetic, so both forms are the same
//! function; the fused ops always shift, so an unshifted input whose `Exp` overflows f32 (and
//! gave inf/inf = NaN unfused) gives the finite softmax value instead.
use super::{
    binary, confined, fixed_dims, has_type, input, is_plain_float, producer, reduce_axes,
    replace_and_remove,
};
use shrink_ir::op::{Binary, Norm, Reduce, Unary};
use shrink_ir::{Graph, NodeId, Op, Value};

/// If `id` is the reduction `want` (ReduceMax/ReduceSum) over exactly one axis with keepdims,
/// that axis.
fn single_axis(g: &Graph, id: NodeId, rank: usize, want: fn(&Reduce) -> bool) -> Option<usize> {
    let Op::Reduce(r) = &g.node(id).op else {
        return None;
    };
    if !want(r) {
        return None;
    }
    match reduce_axes(g, id, rank)? {
        (axes, true) if axes.len() == 1 => Some(axes[0]),
        _ => None,
    }
}

/// Anchored at the Exp node.
pub(super) fn fuse_at(g: &mut Graph, exp: NodeId) -> Option<&'static str> {
    if !matches!(g.node(exp).op, Op::Unary(Unary::Exp)) {
        return None;
    }
    let d = input(g, exp, 0)?;
    let dtype = g.dtype(d);
    let dims = fixed_dims(g, d)?;
    if !is_plain_float(dtype) || !has_type(g, Value::new(exp, 0), dtype, &dims) {
        return None;
    }
    let rank = dims.len();
    // The ReduceSum over e, and the one other user (Div for softmax, none for log-softmax).
    let users = g.users_of(exp);
    let sum = users
        .iter()
        .map(|u| u.0)
        .find(|&u| single_axis(g, u, rank, |r| matches!(r, Reduce::ReduceSum { .. })).is_some())?;
    let axis = single_axis(g, sum, rank, |r| matches!(r, Reduce::ReduceSum { .. }))?;
    if input(g, sum, 0)? != Value::new(exp, 0) {
        return None;
    }
    let shift = max_shift(g, d, axis, rank);
    let x = shift.as_ref().map_or(d, |s| s.0);
    let mut internal: Vec<NodeId> = shift.iter().flat_map(|s| [s.1, s.2]).collect();
    let sum_v = Value::new(sum, 0);
    let div = users
        .iter()
        .map(|u| u.0)
        .find(|&u| binary(g, u, Binary::Div) == Some((Value::new(exp, 0), sum_v)));
    let (root, op, counter) = if let Some(div) = div {
        internal.extend([exp, sum]);
        (
            div,
            Norm::Softmax {
                axis: axis as i64,
                coerce_2d: false,
            },
            "softmax",
        )
    } else {
        // Log-softmax: d − Log(sum).
        let [(log, _, _)] = g.users_of(sum)[..] else {
            return None;
        };
        if !matches!(g.node(log).op, Op::Unary(Unary::Log)) {
            return None;
        }
        let [(root, _, _)] = g.users_of(log)[..] else {
            return None;
        };
        if binary(g, root, Binary::Sub) != Some((d, Value::new(log, 0))) {
            return None;
        }
        internal.extend([exp, sum, log]);
        (
            root,
            Norm::LogSoftmax {
                axis: axis as i64,
                coerce_2d: false,
            },
            "log_softmax",
        )
    };
    if !has_type(g, x, dtype, &dims)
        || !has_type(g, Value::new(root, 0), dtype, &dims)
        || !confined(g, &internal, root)
    {
        return None;
    }
    let name = g.node(root).name.clone();
    let out_ty = g.node(root).outputs[0].clone();
    let fused = g.add_node(Op::Norm(op), &name, &[Some(x)], vec![out_ty]);
    replace_and_remove(g, root, fused.into(), &internal);
    Some(counter)
}

/// `d = Sub(x, ReduceMax(x, [axis], keepdims))`: returns `(x, ReduceMax node, Sub node)`.
fn max_shift(g: &Graph, d: Value, axis: usize, rank: usize) -> Option<(Value, NodeId, NodeId)> {
    let sub = producer(g, d)?;
    let (x, m) = binary(g, sub, Binary::Sub)?;
    let max = producer(g, m)?;
    let a = single_axis(g, max, rank, |r| matches!(r, Reduce::ReduceMax { .. }))?;
    (a == axis && input(g, max, 0)? == x).then_some((x, max, sub))
}
