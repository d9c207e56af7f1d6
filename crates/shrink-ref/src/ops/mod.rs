//! Op families of the interpreter, one module each, each with a single `eval` entry point
//! `(op, inputs, declared output types, ctx) -> outputs`. Helpers shared by all families live here.
pub mod binary;
pub mod conv;
pub mod convert;
pub mod fused;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod ternary;
pub mod transformer;
pub mod unary;
pub mod variadic;

use crate::EvalError;
use shrink_ir::Tensor;

/// Required input `i`, or an error naming it.
pub fn required<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, EvalError> {
    ins.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| EvalError::invalid(format!("required input {i} is missing")))
}

/// Optional input `i`.
pub fn optional<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

/// The values of a 1-D (or scalar) integer tensor as i64 (shape, axes, pads, ...).
pub fn int_list(t: &Tensor) -> Result<Vec<i64>, EvalError> {
    if !t.dtype().is_int() {
        return Err(EvalError::invalid(format!(
            "expected an integer tensor, got {}",
            t.dtype()
        )));
    }
    Ok(t.to_i64_vec())
}
