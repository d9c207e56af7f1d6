//! The `Linear` family as loop nests.
use super::{LowerResult, NodeCtx};
use crate::loops::Builder;
use shrink_ir::op::{Fused, Linear};

pub fn lower(b: &mut Builder, op: &Linear, cx: &NodeCtx) -> LowerResult {
    if let Some(r) = super::ternary::try_lower(b, &shrink_ir::Op::Linear(op.clone()), cx) {
        return r;
    }
    Err(format!("{} has no native lowering yet", op.name()))
}

/// The fused DenseAct op (MatMul → Add → activation).
pub fn lower_fused(b: &mut Builder, op: &Fused, cx: &NodeCtx) -> LowerResult {
    if let Some(r) = super::ternary::try_lower(b, &shrink_ir::Op::Fused(op.clone()), cx) {
        return r;
    }
    Err(format!("{} has no native lowering yet", op.name()))
}
