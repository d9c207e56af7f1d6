//! The decomposed normalizations → LayerNormalization / RMSNormalization.
//!
//! Both end in the same core, matched backwards from the normalizing node:
//! `sq = Pow(b, 2) | Mul(b, b)`, `v = ReduceMean(sq, last k axes, keepdims)`, `Add(v, ε)`,
//! `s = Sqrt(·)`, then `Div(n, s)` or `Mul(n, Reciprocal(s))`, with numerator `n == b`.
//! - LayerNorm: `b = Sub(x, ReduceMean(x, same axes, keepdims))` ⇒ `LayerNormalization{axis =
//!   rank − k, ε}`, optionally absorbing a following `Mul γ` and then `Add β` (γ = ones when absent);
//! - RMSNorm: `b = x` ⇒ `RMSNormalization{axis, ε}`, optionally absorbing `Mul γ` (else ones).
//!
//! LayerNorm runs first over the whole graph: the tail of its pattern is an RMS pattern of
//! `x − mean`, which would otherwise be fused into the weaker form.
//!
//! γ and β are absorbed only when they vary along the normalized axes alone (so they equal a
//! tensor of shape `x.shape[axis..]` broadcast), and the Mul/Add does not change the shape.
use super::{
    binary, broadcast_to, confined, fixed_dims, float_tensor, has_type, input, is_plain_float,
    other_operand, producer, reduce_axes, replace_and_remove, scalar_const, vtype,
};
use shrink_ir::op::{Binary, Norm, Reduce, Unary};
use shrink_ir::{DType, Graph, NodeId, Op, Tensor, Value};
use std::sync::Arc;

/// The matched core: `n / sqrt(mean(b²) + ε)` at node `root`.
struct Core {
    root: NodeId,
    numerator: Value,
    base: Value,
    /// First normalized axis (the ReduceMean covers `axis..rank`).
    axis: usize,
    eps: f32,
    dtype: DType,
    dims: Vec<usize>,
    /// The core's nodes other than `root`.
    nodes: Vec<NodeId>,
}

/// Whether `id` is a ReduceMean with keepdims over exactly the last axes of a rank-`rank` input;
/// returns the first reduced axis.
fn mean_over_last(g: &Graph, id: NodeId, rank: usize) -> Option<usize> {
    if !matches!(g.node(id).op, Op::Reduce(Reduce::ReduceMean { .. })) {
        return None;
    }
    let (axes, keepdims) = reduce_axes(g, id, rank)?;
    let first = *axes.first()?;
    (keepdims && axes.iter().copied().eq(first..rank)).then_some(first)
}

/// `sq` as the square of some value: `Pow(b, 2)` or `Mul(b, b)`; returns `b`.
fn square_base(g: &Graph, sq: NodeId) -> Option<Value> {
    if let Some((b, e)) = binary(g, sq, Binary::Pow) {
        return (scalar_const(g, e) == Some(2.0)).then_some(b);
    }
    let (a, b) = binary(g, sq, Binary::Mul)?;
    (a == b).then_some(a)
}

/// The normalizing node `root`: `Div(n, s)` or `Mul(n, Reciprocal(s))` (either order); returns
/// `(n, s, [Reciprocal])`.
fn scaled_by_inverse(g: &Graph, root: NodeId) -> Option<(Value, Value, Vec<NodeId>)> {
    if let Some((n, s)) = binary(g, root, Binary::Div) {
        return Some((n, s, vec![]));
    }
    let (a, b) = binary(g, root, Binary::Mul)?;
    for (n, r) in [(a, b), (b, a)] {
        if let Some(rn) = producer(g, r)
            && matches!(g.node(rn).op, Op::Unary(Unary::Reciprocal))
        {
            return Some((n, input(g, rn, 0)?, vec![rn]));
        }
    }
    None
}

fn match_core(g: &Graph, root: NodeId) -> Option<Core> {
    let (numerator, s, mut nodes) = scaled_by_inverse(g, root)?;
    let dtype = g.dtype(numerator);
    let dims = fixed_dims(g, numerator)?;
    if !is_plain_float(dtype) || !has_type(g, Value::new(root, 0), dtype, &dims) {
        return None;
    }
    let sqrt = producer(g, s)?;
    if !matches!(g.node(sqrt).op, Op::Unary(Unary::Sqrt)) {
        return None;
    }
    let add = producer(g, input(g, sqrt, 0)?)?;
    let (a, b) = binary(g, add, Binary::Add)?;
    let (var, eps) = [(a, b), (b, a)]
        .into_iter()
        .find_map(|(v, e)| Some((v, scalar_const(g, e)?)))?;
    let mean_sq = producer(g, var)?;
    let axis = mean_over_last(g, mean_sq, dims.len())?;
    let sq = producer(g, input(g, mean_sq, 0)?)?;
    let base = square_base(g, sq)?;
    // ε must survive the f32 attribute exactly, and the Add must not broadcast the variance up.
    let eps32 = eps as f32;
    if f64::from(eps32) != eps || g.value_type(Value::new(add, 0)) != g.value_type(var) {
        return None;
    }
    if base != numerator || !has_type(g, Value::new(sq, 0), dtype, &dims) {
        return None;
    }
    nodes.extend([sqrt, add, mean_sq, sq]);
    Some(Core {
        root,
        numerator,
        base,
        axis,
        eps: eps32,
        dtype,
        dims,
        nodes,
    })
}

/// A per-normalized-slice parameter `p` (γ or β) as a value of shape `dims[axis..]`: `p` itself
/// when it already has that type, else a broadcast copy when it is a constant.
fn affine_param(g: &mut Graph, p: Value, core: &Core, name: &str) -> Option<Value> {
    let want = &core.dims[core.axis..];
    if g.dtype(p) != core.dtype {
        return None;
    }
    if has_type(g, p, core.dtype, want) {
        return Some(p);
    }
    let t = g.const_value(p)?.clone();
    // Right-aligned against x, every dim of p before `axis` must be 1 (no per-row variation).
    let lead = (t.rank() + core.axis).saturating_sub(core.dims.len());
    if t.dims()[..lead.min(t.rank())].iter().any(|&d| d != 1) {
        return None;
    }
    let b = broadcast_to(&t, want)?;
    Some(g.add_const(name, Arc::new(b)).into())
}

/// The sole consumer of `v` if it is the binary op `kind` with `v` as one operand and the other
/// a parameter, its output keeping `v`'s type; returns `(node, parameter)`.
fn affine_user(g: &Graph, v: Value, kind: Binary) -> Option<(NodeId, Value)> {
    if g.outputs.iter().any(|(_, o)| *o == v) {
        return None;
    }
    let [(user, _, _)] = g.users_of(v.node)[..] else {
        return None;
    };
    let p = other_operand(g, user, kind, v)?;
    // x·x-style self-use is not an affine parameter.
    let keeps_type = vtype(g, Value::new(user, 0)).is_some_and(|t| Some(t) == vtype(g, v));
    (p != v && keeps_type).then_some((user, p))
}

/// Ones of shape `dims[axis..]` in the core's dtype.
fn ones(g: &mut Graph, core: &Core, name: &str) -> Option<Value> {
    let want = core.dims[core.axis..].to_vec();
    let n: usize = want.iter().product();
    let t: Tensor = float_tensor(core.dtype, want, &vec![1.0; n])?;
    Some(g.add_const(name, Arc::new(t)).into())
}

/// Extends the matched pattern through `Mul γ` (and, when `with_bias`, then `Add β`); returns the
/// new root, γ, β and the absorbed nodes. Parameters are only absorbed when [`affine_param`]
/// accepts them; otherwise the Mul/Add stays outside the fused op.
fn absorb_affine(
    g: &mut Graph,
    core: &Core,
    with_bias: bool,
) -> (NodeId, Option<Value>, Option<Value>, Vec<NodeId>) {
    let name = g.node(core.root).name.clone();
    let (mut root, mut gamma, mut beta, mut nodes) = (core.root, None, None, vec![]);
    if let Some((mul, p)) = affine_user(g, Value::new(core.root, 0), Binary::Mul)
        && let Some(gv) = affine_param(g, p, core, &format!("{name}.scale"))
    {
        nodes.push(root);
        root = mul;
        gamma = Some(gv);
        if with_bias
            && let Some((add, p)) = affine_user(g, Value::new(mul, 0), Binary::Add)
            && let Some(bv) = affine_param(g, p, core, &format!("{name}.bias"))
        {
            nodes.push(root);
            root = add;
            beta = Some(bv);
        }
    }
    (root, gamma, beta, nodes)
}

/// Stash type: f32 compute (ONNX code 1) except for f64 data, which keeps f64 (code 11).
fn stash(dtype: DType) -> i64 {
    if dtype == DType::F64 { 11 } else { 1 }
}

/// Anchored at the normalizing Div/Mul.
pub(super) fn fuse_layernorm_at(g: &mut Graph, root: NodeId) -> Option<&'static str> {
    let core = match_core(g, root)?;
    let sub = producer(g, core.base)?;
    let (x, mean) = binary(g, sub, Binary::Sub)?;
    let mean_node = producer(g, mean)?;
    if mean_over_last(g, mean_node, core.dims.len())? != core.axis
        || input(g, mean_node, 0)? != x
        || !has_type(g, x, core.dtype, &core.dims)
    {
        return None;
    }
    let mut internal = core.nodes.clone();
    internal.extend([sub, mean_node]);
    if !confined(g, &internal, root) {
        return None;
    }
    let (new_root, gamma, beta, absorbed) = absorb_affine(g, &core, true);
    internal.extend(absorbed);
    let name = g.node(new_root).name.clone();
    let gamma = match gamma {
        Some(gm) => gm,
        None => ones(g, &core, &format!("{name}.scale"))?,
    };
    let op = Op::Norm(Norm::LayerNormalization {
        axis: core.axis as i64,
        epsilon: core.eps,
        stash_type: stash(core.dtype),
    });
    let out_ty = g.node(new_root).outputs[0].clone();
    let fused = g.add_node(op, &name, &[Some(x), Some(gamma), beta], vec![out_ty]);
    replace_and_remove(g, new_root, fused.into(), &internal);
    Some("layernorm")
}

/// Anchored at the normalizing Div/Mul.
pub(super) fn fuse_rmsnorm_at(g: &mut Graph, root: NodeId) -> Option<&'static str> {
    let core = match_core(g, root)?;
    let x = core.base;
    if core.numerator != x || !confined(g, &core.nodes, root) {
        return None;
    }
    let (new_root, gamma, _, absorbed) = absorb_affine(g, &core, false);
    let mut internal = core.nodes.clone();
    internal.extend(absorbed);
    let name = g.node(new_root).name.clone();
    let gamma = match gamma {
        Some(gm) => gm,
        None => ones(g, &core, &format!("{name}.scale"))?,
    };
    let op = Op::Norm(Norm::RMSNormalization {
        axis: core.axis as i64,
        epsilon: core.eps,
        stash_type: stash(core.dtype),
    });
    let out_ty = g.node(new_root).outputs[0].clone();
    let fused = g.add_node(op, &name, &[Some(x), Some(gamma)], vec![out_ty]);
    replace_and_remove(g, new_root, fused.into(), &internal);
    Some("rmsnorm")
}
