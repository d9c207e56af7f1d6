//! Op lowerings: one module per op family, each defining its ops as loop nests with the
//! [`Builder`]. The registry is the exhaustive match in [`lower_node`]; a family module exposes
//! one `lower(b, op, cx)` entry point, like the interpreter's `eval`.
//!
//! Semantics are the interpreter's (`shrink-ref`), which is the oracle these are tested against:
//! integer arithmetic wraps, float math on f16/bf16 is done in f32 and rounded once per op.
pub mod conv;
pub mod convert;
pub mod elementwise;
pub mod layout;
pub mod linear;
pub mod norm;
#[cfg(test)]
mod op_testing;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod ternary;
pub mod transformer;

use crate::loops::{Builder, TensorRef};
use shrink_ir::{Graph, NodeId, Op, Tensor};
use std::sync::Arc;

/// What a lowering knows about the node it lowers.
pub struct NodeCtx<'a> {
    pub graph: &'a Graph,
    pub node: NodeId,
    /// One per input slot; `None` for an absent optional input.
    pub inputs: Vec<Option<TensorRef>>,
    pub outputs: Vec<TensorRef>,
    /// The value of each input that is a constant (shape inputs, axes, pads, …).
    pub consts: Vec<Option<Arc<Tensor>>>,
    /// The kernel strategy requested for this node (layers with weights).
    pub strategy: crate::Strategy,
    pub options: &'a crate::CodegenOptions,
}

impl NodeCtx<'_> {
    /// Input `i`, which the verifier guarantees is present for required slots.
    pub fn input(&self, i: usize) -> &TensorRef {
        self.inputs[i]
            .as_ref()
            .expect("required input (checked by the verifier)")
    }
    /// Input `i` if present.
    pub fn opt_input(&self, i: usize) -> Option<&TensorRef> {
        self.inputs.get(i).and_then(|x| x.as_ref())
    }
    /// The constant value of input `i`, if it is a constant.
    pub fn const_input(&self, i: usize) -> Option<&Tensor> {
        self.consts.get(i).and_then(|x| x.as_deref())
    }
    pub fn output(&self, k: usize) -> &TensorRef {
        &self.outputs[k]
    }
}

/// Lowering failed: the op (or this form of it) has no native code yet, or its constant inputs
/// are not what the lowering needs.
pub type LowerResult = Result<(), String>;

/// Lowers one node into `b`.
pub fn lower_node(b: &mut Builder, op: &Op, cx: &NodeCtx) -> LowerResult {
    match op {
        Op::Input { .. } | Op::Const(_) => Ok(()),
        Op::Unary(u) => elementwise::lower_unary(b, u, cx),
        Op::Binary(o) => elementwise::lower_binary(b, o, cx),
        Op::Variadic(o) => elementwise::lower_variadic(b, o, cx),
        Op::Ternary(o) => elementwise::lower_ternary(b, o, cx),
        Op::Linear(o) => linear::lower(b, o, cx),
        Op::Fused(o) => linear::lower_fused(b, o, cx),
        Op::Quant(o) => quant::lower(b, o, cx),
        Op::Conv(o) => conv::lower(b, o, cx),
        Op::Pool(o) => pool::lower(b, o, cx),
        Op::Norm(o) => norm::lower(b, o, cx),
        Op::Reduce(o) => reduce::lower(b, o, cx),
        Op::Layout(o) => layout::lower(b, o, cx),
        Op::Convert(o) => convert::lower(b, o, cx),
        Op::Transformer(o) => transformer::lower(b, o, cx),
    }
}
