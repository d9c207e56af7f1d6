//! Unit chains: a producer layer whose output units (dense units or conv channels) flow through
//! per-unit ops into a consumer layer, every link used exactly once (no residual joins, no graph
//! outputs), so deleting a unit touches nothing outside the chain.
//!
//! Producers: MatMul with a 2-D constant weight, Gemm (any `trans_a`; `C` per unit or uniform),
//! Conv with `group = 1`. Links: elementwise unary ops; Add/Sub/Mul/Div/Pow/PRelu and Clip whose
//! other inputs are constants that are per unit or uniform; self-gating `x·x` and
//! `x·sigmoid(x)` (SiLU written out); inference BatchNormalization, pools and depthwise convs
//! (conv channels, as in MobileNet-style blocks); a Flatten or 2-D Reshape that merges the
//! channel axis into the features of a dense consumer.
//! Consumers: MatMul/Gemm reading the units as input features, or a `group = 1` Conv reading them
//! as input channels.
//!
//! Two producers of the same units may meet in one elementwise Mul/Add/Sub (a gated FFN:
//! `down(silu(gate(x)) · up(x))`); the chain then has two branches and a unit is deleted from
//! both producers at once.
use super::{internal_users, sole_user};
use shrink_ir::op::{AutoPad, Binary, Conv, Layout, Linear, Norm, Pool, Ternary, Unary};
use shrink_ir::{DType, Graph, NodeId, Op, Tensor, Value};
use std::sync::Arc;

/// A constant input of a link or layer, broadcast along the units.
pub(super) struct Operand {
    pub slot: usize,
    pub t: Arc<Tensor>,
    /// Axis of `t` that runs along the units; `None` when `t` is the same for every unit.
    pub axis: Option<usize>,
}

impl Operand {
    /// The operand as seen by unit `u` alone.
    pub fn at(&self, u: usize) -> Tensor {
        match self.axis {
            Some(a) => super::take_axis(&self.t, a, &[u]),
            None => (*self.t).clone(),
        }
    }
}

pub(super) enum LinkKind {
    /// Output = f(unit value, operands), elementwise.
    Elementwise(Vec<Operand>),
    /// A Mul of the unit value with itself, or with `sigmoid` of itself (the Sigmoid node given).
    SelfGate { sigmoid: Option<NodeId> },
    /// A per-channel pool: a channel of zeros stays zero (other constants are not tracked, since
    /// padding makes pooled constants vary at the borders).
    Pool,
    /// A depthwise Conv (`group` = channels, one kernel per channel): its kernel (slot 1) and
    /// bias (slot 2, if any) are per-unit operands, and `group` follows the channel count.
    Depthwise(Vec<Operand>),
    /// Flatten or Reshape merging the unit axis into the last of two axes; for a Reshape the
    /// shape input (slot 1) is rewritten with the narrowed shape.
    Merge { reshape: bool },
}

pub(super) struct Link {
    pub id: NodeId,
    pub slot: usize,
    pub kind: LinkKind,
    /// Rank of the link's output.
    pub rank: usize,
}

/// Input slot of every producer's and consumer's weight (MatMul B, Gemm B, Conv W).
pub(super) const WEIGHT_SLOT: usize = 1;

pub(super) struct Producer {
    pub id: NodeId,
    pub weight: Arc<Tensor>,
    /// Weight axis indexed by unit.
    pub row_axis: usize,
    pub bias: Option<Operand>,
    /// Gemm's beta (the bias is scaled by it), 1 otherwise.
    pub bias_scale: f64,
    pub dtype: DType,
}

/// Where constant units' contributions can be added: the consumer's bias.
pub(super) struct BiasTarget {
    pub node: NodeId,
    pub slot: usize,
    pub existing: Option<Arc<Tensor>>,
    /// Contribution multiplier: Gemm's alpha/beta (the bias is scaled by beta), 1 otherwise.
    pub factor: f64,
}

pub(super) struct Consumer {
    pub id: NodeId,
    pub weight: Arc<Tensor>,
    /// Weight axis indexed by input feature / channel.
    pub col_axis: usize,
    /// Weight axis indexed by the consumer's outputs.
    pub row_axis: usize,
    pub target: Option<BiasTarget>,
}

/// A producer and the links from it to the join (or to the consumer when there is no join).
pub(super) struct Branch {
    pub producer: Producer,
    pub links: Vec<Link>,
}

pub(super) struct Chain {
    /// One branch, or two meeting at `join` (in the join's input order).
    pub branches: Vec<Branch>,
    /// The elementwise Mul/Add/Sub where two branches meet.
    pub join: Option<Link>,
    /// Links after the join.
    pub links: Vec<Link>,
    pub consumer: Consumer,
    /// Number of units.
    pub h: usize,
    /// Unit axis of the producers' outputs (and of every link before a merge).
    pub unit_axis: usize,
    /// Consumer feature of unit `u`: `(o·h + u)·block + s` for `o < outer`, `s < block`.
    pub outer: usize,
    pub block: usize,
}

/// How constant `t` broadcasts against a value of `rank` whose units (`h` of them) lie along
/// `axis`: `Some(Some(a))` per unit along `t`'s axis `a`, `Some(None)` uniform, `None` otherwise.
fn classify(t: &Tensor, rank: usize, axis: usize, h: usize) -> Option<Option<usize>> {
    let off = rank.checked_sub(t.rank())?;
    let mut along = None;
    for (i, &d) in t.dims().iter().enumerate() {
        if d == 1 {
            continue;
        }
        if i + off == axis && d == h {
            along = Some(i);
        } else {
            return None;
        }
    }
    Some(along)
}

fn const_input(g: &Graph, id: NodeId, slot: usize) -> Option<Arc<Tensor>> {
    let v = g.inputs_of(id).get(slot).copied().flatten()?;
    g.const_value(v).cloned()
}

fn fixed_dims(g: &Graph, v: Value) -> Option<Vec<usize>> {
    g.value_type(v).shape.as_ref()?.as_fixed()
}

fn producer(g: &Graph, id: NodeId) -> Option<(Producer, usize)> {
    let node = g.node(id);
    let out = fixed_dims(g, Value::new(id, 0))?;
    let (row_axis, unit_axis, conv) = match &node.op {
        Op::Linear(Linear::MatMul) => (1, out.len().checked_sub(1)?, false),
        Op::Linear(Linear::Gemm { trans_b, .. }) => (usize::from(!*trans_b), 1, false),
        Op::Conv(Conv::Conv { group: 1, .. }) => (0, 1, true),
        _ => return None,
    };
    let weight = const_input(g, id, WEIGHT_SLOT)?;
    let rank_ok = if conv {
        weight.rank() >= 3
    } else {
        weight.rank() == 2
    };
    let h = *weight.dims().get(row_axis)?;
    if !rank_ok || !weight.dtype().is_float() || out.get(unit_axis) != Some(&h) {
        return None;
    }
    let (bias, bias_scale) = match (&node.op, g.inputs_of(id).get(2).copied().flatten()) {
        (_, None) => (None, 1.0),
        (Op::Linear(Linear::Gemm { beta, .. }), Some(v)) => {
            let t = g.const_value(v)?.clone();
            let axis = classify(&t, 2, 1, h)?;
            (Some(Operand { slot: 2, t, axis }), *beta as f64)
        }
        (_, Some(v)) => {
            let t = g.const_value(v)?.clone();
            (t.dims() == [h]).then_some(())?;
            let axis = Some(0);
            (Some(Operand { slot: 2, t, axis }), 1.0)
        }
    };
    let p = Producer {
        id,
        weight,
        row_axis,
        bias,
        bias_scale,
        dtype: node.outputs[0].dtype,
    };
    Some((p, unit_axis))
}

/// Chain position while walking: the current value's rank and unit axis, and whether the units
/// were merged into a flat feature axis.
struct Walk {
    rank: usize,
    axis: usize,
    merged: bool,
    outer: usize,
    block: usize,
}

fn link(g: &Graph, n: NodeId, slot: usize, v: Value, h: usize, w: &mut Walk) -> Option<Link> {
    let node = g.node(n);
    let in_ty = g.value_type(v);
    let out_ty = node.outputs.first()?;
    if out_ty.dtype != in_ty.dtype {
        return None;
    }
    let same_shape = out_ty == in_ty;
    let operands = |slots: &[usize]| -> Option<Vec<Operand>> {
        let mut ops = Vec::new();
        for &s in slots {
            let Some(t) = const_input(g, n, s) else {
                // Absent optional input (Clip bounds).
                g.inputs_of(n)
                    .get(s)
                    .copied()
                    .flatten()
                    .is_none()
                    .then_some(())?;
                continue;
            };
            let axis = classify(&t, w.rank, w.axis, h)?;
            if w.merged && axis.is_some() {
                return None;
            }
            ops.push(Operand { slot: s, t, axis });
        }
        Some(ops)
    };
    let kind = match &node.op {
        Op::Unary(_) if slot == 0 && same_shape => LinkKind::Elementwise(vec![]),
        Op::Binary(
            Binary::Add | Binary::Sub | Binary::Mul | Binary::Div | Binary::Pow | Binary::PRelu,
        ) if same_shape => LinkKind::Elementwise(operands(&[1 - slot])?),
        Op::Ternary(Ternary::Clip) if slot == 0 && same_shape => {
            LinkKind::Elementwise(operands(&[1, 2])?)
        }
        Op::Norm(Norm::BatchNormalization {
            training_mode: false,
            ..
        }) if slot == 0 && same_shape && !w.merged && w.axis == 1 => {
            let mut ops = Vec::new();
            for s in 1..=4 {
                let t = const_input(g, n, s)?;
                (t.dims() == [h]).then_some(())?;
                ops.push(Operand {
                    slot: s,
                    t,
                    axis: Some(0),
                });
            }
            LinkKind::Elementwise(ops)
        }
        Op::Conv(Conv::Conv { group, .. })
            if slot == 0 && !w.merged && w.axis == 1 && h > 1 && *group == h as i64 =>
        {
            let kernel = const_input(g, n, WEIGHT_SLOT)?;
            let od = out_ty.shape.as_ref()?.as_fixed()?;
            let ok = kernel.rank() >= 3
                && kernel.dims()[..2] == [h, 1]
                && od.len() == w.rank
                && od[1] == h;
            ok.then_some(())?;
            let mut ops = vec![Operand {
                slot: WEIGHT_SLOT,
                t: kernel,
                axis: Some(0),
            }];
            if g.inputs_of(n).get(2).copied().flatten().is_some() {
                let t = const_input(g, n, 2)?;
                (t.dims() == [h]).then_some(())?;
                ops.push(Operand {
                    slot: 2,
                    t,
                    axis: Some(0),
                });
            }
            LinkKind::Depthwise(ops)
        }
        Op::Pool(p) if slot == 0 && !w.merged && w.axis == 1 => {
            if matches!(p, Pool::MaxPool { .. }) && g.is_used(Value::new(n, 1)) {
                return None;
            }
            let od = out_ty.shape.as_ref()?.as_fixed()?;
            (od.len() == w.rank && od[1] == h).then_some(())?;
            LinkKind::Pool
        }
        Op::Layout(Layout::Flatten { .. } | Layout::Reshape { .. }) if slot == 0 && !w.merged => {
            let id = fixed_dims(g, v)?;
            let od = out_ty.shape.as_ref()?.as_fixed()?;
            if od.len() != 2 {
                return None;
            }
            // The merge point `a` (outputs are [prod(d[..a]), prod(d[a..])]) must come at or
            // before the unit axis; of equal candidates (unit dims) take the latest.
            let a = (0..=w.axis)
                .rev()
                .find(|&a| id[..a].iter().product::<usize>() == od[0])?;
            let reshape = matches!(node.op, Op::Layout(Layout::Reshape { .. }));
            if reshape {
                const_input(g, n, 1)?;
            }
            w.outer = id[a..w.axis].iter().product();
            w.block = id[w.axis + 1..].iter().product();
            w.rank = 2;
            w.axis = 1;
            w.merged = true;
            LinkKind::Merge { reshape }
        }
        _ => return None,
    };
    Some(Link {
        id: n,
        slot,
        kind,
        rank: w.rank,
    })
}

fn consumer(g: &Graph, n: NodeId, slot: usize, v: Value, h: usize, w: &Walk) -> Option<Consumer> {
    if slot != 0 {
        return None;
    }
    let node = g.node(n);
    let weight = const_input(g, n, WEIGHT_SLOT)?;
    if !weight.dtype().is_float() || weight.dtype() != g.dtype(v) {
        return None;
    }
    let features = w.outer * h * w.block;
    let last = w.axis + 1 == w.rank;
    let (col_axis, row_axis, target) = match &node.op {
        Op::Linear(Linear::MatMul) if last && weight.rank() == 2 => {
            let n_out = weight.dims()[1];
            // A bias Add right after the MatMul, not broadcasting it to a bigger shape.
            let target = sole_user(g, Value::new(n, 0)).and_then(|(a, s)| {
                let an = g.node(a);
                if !matches!(an.op, Op::Binary(Binary::Add)) || an.outputs[0] != node.outputs[0] {
                    return None;
                }
                let t = const_input(g, a, 1 - s)?;
                let rank = node.outputs[0].shape.as_ref()?.rank();
                classify(&t, rank, rank.checked_sub(1)?, n_out)?;
                Some(BiasTarget {
                    node: a,
                    slot: 1 - s,
                    existing: Some(t),
                    factor: 1.0,
                })
            });
            (0, 1, target)
        }
        Op::Linear(Linear::Gemm {
            alpha,
            beta,
            trans_a: false,
            trans_b,
        }) if last && w.rank == 2 => {
            let (col, row) = if *trans_b { (1, 0) } else { (0, 1) };
            let n_out = *weight.dims().get(row)?;
            let existing = const_input(g, n, 2);
            let c_ok = match (&existing, g.inputs_of(n).get(2).copied().flatten()) {
                (Some(t), _) => classify(t, 2, 1, n_out).is_some(),
                (None, Some(_)) => false,
                (None, None) => true,
            };
            let target = (c_ok && *beta != 0.0).then(|| BiasTarget {
                node: n,
                slot: 2,
                existing,
                factor: *alpha as f64 / *beta as f64,
            });
            (col, row, target)
        }
        Op::Conv(Conv::Conv {
            group: 1,
            auto_pad,
            pads,
            ..
        }) if !w.merged && w.axis == 1 && weight.rank() >= 3 => {
            // Without padding every window sees a constant channel whole, so its contribution
            // is the same at every output position and can become bias.
            let unpadded = matches!(auto_pad, AutoPad::NotSet | AutoPad::Valid)
                && pads.iter().all(|&p| p == 0);
            let existing = const_input(g, n, 2);
            let b_ok = existing.is_some() || g.inputs_of(n).get(2).copied().flatten().is_none();
            let target = (unpadded && b_ok).then(|| BiasTarget {
                node: n,
                slot: 2,
                existing,
                factor: 1.0,
            });
            (1, 0, target)
        }
        _ => return None,
    };
    (weight.dims().get(col_axis) == Some(&features)).then_some(Consumer {
        id: n,
        weight,
        col_axis,
        row_axis,
        target,
    })
}

/// `v · v` or `v · sigmoid(v)` starting at `v`: a link whose node is the Mul.
fn self_gate(g: &Graph, v: Value, w: &Walk) -> Option<Link> {
    let users = internal_users(g, v)?;
    let is_mul = |n: NodeId| {
        matches!(g.node(n).op, Op::Binary(Binary::Mul)) && g.node(n).outputs[0] == *g.value_type(v)
    };
    let gate = |id, sigmoid| Link {
        id,
        slot: 0,
        kind: LinkKind::SelfGate { sigmoid },
        rank: w.rank,
    };
    match users[..] {
        [(a, 0), (b, 1)] if a == b && is_mul(a) => Some(gate(a, None)),
        [(x, xs), (y, ys)] => {
            // One user is Sigmoid(v), the other Mul(v, that sigmoid).
            let (s, (m, k)) = if matches!(g.node(x).op, Op::Unary(Unary::Sigmoid)) {
                (x, (y, ys))
            } else {
                (y, (x, xs))
            };
            let sig_ok = matches!(g.node(s).op, Op::Unary(Unary::Sigmoid))
                && g.node(s).outputs[0] == *g.value_type(v);
            (sig_ok && is_mul(m) && sole_user(g, Value::new(s, 0)) == Some((m, 1 - k))).then(|| {
                Link {
                    slot: k,
                    ..gate(m, Some(s))
                }
            })
        }
        _ => None,
    }
}

/// Where a walk along the units ends.
enum End {
    Consumer(Consumer),
    /// An elementwise Mul/Add/Sub whose other operand is another computed value (slot given).
    Join(NodeId, usize),
}

/// Follows the units from `v` through links, collecting them, to a consumer or a join.
fn walk(g: &Graph, mut v: Value, h: usize, w: &mut Walk, links: &mut Vec<Link>) -> Option<End> {
    loop {
        if let Some(l) = self_gate(g, v, w) {
            v = Value::new(l.id, 0);
            links.push(l);
            continue;
        }
        let (n, slot) = sole_user(g, v)?;
        if let Some(c) = consumer(g, n, slot, v, h, w) {
            return Some(End::Consumer(c));
        }
        let node = g.node(n);
        let other = g.inputs_of(n).get(1 - slot.min(1)).copied().flatten();
        if matches!(node.op, Op::Binary(Binary::Add | Binary::Sub | Binary::Mul))
            && let Some(o) = other
            && g.const_value(o).is_none()
        {
            let same = node.outputs[0] == *g.value_type(v) && g.value_type(o) == g.value_type(v);
            return (same && !w.merged).then_some(End::Join(n, slot));
        }
        links.push(link(g, n, slot, v, h, w)?);
        v = Value::new(n, 0);
    }
}

/// The producer a value comes from through single-input elementwise steps (and SiLU's
/// `x·sigmoid(x)`), if any; the forward walk from it then checks the path link by link.
fn producer_behind(g: &Graph, mut v: Value) -> Option<NodeId> {
    for _ in 0..64 {
        if producer(g, v.node).is_some() {
            return Some(v.node);
        }
        let mut ins: Vec<Value> = g
            .inputs_of(v.node)
            .into_iter()
            .flatten()
            .filter(|&i| g.const_value(i).is_none())
            .collect();
        ins.dedup();
        v = match ins[..] {
            [x] => x,
            [a, b]
                if matches!(g.node(b.node).op, Op::Unary(Unary::Sigmoid))
                    && g.inputs_of(b.node).first() == Some(&Some(a)) =>
            {
                a
            }
            [a, b]
                if matches!(g.node(a.node).op, Op::Unary(Unary::Sigmoid))
                    && g.inputs_of(a.node).first() == Some(&Some(b)) =>
            {
                b
            }
            _ => return None,
        };
    }
    None
}

fn walk_start(g: &Graph, id: NodeId, unit_axis: usize) -> Option<Walk> {
    Some(Walk {
        rank: g.value_type(Value::new(id, 0)).shape.as_ref()?.rank(),
        axis: unit_axis,
        merged: false,
        outer: 1,
        block: 1,
    })
}

/// The chain starting at producer `id`, if there is one.
pub(super) fn find(g: &Graph, id: NodeId) -> Option<Chain> {
    let (producer1, unit_axis) = producer(g, id)?;
    let h = producer1.weight.dims()[producer1.row_axis];
    let mut w = walk_start(g, id, unit_axis)?;
    let mut links = Vec::new();
    let (branches, join, links, consumer) = match walk(g, Value::new(id, 0), h, &mut w, &mut links)?
    {
        End::Consumer(c) => {
            let b = Branch {
                producer: producer1,
                links,
            };
            (vec![b], None, vec![], c)
        }
        End::Join(n, slot) => {
            let other = g.inputs_of(n).get(1 - slot).copied().flatten()?;
            let id2 = producer_behind(g, other)?;
            let (producer2, axis2) = producer(g, id2)?;
            if id2 == id || axis2 != unit_axis || producer2.weight.dims()[producer2.row_axis] != h {
                return None;
            }
            let mut w2 = walk_start(g, id2, axis2)?;
            let mut links2 = Vec::new();
            match walk(g, Value::new(id2, 0), h, &mut w2, &mut links2)? {
                End::Join(n2, s2) if n2 == n && s2 == 1 - slot => {}
                _ => return None,
            }
            let join = Link {
                id: n,
                slot,
                kind: LinkKind::Elementwise(vec![]),
                rank: w.rank,
            };
            let mut after = Vec::new();
            let End::Consumer(c) = walk(g, Value::new(n, 0), h, &mut w, &mut after)? else {
                return None;
            };
            let b1 = Branch {
                producer: producer1,
                links,
            };
            let b2 = Branch {
                producer: producer2,
                links: links2,
            };
            let branches = if slot == 0 {
                vec![b1, b2]
            } else {
                vec![b2, b1]
            };
            (branches, Some(join), after, c)
        }
    };
    Some(Chain {
        branches,
        join,
        links,
        consumer,
        h,
        unit_axis,
        outer: w.outer,
        block: w.block,
    })
}
