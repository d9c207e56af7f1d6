//! Constant folding: a node whose inputs are all constants is evaluated with the reference
//! interpreter (so folded values are bit-identical to interpreting the graph) and its outputs
//! become constants; `Shape` of a value with a fully fixed shape folds without evaluation.
//! Folding runs in topological order, so whole constant subgraphs — in-graph weight quantizers
//! (absmean → Round → Clip → Mul), Cast·Mul and DequantizeLinear expansions of int8 weights,
//! weight transposes and reshapes — collapse in one pass. A byte budget bounds the folded data
//! alive at once (intermediates of a chain are released as soon as the next step has used them).
use crate::{Ctx, OptError, Stats};
use shrink_ir::op::{ConstId, Layout};
use shrink_ir::{Graph, NodeId, Op, Tensor, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const PASS: &str = "const-fold";

/// The value of `Shape{start, end}` on fixed dims.
fn shape_value(dims: &[usize], start: i64, end: Option<i64>) -> Tensor {
    let r = dims.len() as i64;
    let clamp = |i: i64| if i < 0 { (i + r).max(0) } else { i.min(r) };
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let v: Vec<i64> = if s < e {
        dims[s as usize..e as usize]
            .iter()
            .map(|&d| d as i64)
            .collect()
    } else {
        vec![]
    };
    Tensor::from_vec(vec![v.len()], v)
}

/// The values node `id` computes, if they can be known at compile time: all inputs constant (and
/// the interpreter accepts them), or `Shape` of a value with a fixed shape.
fn evaluate(g: &Graph, id: NodeId, ctx: &Ctx) -> Option<Result<Vec<Tensor>, ()>> {
    let node = g.node(id);
    let ins = g.inputs_of(id);
    if let Op::Layout(Layout::Shape { start, end }) = &node.op {
        let dims = ins
            .first()
            .copied()
            .flatten()
            .and_then(|v| g.value_type(v).shape.as_ref().and_then(|s| s.as_fixed()))?;
        return Some(Ok(vec![shape_value(&dims, *start, *end)]));
    }
    if ins.iter().flatten().any(|v| g.const_value(*v).is_none()) || ins.iter().all(|v| v.is_none())
    {
        return None;
    }
    let held: Vec<Option<Arc<Tensor>>> = ins
        .iter()
        .map(|v| v.and_then(|v| g.const_value(v).cloned()))
        .collect();
    let refs: Vec<Option<&Tensor>> = held.iter().map(|t| t.as_deref()).collect();
    Some(shrink_ref::eval_op(&node.op, &refs, &node.outputs, &ctx.eval).map_err(|_| ()))
}

/// Replaces the used outputs of `id` by constants.
fn install(g: &mut Graph, id: NodeId, results: Vec<Tensor>) {
    let name = g.node(id).name.clone();
    for (k, t) in results
        .into_iter()
        .enumerate()
        .take(g.node(id).outputs.len())
    {
        let v = Value::new(id, k as u32);
        if g.is_used(v) {
            let c = g.add_const(&name, Arc::new(t));
            g.replace_uses(v, c.into());
        }
    }
}

/// Whether `id` is an op (not an input or constant) with an output something reads.
fn computes_something_used(g: &Graph, id: NodeId) -> bool {
    !g.node(id).op.is_source()
        && (0..g.node(id).outputs.len()).any(|k| g.is_used(Value::new(id, k as u32)))
}

/// Folds one node if it can be evaluated now; used by the `shapes` pass for shape computations.
pub fn fold_node(g: &mut Graph, id: NodeId, ctx: &Ctx) -> bool {
    if !computes_something_used(g, id) {
        return false;
    }
    match evaluate(g, id, ctx) {
        Some(Ok(r)) => {
            install(g, id, r);
            true
        }
        _ => false,
    }
}

/// Removes `id` (its outputs all replaced) and every constant it read that nothing else reads.
/// Constants this pass created (`charged`) have their data released and their bytes returned to
/// the budget, so a chain of folds (an in-graph weight quantizer: Abs → ReduceMean → … → Mul)
/// holds one intermediate at a time and the budget bounds live memory, not the sum of all steps.
fn release_inputs(g: &mut Graph, id: NodeId, charged: &mut BTreeMap<ConstId, usize>) -> usize {
    let ins = g.inputs_of(id);
    g.remove_node(id);
    let mut freed = 0;
    for v in ins.into_iter().flatten() {
        if !g.contains(v.node) || g.is_used(Value::new(v.node, 0)) {
            continue;
        }
        let Some(c) = g.const_id(v) else { continue };
        g.remove_node(v.node);
        if let Some(bytes) = charged.remove(&c) {
            // No node refers to it any more; `dce` drops the slot.
            g.consts[c.0 as usize] = Arc::new(Tensor::from_vec::<u8>(vec![0], vec![]));
            g.ternary.remove(&c);
            freed += bytes;
        }
    }
    freed
}

pub fn fold_constants(g: &mut Graph, ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new(PASS);
    // Bytes of folded constants currently alive, by constant.
    let mut charged: BTreeMap<ConstId, usize> = BTreeMap::new();
    let mut live = 0usize;
    let mut peak = 0usize;
    let order = crate::topo_order(g, PASS)?;
    for id in order {
        if !g.contains(id) {
            continue;
        }
        if !computes_something_used(g, id) {
            continue;
        }
        let results: Vec<Tensor> = match evaluate(g, id, ctx) {
            None => continue,
            Some(Ok(r)) => r,
            // Invalid data stays in the graph: the error then surfaces at run time, with the
            // same message the unoptimized graph would give.
            Some(Err(())) => {
                stats.add("left_unfolded", 1);
                continue;
            }
        };
        let bytes: usize = results.iter().map(|t| t.bytes().len()).sum();
        if live.saturating_add(bytes) > ctx.fold_budget {
            stats.add("over_budget", 1);
            continue;
        }
        let before = g.consts.len();
        install(g, id, results);
        // Only the outputs something reads are kept (and charged).
        for k in before..g.consts.len() {
            let kept = g.consts[k].bytes().len();
            charged.insert(ConstId(k as u32), kept);
            live += kept;
        }
        peak = peak.max(live);
        live -= release_inputs(g, id, &mut charged);
        stats.add("nodes_folded", 1);
        stats.add("bytes_created", bytes);
    }
    if peak > 0 {
        stats.add("peak_bytes", peak);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shrink_ir::ValueType;
    use shrink_ir::op::Unary;

    fn neg_of_const(n: usize) -> Graph {
        let mut g = Graph::new();
        let c = g.add_const("c", Arc::new(Tensor::from_vec(vec![n], vec![1f32; n])));
        let neg = g.add_node(
            Op::Unary(Unary::Neg),
            "neg",
            &[Some(c.into())],
            vec![ValueType::fixed(shrink_ir::DType::F32, &[n])],
        );
        g.outputs.push(("y".into(), neg.into()));
        g
    }

    #[test]
    fn folding_respects_the_budget() {
        let mut g = neg_of_const(256);
        let tight = Ctx {
            fold_budget: 1023,
            ..Default::default()
        };
        let s = fold_constants(&mut g, &tight).unwrap();
        assert_eq!((s.get("nodes_folded"), s.get("over_budget")), (0, 1));
        let enough = Ctx {
            fold_budget: 1024,
            ..Default::default()
        };
        let s = fold_constants(&mut g, &enough).unwrap();
        assert_eq!((s.get("nodes_folded"), s.get("bytes_created")), (1, 1024));
        let y = g
            .const_value(g.outputs[0].1)
            .expect("output is now a constant");
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![-1f32; 256]);
    }

    /// A chain of folds holds one intermediate at a time: three 1 KiB steps fit a 2 KiB budget
    /// (the step being created plus the one it reads), and the intermediates are released.
    #[test]
    fn budget_bounds_live_bytes_not_the_sum_of_steps() {
        let mut g = neg_of_const(256);
        let y = g.outputs[0].1;
        let ty = vec![ValueType::fixed(shrink_ir::DType::F32, &[256])];
        let abs = g.add_node(Op::Unary(Unary::Abs), "abs", &[Some(y)], ty.clone());
        let neg = g.add_node(Op::Unary(Unary::Neg), "neg2", &[Some(abs.into())], ty);
        g.outputs[0].1 = neg.into();
        let ctx = Ctx {
            fold_budget: 2048,
            ..Default::default()
        };
        let s = fold_constants(&mut g, &ctx).unwrap();
        assert_eq!(s.get("nodes_folded"), 3);
        assert_eq!(s.get("bytes_created"), 3072);
        assert_eq!(s.get("peak_bytes"), 2048);
        let out = g.const_value(g.outputs[0].1).expect("folded");
        assert_eq!(out.to_vec::<f32>().unwrap(), vec![-1f32; 256]);
        // Every step and the original constant are gone; only the result remains.
        assert_eq!(g.node_ids().len(), 1);
    }
}
