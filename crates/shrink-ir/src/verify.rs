//! The IR verifier. Invariants checked, each with a negative test in `tests/verify.rs`:
//!
//! 1. the graph is acyclic;
//! 2. every edge leaves an existing output slot and enters an existing input slot, and no input
//!    slot has two edges;
//! 3. `Graph::inputs` lists exactly the `Input` nodes, with `index` equal to their position;
//! 4. every `Const` node refers to an existing constant whose dtype and dims are the node's type;
//! 5. every graph output names an existing value;
//! 6. every op's output dtypes are those its input dtypes imply (`infer_dtypes`), and the node
//!    declares as many outputs as the op can produce;
//! 7. every op's declared output shapes agree with what shape inference derives from its inputs
//!    (same rank where both are known, equal dims where both are fixed);
//! 8. every ternary annotation belongs to an existing constant and decodes to exactly its value.
use crate::graph::NodeId;
use crate::op::infer_dtypes;
use crate::{Graph, Op};
use std::collections::HashSet;
use std::fmt;

/// A broken invariant, located at a node when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub node: Option<NodeId>,
    /// The node's name and op, for messages.
    pub context: String,
    pub msg: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = escaped(&self.msg);
        match self.node {
            Some(n) => write!(f, "{n} {}: {msg}", escaped(&self.context)),
            None => f.write_str(&msg),
        }
    }
}

/// `s` with control characters escaped: node names come from the model, and a newline in one
/// must not break an error message over lines.
pub fn escaped(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

impl std::error::Error for VerifyError {}

fn at(g: &Graph, id: NodeId, msg: impl Into<String>) -> VerifyError {
    let n = g.node(id);
    VerifyError {
        node: Some(id),
        context: format!("(node '{}', op {})", n.name, n.op.name()),
        msg: msg.into(),
    }
}

/// Checks every invariant listed in the module doc; returns the first violation.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    if let Err(n) = g.topo_order() {
        return Err(at(g, n, "is on a cycle"));
    }
    for id in g.node_ids() {
        let node = g.node(id);
        let mut seen = HashSet::new();
        for e in g.g.edges_directed(id.0, petgraph::Direction::Incoming) {
            use petgraph::visit::EdgeRef;
            let w = e.weight();
            let src = g.node(NodeId(e.source()));
            if w.from_slot as usize >= src.outputs.len() {
                return Err(at(
                    g,
                    id,
                    format!(
                        "input {} reads output {} of a node with {}",
                        w.to_slot,
                        w.from_slot,
                        src.outputs.len()
                    ),
                ));
            }
            if w.to_slot as usize >= node.num_inputs {
                return Err(at(
                    g,
                    id,
                    format!(
                        "edge into input {} but the node has {} inputs",
                        w.to_slot, node.num_inputs
                    ),
                ));
            }
            if !seen.insert(w.to_slot) {
                return Err(at(g, id, format!("input {} has two producers", w.to_slot)));
            }
        }
        match &node.op {
            Op::Input { index } => {
                if g.inputs.get(*index) != Some(&id) {
                    return Err(at(
                        g,
                        id,
                        format!("Input {index} is not graph input {index}"),
                    ));
                }
            }
            Op::Const(c) => {
                let Some(t) = g.consts.get(c.0 as usize) else {
                    return Err(at(g, id, format!("refers to missing constant c{}", c.0)));
                };
                let ty = crate::ValueType::fixed(t.dtype(), t.dims());
                if node.outputs.len() != 1 || node.outputs[0] != ty {
                    return Err(at(
                        g,
                        id,
                        format!("declares {:?} but its constant is {ty}", node.outputs),
                    ));
                }
            }
            op => {
                let ins: Vec<_> = g
                    .inputs_of(id)
                    .iter()
                    .map(|v| v.map(|v| g.dtype(v)))
                    .collect();
                let want = infer_dtypes(op, &ins, node.outputs.len())
                    .map_err(|e| at(g, id, e.to_string()))?;
                let infos: Vec<_> = g
                    .inputs_of(id)
                    .iter()
                    .map(|v| {
                        v.map(|v| crate::op::shapes::InputInfo {
                            ty: g.value_type(v),
                            value: g.const_value(v).map(|t| &**t),
                        })
                    })
                    .collect();
                let shapes = crate::op::shapes::infer_shapes(op, &infos, node.outputs.len())
                    .map_err(|e| at(g, id, e.to_string()))?;
                for (k, (t, s)) in node.outputs.iter().zip(&shapes).enumerate() {
                    crate::op::shapes::merge_shapes(t.shape.as_ref(), s.as_ref())
                        .map_err(|e| at(g, id, format!("output {k}: {e}")))?;
                }
                let have: Vec<_> = node.outputs.iter().map(|t| t.dtype).collect();
                if want.len() < have.len() || have.iter().zip(&want).any(|(a, b)| a != b) {
                    let show = |v: &[crate::DType]| {
                        v.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
                    };
                    return Err(at(
                        g,
                        id,
                        format!(
                            "outputs are ({}) but the inputs imply ({})",
                            show(&have),
                            show(&want)
                        ),
                    ));
                }
            }
        }
    }
    for (i, id) in g.inputs.iter().enumerate() {
        if !g.contains(*id) || g.node(*id).op != (Op::Input { index: i }) {
            return Err(VerifyError {
                node: Some(*id),
                context: String::new(),
                msg: format!("graph input {i} is not an Input node"),
            });
        }
    }
    for (c, t) in &g.ternary {
        match g.consts.get(c.0 as usize) {
            Some(dense) if t.matches(dense) => {}
            Some(_) => {
                return Err(VerifyError {
                    node: None,
                    context: String::new(),
                    msg: format!("ternary form of constant c{} differs from its value", c.0),
                });
            }
            None => {
                return Err(VerifyError {
                    node: None,
                    context: String::new(),
                    msg: format!("ternary annotation of missing constant c{}", c.0),
                });
            }
        }
    }
    for (name, v) in &g.outputs {
        if !g.contains(v.node) || v.slot as usize >= g.node(v.node).outputs.len() {
            return Err(VerifyError {
                node: None,
                context: String::new(),
                msg: format!("graph output '{name}' refers to missing value {v}"),
            });
        }
    }
    Ok(())
}
