//! Interpreter for the `Transformer` family (not implemented yet).
use crate::{EvalCtx, EvalError};
use shrink_ir::op::Transformer;
use shrink_ir::{Tensor, ValueType};

pub fn eval(op: &Transformer, _ins: &[Option<&Tensor>], _outs: &[ValueType], _ctx: &EvalCtx) -> Result<Vec<Tensor>, EvalError> {
    Err(EvalError::unsupported(format!("{} is not implemented in the interpreter yet", op.name())))
}
