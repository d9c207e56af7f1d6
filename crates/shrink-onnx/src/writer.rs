//! Builds ONNX models in Rust (tests, benches and the shipped example model are made with it, so
//! no Python is needed) and writes tensors as `.pb` files.
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto, attribute_proto::AttributeType, tensor_shape_proto, type_proto,
};
use crate::tensor::tensor_to_proto;
use prost::Message;
use shrink_ir::{DType, Tensor};

/// An attribute value for [`ModelBuilder::node`].
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Tensor),
}

/// Incrementally builds a single-graph ONNX model.
#[derive(Clone, Debug)]
pub struct ModelBuilder {
    graph: GraphProto,
    opset: i64,
}

/// A dimension in a declared input/output shape.
#[derive(Clone, Debug)]
pub enum WDim {
    Fixed(usize),
    Sym(String),
}

impl From<usize> for WDim {
    fn from(n: usize) -> WDim {
        WDim::Fixed(n)
    }
}

impl From<&str> for WDim {
    fn from(s: &str) -> WDim {
        WDim::Sym(s.into())
    }
}

fn value_info(name: &str, dtype: DType, dims: &[WDim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                WDim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                WDim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype.onnx_code(),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

impl ModelBuilder {
    /// A model named `name` importing the default domain at `opset`.
    pub fn new(name: &str, opset: i64) -> ModelBuilder {
        ModelBuilder {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
            opset,
        }
    }

    pub fn input(&mut self, name: &str, dtype: DType, dims: &[WDim]) -> &mut Self {
        self.graph.input.push(value_info(name, dtype, dims));
        self
    }

    pub fn output(&mut self, name: &str, dtype: DType, dims: &[WDim]) -> &mut Self {
        self.graph.output.push(value_info(name, dtype, dims));
        self
    }

    /// A graph output with a dtype but no declared shape (shape inference decides).
    pub fn output_unshaped(&mut self, name: &str, dtype: DType) -> &mut Self {
        let mut vi = value_info(name, dtype, &[]);
        if let Some(TypeProto {
            value: Some(type_proto::Value::TensorType(t)),
            ..
        }) = vi.r#type.as_mut()
        {
            t.shape = None;
        }
        self.graph.output.push(vi);
        self
    }

    pub fn initializer(&mut self, name: &str, t: &Tensor) -> &mut Self {
        self.graph.initializer.push(tensor_to_proto(t, name));
        self
    }

    /// Adds a node; `""` in `inputs` is an absent optional input.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> &mut Self {
        let attribute = attrs.iter().map(|(n, a)| attribute(n, a)).collect();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
        self
    }

    /// The finished model proto.
    pub fn model(&self) -> ModelProto {
        ModelProto {
            ir_version: 10,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "shrink".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
    }

    /// The serialized model (deterministic: same builder calls, same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model().encode_to_vec()
    }
}

fn attribute(name: &str, a: &Attr) -> AttributeProto {
    let mut p = AttributeProto {
        name: name.into(),
        ..Default::default()
    };
    let ty = match a {
        Attr::Int(i) => {
            p.i = *i;
            AttributeType::Int
        }
        Attr::Float(f) => {
            p.f = *f;
            AttributeType::Float
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            AttributeType::Ints
        }
        Attr::Floats(v) => {
            p.floats = v.clone();
            AttributeType::Floats
        }
        Attr::Str(s) => {
            p.s = s.clone().into_bytes().into();
            AttributeType::String
        }
        Attr::Tensor(t) => {
            p.t = Some(tensor_to_proto(t, ""));
            AttributeType::Tensor
        }
    };
    p.r#type = ty as i32;
    p
}

/// Serializes a tensor as a TensorProto `.pb` file body.
pub fn tensor_pb_bytes(t: &Tensor, name: &str) -> Vec<u8> {
    tensor_to_proto(t, name).encode_to_vec()
}
