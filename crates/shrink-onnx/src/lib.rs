//! ONNX import and export for shrink.
//!
//! [`import::load_model`] memory-maps a `.onnx` file, decodes it with prost (tensor `raw_data` stays
//! a zero-copy slice of the mapping), resolves external data safely, and turns the graph into a
//! verified [`shrink_ir::Graph`], rewriting older opset forms into the IR's canonical ones.
//! [`writer`] builds ONNX models and tensor files from Rust, for tests, benches and examples.
pub mod attrs;
pub mod error;
pub mod import;
pub mod ops;
pub mod tensor;
pub mod writer;

/// The prost types generated from `proto/onnx.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use error::ImportError;
pub use import::{ImportOptions, Imported, NEWEST_OPSET, load_model, load_model_bytes};
pub use tensor::{load_tensor_pb, tensor_from_proto, tensor_to_proto};
