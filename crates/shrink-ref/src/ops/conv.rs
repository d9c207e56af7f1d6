//! Interpreter for the `Conv` family (not implemented yet).
use crate::{EvalCtx, EvalError};
use shrink_ir::op::Conv;
use shrink_ir::{Tensor, ValueType};

pub fn eval(op: &Conv, _ins: &[Option<&Tensor>], _outs: &[ValueType], _ctx: &EvalCtx) -> Result<Vec<Tensor>, EvalError> {
    Err(EvalError::unsupported(format!("{} is not implemented in the interpreter yet", op.name())))
}
