//! Dense tensors: dtype + dims + little-endian bytes. Constants imported from a model keep their
//! bytes as a zero-copy `Bytes` slice of the memory-mapped file; computed tensors own theirs.
//!
//! String tensors keep their elements (arbitrary byte strings, as ONNX allows) in a separate
//! shared list and have an empty byte buffer, so code that reads elements from the bytes sees
//! no data rather than misreading string contents as numbers. Their numeric accessors are
//! well-defined but meaningless (`get_f64` is NaN, `get_i64` is 0, `to_vec` is `None`): callers
//! that may see strings check [`Tensor::strings`] first.
use crate::DType;
use bytes::Bytes;
use half::{bf16, f16};
use std::fmt;
use std::sync::Arc;

/// A dense row-major tensor. Sub-byte dtypes hold one element per byte (see [`DType`]).
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DType,
    dims: Vec<usize>,
    /// The elements of every numeric dtype; empty for `String`.
    bytes: Bytes,
    /// The elements of a `String` tensor (`Some` exactly when the dtype is `String`).
    strings: Option<Arc<[Bytes]>>,
}

/// Raised when a tensor's data does not match its dtype and dims.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TensorSizeError {
    #[error("tensor of {dtype}{dims:?} needs {expected} bytes, got {got}")]
    Bytes {
        dtype: DType,
        dims: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("string tensor of shape {dims:?} needs {expected} strings, got {got}")]
    Strings {
        dims: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("string tensors are built from strings, not bytes")]
    StringFromBytes,
}

fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl Tensor {
    /// Wraps bytes (unpacked little-endian layout) as a tensor, checking the length. Not for
    /// `String` (see [`Tensor::from_strings`]).
    pub fn from_bytes(
        dtype: DType,
        dims: Vec<usize>,
        bytes: Bytes,
    ) -> Result<Tensor, TensorSizeError> {
        if dtype == DType::String {
            return Err(TensorSizeError::StringFromBytes);
        }
        let expected = numel(&dims).and_then(|n| n.checked_mul(dtype.size()));
        match expected {
            Some(e) if e == bytes.len() => Ok(Tensor {
                dtype,
                dims,
                bytes,
                strings: None,
            }),
            _ => Err(TensorSizeError::Bytes {
                dtype,
                dims,
                expected: expected.unwrap_or(usize::MAX),
                got: bytes.len(),
            }),
        }
    }

    /// A `String` tensor of the given elements (row-major), checking their count.
    pub fn from_strings(dims: Vec<usize>, strings: Vec<Bytes>) -> Result<Tensor, TensorSizeError> {
        match numel(&dims) {
            Some(n) if n == strings.len() => Ok(Tensor {
                dtype: DType::String,
                dims,
                bytes: Bytes::new(),
                strings: Some(strings.into()),
            }),
            n => Err(TensorSizeError::Strings {
                dims,
                expected: n.unwrap_or(usize::MAX),
                got: strings.len(),
            }),
        }
    }

    /// Builds a tensor from typed elements. Panics if `dims` does not match `data.len()`
    /// (a programming error: callers construct both).
    pub fn from_vec<T: Element>(dims: Vec<usize>, data: Vec<T>) -> Tensor {
        Tensor::from_vec_as(T::DTYPE, dims, data)
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
        let n = data.len();
        let shown = dims.clone();
        Tensor::from_elements(dtype, dims, data.into_iter())
            .unwrap_or_else(|| panic!("dims {shown:?} vs {n} elements"))
    }

    /// A tensor of a byte-sized dtype whose elements are raw bit patterns (narrow floats, sub-byte ints).
    pub fn from_bits(dtype: DType, dims: Vec<usize>, bits: Vec<u8>) -> Tensor {
        assert_eq!(dtype.size(), 1);
        assert_eq!(dims.iter().product::<usize>(), bits.len());
        Tensor {
            dtype,
            dims,
            bytes: Bytes::from(bits),
            strings: None,
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

    /// The number of elements.
    pub fn len(&self) -> usize {
        match &self.strings {
            Some(s) => s.len(),
            None => self.bytes.len() / self.dtype.size(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element bytes (empty for a `String` tensor).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The elements of a `String` tensor; `None` for every other dtype.
    pub fn strings(&self) -> Option<&[Bytes]> {
        self.strings.as_deref()
    }

    /// Same data, new dims (an error if the element count differs).
    pub fn reshaped(&self, dims: Vec<usize>) -> Result<Tensor, TensorSizeError> {
        match &self.strings {
            Some(s) => Tensor::from_strings(dims, s.to_vec()),
            None => Tensor::from_bytes(self.dtype, dims, self.bytes.clone()),
        }
    }

    /// Copies the elements out as `T`; `None` if `T` is not this tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Option<Vec<T>> {
        self.elements::<T>().map(Iterator::collect)
    }

    /// The elements as `T`, read in place; `None` if `T` is not this tensor's storage type.
    pub fn elements<T: Element>(&self) -> Option<impl ExactSizeIterator<Item = T> + Clone + '_> {
        if T::DTYPE != self.dtype && !(T::DTYPE == DType::U8 && self.dtype.size() == 1) {
            return None;
        }
        Some(self.bytes.chunks_exact(T::DTYPE.size()).map(T::read_le))
    }

    /// A tensor of `dtype` (stored as `T`) and `dims` from its elements, encoded straight into
    /// its bytes (no intermediate vector); `None` unless there are exactly `numel(dims)` of them
    /// and `T` has `dtype`'s size.
    pub fn from_elements<T: Element>(
        dtype: DType,
        dims: Vec<usize>,
        items: impl Iterator<Item = T>,
    ) -> Option<Tensor> {
        if dtype.size() != T::DTYPE.size() || dtype == DType::String {
            return None;
        }
        let n = numel(&dims)?;
        let size = T::DTYPE.size();
        let mut bytes = vec![0u8; n.checked_mul(size)?];
        let mut items = items;
        for out in bytes.chunks_exact_mut(size) {
            items.next()?.write_le(out);
        }
        if items.next().is_some() {
            return None;
        }
        Some(Tensor {
            dtype,
            dims,
            bytes: Bytes::from(bytes),
            strings: None,
        })
    }

    /// Every element widened to f64 (integers exactly up to 2^53; narrow floats are decoded).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.len());
        self.try_for_each_f64(|_, v| {
            out.push(v);
            true
        });
        out
    }

    /// Calls `f(index, value)` for every element widened to f64, in memory order, until it
    /// returns `false`; returns whether it went through all of them. Nothing is allocated, which
    /// matters for weights of hundreds of megabytes; the common float dtypes decode in one tight
    /// loop, the rest element by element.
    pub fn try_for_each_f64(&self, mut f: impl FnMut(usize, f64) -> bool) -> bool {
        let b = &self.bytes[..];
        match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .enumerate()
                .all(|(i, c)| f(i, f32::read_le(c) as f64)),
            DType::F64 => b
                .chunks_exact(8)
                .enumerate()
                .all(|(i, c)| f(i, f64::read_le(c))),
            DType::F16 => b
                .chunks_exact(2)
                .enumerate()
                .all(|(i, c)| f(i, f16::read_le(c).to_f64())),
            DType::BF16 => b
                .chunks_exact(2)
                .enumerate()
                .all(|(i, c)| f(i, bf16::read_le(c).to_f64())),
            _ => (0..self.len()).all(|i| f(i, self.get_f64(i))),
        }
    }

    /// How many elements are zero (of either sign).
    pub fn count_zeros(&self) -> usize {
        let mut zeros = 0;
        self.try_for_each_f64(|_, v| {
            zeros += usize::from(v == 0.0);
            true
        });
        zeros
    }

    /// Every element as i64 (floats truncated toward zero, saturating; u64 wraps).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        (0..self.len()).map(|i| self.get_i64(i)).collect()
    }

    fn elem(&self, i: usize) -> &[u8] {
        let s = self.dtype.size();
        &self.bytes[i * s..(i + 1) * s]
    }

    /// Element `i` widened to f64 (NaN for a string, which has no numeric value).
    pub fn get_f64(&self, i: usize) -> f64 {
        let b = self.elem(i);
        match self.dtype {
            DType::String => f64::NAN,
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

    /// Element `i` as i64 (for index and shape tensors; 0 for a string).
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
        match &self.strings {
            Some(s) => write!(
                f,
                "Tensor({}{:?}, {} strings)",
                self.dtype,
                self.dims,
                s.len()
            ),
            None => write!(
                f,
                "Tensor({}{:?}, {} bytes)",
                self.dtype,
                self.dims,
                self.bytes.len()
            ),
        }
    }
}

/// A Rust type that is the storage of one dtype.
pub trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn read_le(b: &[u8]) -> Self;
    /// Writes the element into `out`, which is exactly its size.
    fn write_le(&self, out: &mut [u8]);
}

macro_rules! le_element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn read_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("chunk of element size"))
            }
            fn write_le(&self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
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
    fn write_le(&self, out: &mut [u8]) {
        out[0] = *self as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_tensors_keep_their_elements_apart_from_bytes() {
        let s = vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from_static(b"\xff"),
        ];
        let t = Tensor::from_strings(vec![3, 1], s.clone()).unwrap();
        assert_eq!(
            (t.len(), t.is_empty(), t.dtype()),
            (3, false, DType::String)
        );
        assert_eq!(t.strings(), Some(&s[..]));
        assert!(t.bytes().is_empty());
        // Numeric accessors are defined but carry no value.
        assert!(t.get_f64(2).is_nan());
        assert_eq!(t.get_i64(0), 0);
        assert_eq!(t.to_vec::<u8>(), None);
        assert_eq!(t.reshaped(vec![3]).unwrap().strings(), Some(&s[..]));
        assert!(t.reshaped(vec![2]).is_err());
        assert!(Tensor::from_strings(vec![2], s).is_err());
        assert_eq!(
            Tensor::from_bytes(DType::String, vec![0], Bytes::new()),
            Err(TensorSizeError::StringFromBytes)
        );
        assert!(Tensor::from_strings(vec![0], vec![]).unwrap().is_empty());
        assert_eq!(Tensor::scalar(1.0f32).strings(), None);
        assert_eq!(format!("{t:?}"), "Tensor(string[3, 1], 3 strings)");
    }
}
