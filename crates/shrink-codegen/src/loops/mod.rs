//! The loop-nest layer: the language ops are defined in ([`ir`]), its constructors ([`expr`],
//! [`builder`]), dtype conversions written in it ([`convert`]) and the one emitter that lowers
//! it to Cranelift ([`emit`]).
pub mod builder;
pub mod convert;
pub mod emit;
pub mod expr;
pub mod fuse;
pub mod ir;
pub mod isa;
pub mod math;
pub mod native;
#[cfg(test)]
pub mod testing;
pub mod vectorize;
#[cfg(test)]
mod vectorize_tests;

pub use builder::{Builder, TensorRef};
pub use expr::{broadcast_strides, linear, strides_of};
pub use ir::{BinOp, CmpOp, Expr, Kernel, Place, Ty, UnOp, status};
