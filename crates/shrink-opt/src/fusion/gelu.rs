//! GELU in its exported forms → `Gelu`.
//!
//! - erf form: `x · 0.5 · (1 + Erf(x / √2))`, the inner scaling as `Div(x, √2)` or
//!   `Mul(x, 1/√2)` ⇒ `Gelu{approximate: none}`;
//! - tanh form: `0.5 · x · (1 + Tanh(√(2/π) · (x + 0.044715 · x³)))`, with `x³` as `Pow(x, 3)`
//!   or `x·(x·x)` ⇒ `Gelu{approximate: tanh}`.
//!
//! The outer product `x · 0.5 · p` is accepted in every association and operand order. Constants
//! must be one-element tensors within 1e-6 relative of the exact values; every intermediate must
//! have `x`'s exact type (no broadcasting) and be private to the pattern.
use super::{
    binary, confined, fixed_dims, has_type, input, is_plain_float, is_scalar_near, other_operand,
    producer, replace_and_remove,
};
use shrink_ir::op::{Binary, GeluApprox, Unary};
use shrink_ir::{Graph, NodeId, Op, Value};

const SQRT_2: f64 = std::f64::consts::SQRT_2;
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// √(2/π).
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const TANH_CUBIC: f64 = 0.044715;

/// The single consumer of node `n`'s output, if there is exactly one edge out of it.
fn sole_user(g: &Graph, n: NodeId) -> Option<NodeId> {
    match g.users_of(n)[..] {
        [(u, _, _)] => Some(u),
        _ => None,
    }
}

/// For a Mul node `m` with operand `known`, the other operand.
fn mul_other(g: &Graph, m: NodeId, known: Value) -> Option<Value> {
    other_operand(g, m, Binary::Mul, known)
}

/// `1 + v` by the sole user of `v`'s node: returns the Add node.
fn plus_one(g: &Graph, v: NodeId) -> Option<NodeId> {
    let add = sole_user(g, v)?;
    let one = other_operand(g, add, Binary::Add, Value::new(v, 0))?;
    is_scalar_near(g, one, 1.0).then_some(add)
}

/// The product `x · 0.5 · p` starting from `p` (any association): returns the final Mul and the
/// Mul nodes inside the product.
fn half_x_times(g: &Graph, p: NodeId, x: Value) -> Option<(NodeId, Vec<NodeId>)> {
    let m1 = sole_user(g, p)?;
    let o1 = mul_other(g, m1, Value::new(p, 0))?;
    if o1 == x || is_scalar_near(g, o1, 0.5) {
        // (p·x)·0.5 or (p·0.5)·x.
        let m2 = sole_user(g, m1)?;
        let o2 = mul_other(g, m2, Value::new(m1, 0))?;
        let ok = if o1 == x {
            is_scalar_near(g, o2, 0.5)
        } else {
            o2 == x
        };
        return ok.then(|| (m2, vec![m1]));
    }
    // p·(x·0.5).
    let half_x = producer(g, o1)?;
    let c = mul_other(g, half_x, x)?;
    is_scalar_near(g, c, 0.5).then(|| (m1, vec![half_x]))
}

/// `x / √2` or `x · (1/√2)`: returns `x`.
fn scaled_by_inv_sqrt2(g: &Graph, n: NodeId) -> Option<Value> {
    if let Some((x, c)) = binary(g, n, Binary::Div) {
        return is_scalar_near(g, c, SQRT_2).then_some(x);
    }
    let (a, b) = binary(g, n, Binary::Mul)?;
    [(a, b), (b, a)]
        .into_iter()
        .find(|&(_, c)| is_scalar_near(g, c, FRAC_1_SQRT_2))
        .map(|(x, _)| x)
}

/// Whether `v` is `x³` (`Pow(x, 3)`, `x·(x·x)` or `(x·x)·x`); returns its nodes.
fn cube_nodes(g: &Graph, v: Value, x: Value) -> Option<Vec<NodeId>> {
    let n = producer(g, v)?;
    if let Some((b, e)) = binary(g, n, Binary::Pow) {
        return (b == x && super::scalar_const(g, e) == Some(3.0)).then(|| vec![n]);
    }
    let sq = producer(g, mul_other(g, n, x)?)?;
    let (a, b) = binary(g, sq, Binary::Mul)?;
    (a == x && b == x).then(|| vec![n, sq])
}

/// Checks types and privacy, then replaces `root` by `Gelu(x)`.
fn finish(
    g: &mut Graph,
    x: Value,
    root: NodeId,
    internal: Vec<NodeId>,
    approximate: GeluApprox,
) -> Option<()> {
    let dtype = g.dtype(x);
    let dims = fixed_dims(g, x)?;
    let same = internal
        .iter()
        .chain([&root])
        .all(|&n| has_type(g, Value::new(n, 0), dtype, &dims));
    if !is_plain_float(dtype) || !same || !confined(g, &internal, root) {
        return None;
    }
    let name = g.node(root).name.clone();
    let out_ty = g.node(root).outputs[0].clone();
    let fused = g.add_node(
        Op::Unary(Unary::Gelu { approximate }),
        &name,
        &[Some(x)],
        vec![out_ty],
    );
    replace_and_remove(g, root, fused.into(), &internal);
    Some(())
}

/// Anchored at the Erf or Tanh node.
pub(super) fn fuse_at(g: &mut Graph, id: NodeId) -> Option<&'static str> {
    match g.node(id).op {
        Op::Unary(Unary::Erf) => fuse_erf(g, id).map(|_| "gelu"),
        Op::Unary(Unary::Tanh) => fuse_tanh(g, id).map(|_| "gelu_tanh"),
        _ => None,
    }
}

fn fuse_erf(g: &mut Graph, erf: NodeId) -> Option<()> {
    let scale = producer(g, input(g, erf, 0)?)?;
    let x = scaled_by_inv_sqrt2(g, scale)?;
    let p = plus_one(g, erf)?;
    let (root, product) = half_x_times(g, p, x)?;
    let mut internal = vec![scale, erf, p];
    internal.extend(product);
    finish(g, x, root, internal, GeluApprox::None)
}

fn fuse_tanh(g: &mut Graph, tanh: NodeId) -> Option<()> {
    // u = √(2/π) · s, s = x + 0.044715 · x³.
    let un = producer(g, input(g, tanh, 0)?)?;
    let (a, b) = binary(g, un, Binary::Mul)?;
    let s = [(a, b), (b, a)]
        .into_iter()
        .find(|&(_, k)| is_scalar_near(g, k, SQRT_2_OVER_PI))
        .map(|(s, _)| s)?;
    let sn = producer(g, s)?;
    let (a, b) = binary(g, sn, Binary::Add)?;
    let (x, cubic, cube) = [(a, b), (b, a)].into_iter().find_map(|(x, o)| {
        let cn = producer(g, o)?;
        let (c0, c1) = binary(g, cn, Binary::Mul)?;
        let cube_v = [(c0, c1), (c1, c0)]
            .into_iter()
            .find(|&(_, k)| is_scalar_near(g, k, TANH_CUBIC))
            .map(|(v, _)| v)?;
        Some((x, cn, cube_nodes(g, cube_v, x)?))
    })?;
    let p = plus_one(g, tanh)?;
    let (root, product) = half_x_times(g, p, x)?;
    let mut internal = vec![un, sn, cubic, tanh, p];
    internal.extend(cube);
    internal.extend(product);
    finish(g, x, root, internal, GeluApprox::Tanh)
}
