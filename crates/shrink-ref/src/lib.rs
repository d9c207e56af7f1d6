//! The reference interpreter: runs an [`shrink_ir::Graph`] on concrete tensors, node by node in
//! topological order. It is the oracle every other stage is checked against, so it is written to
//! be obviously correct (straight loops over typed vectors), not fast.
//!
//! Each op family lives in its own module under `ops/` with one `eval` entry point. String
//! tensors reach only Equal and Identity ([`Op::takes_strings`]); [`eval_op`] rejects them
//! elsewhere, so the numeric kernels never see one.
pub mod broadcast;
pub mod num;
pub mod ops;
/// The random numbers moved to shrink-ir (code generation draws the same masks); kept here under
/// the old path.
pub use shrink_ir::rng;

use shrink_ir::{DType, Graph, NodeId, Op, Tensor, ValueType};
use std::collections::HashMap;
use std::sync::Arc;

/// Why an op could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The inputs are not valid for the op (shape mismatch, index out of range, ...).
    #[error("{0}")]
    Invalid(String),
    /// A valid combination shrink does not implement (e.g. a dtype the op does not support).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A tensor would exceed the memory cap.
    #[error("{0}")]
    TooLarge(String),
}

/// A shared op rule's refusal keeps its kind: invalid inputs stay invalid, unimplemented
/// combinations stay unsupported.
impl From<shrink_ir::rules::RuleError> for EvalError {
    fn from(e: shrink_ir::rules::RuleError) -> EvalError {
        match e {
            shrink_ir::rules::RuleError::Invalid(m) => EvalError::Invalid(m),
            shrink_ir::rules::RuleError::Unsupported(m) => EvalError::Unsupported(m),
        }
    }
}

impl EvalError {
    pub fn invalid(msg: impl Into<String>) -> EvalError {
        EvalError::Invalid(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> EvalError {
        EvalError::Unsupported(msg.into())
    }
}

/// An evaluation error located at a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node '{}' (op {op}): {error}", shrink_ir::verify::escaped(node_name))]
pub struct RunError {
    pub node: Option<NodeId>,
    pub node_name: String,
    pub op: String,
    #[source]
    pub error: EvalError,
}

/// Limits for one evaluation.
#[derive(Clone, Debug)]
pub struct EvalCtx {
    /// Largest tensor, in bytes, any op may create.
    pub max_bytes: usize,
}

impl Default for EvalCtx {
    fn default() -> EvalCtx {
        EvalCtx { max_bytes: 4 << 30 }
    }
}

impl EvalCtx {
    /// Element count of `dims` if a tensor of `dtype` with those dims fits the cap.
    pub fn check_alloc(&self, dtype: DType, dims: &[usize]) -> Result<usize, EvalError> {
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match n.and_then(|n| n.checked_mul(dtype.size()).map(|b| (n, b))) {
            Some((n, b)) if b <= self.max_bytes => Ok(n),
            _ => Err(EvalError::TooLarge(format!(
                "a {dtype} tensor of shape {dims:?} exceeds the memory cap of {} bytes",
                self.max_bytes
            ))),
        }
    }
}

/// Evaluates one op on its inputs (`None` = absent optional input). `outs` are the node's declared
/// output types (dtypes are authoritative; shapes may be unknown).
pub fn eval_op(
    op: &Op,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    // Kernels read numbers from a tensor's bytes; strings (which keep none there) may only reach
    // the ops that handle them, whatever graph the caller built.
    let strings = ins.iter().flatten().any(|t| t.dtype() == DType::String)
        || outs.iter().any(|t| t.dtype == DType::String);
    if strings && !op.takes_strings() {
        return Err(EvalError::unsupported(format!(
            "{} on string tensors (only Equal and Identity take strings)",
            op.name()
        )));
    }
    match op {
        Op::Input { .. } | Op::Const(_) => Err(EvalError::invalid("sources are not evaluated")),
        Op::Unary(o) => ops::unary::eval(o, ins, outs, ctx),
        Op::Binary(o) => ops::binary::eval(o, ins, outs, ctx),
        Op::Variadic(o) => ops::variadic::eval(o, ins, outs, ctx),
        Op::Ternary(o) => ops::ternary::eval(o, ins, outs, ctx),
        Op::Linear(o) => ops::linear::eval(o, ins, outs, ctx),
        Op::Quant(o) => ops::quant::eval(o, ins, outs, ctx),
        Op::Conv(o) => ops::conv::eval(o, ins, outs, ctx),
        Op::Pool(o) => ops::pool::eval(o, ins, outs, ctx),
        Op::Norm(o) => ops::norm::eval(o, ins, outs, ctx),
        Op::Reduce(o) => ops::reduce::eval(o, ins, outs, ctx),
        Op::Layout(o) => ops::layout::eval(o, ins, outs, ctx),
        Op::Convert(o) => ops::convert::eval(o, ins, outs, ctx),
        Op::Transformer(o) => ops::transformer::eval(o, ins, outs, ctx),
        Op::Fused(o) => ops::fused::eval(o, ins, outs, ctx),
    }
}

/// Runs the whole graph on `inputs` (one per graph input, in order) and returns the outputs.
pub fn run(g: &Graph, inputs: &[Tensor], ctx: &EvalCtx) -> Result<Vec<Tensor>, RunError> {
    let at = |id: Option<NodeId>, error: EvalError| {
        let (node_name, op) = id.map_or((String::new(), String::new()), |id| {
            let n = g.node(id);
            (n.name.clone(), n.op.name().to_string())
        });
        RunError {
            node: id,
            node_name,
            op,
            error,
        }
    };
    if inputs.len() != g.inputs.len() {
        return Err(at(
            None,
            EvalError::invalid(format!(
                "{} inputs given, the graph has {}",
                inputs.len(),
                g.inputs.len()
            )),
        ));
    }
    let order = g
        .topo_order()
        .map_err(|n| at(Some(n), EvalError::invalid("the graph has a cycle")))?;
    // Values are dropped after their last use so peak memory follows liveness.
    let mut remaining: HashMap<NodeId, usize> = HashMap::new();
    for id in &order {
        remaining.insert(*id, g.users_of(*id).len());
    }
    for (_, v) in &g.outputs {
        *remaining.entry(v.node).or_default() += 1;
    }
    let mut values: HashMap<NodeId, Vec<Arc<Tensor>>> = HashMap::new();
    for id in order {
        let node = g.node(id);
        let outs: Vec<Arc<Tensor>> = match &node.op {
            Op::Input { index } => vec![Arc::new(inputs[*index].clone())],
            Op::Const(c) => vec![g.consts[c.0 as usize].clone()],
            op => {
                let ins = g.inputs_of(id);
                let held: Vec<Option<Arc<Tensor>>> = ins
                    .iter()
                    .map(|v| v.map(|v| values[&v.node][v.slot as usize].clone()))
                    .collect();
                let refs: Vec<Option<&Tensor>> = held.iter().map(|t| t.as_deref()).collect();
                let res = eval_op(op, &refs, &node.outputs, ctx).map_err(|e| at(Some(id), e))?;
                if res.len() < node.outputs.len() {
                    return Err(at(
                        Some(id),
                        EvalError::invalid(format!(
                            "produced {} outputs, {} declared",
                            res.len(),
                            node.outputs.len()
                        )),
                    ));
                }
                for (k, (t, ty)) in res.iter().zip(&node.outputs).enumerate() {
                    if t.dtype() != ty.dtype {
                        return Err(at(
                            Some(id),
                            EvalError::invalid(format!(
                                "output {k} is {} but {} was declared",
                                t.dtype(),
                                ty.dtype
                            )),
                        ));
                    }
                }
                for v in ins.iter().flatten() {
                    let r = remaining.get_mut(&v.node).expect("producer counted");
                    *r -= 1;
                    if *r == 0 {
                        values.remove(&v.node);
                    }
                }
                res.into_iter().map(Arc::new).collect()
            }
        };
        values.insert(id, outs);
    }
    Ok(g.outputs
        .iter()
        .map(|(_, v)| (*values[&v.node][v.slot as usize]).clone())
        .collect())
}
