//! The `Layout` family as loop nests.
use super::{LowerResult, NodeCtx};
use crate::loops::Builder;
use shrink_ir::op::Layout;

pub fn lower(b: &mut Builder, op: &Layout, cx: &NodeCtx) -> LowerResult {
    let _ = (b, cx);
    Err(format!("{} has no native lowering yet", op.name()))
}
