//! Specialization: binding symbolic dims (`--dim NAME=VALUE`), freezing inputs into constants
//! (`--freeze NAME=FILE`), and the `shapes` pass that infers every value's shape and requires it
//! to be static, naming the first value whose dims stay unknown.
use crate::{Ctx, OptError, Stats};
use shrink_ir::{Dim, Graph, Tensor};
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
