//! Shapes and value types: a dimension is a fixed size or a named symbol (bound by specialization);
//! a value's type is its dtype plus its shape, or an unknown rank before shape inference has run.
use crate::DType;
use std::fmt;

/// Largest rank shape inference will derive from a tensor's length (a Reshape target, Unsqueeze
/// axes): far beyond real models, small enough that a lying length is never allocated as a rank.
pub const MAX_RANK: usize = 1024;

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    /// A symbolic dimension (ONNX `dim_param`), bound later by `--dim NAME=VALUE`.
    Sym(String),
    /// A dimension nothing has determined yet.
    Unknown,
}

/// A tensor shape; `None` in a [`ValueType`] means the rank itself is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The concrete dims, if every dimension is fixed.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

/// The static type of a value: element type and (possibly partial) shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub dtype: DType,
    pub shape: Option<Shape>,
}

impl ValueType {
    pub fn new(dtype: DType, shape: Option<Shape>) -> ValueType {
        ValueType { dtype, shape }
    }

    pub fn fixed(dtype: DType, dims: &[usize]) -> ValueType {
        ValueType {
            dtype,
            shape: Some(Shape::fixed(dims)),
        }
    }

    pub fn unknown_shape(dtype: DType) -> ValueType {
        ValueType { dtype, shape: None }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shape {
            Some(s) => write!(f, "{}{}", self.dtype, s),
            None => write!(f, "{}[*]", self.dtype),
        }
    }
}

/// Product of dims with overflow checking and a cap in elements; `None` on overflow or over cap.
pub fn checked_numel(dims: &[usize], cap: usize) -> Option<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d)?;
    }
    (n <= cap).then_some(n)
}
