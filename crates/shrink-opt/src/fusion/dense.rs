//! Dense layers: MatMul(x, W) → Add(bias) → activation, or Gemm(x, W, C) → activation, with a
//! constant 2-D weight and a bias along the last axis, become one `DenseAct` that codegen lowers
//! as a single kernel (bias and activation applied while the accumulators are in registers).
//! The fused node keeps the layer's name, so `inspect` still reports it as that layer.
use super::{confined, input, replace_and_remove};
use shrink_ir::op::{Binary, Fused, Linear, Unary};
use shrink_ir::{Graph, NodeId, Op, Value};

/// The single consumer of `id`'s output 0, if exactly one node reads it.
fn sole_user(g: &Graph, id: NodeId) -> Option<(NodeId, usize)> {
    match g.users_of(id)[..] {
        [(u, slot, 0)] => Some((u, slot)),
        _ => None,
    }
}

/// A constant bias of width `n` along the last axis (all other dims 1).
fn is_bias(g: &Graph, v: Value, n: usize) -> bool {
    g.const_value(v).is_some_and(|t| {
        t.dims().last() == Some(&n) && t.dims().iter().rev().skip(1).all(|&d| d == 1)
    })
}

pub fn fuse_at(g: &mut Graph, id: NodeId) -> Option<&'static str> {
    let (trans_b, gemm_bias) = match &g.node(id).op {
        Op::Linear(Linear::MatMul) => (false, None),
        Op::Linear(Linear::Gemm {
            alpha,
            beta,
            trans_a: false,
            trans_b,
        }) if *alpha == 1.0 && *beta == 1.0 => (*trans_b, Some(input(g, id, 2))),
        _ => return None,
    };
    let (x, w) = (input(g, id, 0)?, input(g, id, 1)?);
    let wt = g.const_value(w)?;
    if wt.rank() != 2 || !g.dtype(w).is_float() {
        return None;
    }
    let n = if trans_b { wt.dims()[0] } else { wt.dims()[1] };
    let out_ty = g.node(id).outputs[0].clone();
    let mut bias = match gemm_bias {
        Some(Some(c)) if is_bias(g, c, n) => Some(c),
        Some(Some(_)) => return None,
        _ => None,
    };
    let mut chain = vec![id];
    let mut last = id;
    if bias.is_none()
        && gemm_bias.is_none()
        && let Some((add, slot)) = sole_user(g, last)
        && let Op::Binary(Binary::Add) = g.node(add).op
        && let Some(b) = input(g, add, 1 - slot)
        && is_bias(g, b, n)
        && g.node(add).outputs[0] == out_ty
    {
        bias = Some(b);
        chain.push(add);
        last = add;
    }
    let mut activation = None;
    if let Some((act, 0)) = sole_user(g, last)
        && let Op::Unary(u) = &g.node(act).op
        && !matches!(u, Unary::Identity | Unary::Not)
        && g.node(act).outputs[0] == out_ty
    {
        activation = Some(u.clone());
        chain.push(act);
        last = act;
    }
    // A bare MatMul, or a Gemm with nothing after it, is already a single kernel.
    if chain.len() == 1 || (gemm_bias.is_some() && activation.is_none()) {
        return None;
    }
    let internal: Vec<NodeId> = chain[..chain.len() - 1].to_vec();
    if !confined(g, &internal, last) {
        return None;
    }
    let name = g.node(id).name.clone();
    let fused = g.add_node(
        Op::Fused(Fused::DenseAct {
            trans_b,
            activation,
        }),
        &name,
        &[Some(x), Some(w), bias],
        vec![out_ty],
    );
    replace_and_remove(g, last, fused.into(), &internal);
    Some("dense_act")
}
