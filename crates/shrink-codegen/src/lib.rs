//! shrink-codegen: lowers a prepared shrink graph to Cranelift IR, generic over
//! `cranelift_module::Module` so the JIT and the AOT writer share every line of it.
//!
//! Layers (DESIGN.md "Code generation"): [`loops`] — the loop-nest language and its emitter;
//! [`ops`] — every op defined in it; [`program`] — the whole model as one `run` entry point of
//! the kernel ABI, with constants in read-only data and intermediates in the caller's scratch.
pub mod caps;
pub mod cost;
pub mod define;
pub mod loops;
pub mod ops;
pub mod options;
pub mod program;

pub use cost::CostModel;
pub use define::{DefineOptions, Defined, Listing, define};
pub use options::{Activations, CodegenOptions, Goal, Strategy};
pub use program::{CodegenError, IoSpec, Program, lower};
