//! The graph: a petgraph `StableGraph` of nodes (ops with typed outputs) and edges (which output
//! slot feeds which input slot), plus the ordered graph inputs/outputs and the constant table.
//! Node ids stay stable across deletions, so passes can hold them while editing.
use crate::op::{ConstId, Op};
use crate::{DType, Tensor, ValueType};
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use std::fmt;
use std::sync::Arc;

/// A node id; prints as `%N`, the text form's name for the node (and its output 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub NodeIndex<u32>);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0.index())
    }
}

/// One value: output `slot` of `node`. Prints as `%N` for slot 0, `%N.k` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    pub node: NodeId,
    pub slot: u32,
}

impl Value {
    pub fn new(node: NodeId, slot: u32) -> Value {
        Value { node, slot }
    }
}

impl From<NodeId> for Value {
    fn from(node: NodeId) -> Value {
        Value { node, slot: 0 }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.slot == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}.{}", self.node, self.slot)
        }
    }
}

/// An operation instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    /// The ONNX node name (or the input name for `Input`): the "span" for error messages.
    pub name: String,
    /// Number of input slots (absent optional inputs are slots with no edge).
    pub num_inputs: usize,
    /// Type of each output slot.
    pub outputs: Vec<ValueType>,
}

/// An edge: output `from_slot` of the source feeds input `to_slot` of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from_slot: u32,
    pub to_slot: u32,
}

/// A model graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub g: StableGraph<Node, Edge>,
    /// The `Input` nodes, in graph-input order.
    pub inputs: Vec<NodeId>,
    /// The graph outputs, in order, with their ONNX names.
    pub outputs: Vec<(String, Value)>,
    /// Constant data referenced by `Op::Const` nodes.
    pub consts: Vec<Arc<Tensor>>,
    /// Constants proven ternary (by the `ternary` pass), with their packed form. The dense
    /// constant stays the source of truth for interpretation; the two always agree exactly.
    pub ternary: std::collections::BTreeMap<ConstId, Arc<crate::TernaryWeights>>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id.0]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id.0)
    }

    /// Adds a graph input named `name` of type `ty`.
    pub fn add_input(&mut self, name: &str, ty: ValueType) -> NodeId {
        let index = self.inputs.len();
        let id = self.add_raw(Node {
            op: Op::Input { index },
            name: name.into(),
            num_inputs: 0,
            outputs: vec![ty],
        });
        self.inputs.push(id);
        id
    }

    /// Adds a constant node holding `t`.
    pub fn add_const(&mut self, name: &str, t: Arc<Tensor>) -> NodeId {
        let ty = ValueType::fixed(t.dtype(), t.dims());
        let cid = ConstId(self.consts.len() as u32);
        self.consts.push(t);
        self.add_raw(Node {
            op: Op::Const(cid),
            name: name.into(),
            num_inputs: 0,
            outputs: vec![ty],
        })
    }

    /// Adds a node with its inputs wired (`None` = absent optional input).
    pub fn add_node(
        &mut self,
        op: Op,
        name: &str,
        inputs: &[Option<Value>],
        outputs: Vec<ValueType>,
    ) -> NodeId {
        let id = self.add_raw(Node {
            op,
            name: name.into(),
            num_inputs: inputs.len(),
            outputs,
        });
        for (slot, v) in inputs.iter().enumerate() {
            if let Some(v) = v {
                self.connect(*v, id, slot);
            }
        }
        id
    }

    /// Adds a node without edges (the text parser wires them later).
    pub fn add_raw(&mut self, node: Node) -> NodeId {
        NodeId(self.g.add_node(node))
    }

    /// Connects value `v` to input `slot` of `to`.
    pub fn connect(&mut self, v: Value, to: NodeId, slot: usize) {
        self.g.add_edge(
            v.node.0,
            to.0,
            Edge {
                from_slot: v.slot,
                to_slot: slot as u32,
            },
        );
    }

    /// The inputs of `id` by slot (`None` for an absent optional input).
    pub fn inputs_of(&self, id: NodeId) -> Vec<Option<Value>> {
        let mut ins = vec![None; self.node(id).num_inputs];
        for e in self.g.edges_directed(id.0, Direction::Incoming) {
            let w = e.weight();
            if let Some(s) = ins.get_mut(w.to_slot as usize) {
                *s = Some(Value::new(NodeId(e.source()), w.from_slot));
            }
        }
        ins
    }

    /// The consumers of any output of `id`: (consumer, its input slot, our output slot).
    pub fn users_of(&self, id: NodeId) -> Vec<(NodeId, usize, u32)> {
        let mut users: Vec<_> = self
            .g
            .edges_directed(id.0, Direction::Outgoing)
            .map(|e| {
                (
                    NodeId(e.target()),
                    e.weight().to_slot as usize,
                    e.weight().from_slot,
                )
            })
            .collect();
        users.sort();
        users
    }

    /// The type of a value.
    pub fn value_type(&self, v: Value) -> &ValueType {
        &self.node(v.node).outputs[v.slot as usize]
    }

    pub fn dtype(&self, v: Value) -> DType {
        self.value_type(v).dtype
    }

    /// The constant tensor behind value `v`, if it is produced by a `Const` node.
    pub fn const_value(&self, v: Value) -> Option<&Arc<Tensor>> {
        match self.node(v.node).op {
            Op::Const(c) => self.consts.get(c.0 as usize),
            _ => None,
        }
    }

    /// All live node ids in index order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().map(NodeId).collect()
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Nodes that compute something (not graph inputs or constants).
    pub fn op_count(&self) -> usize {
        self.g.node_weights().filter(|n| !n.op.is_source()).count()
    }

    /// Nodes in a topological order (ties broken by node index, so the order is deterministic);
    /// `Err(node)` names a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, NodeId> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut indeg = std::collections::HashMap::new();
        let mut ready = BinaryHeap::new();
        for n in self.g.node_indices() {
            let d = self.g.edges_directed(n, Direction::Incoming).count();
            indeg.insert(n, d);
            if d == 0 {
                ready.push(Reverse(n.index()));
            }
        }
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(Reverse(i)) = ready.pop() {
            let n = NodeIndex::new(i);
            order.push(NodeId(n));
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(e.target().index()));
                }
            }
        }
        if order.len() == indeg.len() {
            Ok(order)
        } else {
            let stuck = self
                .g
                .node_indices()
                .filter(|n| indeg[n] > 0)
                .min()
                .expect("some node is stuck");
            Err(NodeId(stuck))
        }
    }

    /// Removes a node and its edges.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.g.remove_node(id.0)
    }
}

impl Graph {
    /// Turns graph input `index` into a constant with value `t` (specialization: `--freeze`).
    /// The remaining inputs keep their order and are renumbered.
    pub fn freeze_input(&mut self, index: usize, t: Arc<Tensor>) -> Result<NodeId, String> {
        let id = *self
            .inputs
            .get(index)
            .ok_or_else(|| format!("the graph has no input {index}"))?;
        let name = self.node(id).name.clone();
        if t.dtype() != self.node(id).outputs[0].dtype {
            return Err(format!(
                "input '{name}' is {}, the frozen value is {}",
                self.node(id).outputs[0].dtype,
                t.dtype()
            ));
        }
        let cid = ConstId(self.consts.len() as u32);
        let node = self.node_mut(id);
        node.outputs[0] = ValueType::fixed(t.dtype(), t.dims());
        node.op = Op::Const(cid);
        self.consts.push(t);
        self.inputs.remove(index);
        for (i, &other) in self.inputs.clone().iter().enumerate() {
            self.node_mut(other).op = Op::Input { index: i };
        }
        Ok(id)
    }
}

impl Graph {
    /// Points every consumer of `old` (and any graph output naming it) at `new` instead.
    pub fn replace_uses(&mut self, old: Value, new: Value) {
        let uses: Vec<_> = self
            .g
            .edges_directed(old.node.0, Direction::Outgoing)
            .filter(|e| e.weight().from_slot == old.slot)
            .map(|e| (e.id(), e.target(), e.weight().to_slot))
            .collect();
        for (eid, target, to_slot) in uses {
            self.g.remove_edge(eid);
            self.g.add_edge(
                new.node.0,
                target,
                Edge {
                    from_slot: new.slot,
                    to_slot,
                },
            );
        }
        for (_, v) in self.outputs.iter_mut() {
            if *v == old {
                *v = new;
            }
        }
    }

    /// Whether any node or graph output reads output `slot` of `id`.
    pub fn is_used(&self, v: Value) -> bool {
        self.g
            .edges_directed(v.node.0, Direction::Outgoing)
            .any(|e| e.weight().from_slot == v.slot)
            || self.outputs.iter().any(|(_, o)| *o == v)
    }

    /// Drops constants no `Const` node refers to and renumbers the rest (in first-use order of
    /// node ids, so the result is deterministic).
    pub fn compact_consts(&mut self) {
        let mut remap: std::collections::HashMap<ConstId, ConstId> =
            std::collections::HashMap::new();
        let mut kept = Vec::new();
        for id in self.node_ids() {
            if let Op::Const(c) = self.node(id).op {
                let new = *remap.entry(c).or_insert_with(|| {
                    kept.push(self.consts[c.0 as usize].clone());
                    ConstId(kept.len() as u32 - 1)
                });
                self.node_mut(id).op = Op::Const(new);
            }
        }
        self.consts = kept;
        let old = std::mem::take(&mut self.ternary);
        for (c, t) in old {
            if let Some(n) = remap.get(&c) {
                self.ternary.insert(*n, t);
            }
        }
    }

    /// The constant id behind value `v`, if a `Const` node produces it.
    pub fn const_id(&self, v: Value) -> Option<ConstId> {
        match self.node(v.node).op {
            Op::Const(c) => Some(c),
            _ => None,
        }
    }
}
