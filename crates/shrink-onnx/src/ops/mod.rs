//! The import-time op registry: ONNX `op_type` → builder producing a typed [`Op`] and its inputs,
//! rewriting older opset forms into the IR's canonical one. One module per family, each with a
//! `lookup` that the registry chains (tract's `register_all_ops` idea, as a match).
pub mod elementwise;
pub mod layout;
pub mod nn;
pub mod reduce;

use crate::attrs::Attrs;
use crate::proto::NodeProto;
use shrink_ir::{DType, Op, Tensor, Value};

/// What a builder sees of a node.
pub struct NodeIn<'a> {
    pub proto: &'a NodeProto,
    pub attrs: Attrs<'a>,
    /// The model's default-domain opset version.
    pub opset: i64,
    /// Resolved inputs (`None` for an empty name).
    pub inputs: Vec<Option<Value>>,
    /// Their dtypes.
    pub input_types: Vec<Option<DType>>,
    /// Memory cap for decoded attribute tensors.
    pub cap: usize,
}

/// One input of the built node.
pub enum Input {
    Value(Value),
    Const(Tensor),
    Absent,
}

/// A builder's result.
pub struct Built {
    pub op: Op,
    pub inputs: Vec<Input>,
}

impl NodeIn<'_> {
    /// The node's inputs unchanged.
    pub fn same_inputs(&self) -> Vec<Input> {
        self.inputs
            .iter()
            .map(|v| v.map_or(Input::Absent, Input::Value))
            .collect()
    }

    /// The op with the node's inputs unchanged.
    pub fn keep(&self, op: Op) -> Result<Built, String> {
        Ok(Built {
            op,
            inputs: self.same_inputs(),
        })
    }

    /// Inputs with `extra` appended at `slot` (padding with absent slots), used when an older
    /// opset's attribute becomes an input.
    pub fn with_input_at(&self, slot: usize, extra: Input) -> Vec<Input> {
        let mut ins = self.same_inputs();
        while ins.len() < slot {
            ins.push(Input::Absent);
        }
        ins.truncate(slot);
        ins.push(extra);
        ins
    }

    pub fn input_dtype(&self, i: usize) -> Result<DType, String> {
        self.input_types
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("required input {i} is missing"))
    }
}

/// An INTS attribute turned into a 1-D i64 constant input.
pub fn ints_const(v: &[i64]) -> Input {
    Input::Const(Tensor::from_vec(vec![v.len()], v.to_vec()))
}

/// A scalar of `dtype` holding `v` (for attributes that became typed inputs, e.g. Clip bounds).
pub fn scalar_const(dtype: DType, v: f64) -> Result<Input, String> {
    use half::{bf16, f16};
    let t = match dtype {
        DType::F32 => Tensor::scalar(v as f32),
        DType::F64 => Tensor::scalar(v),
        DType::F16 => Tensor::scalar(f16::from_f64(v)),
        DType::BF16 => Tensor::scalar(bf16::from_f64(v)),
        DType::I8 => Tensor::scalar(v as i8),
        DType::U8 => Tensor::scalar(v as u8),
        DType::I16 => Tensor::scalar(v as i16),
        DType::U16 => Tensor::scalar(v as u16),
        DType::I32 => Tensor::scalar(v as i32),
        DType::U32 => Tensor::scalar(v as u32),
        DType::I64 => Tensor::scalar(v as i64),
        DType::U64 => Tensor::scalar(v as u64),
        d => return Err(format!("cannot make a {d} constant")),
    };
    Ok(Input::Const(t))
}

/// The error of a builder reached with an `op_type` its family table lists but it does not
/// handle: a registry bug, reported instead of building some other op.
pub fn no_builder(op_type: &str) -> String {
    format!("internal error: the importer lists '{op_type}' but has no builder for it")
}

pub type Builder = fn(&NodeIn<'_>) -> Result<Built, String>;

/// The builder for a default-domain `op_type`.
pub fn lookup(op_type: &str) -> Option<Builder> {
    elementwise::lookup(op_type)
        .or_else(|| nn::lookup(op_type))
        .or_else(|| reduce::lookup(op_type))
        .or_else(|| layout::lookup(op_type))
}

/// Finds `op_type` in a family's table of (names, builder).
pub fn lookup_table(op_type: &str, table: &[(&[&str], Builder)]) -> Option<Builder> {
    table
        .iter()
        .find(|(names, _)| names.contains(&op_type))
        .map(|(_, b)| *b)
}
