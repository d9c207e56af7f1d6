//! shrink's intermediate representation.
//!
//! A [`Graph`] is a petgraph `StableGraph` of [`Node`]s; each node holds an [`Op`] (a closed enum,
//! one variant per operator family, typed attributes), the ONNX node name for diagnostics, and the
//! [`ValueType`] of each output. Constants are [`Tensor`]s shared by `Arc`, zero-copy views of the
//! model file where the importer could arrange it. The [`verify()`] function checks the graph's
//! invariants (run after every pass in tests and debug builds), and [`text`] prints and parses the
//! `.sir` text form used by golden tests. [`plan`] assigns intermediates their scratch offsets and
//! checks a plan; [`prepare()`] builds the lowering input (verified graph and plan, the static dims
//! of every value). [`rules`] holds the op rules the interpreter and the code generator share.
pub mod dtype;
pub mod graph;
pub mod narrow;
pub mod op;
pub mod plan;
pub mod prepare;
pub mod rng;
pub mod rules;
pub mod shape;
pub mod tensor;
pub mod ternary;
pub mod text;
pub mod verify;
pub mod window;

/// The byte buffer type of tensor data and string elements.
pub use bytes::Bytes;
pub use dtype::{ALL_DTYPES, DType};
pub use graph::{Edge, Graph, Node, NodeId, Value};
pub use op::Op;
pub use prepare::{PrepareError, Prepared, prepare};
pub use shape::{Dim, Shape, ValueType, checked_numel};
pub use tensor::{Element, Tensor, TensorSizeError};
pub use ternary::{TernaryScale, TernaryWeights, WeightLayout};
pub use verify::{VerifyError, verify};
