//! Transcendental functions written in the loop language (inline polynomial code on every ISA,
//! never a libm call), each for F32 and F64 operands, with documented, tested max errors.
//!
//! API contract (every function takes the builder to bind shared subexpressions with `let_`):
//! `exp, log, tanh, erf, sigmoid` of one operand and `pow` of two, the result in the operand's
//! type. NaN propagates, ±inf and ±0 follow IEEE/libm conventions.
use super::builder::Builder;
use super::ir::Expr;

/// e^x.
pub fn exp(b: &mut Builder, x: Expr) -> Expr {
    b.unsupported("exp is not written yet");
    x
}

/// Natural logarithm.
pub fn log(b: &mut Builder, x: Expr) -> Expr {
    b.unsupported("log is not written yet");
    x
}

/// Hyperbolic tangent.
pub fn tanh(b: &mut Builder, x: Expr) -> Expr {
    b.unsupported("tanh is not written yet");
    x
}

/// The error function.
pub fn erf(b: &mut Builder, x: Expr) -> Expr {
    b.unsupported("erf is not written yet");
    x
}

/// 1 / (1 + e^-x).
pub fn sigmoid(b: &mut Builder, x: Expr) -> Expr {
    b.unsupported("sigmoid is not written yet");
    x
}

/// x^y for floats.
pub fn pow(b: &mut Builder, x: Expr, y: Expr) -> Expr {
    let _ = y;
    b.unsupported("pow is not written yet");
    x
}
