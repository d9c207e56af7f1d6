//! Op rules shared by the interpreter and the code generator.
//!
//! This module owns the decisions both engines must make identically before they compute
//! anything: which dtypes an op accepts, how its attributes and parameter shapes are validated,
//! and the shape, axis and plan computations (slice bounds, pad extents, the matmul batch plan,
//! quantization granularity, reduction axes, the rotary-embedding layout). The interpreter
//! (`shrink-ref`) and the code generator (`shrink-codegen`) each used to carry a copy of these,
//! and two copies drift apart; here there is one. The computations themselves (the
//! interpreter's loops, the generated loop nests) stay in their crates.
//!
//! Rules see plain dims, dtypes and attribute values, never tensors, so both engines can call
//! them with what they hold. They report a [`RuleError`] that keeps the interpreter's distinction
//! between invalid inputs and valid combinations shrink does not implement.
pub mod convert;
pub mod dims;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod transformer;

pub use dims::{broadcast_dims, norm_axes, norm_axis};

/// Why a rule refused an op. Both variants display as the bare message: the interpreter adds its
/// own "unsupported: " prefix, the code generator reports the message as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The inputs are not valid for the op (shape mismatch, axis out of range, ...).
    #[error("{0}")]
    Invalid(String),
    /// A valid combination shrink does not implement (e.g. a dtype the op does not support).
    #[error("{0}")]
    Unsupported(String),
}

impl RuleError {
    pub fn invalid(msg: impl Into<String>) -> RuleError {
        RuleError::Invalid(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> RuleError {
        RuleError::Unsupported(msg.into())
    }
}

/// The code generator reports errors as strings; this lets it use `?` on a rule.
impl From<RuleError> for String {
    fn from(e: RuleError) -> String {
        e.to_string()
    }
}
