//! Node-by-node attribution of a whole-graph difference between the JIT and the interpreter.
//!
//! Rounding differences that are each within tolerance can grow without bound through an
//! ill-conditioned graph: softmax weights a few ulps off, summed against values of 1e34 with
//! both signs, cancel to a result 1e-4 off in relative terms. No end-to-end tolerance can tell
//! that from a wrong kernel, but a wrong kernel is wrong on its own inputs. So when the outputs
//! differ, every node of the compiled graph is compiled alone, fed the interpreter's values of
//! its inputs, and compared with the interpreter's result of that node: a node that differs
//! alone is a defect; when every node agrees alone, the difference is the graph amplifying
//! rounding. Whatever cannot be checked this way (a node the JIT refuses alone, a value too big
//! to keep) leaves the whole-graph difference standing, so this only ever removes false alarms.
use super::CAP;
use crate::compare::{Tolerance, compare};
use shrink_ir::{Graph, NodeId, Op, Tensor, Value, ValueType};
use std::collections::HashMap;
use std::sync::Arc;

/// Most bytes of intermediate values kept for the attribution (every value stays live).
const KEEP: usize = 4 * CAP;

/// `None` when every compute node of `g`, compiled alone with `options` and fed the
/// interpreter's values of its inputs (from the graph inputs `ins`), agrees with the
/// interpreter; otherwise why the difference stands (the first node that differs alone, or what
/// kept a node from being checked).
pub(super) fn unexplained(
    g: &Graph,
    options: &shrink_codegen::CodegenOptions,
    ins: &[Tensor],
) -> Option<String> {
    let order = match g.topo_order() {
        Ok(o) => o,
        Err(_) => return Some("the graph has a cycle".into()),
    };
    let ctx = shrink_ref::EvalCtx { max_bytes: CAP };
    let mut values: HashMap<NodeId, Vec<Arc<Tensor>>> = HashMap::new();
    let mut kept = 0usize;
    // The single-node graphs have their own inputs: guards on the whole graph's do not apply.
    let alone_options = shrink_codegen::CodegenOptions {
        value_guards: vec![],
        ..options.clone()
    };
    for id in order {
        let node = g.node(id);
        let outs: Vec<Arc<Tensor>> = match &node.op {
            Op::Input { index } => vec![Arc::new(ins.get(*index)?.clone())],
            Op::Const(c) => vec![g.consts[c.0 as usize].clone()],
            op => {
                let held: Vec<Option<Arc<Tensor>>> = g
                    .inputs_of(id)
                    .iter()
                    .map(|v| v.map(|v| values[&v.node][v.slot as usize].clone()))
                    .collect();
                let refs: Vec<Option<&Tensor>> = held.iter().map(|t| t.as_deref()).collect();
                let want = match shrink_ref::eval_op(op, &refs, &node.outputs, &ctx) {
                    Ok(w) => w,
                    Err(e) => return Some(format!("{}: the interpreter alone: {e}", at(g, id))),
                };
                if let Some(why) = differs_alone(g, id, &held, &want, &alone_options) {
                    return Some(why);
                }
                want.into_iter().map(Arc::new).collect()
            }
        };
        kept += outs
            .iter()
            .map(|t| t.bytes().len().max(t.len()))
            .sum::<usize>();
        if kept > KEEP {
            return Some(format!(
                "the values up to {} exceed {KEEP} bytes: not checked node by node",
                at(g, id)
            ));
        }
        values.insert(id, outs);
    }
    None
}

/// Compiles node `id` of `g` alone, its computed inputs turned into graph inputs of the
/// interpreter's values `held` (constants stay constants, with their ternary form, so the node
/// gets the kernel it got in the whole graph), runs it and compares with `want`.
fn differs_alone(
    g: &Graph,
    id: NodeId,
    held: &[Option<Arc<Tensor>>],
    want: &[Tensor],
    options: &shrink_codegen::CodegenOptions,
) -> Option<String> {
    let node = g.node(id);
    let mut alone = Graph::new();
    let mut feed = Vec::new();
    let mut wires = Vec::with_capacity(held.len());
    for (slot, (v, t)) in g.inputs_of(id).iter().zip(held).enumerate() {
        let (Some(v), Some(t)) = (v, t) else {
            wires.push(None);
            continue;
        };
        let source = match g.const_id(*v) {
            Some(c) => {
                let k = alone.add_const(&format!("c{slot}"), t.clone());
                if let Some(tw) = g.ternary.get(&c) {
                    let new = alone.const_id(Value::new(k, 0)).expect("just added");
                    alone.ternary.insert(new, tw.clone());
                }
                k
            }
            None => {
                feed.push((**t).clone());
                alone.add_input(&format!("in{slot}"), ValueType::fixed(t.dtype(), t.dims()))
            }
        };
        wires.push(Some(Value::new(source, 0)));
    }
    let n = alone.add_node(node.op.clone(), &node.name, &wires, node.outputs.clone());
    for k in 0..node.outputs.len() {
        alone
            .outputs
            .push((format!("out{k}"), Value::new(n, k as u32)));
    }
    let why = run_alone(&alone, options, &feed, want)?;
    // As for the whole graph: a fused multiply-add under cancellation is rounding, not code.
    if options.fma {
        let unfused = shrink_codegen::CodegenOptions {
            fma: false,
            ..options.clone()
        };
        run_alone(&alone, &unfused, &feed, want)?;
    }
    Some(format!("{} alone: {why}", at(g, id)))
}

/// Compiles and runs `alone` on `feed`: why it differs from `want`, `None` when it agrees.
fn run_alone(
    alone: &Graph,
    options: &shrink_codegen::CodegenOptions,
    feed: &[Tensor],
    want: &[Tensor],
) -> Option<String> {
    let kernel = match crate::compile_jit_with(alone, options) {
        Ok(k) => k,
        Err(e) => return Some(format!("the JIT refused it: {e}")),
    };
    let got = match kernel.run(feed) {
        Ok(v) => v,
        Err(e) => return Some(format!("the JIT run failed: {e}")),
    };
    if got.len() != want.len() {
        return Some(format!(
            "{} outputs, the interpreter {}",
            got.len(),
            want.len()
        ));
    }
    got.iter().zip(want).enumerate().find_map(|(k, (a, b))| {
        compare(a, b, Tolerance::INTERP)
            .mismatch
            .map(|m| format!("output {k} differs: {m}"))
    })
}

/// "node NAME (Op)" for messages.
fn at(g: &Graph, id: NodeId) -> String {
    let n = g.node(id);
    format!("node {:?} ({})", n.name, n.op.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> Graph {
        shrink_ir::text::parse_graph(text).expect("test graph parses")
    }

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_elements(shrink_ir::DType::F32, dims.to_vec(), v.iter().copied())
            .expect("test tensor")
    }

    #[test]
    fn a_correct_graph_agrees_node_by_node() {
        let g = graph(
            "graph {
  %0 = Input 0 \"x\" : f32[2,3]
  %1 = Const f32[3,2] [1.0, -2.0, 0.5, 4.0, -1.0, 3.0] \"w\" : f32[3,2]
  %2 = MatMul(%0, %1) \"mm\" : f32[2,2]
  %3 = Softmax{axis=1, coerce_2d=false}(%2) \"p\" : f32[2,2]
  output \"y\" = %3
}",
        );
        let x = f32s(&[2, 3], &[1.0, 2.0, -1.0, 0.25, -0.5, 3.0]);
        let options = shrink_codegen::CodegenOptions::default();
        assert_eq!(unexplained(&g, &options, &[x]), None);
    }

    #[test]
    fn a_node_the_jit_cannot_check_alone_leaves_the_difference_standing() {
        // The JIT has no string kernels: the difference cannot be explained away.
        let g = graph(
            "graph {
  %0 = Input 0 \"x\" : string[2]
  %1 = Identity(%0) \"same\" : string[2]
  output \"y\" = %1
}",
        );
        let x = Tensor::from_strings(vec![2], vec![bytes::Bytes::from_static(b"a"); 2]).unwrap();
        let why = unexplained(&g, &shrink_codegen::CodegenOptions::default(), &[x])
            .expect("strings cannot be checked by the JIT");
        assert!(why.contains("node \"same\" (Identity) alone"), "{why}");
    }
}
