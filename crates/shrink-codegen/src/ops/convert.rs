//! The `Convert` family as loop nests.
use super::{LowerResult, NodeCtx};
use crate::loops::Builder;
use shrink_ir::op::Convert;

pub fn lower(b: &mut Builder, op: &Convert, cx: &NodeCtx) -> LowerResult {
    let _ = (b, cx);
    Err(format!("{} has no native lowering yet", op.name()))
}
