//! The lowering input: [`prepare`] turns an optimized graph into a [`Prepared`] — the graph
//! (verified), its [`MemoryPlan`] (verified), its topological order, and the concrete dims of
//! every value. Code generation consumes only `Prepared`, so "every value has a static shape" is
//! a fact checked once here, with an error that says which dimension is unbound and how to bind
//! it, instead of an `Option` every later stage has to unwrap.
use crate::plan::{MemoryPlan, plan_memory, verify_plan};
use crate::{Dim, Graph, NodeId, Value, VerifyError, verify};
use std::collections::HashMap;
use std::fmt;

/// Why a graph cannot be prepared for lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// The graph breaks an IR invariant.
    Invalid(VerifyError),
    /// A graph input's declared shape has a dimension that is not a number.
    UnboundInput {
        input: String,
        /// Which dimension (0-based).
        index: usize,
        /// Its symbolic name (`None` for a dimension the model leaves anonymous, or an unknown
        /// rank, then `index` is 0).
        dim: Option<String>,
        /// The input's type as declared, e.g. `f32[N,3]`.
        ty: String,
    },
    /// A computed value whose shape stays unknown although every graph input is static: its
    /// shape depends on data computed at run time.
    DynamicValue {
        node: String,
        op: String,
        slot: u32,
        /// The first dimension that is not fixed (`None`: the rank itself is unknown).
        index: Option<usize>,
        ty: String,
    },
    /// A value's byte size overflows, or the plan is inconsistent.
    Plan(String),
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::Invalid(e) => write!(f, "the graph is invalid: {e}"),
            PrepareError::UnboundInput {
                input,
                index,
                dim,
                ty,
            } => match dim {
                Some(d) => write!(
                    f,
                    "input '{input}' ({ty}): dimension {index} is the symbol '{d}'; bind it with \
                     --dim {d}=VALUE or give the whole shape with --input-shape {input}=D0,D1,..."
                ),
                None => write!(
                    f,
                    "input '{input}' ({ty}): dimension {index} is unknown; give the shape with \
                     --input-shape {input}=D0,D1,..."
                ),
            },
            PrepareError::DynamicValue {
                node,
                op,
                slot,
                index,
                ty,
            } => {
                let what = match index {
                    Some(i) => format!("dimension {i} of output {slot} ({ty}) is not static"),
                    None => format!("output {slot} has an unknown rank ({ty})"),
                };
                write!(
                    f,
                    "node '{node}' (op {op}): {what}; it depends on data computed at run time \
                     (freeze the inputs it depends on with --freeze NAME=FILE)"
                )
            }
            PrepareError::Plan(e) => write!(f, "memory plan: {e}"),
        }
    }
}

impl std::error::Error for PrepareError {}

/// A graph ready for lowering: verified, planned, every value's dims known.
#[derive(Clone, Debug)]
pub struct Prepared {
    graph: Graph,
    plan: MemoryPlan,
    order: Vec<NodeId>,
    dims: HashMap<Value, Vec<usize>>,
}

impl Prepared {
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// Every node in the topological order the plan was made for.
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    /// The concrete dims of `v`. Every output of every node of the graph has them; any other
    /// `Value` is a caller bug.
    pub fn dims(&self, v: Value) -> &[usize] {
        match self.dims.get(&v) {
            Some(d) => d,
            None => panic!("{v} is not a value of the prepared graph"),
        }
    }

    /// Number of elements of `v`.
    pub fn numel(&self, v: Value) -> usize {
        self.dims(v).iter().product()
    }

    /// Dense byte size of `v` (fits in `usize`: checked by `prepare`).
    pub fn bytes(&self, v: Value) -> usize {
        self.numel(v) * self.graph.dtype(v).size()
    }

    /// Gives the graph back.
    pub fn into_graph(self) -> Graph {
        self.graph
    }
}

/// Every graph input has a fully fixed shape (else the error names the input and the dim, and
/// says which flag binds it). The first check of [`prepare`], also used before code generation
/// by callers that do not need the rest.
pub fn check_static_inputs(g: &Graph) -> Result<(), PrepareError> {
    for &id in &g.inputs {
        let n = g.node(id);
        let ty = &n.outputs[0];
        let unbound = match &ty.shape {
            None => Some((0, None)),
            Some(s) => s.0.iter().enumerate().find_map(|(i, d)| match d {
                Dim::Fixed(_) => None,
                Dim::Sym(name) => Some((i, Some(name.clone()))),
                Dim::Unknown => Some((i, None)),
            }),
        };
        if let Some((index, dim)) = unbound {
            return Err(PrepareError::UnboundInput {
                input: n.name.clone(),
                index,
                dim,
                ty: ty.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks `g` and builds its lowering input. Graph inputs are checked first, so a symbolic input
/// dimension is reported as such rather than as the dynamic values it causes downstream.
pub fn prepare(g: &Graph) -> Result<Prepared, PrepareError> {
    verify(g).map_err(PrepareError::Invalid)?;
    check_static_inputs(g)?;
    let order = g
        .topo_order()
        .map_err(|_| PrepareError::Plan("the graph has a cycle".into()))?;
    let mut dims = HashMap::new();
    for &id in &order {
        let n = g.node(id);
        for (k, t) in n.outputs.iter().enumerate() {
            let v = Value::new(id, k as u32);
            let fixed = t.shape.as_ref().and_then(|s| s.as_fixed());
            let Some(d) = fixed else {
                let index = t.shape.as_ref().map(|s| {
                    s.0.iter()
                        .position(|d| !matches!(d, Dim::Fixed(_)))
                        .unwrap_or(0)
                });
                return Err(PrepareError::DynamicValue {
                    node: n.name.clone(),
                    op: n.op.name().to_string(),
                    slot: k as u32,
                    index,
                    ty: t.to_string(),
                });
            };
            if d.iter()
                .try_fold(t.dtype.size(), |a, &x| a.checked_mul(x))
                .is_none()
            {
                return Err(PrepareError::Plan(format!(
                    "node '{}' (op {}): output {k} ({t}) has more bytes than fit in memory",
                    n.name,
                    n.op.name()
                )));
            }
            dims.insert(v, d);
        }
    }
    let plan = plan_memory(g).map_err(PrepareError::Plan)?;
    verify_plan(g, &plan).map_err(PrepareError::Plan)?;
    Ok(Prepared {
        graph: g.clone(),
        plan,
        order,
        dims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Binary, Unary};
    use crate::{DType, Op, Shape, ValueType};

    fn relu_add(x_shape: Shape) -> Graph {
        let mut g = Graph::new();
        let x = g.add_input("x", ValueType::new(DType::F32, Some(x_shape.clone())));
        let r = g.add_node(
            Op::Unary(Unary::Relu),
            "r",
            &[Some(x.into())],
            vec![ValueType::new(DType::F32, Some(x_shape.clone()))],
        );
        let a = g.add_node(
            Op::Binary(Binary::Add),
            "a",
            &[Some(r.into()), Some(x.into())],
            vec![ValueType::new(DType::F32, Some(x_shape))],
        );
        g.outputs.push(("y".into(), a.into()));
        g
    }

    #[test]
    fn static_graph_prepares_with_dims_and_a_verified_plan() {
        let g = relu_add(Shape::fixed(&[2, 3]));
        let p = prepare(&g).unwrap();
        for id in p.order() {
            assert_eq!(p.dims(Value::from(*id)), &[2, 3]);
        }
        assert_eq!(p.bytes(Value::from(p.graph().inputs[0])), 24);
        assert_eq!(p.plan().slots.len(), 1, "only r is an intermediate");
        assert_eq!(p.order().len(), 3);
    }

    #[test]
    fn symbolic_input_dim_names_the_input_the_dim_and_the_flags() {
        let g = relu_add(Shape(vec![Dim::Sym("batch".into()), Dim::Fixed(3)]));
        let e = prepare(&g).unwrap_err();
        assert_eq!(
            e,
            PrepareError::UnboundInput {
                input: "x".into(),
                index: 0,
                dim: Some("batch".into()),
                ty: "f32[batch,3]".into()
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("--dim batch=VALUE"), "{msg}");
        assert!(msg.contains("--input-shape x="), "{msg}");
    }

    #[test]
    fn anonymous_input_dim_asks_for_the_input_shape() {
        let g = relu_add(Shape(vec![Dim::Fixed(2), Dim::Unknown]));
        let msg = prepare(&g).unwrap_err().to_string();
        assert!(
            msg.contains("input 'x'") && msg.contains("dimension 1"),
            "{msg}"
        );
        assert!(msg.contains("--input-shape x="), "{msg}");
    }

    #[test]
    fn dynamic_computed_value_names_node_op_and_dim() {
        let mut g = relu_add(Shape::fixed(&[2, 3]));
        // Pretend shape inference could not fix r's second dim.
        let r = g.node_ids()[1];
        g.node_mut(r).outputs[0].shape = Some(Shape(vec![Dim::Fixed(2), Dim::Unknown]));
        let e = prepare(&g).unwrap_err();
        assert!(matches!(
            &e,
            PrepareError::DynamicValue { node, op, slot: 0, index: Some(1), .. }
                if node == "r" && op == "Relu"
        ));
        let msg = e.to_string();
        assert!(msg.starts_with("node 'r' (op Relu): dimension 1"), "{msg}");
    }

    #[test]
    fn invalid_graph_is_refused() {
        let mut g = relu_add(Shape::fixed(&[2, 3]));
        g.inputs.clear(); // invariant 3: the Input node is no longer listed
        assert!(matches!(prepare(&g), Err(PrepareError::Invalid(_))));
    }
}
