//! Self-gated activations written out as a product with a function of the same value → one op:
//! - `x · Sigmoid(x)` (SiLU) and `x · Sigmoid(α·x)` ⇒ `Swish{alpha}`;
//! - `x · Tanh(Softplus(x))` ⇒ `Mish`;
//! - `x · HardSigmoid{alpha = 1/6, beta = 1/2}(x)` ⇒ `HardSwish`.
//!
//! These are the function bodies ONNX gives the three ops and the way exporters spell SiLU. The
//! anchor is the outer Mul (either operand order); `x` must be a float of fixed shape, every node
//! of the pattern must have exactly `x`'s type (α is a one-element constant that does not
//! broadcast `x` to a bigger shape), and the inner nodes must be private to the pattern.
use super::{
    binary, confined, fixed_dims, has_type, input, is_plain_float, other_operand, producer,
    replace_and_remove, scalar_const,
};
use shrink_ir::op::{Binary, Unary};
use shrink_ir::{Graph, NodeId, Op, Value};

/// The fused op for `x · gate` and the pattern's inner nodes, if `gate` is one of the forms.
fn gated(g: &Graph, x: Value, gate: Value) -> Option<(Unary, Vec<NodeId>, &'static str)> {
    let n = producer(g, gate)?;
    match &g.node(n).op {
        Op::Unary(Unary::Sigmoid) => {
            let y = input(g, n, 0)?;
            if y == x {
                return Some((Unary::Swish { alpha: 1.0 }, vec![n], "swish"));
            }
            let m = producer(g, y)?;
            let alpha = scalar_const(g, other_operand(g, m, Binary::Mul, x)?)?;
            Some((
                Unary::Swish {
                    alpha: alpha as f32,
                },
                vec![n, m],
                "swish",
            ))
        }
        Op::Unary(Unary::Tanh) => {
            let sp = producer(g, input(g, n, 0)?)?;
            (matches!(g.node(sp).op, Op::Unary(Unary::Softplus)) && input(g, sp, 0)? == x)
                .then(|| (Unary::Mish, vec![n, sp], "mish"))
        }
        Op::Unary(Unary::HardSigmoid { alpha, beta }) => {
            (input(g, n, 0)? == x && *alpha == 1.0 / 6.0 && *beta == 0.5)
                .then(|| (Unary::HardSwish, vec![n], "hardswish"))
        }
        _ => None,
    }
}

pub fn fuse_at(g: &mut Graph, id: NodeId) -> Option<&'static str> {
    let (a, b) = binary(g, id, Binary::Mul)?;
    for (x, gate) in [(a, b), (b, a)] {
        let Some((op, inner, counter)) = gated(g, x, gate) else {
            continue;
        };
        let dims = fixed_dims(g, x)?;
        let ty = g.value_type(x).clone();
        let same = |v: Value| has_type(g, v, ty.dtype, &dims);
        if !is_plain_float(ty.dtype)
            || !same(Value::new(id, 0))
            || !inner.iter().all(|&n| same(Value::new(n, 0)))
            || !confined(g, &inner, id)
        {
            return None;
        }
        let name = g.node(id).name.clone();
        let fused = g.add_node(Op::Unary(op), &name, &[Some(x)], vec![ty]);
        replace_and_remove(g, id, fused.into(), &inner);
        return Some(counter);
    }
    None
}
