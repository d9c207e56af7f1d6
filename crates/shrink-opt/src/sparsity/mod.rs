//! Sparsity elimination: weights that contribute nothing never reach codegen.
//!
//! - **Dead hidden units** (dense units or conv channels, [`chain`]) between a producer layer and
//!   a consumer layer joined by a residual-free chain of per-unit ops (elementwise activations,
//!   bias Add/Mul by per-unit constants, Clip, BatchNormalization, pools, a Flatten into a dense
//!   layer), or two producers joined elementwise (a gated FFN): a unit is dead when its outgoing weights are all zero, or when its incoming weights
//!   are all zero so it carries the constant `chain(bias)` — zero (deleted) or nonzero (its
//!   contribution moves into the consumer's bias, then deleted; see [`units`]). The unit's weight
//!   row, bias entry, per-unit parameters and consumer columns disappear together; the pass
//!   repeats until nothing changes, so deaths cascade across consecutive layers.
//! - **Dead input columns** of a layer fed from elsewhere (e.g. a graph input): an all-zero
//!   weight column of a MatMul/Gemm (input channel of a Conv) means that input feature is never
//!   read; a `Gather` of the live features (which codegen folds into addressing) feeds a narrower
//!   weight.
//! - **Zero biases**: an all-zero Gemm `C` or Conv `B` input is dropped (Add of 0 is removed by
//!   `simplify`).
//!
//! All-zero weight rows whose unit has nowhere to go (it is a graph output, or feeds a residual
//! join) stay in the weight: their zeros are dropped by the ternary annotation, which records
//! only nonzero digits for codegen.
mod chain;
mod units;

use crate::{Ctx, OptError, Stats};
use shrink_ir::op::{Conv, Layout, Linear};
use shrink_ir::shape::Dim;
use shrink_ir::{DType, Graph, NodeId, Op, Tensor, Value};
use std::ops::Range;
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

/// Flat indices of the elements of a tensor with `dims` whose index along `axis` is in `range`.
fn slice_indices(dims: &[usize], axis: usize, range: Range<usize>) -> impl Iterator<Item = usize> {
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let d = dims[axis];
    (0..outer).flat_map(move |o| {
        range
            .clone()
            .flat_map(move |k| ((o * d + k) * inner)..((o * d + k + 1) * inner))
    })
}

/// Whether every element of `t` with index along `axis` in `range` is zero (either sign).
fn slice_is_zero(t: &Tensor, axis: usize, range: Range<usize>) -> bool {
    slice_indices(t.dims(), axis, range).all(|i| t.get_f64(i) == 0.0)
}

/// A 1-element tensor of float `dtype` holding `v` (rounded once), with `rank` unit dims.
fn float_scalar(dtype: DType, rank: usize, v: f64) -> Option<Tensor> {
    crate::float_tensor(dtype, vec![1; rank], &[v])
}

/// Sets dim `axis` of every output of `id` to `n`.
fn set_dim(g: &mut Graph, id: NodeId, axis: usize, n: usize) {
    for out in &mut g.node_mut(id).outputs {
        if let Some(s) = out.shape.as_mut()
            && let Some(d) = s.0.get_mut(axis)
        {
            *d = Dim::Fixed(n);
        }
    }
}

fn remove_input_edge(g: &mut Graph, id: NodeId, slot: usize) -> bool {
    let e =
        g.g.edges_directed(id.0, petgraph::Direction::Incoming)
            .find(|e| e.weight().to_slot as usize == slot)
            .map(|e| petgraph::visit::EdgeRef::id(&e));
    match e {
        Some(e) => {
            g.g.remove_edge(e);
            true
        }
        None => false,
    }
}

/// Replaces (or sets) input `slot` of `id` with a new constant `t`.
fn rewire_const(g: &mut Graph, id: NodeId, slot: usize, t: Tensor) {
    let name = format!("{}:in{slot}", g.node(id).name);
    let c = g.add_const(&name, Arc::new(t));
    remove_input_edge(g, id, slot);
    g.connect(c.into(), id, slot);
}

/// The consumers of value `v` as (node, input slot), sorted; `None` if `v` is a graph output
/// (deleting units would change what the caller gets).
fn internal_users(g: &Graph, v: Value) -> Option<Vec<(NodeId, usize)>> {
    if g.outputs.iter().any(|(_, o)| *o == v) {
        return None;
    }
    Some(
        g.users_of(v.node)
            .into_iter()
            .filter(|(_, _, s)| *s == v.slot)
            .map(|(n, slot, _)| (n, slot))
            .collect(),
    )
}

/// The single consumer of value `v` (input slot), if it has exactly one and is not a graph output.
fn sole_user(g: &Graph, v: Value) -> Option<(NodeId, usize)> {
    match internal_users(g, v)?[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// A layer whose inputs' feature axis can be narrowed by a Gather: a 2-D MatMul/Gemm weight
/// (features = view columns, last input axis) or a group-1 Conv (features = input channels).
struct Reader {
    id: NodeId,
    slot: usize,
    weight: Arc<Tensor>,
    /// Weight axis indexed by input feature.
    w_axis: usize,
}

fn reader(g: &Graph, id: NodeId) -> Option<Reader> {
    let op = &g.node(id).op;
    let (w_axis, conv) = match op {
        Op::Linear(Linear::MatMul) => (0, false),
        Op::Linear(Linear::Gemm {
            trans_a: false,
            trans_b,
            ..
        }) => (usize::from(*trans_b), false),
        Op::Conv(Conv::Conv { group: 1, .. }) => (1, true),
        _ => return None,
    };
    let ws = crate::layers::weight_slot(op)?;
    let v = g.inputs_of(id).get(ws.slot).copied().flatten()?;
    let weight = g.const_value(v)?.clone();
    let rank_ok = if conv {
        weight.rank() >= 3
    } else {
        weight.rank() == 2
    };
    (rank_ok && weight.dtype().is_float()).then_some(Reader {
        id,
        slot: ws.slot,
        weight,
        w_axis,
    })
}

/// Drops all-zero input features of a layer: a `Gather` of the live ones feeds a narrower weight.
fn prune_input_features(g: &mut Graph, l: Reader, stats: &mut Stats) -> bool {
    let w = l.weight.clone();
    let k = w.dims()[l.w_axis];
    let keep: Vec<usize> = (0..k)
        .filter(|&c| !slice_is_zero(&w, l.w_axis, c..c + 1))
        .collect();
    if keep.len() == k || keep.is_empty() {
        return false;
    }
    let Some(x) = g.inputs_of(l.id)[0] else {
        return false;
    };
    let Some(mut xs) = g.value_type(x).shape.clone().and_then(|s| s.as_fixed()) else {
        return false;
    };
    let conv = matches!(g.node(l.id).op, Op::Conv(_));
    let xa = if conv { 1 } else { xs.len().saturating_sub(1) };
    if xs.get(xa) != Some(&k) {
        return false;
    }
    let idx = Tensor::from_vec(vec![keep.len()], keep.iter().map(|&c| c as i64).collect());
    let name = format!("{}:live_inputs", g.node(l.id).name);
    let ic = g.add_const(&name, Arc::new(idx));
    xs[xa] = keep.len();
    let gather = g.add_node(
        Op::Layout(Layout::Gather { axis: xa as i64 }),
        &name,
        &[Some(x), Some(ic.into())],
        vec![shrink_ir::ValueType::fixed(g.dtype(x), &xs)],
    );
    remove_input_edge(g, l.id, 0);
    g.connect(gather.into(), l.id, 0);
    rewire_const(g, l.id, l.slot, take_axis(&w, l.w_axis, &keep));
    let counter = if conv {
        "dead_input_channels"
    } else {
        "dead_input_cols"
    };
    stats.add(counter, k - keep.len());
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
    if (0..t.len()).all(|i| t.get_f64(i) == 0.0) && remove_input_edge(g, id, slot) {
        stats.add("zero_biases_dropped", 1);
    }
}

pub fn eliminate_sparsity(g: &mut Graph, ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new(PASS);
    for id in g.node_ids() {
        drop_zero_bias(g, id, &mut stats);
    }
    // Units first (repeat to a fixpoint so deaths cascade), then input features.
    for _round in 0..64 {
        let mut changed = false;
        let order = crate::topo_order(g, PASS)?;
        for id in order {
            if !g.contains(id) {
                continue;
            }
            if let Some(chain) = chain::find(g, id) {
                changed |= units::prune(g, &chain, ctx, &mut stats) > 0;
            }
        }
        if !changed {
            break;
        }
    }
    let order = crate::topo_order(g, PASS)?;
    for id in order {
        if let Some(l) = reader(g, id) {
            prune_input_features(g, l, &mut stats);
        }
    }
    Ok(stats)
}
