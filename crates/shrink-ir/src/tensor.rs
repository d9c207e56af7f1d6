//! Dense tensors: dtype + dims + little-endian bytes. Constants imported from a model keep their
//! bytes as a zero-copy `Bytes` slice of the memory-mapped file; computed tensors own theirs.
use crate::DType;
use bytes::Bytes;
use half::{bf16, f16};
use std::fmt;

/// A dense row-major tensor. Sub-byte dtypes hold one element per byte (see [`DType`]).
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DType,
    dims: Vec<usize>,
    bytes: Bytes,
}

/// Raised when a tensor's byte length does not match its dtype and dims.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tensor of {dtype}{dims:?} needs {expected} bytes, got {got}")]
pub struct TensorSizeError {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub expected: usize,
    pub got: usize,
}

impl Tensor {
    /// Wraps bytes (unpacked little-endian layout) as a tensor, checking the length.
    pub fn from_bytes(
        dtype: DType,
        dims: Vec<usize>,
        bytes: Bytes,
    ) -> Result<Tensor, TensorSizeError> {
        let numel = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let expected = numel.and_then(|n| n.checked_mul(dtype.size()));
        match expected {
            Some(e) if e == bytes.len() => Ok(Tensor { dtype, dims, bytes }),
            _ => Err(TensorSizeError {
                dtype,
                dims,
                expected: expected.unwrap_or(usize::MAX),
                got: bytes.len(),
            }),
        }
    }

    /// Builds a tensor from typed elements. Panics if `dims` does not match `data.len()`
    /// (a programming error: callers construct both).
    pub fn from_vec<T: Element>(dims: Vec<usize>, data: Vec<T>) -> Tensor {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "dims {dims:?} vs {} elements",
            data.len()
        );
        let mut bytes = Vec::with_capacity(data.len() * T::DTYPE.size());
        for v in &data {
            v.write_le(&mut bytes);
        }
        Tensor {
            dtype: T::DTYPE,
            dims,
            bytes: Bytes::from(bytes),
        }
    }

    /// Builds a tensor of `dtype` from elements of a storage type with the same size (e.g. the
    /// bit patterns of an i8/f8 tensor moved as `u8`).
    pub fn from_vec_as<T: Element>(dtype: DType, dims: Vec<usize>, data: Vec<T>) -> Tensor {
        assert_eq!(
            dtype.size(),
            T::DTYPE.size(),
            "{dtype} stored as {}",
            T::DTYPE
        );
        let t = Tensor::from_vec(dims, data);
        Tensor { dtype, ..t }
    }

    /// A tensor of a byte-sized dtype whose elements are raw bit patterns (narrow floats, sub-byte ints).
    pub fn from_bits(dtype: DType, dims: Vec<usize>, bits: Vec<u8>) -> Tensor {
        assert_eq!(dtype.size(), 1);
        assert_eq!(dims.iter().product::<usize>(), bits.len());
        Tensor {
            dtype,
            dims,
            bytes: Bytes::from(bits),
        }
    }

    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor::from_vec(vec![], vec![v])
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Same data, new dims (caller guarantees the element count matches).
    pub fn reshaped(&self, dims: Vec<usize>) -> Result<Tensor, TensorSizeError> {
        Tensor::from_bytes(self.dtype, dims, self.bytes.clone())
    }

    /// Copies the elements out as `T`; `None` if `T` is not this tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Option<Vec<T>> {
        if T::DTYPE != self.dtype && !(T::DTYPE == DType::U8 && self.dtype.size() == 1) {
            return None;
        }
        Some(
            self.bytes
                .chunks_exact(T::DTYPE.size())
                .map(T::read_le)
                .collect(),
        )
    }

    /// Every element widened to f64 (integers exactly up to 2^53; narrow floats are decoded).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get_f64(i)).collect()
    }

    /// Every element as i64 (floats truncated toward zero, saturating; u64 wraps).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        (0..self.len()).map(|i| self.get_i64(i)).collect()
    }

    fn elem(&self, i: usize) -> &[u8] {
        let s = self.dtype.size();
        &self.bytes[i * s..(i + 1) * s]
    }

    /// Element `i` widened to f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        let b = self.elem(i);
        match self.dtype {
            DType::F32 => f32::read_le(b) as f64,
            DType::F64 => f64::read_le(b),
            DType::F16 => f16::read_le(b).to_f64(),
            DType::BF16 => bf16::read_le(b).to_f64(),
            DType::I8 => b[0] as i8 as f64,
            DType::U8 => b[0] as f64,
            DType::I16 => i16::read_le(b) as f64,
            DType::U16 => u16::read_le(b) as f64,
            DType::I32 => i32::read_le(b) as f64,
            DType::U32 => u32::read_le(b) as f64,
            DType::I64 => i64::read_le(b) as f64,
            DType::U64 => u64::read_le(b) as f64,
            DType::Bool => (b[0] != 0) as u8 as f64,
            DType::I4 | DType::I2 => b[0] as i8 as f64,
            DType::U4 | DType::U2 => b[0] as f64,
            d => crate::narrow::decode(d, b[0]) as f64,
        }
    }

    /// Element `i` as i64 (for index and shape tensors).
    pub fn get_i64(&self, i: usize) -> i64 {
        let b = self.elem(i);
        match self.dtype {
            DType::I64 => i64::read_le(b),
            DType::U64 => u64::read_le(b) as i64,
            DType::I32 => i32::read_le(b) as i64,
            DType::U32 => u32::read_le(b) as i64,
            DType::I16 => i16::read_le(b) as i64,
            DType::U16 => u16::read_le(b) as i64,
            DType::I8 | DType::I4 | DType::I2 => b[0] as i8 as i64,
            DType::U8 | DType::U4 | DType::U2 | DType::Bool => b[0] as i64,
            _ => self.get_f64(i) as i64,
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}{:?}, {} bytes)",
            self.dtype,
            self.dims,
            self.bytes.len()
        )
    }
}

/// A Rust type that is the storage of one dtype.
pub trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn read_le(b: &[u8]) -> Self;
    fn write_le(&self, out: &mut Vec<u8>);
}

macro_rules! le_element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn read_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("chunk of element size"))
            }
            fn write_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_element!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64,
    i64 => I64, f32 => F32, f64 => F64, f16 => F16, bf16 => BF16);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn read_le(b: &[u8]) -> Self {
        b[0] != 0
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}
