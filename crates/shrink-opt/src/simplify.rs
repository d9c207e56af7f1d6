//! Removal of ops that compute their own input: Identity, Dropout in inference, Cast to the same
//! type, Reshape/Expand to the same shape, identity Transpose, Squeeze/Unsqueeze/Pad/Slice that
//! change nothing, single-input Concat/Sum/Max/Min/Mean, and arithmetic with a neutral constant
//! (x·1, x/1, x+0, x−0, x^1) when broadcasting does not change the shape. A node is bypassed only
//! when its output type (dtype and shape) is exactly its input's, so consumers see no difference.
use crate::{Ctx, OptError, Stats};
use shrink_ir::op::{Binary, Convert, Layout, Unary, Variadic};
use shrink_ir::{Graph, NodeId, Op, Value};

const PASS: &str = "simplify";

/// Whether constant `v` is a tensor filled with `x`.
fn const_all(g: &Graph, v: Value, x: f64) -> bool {
    g.const_value(v)
        .is_some_and(|t| (0..t.len()).all(|i| t.get_f64(i) == x))
}

/// Whether all elements of integer constant `v` satisfy `f`.
fn const_ints_all(g: &Graph, v: Option<Value>, f: impl Fn(i64) -> bool) -> bool {
    v.and_then(|v| g.const_value(v))
        .is_some_and(|t| t.dtype().is_int() && t.to_i64_vec().into_iter().all(f))
}

/// The input the node passes through unchanged, if it is an identity.
fn passthrough(g: &Graph, id: NodeId) -> Option<Value> {
    let ins = g.inputs_of(id);
    let x = ins.first().copied().flatten()?;
    let node = g.node(id);
    let same_type = node.outputs.first() == Some(g.value_type(x))
        && g.value_type(x).shape.as_ref()?.as_fixed().is_some();
    if !same_type {
        return None;
    }
    let ok = match &node.op {
        Op::Unary(Unary::Identity) => true,
        // Inference-mode Dropout: no training_mode input, or a constant false.
        Op::Convert(Convert::Dropout { .. }) => {
            let training = ins.get(2).copied().flatten();
            let mask_unused = node.outputs.len() < 2 || !g.is_used(Value::new(id, 1));
            mask_unused && training.is_none_or(|t| const_all(g, t, 0.0))
        }
        Op::Convert(Convert::Cast { .. }) => true,
        Op::Layout(
            Layout::Reshape { .. }
            | Layout::Expand
            | Layout::Squeeze
            | Layout::Unsqueeze
            | Layout::Flatten { .. },
        ) => true,
        Op::Layout(Layout::Transpose { perm }) => {
            perm.as_ref()
                .is_some_and(|p| p.iter().enumerate().all(|(i, &a)| a == i as i64))
                || g.value_type(x)
                    .shape
                    .as_ref()
                    .is_some_and(|s| s.rank() <= 1)
        }
        Op::Layout(Layout::Tile) => const_ints_all(g, ins.get(1).copied().flatten(), |r| r == 1),
        Op::Layout(Layout::Pad { .. }) => {
            const_ints_all(g, ins.get(1).copied().flatten(), |p| p == 0)
        }
        Op::Layout(Layout::Concat { .. })
        | Op::Variadic(Variadic::Sum | Variadic::Max | Variadic::Min | Variadic::Mean) => {
            ins.len() == 1
        }
        Op::Binary(b) => {
            let y = ins.get(1).copied().flatten()?;
            let float = g.dtype(x).is_float();
            match b {
                Binary::Mul => const_all(g, y, 1.0),
                Binary::Div => const_all(g, y, 1.0),
                Binary::Add | Binary::Sub => const_all(g, y, 0.0),
                Binary::Pow => float && const_all(g, y, 1.0),
                _ => false,
            }
        }
        _ => false,
    };
    ok.then_some(x)
}

pub fn remove_identities(g: &mut Graph, _ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new(PASS);
    let order = crate::topo_order(g, PASS)?;
    for id in order {
        if g.node(id).op.is_source() {
            continue;
        }
        // x·1 and x+0 with the constant first are identities too.
        let mut through = passthrough(g, id);
        if through.is_none()
            && let Op::Binary(Binary::Mul | Binary::Add) = g.node(id).op
        {
            let ins = g.inputs_of(id);
            if let [Some(c), Some(x)] = ins[..] {
                let neutral = if matches!(g.node(id).op, Op::Binary(Binary::Mul)) {
                    1.0
                } else {
                    0.0
                };
                if const_all(g, c, neutral) && g.node(id).outputs.first() == Some(g.value_type(x)) {
                    through = Some(x);
                }
            }
        }
        if let Some(x) = through {
            let name = g.node(id).op.name();
            g.replace_uses(Value::new(id, 0), x);
            stats.add("identities_removed", 1);
            let _ = name;
        }
    }
    Ok(stats)
}
