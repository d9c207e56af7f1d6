//! Specialization: binding symbolic dims (`--dim NAME=VALUE`), freezing inputs into constants
//! (`--freeze NAME=FILE`), specializing to given input data ([`specialize_to_data`]: every
//! input's shape, and the values of the inputs that shapes depend on), and the `shapes` pass that
//! infers every value's shape and requires it to be static, naming the first value whose dims
//! stay unknown.
use crate::{Ctx, OptError, Stats};
use shrink_ir::{Dim, Graph, NodeId, Shape, Tensor, Value};
use std::sync::Arc;

const PASS: &str = "shapes";

/// Replaces symbolic dim `name` by `value` in every graph input's declared shape.
pub fn bind_dim(g: &mut Graph, name: &str, value: usize) -> Result<usize, String> {
    let mut hits = 0;
    for id in g.inputs.clone() {
        if let Some(s) = g.node_mut(id).outputs[0].shape.as_mut() {
            for d in s.0.iter_mut() {
                if matches!(d, Dim::Sym(n) if n == name) {
                    *d = Dim::Fixed(value);
                    hits += 1;
                }
            }
        }
    }
    if hits == 0 {
        return Err(format!("no graph input has a dimension named '{name}'"));
    }
    Ok(hits)
}

/// Freezes the graph input called `name` to `value`.
pub fn freeze(g: &mut Graph, name: &str, value: Tensor) -> Result<(), String> {
    let index = g
        .inputs
        .iter()
        .position(|&id| g.node(id).name == name)
        .ok_or_else(|| format!("the model has no input named '{name}'"))?;
    g.freeze_input(index, Arc::new(value)).map(|_| ())
}

/// Largest value the shape pass folds on its own (shape computations are tiny; weights are left
/// to `const-fold` and its budget).
const SHAPE_FOLD_LIMIT: usize = 64 << 10;

/// Infers shapes node by node in topological order and folds small all-constant nodes (and
/// `Shape` of static values) as it goes, so that shapes computed in the graph (Shape → Gather →
/// Concat → Reshape, Slice bounds, Range limits) are known to the nodes that depend on them.
fn infer_and_fold(g: &mut Graph, ctx: &Ctx, stats: &mut Stats) -> Result<(), OptError> {
    use shrink_ir::op::shapes::{infer_node_shapes, merge_shapes};
    let order = crate::topo_order(g, PASS)?;
    for id in order {
        if g.node(id).op.is_source() {
            continue;
        }
        let shapes =
            infer_node_shapes(g, id).map_err(|e| OptError::at(PASS, g, id, e.to_string()))?;
        for (k, s) in shapes.iter().enumerate() {
            let merged = merge_shapes(g.node(id).outputs[k].shape.as_ref(), s.as_ref())
                .map_err(|e| OptError::at(PASS, g, id, format!("output {k}: {e}")))?;
            g.node_mut(id).outputs[k].shape = merged;
        }
        // Shape arithmetic is integer (and bool masks); float computations — weights and their
        // quantizers — are left to `const-fold`, which budgets them and reports them.
        let small = g.node(id).outputs.iter().all(|t| {
            !t.dtype.is_float()
                && t.shape
                    .as_ref()
                    .and_then(|s| s.as_fixed())
                    .is_some_and(|d| {
                        d.iter().product::<usize>() * t.dtype.size() <= SHAPE_FOLD_LIMIT
                    })
        });
        if small && crate::fold::fold_node(g, id, ctx) {
            stats.add("shape_values_folded", 1);
        }
    }
    Ok(())
}

/// Infers all shapes; with `Ctx::require_static` fails on the first value that is not fully
/// static, naming it.
pub fn infer_static_shapes(g: &mut Graph, ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new(PASS);
    if !ctx.require_static {
        infer_and_fold(g, ctx, &mut stats)?;
        for id in g.node_ids() {
            for t in &g.node(id).outputs {
                let fixed = t.shape.as_ref().and_then(|s| s.as_fixed()).is_some();
                stats.add(if fixed { "values" } else { "values_dynamic" }, 1);
            }
        }
        return Ok(stats);
    }
    for &id in &g.inputs {
        let n = g.node(id);
        let ty = &n.outputs[0];
        if let Some(s) = &ty.shape
            && let Some(sym) = s.0.iter().find_map(|d| match d {
                Dim::Sym(name) => Some(name.clone()),
                _ => None,
            })
        {
            return Err(OptError::new(
                PASS,
                format!(
                    "input '{}' has symbolic dim '{sym}': bind it with --dim {sym}=VALUE",
                    n.name
                ),
            ));
        }
        if ty.shape.as_ref().and_then(|s| s.as_fixed()).is_none() {
            return Err(OptError::new(
                PASS,
                format!(
                    "input '{}' has no static shape ({ty}): give it with --dim or --freeze",
                    n.name
                ),
            ));
        }
    }
    infer_and_fold(g, ctx, &mut stats)?;
    for id in crate::topo_order(g, PASS)? {
        for (k, t) in g.node(id).outputs.iter().enumerate() {
            if t.shape.as_ref().and_then(|s| s.as_fixed()).is_none() {
                return Err(OptError::at(
                    PASS,
                    g,
                    id,
                    format!(
                        "output {k} has no static shape ({t}); its shape depends on data that is not constant — try --freeze"
                    ),
                ));
            }
            stats.add("values", 1);
        }
    }
    Ok(stats)
}

/// Largest graph input (in elements) [`specialize_to_data`] considers as a shape operand: axes,
/// target shapes, pads and bounds are a handful of integers.
const SHAPE_INPUT_MAX_ELEMS: usize = 64;

/// Replaces every use of graph input `index` by a constant holding `t`. Unlike
/// [`Graph::freeze_input`] the input stays in the graph's interface (its declared shape becomes
/// `t`'s), so a program compiled from the result takes the same inputs — but no longer reads this
/// one: the result is only valid when the input equals `t`.
pub fn specialize_value(g: &mut Graph, index: usize, t: Arc<Tensor>) -> Result<NodeId, String> {
    let id = *g
        .inputs
        .get(index)
        .ok_or_else(|| format!("the graph has no input {index}"))?;
    let name = g.node(id).name.clone();
    let dtype = g.node(id).outputs[0].dtype;
    if t.dtype() != dtype {
        return Err(format!(
            "input '{name}' is {dtype}, the value is {}",
            t.dtype()
        ));
    }
    g.node_mut(id).outputs[0].shape = Some(Shape::fixed(t.dims()));
    let c = g.add_const(&name, t);
    g.replace_uses(id.into(), c.into());
    Ok(c)
}

/// How much of the graph's shapes is known: known ranks plus fixed dims over all computed values
/// (not sources: specializing adds a constant whose shape says nothing about the rest).
fn shape_knowledge(g: &Graph) -> usize {
    g.node_ids()
        .iter()
        .filter(|&&id| !g.node(id).op.is_source())
        .flat_map(|&id| g.node(id).outputs.iter())
        .map(|t| {
            t.shape.as_ref().map_or(0, |s| {
                1 + s.0.iter().filter(|d| matches!(d, Dim::Fixed(_))).count()
            })
        })
        .sum()
}

/// Shape knowledge after the `shapes` pass on a copy of `g` with inputs `which` specialized to
/// their values and every computed value's declared shape forgotten (a declared output shape
/// hides that the op computing it needs a value, e.g. ReduceSum's axes, as a constant).
fn probe(g: &Graph, inputs: &[Tensor], which: &[usize], ctx: &Ctx) -> Option<usize> {
    let mut h = g.clone();
    for id in h.node_ids() {
        if !h.node(id).op.is_source() {
            h.node_mut(id)
                .outputs
                .iter_mut()
                .for_each(|t| t.shape = None);
        }
    }
    for &i in which {
        specialize_value(&mut h, i, Arc::new(inputs[i].clone())).ok()?;
    }
    let ctx = Ctx {
        verify: false,
        require_static: false,
        ..ctx.clone()
    };
    infer_static_shapes(&mut h, &ctx).ok()?;
    Some(shape_knowledge(&h))
}

/// Specializes `g` to the data it will run on: every graph input's declared shape becomes its
/// tensor's, and each small integer input (or scalar) whose *value* some shape depends on (Reduce axes, a
/// Reshape/Expand target, Pad pads, Slice bounds, … — directly or through shape arithmetic) is
/// replaced in the graph by a constant ([`specialize_value`]), so that shape inference and
/// constant folding can make every shape static. Returns the names of the inputs specialized by
/// value; the graph keeps all its inputs and is valid only for those values.
///
/// Which inputs matter is found by inference itself rather than by a per-op list: with all
/// candidates specialized, a candidate is kept when leaving it out loses shape knowledge.
pub fn specialize_to_data(
    g: &mut Graph,
    inputs: &[Tensor],
    ctx: &Ctx,
) -> Result<Vec<String>, String> {
    if inputs.len() != g.inputs.len() {
        return Err(format!(
            "the graph has {} inputs, {} tensors were given",
            g.inputs.len(),
            inputs.len()
        ));
    }
    for (&id, t) in g.inputs.clone().iter().zip(inputs) {
        let ty = &mut g.node_mut(id).outputs[0];
        if ty.dtype != t.dtype() {
            return Err(format!(
                "input '{}' is {}, the tensor given is {}",
                g.node(id).name,
                g.node(id).outputs[0].dtype,
                t.dtype()
            ));
        }
        ty.shape = Some(Shape::fixed(t.dims()));
    }
    let candidates: Vec<usize> = (0..inputs.len())
        .filter(|&i| {
            let t = &inputs[i];
            // Shape operands are small integer tensors, or scalars (Range bounds of any type).
            let small_int = t.dtype().is_int() && t.len() <= SHAPE_INPUT_MAX_ELEMS;
            let scalar = t.rank() == 0 && t.dtype() != shrink_ir::DType::String;
            (small_int || scalar) && g.is_used(g.inputs[i].into())
        })
        .collect();
    if candidates.is_empty() {
        return Ok(vec![]);
    }
    let (Some(none), Some(all)) = (
        probe(g, inputs, &[], ctx),
        probe(g, inputs, &candidates, ctx),
    ) else {
        // The data contradicts the model somewhere; running it will say where.
        return Ok(vec![]);
    };
    if all == none {
        return Ok(vec![]);
    }
    let mut keep: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&c| {
            let others: Vec<usize> = candidates.iter().copied().filter(|&o| o != c).collect();
            probe(g, inputs, &others, ctx).is_none_or(|k| k < all)
        })
        .collect();
    // Inputs that each alone would do (none is needed by leave-one-out): take them all.
    if probe(g, inputs, &keep, ctx) != Some(all) {
        keep = candidates;
    }
    let mut names = Vec::with_capacity(keep.len());
    for &i in &keep {
        names.push(g.node(g.inputs[i]).name.clone());
        specialize_value(g, i, Arc::new(inputs[i].clone()))?;
    }
    Ok(names)
}

/// Every value whose shape is not fully static, as (value, node name, op name).
pub fn dynamic_values(g: &Graph) -> Vec<(Value, String, &'static str)> {
    let mut out = vec![];
    for id in g.node_ids() {
        let n = g.node(id);
        for (k, t) in n.outputs.iter().enumerate() {
            if t.shape.as_ref().and_then(|s| s.as_fixed()).is_none() {
                out.push((Value::new(id, k as u32), n.name.clone(), n.op.name()));
            }
        }
    }
    out
}
