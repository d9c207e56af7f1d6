//! Fusion: rewrites multi-op subgraphs into the single ops codegen has dedicated kernels for.
//!
//! Families, run in this order over the whole graph (one file each):
//! - [`conv_bn`]: Conv + inference BatchNormalization with constant parameters → one Conv with
//!   folded weights and bias;
//! - [`qdq`]: DequantizeLinear → MatMul/Conv → QuantizeLinear with per-tensor scales →
//!   QLinearMatMul / QLinearConv;
//! - [`norm`]: the decomposed LayerNormalization and RMSNormalization patterns (LayerNorm first:
//!   its tail is an RMS pattern of `x − mean`);
//! - [`gelu`]: the erf and tanh forms of GELU → `Gelu`;
//! - [`activation`]: `x·sigmoid(x)` (SiLU), `x·sigmoid(αx)`, `x·tanh(softplus(x))` and
//!   `x·hardsigmoid(x)` → `Swish`, `Mish`, `HardSwish`;
//! - [`softmax`]: Exp/ReduceSum (with or without the ReduceMax shift) → Softmax, and the
//!   log-sum-exp form → LogSoftmax;
//! - [`dense`]: MatMul/Gemm with a constant weight + bias Add + activation → `DenseAct`.
//!
//! A pattern fuses only when the rewrite computes the same function for this graph: dtypes are
//! checked, every shape the rewrite depends on must be statically fixed (unknown ⇒ no fusion),
//! constants are read and compared, broadcasting must not change any intermediate's shape, and
//! every intermediate value must be consumed only inside the pattern and not be a graph output.
//! The matched nodes are deleted right away, so later matches never see stale users.
pub mod activation;
pub mod conv_bn;
pub mod dense;
pub mod gelu;
pub mod norm;
pub mod qdq;
pub mod softmax;

use crate::{Ctx, OptError, Stats, float_tensor};
use shrink_ir::op::{Binary, Reduce, Variadic};
use shrink_ir::{DType, Graph, NodeId, Op, Tensor, Value, ValueType};
use std::collections::HashSet;

const PASS: &str = "fusion";

/// A family's matcher: tries to fuse the pattern anchored at the node; on success the graph is
/// rewritten and the stats counter to bump is returned.
type Matcher = fn(&mut Graph, NodeId) -> Option<&'static str>;

pub fn fuse(g: &mut Graph, _ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new(PASS);
    let families: [Matcher; 8] = [
        conv_bn::fuse_at,
        qdq::fuse_at,
        norm::fuse_layernorm_at,
        norm::fuse_rmsnorm_at,
        gelu::fuse_at,
        activation::fuse_at,
        softmax::fuse_at,
        // Last: the activation fusions above may create the activation a dense layer absorbs.
        dense::fuse_at,
    ];
    for matcher in families {
        let order = crate::topo_order(g, PASS)?;
        for id in order {
            // Earlier matches delete nodes; the ids of the rest stay valid (StableGraph). Every
            // anchor op has an output, so a node declaring none is malformed: skip it.
            if g.contains(id)
                && !g.node(id).outputs.is_empty()
                && let Some(counter) = matcher(g, id)
            {
                stats.add(counter, 1);
            }
        }
    }
    Ok(stats)
}

// ---- Helpers shared by the pattern files. ----

/// The value on input `slot` of `id`, if connected.
fn input(g: &Graph, id: NodeId, slot: usize) -> Option<Value> {
    g.inputs_of(id).get(slot).copied().flatten()
}

/// The node producing `v` when it is a single-output node (every op matched here is).
fn producer(g: &Graph, v: Value) -> Option<NodeId> {
    (v.slot == 0 && g.node(v.node).outputs.len() == 1).then_some(v.node)
}

/// The two operands of `id` if it is the binary op `kind`. A two-input `Sum` counts as `Add`
/// (ONNX's function expansions of Gelu and others spell `1 + erf` that way).
fn binary(g: &Graph, id: NodeId, kind: Binary) -> Option<(Value, Value)> {
    let two = || Some((input(g, id, 0)?, input(g, id, 1)?));
    match &g.node(id).op {
        Op::Binary(b) if *b == kind => two(),
        Op::Variadic(Variadic::Sum) if kind == Binary::Add && g.node(id).num_inputs == 2 => two(),
        _ => None,
    }
}

/// For a commutative binary node `id` of `kind` with operand `known`, the other operand.
fn other_operand(g: &Graph, id: NodeId, kind: Binary, known: Value) -> Option<Value> {
    let (a, b) = binary(g, id, kind)?;
    if a == known {
        Some(b)
    } else if b == known {
        Some(a)
    } else {
        None
    }
}

/// The value of a constant with exactly one element (any rank).
fn scalar_const(g: &Graph, v: Value) -> Option<f64> {
    let t = g.const_value(v)?;
    (t.len() == 1).then(|| t.get_f64(0))
}

/// Whether `v` is a one-element constant within 1e-6 relative of `want`.
fn is_scalar_near(g: &Graph, v: Value, want: f64) -> bool {
    scalar_const(g, v).is_some_and(|x| (x - want).abs() <= 1e-6 * want.abs())
}

/// The type of `v`, `None` if its node has no such output slot (a consumer found by walking
/// users may declare no outputs at all in a malformed graph).
fn vtype(g: &Graph, v: Value) -> Option<&ValueType> {
    g.node(v.node).outputs.get(v.slot as usize)
}

/// The fixed dims of `v`, `None` if any is unknown or symbolic.
fn fixed_dims(g: &Graph, v: Value) -> Option<Vec<usize>> {
    vtype(g, v)?.shape.as_ref()?.as_fixed()
}

/// Whether `v` has a fully fixed shape equal to `dims` and dtype `dtype`.
fn has_type(g: &Graph, v: Value, dtype: DType, dims: &[usize]) -> bool {
    vtype(g, v).is_some_and(|t| t.dtype == dtype) && fixed_dims(g, v).is_some_and(|d| d == dims)
}

/// The (sorted, distinct, non-negative) axes a Reduce node reduces over and its `keepdims`,
/// for the four ops with an axes input. `None` if the axes are not a constant, are out of range,
/// or the node is a no-op (empty axes with `noop_with_empty_axes`).
fn reduce_axes(g: &Graph, id: NodeId, rank: usize) -> Option<(Vec<usize>, bool)> {
    let (keepdims, noop) = match &g.node(id).op {
        Op::Reduce(
            r @ (Reduce::ReduceMean { .. } | Reduce::ReduceSum { .. } | Reduce::ReduceMax { .. }),
        ) => r.axes_flags()?,
        _ => return None,
    };
    let given = match input(g, id, 1) {
        Some(v) => {
            let t = g.const_value(v)?;
            if !t.dtype().is_int() {
                return None;
            }
            t.to_i64_vec()
        }
        None => vec![],
    };
    if given.is_empty() {
        return (!noop).then(|| ((0..rank).collect(), keepdims));
    }
    let r = rank as i64;
    let mut axes = Vec::with_capacity(given.len());
    for a in given {
        if a < -r || a >= r {
            return None;
        }
        axes.push(if a < 0 { a + r } else { a } as usize);
    }
    axes.sort_unstable();
    axes.dedup();
    Some((axes, keepdims))
}

/// Whether the pattern's intermediate nodes are private to it: none is a graph output and every
/// consumer of each is in `internal` or is `root` (whose own users are free).
fn confined(g: &Graph, internal: &[NodeId], root: NodeId) -> bool {
    let set: HashSet<NodeId> = internal.iter().copied().chain([root]).collect();
    internal.iter().all(|&n| {
        g.node(n).outputs.len() == 1
            && !g.outputs.iter().any(|(_, v)| v.node == n)
            && g.users_of(n).iter().all(|(u, _, _)| set.contains(u))
    })
}

/// Points the users of `root`'s output at `new`, then deletes `root` and whichever of `others`
/// no longer has a consumer (repeating so chains of now-dead nodes all go).
fn replace_and_remove(g: &mut Graph, root: NodeId, new: Value, others: &[NodeId]) {
    g.replace_uses(Value::new(root, 0), new);
    let mut pending: Vec<NodeId> = [root].into_iter().chain(others.iter().copied()).collect();
    loop {
        let before = pending.len();
        pending.retain(|&n| {
            let dead = g.contains(n)
                && !(0..g.node(n).outputs.len()).any(|k| g.is_used(Value::new(n, k as u32)));
            if dead {
                g.remove_node(n);
            }
            !dead && g.contains(n)
        });
        if pending.len() == before {
            break;
        }
    }
}

/// Whether `dtype` is one of the float types the norm/activation ops accept.
fn is_plain_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// `t` broadcast (numpy rules, right-aligned) to exactly `target`; `None` if it does not
/// broadcast unidirectionally.
fn broadcast_to(t: &Tensor, target: &[usize]) -> Option<Tensor> {
    let src = t.dims();
    if src.len() > target.len() {
        // Extra leading dims are allowed only when they are all 1.
        let extra = src.len() - target.len();
        if src[..extra].iter().any(|&d| d != 1) {
            return None;
        }
        return broadcast_to(&t.reshaped(src[extra..].to_vec()).ok()?, target);
    }
    let pad = target.len() - src.len();
    let full: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(src.iter().copied())
        .collect();
    if full.iter().zip(target).any(|(&s, &d)| s != 1 && s != d) {
        return None;
    }
    let size = t.dtype().size();
    let n: usize = target.iter().product();
    let bytes = t.bytes();
    let mut out = Vec::with_capacity(n * size);
    for flat in 0..n {
        // Source index: drop the coordinate along broadcast (size-1) dims.
        let (mut rem, mut src_i, mut stride) = (flat, 0, 1);
        for k in (0..target.len()).rev() {
            let c = rem % target[k];
            rem /= target[k];
            if full[k] != 1 {
                src_i += c * stride;
            }
            stride *= full[k];
        }
        out.extend_from_slice(bytes.get(src_i * size..(src_i + 1) * size)?);
    }
    Tensor::from_bytes(t.dtype(), target.to_vec(), out.into()).ok()
}
