//! Sparsity elimination: weights that contribute nothing never reach codegen.
//!
//! - **Dead hidden units** between two layers joined by a residual-free chain
//!   `L1 → [Add bias] → elementwise activations → L2` (every link used once): a unit is dead when
//!   its outgoing weights in L2 are all zero, or when its incoming weights in L1 are all zero so
//!   its activation is the constant `act(bias)` — zero (deleted) or nonzero (its contribution
//!   `act(bias)·W2[unit, :]` moves into L2's bias, then deleted). The unit's L1 row, bias entry
//!   and L2 column disappear together; the pass repeats until nothing changes, so deaths cascade
//!   across consecutive layers.
//! - **Dead input columns** of a MatMul/Gemm whose inputs come from elsewhere (e.g. a graph
//!   input): an all-zero weight column means that input feature is never read; a `Gather` of the
//!   live features (which codegen folds into addressing) feeds a narrower weight.
//! - **Zero biases**: an all-zero Gemm `C` or Conv `B` input is dropped (Add of 0 is removed by
//!   `simplify`).
use crate::layers::{WeightSlot, weight_slot};
use crate::{Ctx, OptError, Stats};
use shrink_ir::op::{Conv, Layout, Linear};
use shrink_ir::shape::{Dim, Shape};
use shrink_ir::{Graph, NodeId, Op, Tensor, Value, WeightLayout};
use std::sync::Arc;

const PASS: &str = "sparsity";

/// Keeps the entries `keep` (sorted) of `axis` of `t`.
pub fn take_axis(t: &Tensor, axis: usize, keep: &[usize]) -> Tensor {
    let dims = t.dims();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product::<usize>() * t.dtype().size();
    let b = t.bytes();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * dims[axis] + k) * inner;
            out.extend_from_slice(&b[start..start + inner]);
        }
    }
    let mut nd = dims.to_vec();
    nd[axis] = keep.len();
    Tensor::from_bytes(t.dtype(), nd, out.into()).expect("sizes follow from dims")
}

/// Axis of the weight tensor indexing view rows (outputs) / view cols (inputs).
fn row_axis(l: WeightLayout) -> usize {
    if l == WeightLayout::RowsFirst { 0 } else { 1 }
}

fn col_axis(l: WeightLayout) -> usize {
    if l == WeightLayout::RowsFirst { 1 } else { 0 }
}

/// Whether view row `r` (if `rows`) or view col `r` of a 2-D weight is all zero.
fn line_is_zero(t: &Tensor, axis: usize, i: usize) -> bool {
    let d = t.dims();
    (0..d[1 - axis]).all(|j| {
        let flat = if axis == 0 {
            i * d[1] + j
        } else {
            j * d[1] + i
        };
        t.get_f64(flat) == 0.0
    })
}

/// A 2-D layer with a constant weight (MatMul, or Gemm without trans_a).
struct Dense {
    id: NodeId,
    ws: WeightSlot,
    weight: Arc<Tensor>,
}

fn dense_layer(g: &Graph, id: NodeId) -> Option<Dense> {
    let op = &g.node(id).op;
    if !matches!(
        op,
        Op::Linear(Linear::MatMul) | Op::Linear(Linear::Gemm { trans_a: false, .. })
    ) {
        return None;
    }
    let ws = weight_slot(op)?;
    let v = g.inputs_of(id).get(ws.slot).copied().flatten()?;
    let weight = g.const_value(v)?.clone();
    (weight.rank() == 2 && weight.dtype().is_float()).then_some(Dense { id, ws, weight })
}

/// The single consumer of value `v` (input slot), if it has exactly one and is not a graph output.
fn sole_user(g: &Graph, v: Value) -> Option<(NodeId, usize)> {
    if g.outputs.iter().any(|(_, o)| *o == v) {
        return None;
    }
    let users: Vec<_> = g
        .users_of(v.node)
        .into_iter()
        .filter(|(_, _, s)| *s == v.slot)
        .collect();
    match users[..] {
        [(n, slot, _)] => Some((n, slot)),
        _ => None,
    }
}

/// A constant bias along the last axis (all other dims 1) on input `slot` of `id`.
fn bias_const(g: &Graph, id: NodeId, slot: usize, width: usize) -> Option<Arc<Tensor>> {
    let v = g.inputs_of(id).get(slot).copied().flatten()?;
    let t = g.const_value(v)?;
    let d = t.dims();
    (d.last() == Some(&width) && d[..d.len() - 1].iter().all(|&x| x == 1)).then(|| t.clone())
}

/// L1 → [Add bias] → unary* → L2 chain.
struct Chain {
    l1: Dense,
    /// (Add node, slot of the bias) when the bias is a separate Add.
    add: Option<(NodeId, usize)>,
    acts: Vec<NodeId>,
    l2: Dense,
}

fn find_chain(g: &Graph, l1: Dense) -> Option<Chain> {
    let mut v = Value::new(l1.id, 0);
    let mut add = None;
    let mut acts = Vec::new();
    loop {
        let (n, slot) = sole_user(g, v)?;
        match &g.node(n).op {
            Op::Binary(shrink_ir::op::Binary::Add) if add.is_none() && acts.is_empty() => {
                let bslot = 1 - slot;
                let h = *g.value_type(v).shape.as_ref()?.as_fixed()?.last()?;
                bias_const(g, n, bslot, h)?;
                // The Add must not broadcast the hidden value to a bigger shape.
                if g.node(n).outputs[0] != *g.value_type(v) {
                    return None;
                }
                add = Some((n, bslot));
            }
            Op::Unary(_) if slot == 0 => acts.push(n),
            _ if slot == 0 => {
                let l2 = dense_layer(g, n)?;
                return (l2.ws.slot == 1).then_some(Chain { l1, add, acts, l2 });
            }
            _ => return None,
        }
        v = Value::new(n, 0);
    }
}

/// Evaluates the activation chain on one value (in the hidden dtype).
fn activate(g: &Graph, acts: &[NodeId], x: &Tensor, ctx: &Ctx) -> Option<f64> {
    let mut t = x.clone();
    for &a in acts {
        let node = g.node(a);
        let ty = vec![shrink_ir::ValueType::fixed(t.dtype(), t.dims())];
        t = shrink_ref::eval_op(&node.op, &[Some(&t)], &ty, &ctx.eval)
            .ok()?
            .into_iter()
            .next()?;
    }
    Some(t.get_f64(0))
}

fn scalar_like(t: &Tensor, v: f64) -> Tensor {
    let one = take_axis(&t.reshaped(vec![t.len()]).expect("same count"), 0, &[0]);
    // Rebuild the one element in the bias dtype.
    let ty = one.dtype();
    match ty {
        shrink_ir::DType::F32 => Tensor::from_vec(vec![1], vec![v as f32]),
        shrink_ir::DType::F64 => Tensor::from_vec(vec![1], vec![v]),
        shrink_ir::DType::F16 => Tensor::from_vec(vec![1], vec![half::f16::from_f64(v)]),
        _ => Tensor::from_vec(vec![1], vec![half::bf16::from_f64(v)]),
    }
}

fn set_last_dim(g: &mut Graph, id: NodeId, h: usize) {
    if let Some(Shape(dims)) = g.node_mut(id).outputs[0].shape.as_mut()
        && let Some(last) = dims.last_mut()
    {
        *last = Dim::Fixed(h);
    }
}

/// Replaces input `slot` of `id` with a new constant `t`.
fn rewire_const(g: &mut Graph, id: NodeId, slot: usize, t: Tensor) {
    let name = format!("{}:in{slot}", g.node(id).name);
    let c = g.add_const(&name, Arc::new(t));
    let e =
        g.g.edges_directed(id.0, petgraph::Direction::Incoming)
            .find(|e| e.weight().to_slot as usize == slot)
            .map(|e| petgraph::visit::EdgeRef::id(&e));
    if let Some(e) = e {
        g.g.remove_edge(e);
    }
    g.connect(c.into(), id, slot);
}

/// L2's bias to absorb constant units: Gemm `C` or an Add of a constant right after L2.
fn l2_bias(g: &Graph, l2: &Dense, n: usize) -> Option<(NodeId, usize, Arc<Tensor>)> {
    if matches!(g.node(l2.id).op, Op::Linear(Linear::Gemm { .. })) {
        return bias_const(g, l2.id, 2, n).map(|t| (l2.id, 2, t));
    }
    let (a, slot) = sole_user(g, Value::new(l2.id, 0))?;
    if !matches!(g.node(a).op, Op::Binary(shrink_ir::op::Binary::Add))
        || g.node(a).outputs[0] != g.node(l2.id).outputs[0]
    {
        return None;
    }
    bias_const(g, a, 1 - slot, n).map(|t| (a, 1 - slot, t))
}

/// Removes dead units of one chain; returns how many.
fn prune_chain(g: &mut Graph, c: &Chain, ctx: &Ctx, stats: &mut Stats) -> usize {
    let w1 = &c.l1.weight;
    let w2 = &c.l2.weight;
    let h = w1.dims()[row_axis(c.l1.ws.layout)];
    if w2.dims()[col_axis(c.l2.ws.layout)] != h {
        return 0;
    }
    let n = w2.dims()[row_axis(c.l2.ws.layout)];
    let bias: Option<(NodeId, usize, Arc<Tensor>)> = match c.add {
        Some((a, s)) => bias_const(g, a, s, h).map(|t| (a, s, t)),
        None if matches!(g.node(c.l1.id).op, Op::Linear(Linear::Gemm { .. })) => {
            bias_const(g, c.l1.id, 2, h).map(|t| (c.l1.id, 2, t))
        }
        None => None,
    };
    let mut l2b = l2_bias(g, &c.l2, n);
    let mut keep = Vec::new();
    let mut absorbed: Vec<(usize, f64)> = Vec::new();
    for u in 0..h {
        let out_zero = line_is_zero(w2, col_axis(c.l2.ws.layout), u);
        if out_zero {
            continue;
        }
        if line_is_zero(w1, row_axis(c.l1.ws.layout), u) {
            let b = bias.as_ref().map_or(0.0, |(_, _, t)| t.get_f64(u));
            let like = bias
                .as_ref()
                .map_or_else(|| (**w1).clone(), |(_, _, t)| (**t).clone());
            match activate(g, &c.acts, &scalar_like(&like, b), ctx) {
                Some(0.0) => continue,
                Some(a) if a.is_finite() && l2b.is_some() => {
                    absorbed.push((u, a));
                    continue;
                }
                _ => {}
            }
        }
        keep.push(u);
    }
    if keep.len() == h || keep.is_empty() {
        return 0;
    }
    // Fold constant units into L2's bias: bias[j] += a · W2[u, j].
    if let Some((bn, bs, bt)) = l2b.take()
        && !absorbed.is_empty()
    {
        let mut vals = bt.to_f64_vec();
        for &(u, a) in &absorbed {
            for (j, v) in vals.iter_mut().enumerate() {
                let flat = if c.l2.ws.layout == WeightLayout::RowsFirst {
                    j * h + u
                } else {
                    u * n + j
                };
                *v += a * w2.get_f64(flat);
            }
        }
        let nb = match bt.dtype() {
            shrink_ir::DType::F32 => {
                Tensor::from_vec(bt.dims().to_vec(), vals.iter().map(|&v| v as f32).collect())
            }
            shrink_ir::DType::F64 => Tensor::from_vec(bt.dims().to_vec(), vals),
            shrink_ir::DType::F16 => Tensor::from_vec(
                bt.dims().to_vec(),
                vals.iter().map(|&v| half::f16::from_f64(v)).collect(),
            ),
            _ => Tensor::from_vec(
                bt.dims().to_vec(),
                vals.iter().map(|&v| half::bf16::from_f64(v)).collect(),
            ),
        };
        rewire_const(g, bn, bs, nb);
        stats.add("units_folded_into_bias", absorbed.len());
    }
    let removed = h - keep.len();
    rewire_const(
        g,
        c.l1.id,
        c.l1.ws.slot,
        take_axis(w1, row_axis(c.l1.ws.layout), &keep),
    );
    if let Some((bn, bs, bt)) = bias {
        rewire_const(g, bn, bs, take_axis(&bt, bt.rank() - 1, &keep));
    }
    rewire_const(
        g,
        c.l2.id,
        c.l2.ws.slot,
        take_axis(w2, col_axis(c.l2.ws.layout), &keep),
    );
    for id in std::iter::once(c.l1.id)
        .chain(c.add.map(|(a, _)| a))
        .chain(c.acts.iter().copied())
    {
        set_last_dim(g, id, keep.len());
    }
    stats.add("dead_units", removed);
    stats.add("weights_removed", removed * (w1.len() / h + w2.len() / h));
    removed
}

/// Drops all-zero input columns of a dense layer fed from outside a chain.
fn prune_input_cols(g: &mut Graph, l: &Dense, stats: &mut Stats) -> bool {
    let w = &l.weight;
    let ca = col_axis(l.ws.layout);
    let k = w.dims()[ca];
    let keep: Vec<usize> = (0..k).filter(|&c| !line_is_zero(w, ca, c)).collect();
    if keep.len() == k || keep.is_empty() {
        return false;
    }
    let Some(x) = g.inputs_of(l.id)[0] else {
        return false;
    };
    let Some(mut xs) = g.value_type(x).shape.clone().and_then(|s| s.as_fixed()) else {
        return false;
    };
    if xs.last() != Some(&k) {
        return false;
    }
    let idx = Tensor::from_vec(vec![keep.len()], keep.iter().map(|&c| c as i64).collect());
    let name = format!("{}:live_inputs", g.node(l.id).name);
    let ic = g.add_const(&name, Arc::new(idx));
    *xs.last_mut().expect("rank >= 1") = keep.len();
    let rank = xs.len() as i64;
    let gather = g.add_node(
        Op::Layout(Layout::Gather { axis: rank - 1 }),
        &name,
        &[Some(x), Some(ic.into())],
        vec![shrink_ir::ValueType::fixed(g.dtype(x), &xs)],
    );
    let e =
        g.g.edges_directed(l.id.0, petgraph::Direction::Incoming)
            .find(|e| e.weight().to_slot == 0)
            .map(|e| petgraph::visit::EdgeRef::id(&e))
            .expect("input 0 exists");
    g.g.remove_edge(e);
    g.connect(gather.into(), l.id, 0);
    rewire_const(g, l.id, l.ws.slot, take_axis(w, ca, &keep));
    stats.add("dead_input_cols", k - keep.len());
    stats.add("weights_removed", (k - keep.len()) * (w.len() / k));
    true
}

/// Drops a constant all-zero bias input of Gemm (`C`) or Conv (`B`).
fn drop_zero_bias(g: &mut Graph, id: NodeId, stats: &mut Stats) {
    let slot = match g.node(id).op {
        Op::Linear(Linear::Gemm { .. }) | Op::Conv(Conv::Conv { .. }) => 2,
        _ => return,
    };
    let Some(Some(v)) = g.inputs_of(id).get(slot).copied() else {
        return;
    };
    let Some(t) = g.const_value(v) else { return };
    if (0..t.len()).all(|i| t.get_f64(i) == 0.0) {
        let e =
            g.g.edges_directed(id.0, petgraph::Direction::Incoming)
                .find(|e| e.weight().to_slot as usize == slot)
                .map(|e| petgraph::visit::EdgeRef::id(&e));
        if let Some(e) = e {
            g.g.remove_edge(e);
            stats.add("zero_biases_dropped", 1);
        }
    }
}

pub fn eliminate_sparsity(g: &mut Graph, ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new(PASS);
    for id in g.node_ids() {
        drop_zero_bias(g, id, &mut stats);
    }
    // Units first (repeat to a fixpoint so deaths cascade), then input columns.
    for _round in 0..64 {
        let mut changed = false;
        let order = g
            .topo_order()
            .map_err(|n| OptError::at(PASS, g, n, "the graph has a cycle"))?;
        for id in order {
            if !g.contains(id) {
                continue;
            }
            let Some(l1) = dense_layer(g, id) else {
                continue;
            };
            if let Some(chain) = find_chain(g, l1) {
                changed |= prune_chain(g, &chain, ctx, &mut stats) > 0;
            }
        }
        if !changed {
            break;
        }
    }
    let order = g
        .topo_order()
        .map_err(|n| OptError::at(PASS, g, n, "the graph has a cycle"))?;
    for id in order {
        if let Some(l) = dense_layer(g, id) {
            prune_input_cols(g, &l, &mut stats);
        }
    }
    Ok(stats)
}
