//! TensorProto ⇄ [`Tensor`]: raw_data (zero-copy), the typed repeated fields, external data files
//! (confined to the model's folder), the packing of sub-byte types, and string tensors (always in
//! `string_data`, one byte string per element).
use crate::proto::{StringStringEntryProto, TensorProto, tensor_proto::DataLocation};
use bytes::Bytes;
use prost::Message;
use shrink_ir::{DType, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Resolves `location` entries of external tensors relative to the model's folder, mapping each
/// data file once.
pub struct ExternalData {
    dir: PathBuf,
    files: RefCell<HashMap<PathBuf, Bytes>>,
}

impl ExternalData {
    pub fn new(model_dir: &Path) -> ExternalData {
        ExternalData {
            dir: model_dir.to_path_buf(),
            files: RefCell::new(HashMap::new()),
        }
    }

    fn load(&self, location: &str) -> Result<Bytes, String> {
        let rel = Path::new(location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "external data location '{location}' must be a relative path inside the model's folder"
            ));
        }
        let path = self.dir.join(rel);
        let real = path
            .canonicalize()
            .map_err(|e| format!("external data file '{location}': {e}"))?;
        let root = self
            .dir
            .canonicalize()
            .map_err(|e| format!("model folder: {e}"))?;
        if !real.starts_with(&root) {
            return Err(format!(
                "external data file '{location}' resolves outside the model's folder"
            ));
        }
        if let Some(b) = self.files.borrow().get(&real) {
            return Ok(b.clone());
        }
        let file = std::fs::File::open(&real)
            .map_err(|e| format!("external data file '{location}': {e}"))?;
        // SAFETY: the mapping is read-only; shrink never writes model files, and a concurrent
        // truncation by another process is outside what any mmap-based loader can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("external data file '{location}': {e}"))?;
        let b = Bytes::from_owner(map);
        self.files.borrow_mut().insert(real, b.clone());
        Ok(b)
    }
}

fn entry<'a>(list: &'a [StringStringEntryProto], key: &str) -> Option<&'a str> {
    list.iter().find(|e| e.key == key).map(|e| e.value.as_str())
}

/// Decodes a TensorProto. `cap` bounds the decoded size in bytes (checked before allocating).
pub fn tensor_from_proto(
    t: &TensorProto,
    ext: Option<&ExternalData>,
    cap: usize,
) -> Result<Tensor, String> {
    let dtype = match t.data_type {
        14 | 15 => return Err("complex tensors are not supported".into()),
        c => DType::from_onnx(c).ok_or_else(|| format!("unknown tensor data type {c}"))?,
    };
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension {d} in {:?}", t.dims));
        }
        dims.push(usize::try_from(d).map_err(|_| format!("dimension {d} is too large"))?);
    }
    if dtype == DType::String {
        return string_tensor(t, dims, cap);
    }
    let numel = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let numel = match numel.filter(|n| n.checked_mul(dtype.size()).is_some_and(|b| b <= cap)) {
        Some(n) => n,
        None => {
            return Err(format!(
                "shape {:?} of {dtype} exceeds the memory cap of {cap} bytes",
                dims
            ));
        }
    };
    let wire_bytes = (numel * dtype.wire_bits()).div_ceil(8);
    let raw: Option<Bytes> = if t.data_location == DataLocation::External as i32 {
        let ext = ext.ok_or("external data is only allowed in model initializers")?;
        let location =
            entry(&t.external_data, "location").ok_or("external data without a location")?;
        let file = ext.load(location)?;
        let parse = |k: &str| -> Result<Option<usize>, String> {
            entry(&t.external_data, k)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| format!("bad external data {k} '{v}'"))
                })
                .transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?.unwrap_or(file.len().saturating_sub(offset));
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= file.len())
            .ok_or_else(|| {
                format!(
                    "external data {offset}+{length} lies outside '{location}' ({} bytes)",
                    file.len()
                )
            })?;
        Some(file.slice(offset..end))
    } else if !t.raw_data.is_empty() || numel == 0 {
        Some(t.raw_data.clone())
    } else {
        None
    };
    let bytes: Bytes = match raw {
        Some(raw) => {
            if raw.len() != wire_bytes {
                return Err(format!(
                    "raw data has {} bytes, {dtype}{dims:?} needs {wire_bytes}",
                    raw.len()
                ));
            }
            match dtype.wire_bits() {
                // Big-endian hosts would need a byte swap here; shrink's hosts are little-endian.
                b if b >= 8 => raw,
                b => {
                    let mut v = unpack_bits(&raw, b, numel);
                    sign_extend(dtype, &mut v);
                    Bytes::from(v)
                }
            }
        }
        None => typed_fields(t, dtype, numel)?,
    };
    Tensor::from_bytes(dtype, dims, bytes).map_err(|e| e.to_string())
}

/// A string tensor from `string_data` (ONNX stores strings nowhere else). The strings are already
/// in memory; `cap` bounds their total length.
fn string_tensor(t: &TensorProto, dims: Vec<usize>, cap: usize) -> Result<Tensor, String> {
    if t.data_location == DataLocation::External as i32 || !t.raw_data.is_empty() {
        return Err("string tensors must keep their elements in string_data".into());
    }
    let total = t
        .string_data
        .iter()
        .try_fold(0usize, |a, s| a.checked_add(s.len()));
    if total.is_none_or(|b| b > cap) {
        return Err(format!(
            "string tensor of shape {dims:?} exceeds the memory cap of {cap} bytes"
        ));
    }
    Tensor::from_strings(dims, t.string_data.clone()).map_err(|e| e.to_string())
}

fn unpack_bits(packed: &[u8], bits: usize, numel: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = (1u8 << bits) - 1;
    (0..numel)
        .map(|i| (packed[i / per] >> ((i % per) * bits)) & mask)
        .collect()
}

fn pack_bits(unpacked: &[u8], bits: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let mut out = vec![0u8; unpacked.len().div_ceil(per)];
    for (i, &v) in unpacked.iter().enumerate() {
        out[i / per] |= (v & mask) << ((i % per) * bits);
    }
    out
}

/// Sign-extends unpacked signed sub-byte values so that the stored byte reads as the i8 value.
fn sign_extend(dtype: DType, v: &mut [u8]) {
    let bits = dtype.wire_bits() as u32;
    if dtype.is_signed_int() && bits < 8 {
        for x in v {
            *x = (((*x << (8 - bits)) as i8) >> (8 - bits)) as u8;
        }
    }
}

fn count(have: usize, numel: usize, field: &str) -> Result<(), String> {
    if have == numel {
        Ok(())
    } else {
        Err(format!(
            "{field} has {have} values, the shape needs {numel}"
        ))
    }
}

fn typed_fields(t: &TensorProto, dtype: DType, numel: usize) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(numel * dtype.size());
    match dtype {
        DType::F32 => {
            count(t.float_data.len(), numel, "float_data")?;
            t.float_data
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes()));
        }
        DType::F64 => {
            count(t.double_data.len(), numel, "double_data")?;
            t.double_data
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes()));
        }
        DType::I64 => {
            count(t.int64_data.len(), numel, "int64_data")?;
            t.int64_data
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes()));
        }
        DType::U32 | DType::U64 => {
            count(t.uint64_data.len(), numel, "uint64_data")?;
            t.uint64_data
                .iter()
                .for_each(|v| out.extend(&v.to_le_bytes()[..dtype.size()]));
        }
        d if d.wire_bits() < 8 => {
            // int32_data holds one packed byte per entry for the sub-byte types.
            let per = 8 / d.wire_bits();
            count(t.int32_data.len(), numel.div_ceil(per), "int32_data")?;
            let packed: Vec<u8> = t.int32_data.iter().map(|&v| v as u8).collect();
            out = unpack_bits(&packed, d.wire_bits(), numel);
            sign_extend(d, &mut out);
        }
        _ => {
            // int32_data carries every remaining type, one element per entry (f16/bf16 and the
            // float8 formats as their bit patterns).
            count(t.int32_data.len(), numel, "int32_data")?;
            t.int32_data
                .iter()
                .for_each(|v| out.extend(&v.to_le_bytes()[..dtype.size()]));
        }
    }
    Ok(Bytes::from(out))
}

/// Encodes a tensor as a TensorProto with raw_data (sub-byte types packed as ONNX expects), or
/// string_data for strings.
pub fn tensor_to_proto(t: &Tensor, name: &str) -> TensorProto {
    let mut p = TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: t.dtype().onnx_code(),
        name: name.to_string(),
        ..Default::default()
    };
    match (t.strings(), t.dtype().wire_bits()) {
        (Some(s), _) => p.string_data = s.to_vec(),
        (None, b) if b >= 8 => p.raw_data = t.bytes().clone(),
        (None, b) => p.raw_data = Bytes::from(pack_bits(t.bytes(), b)),
    }
    p
}

/// Reads a serialized TensorProto file (`input_0.pb`), returning its name and tensor.
pub fn load_tensor_pb(path: &Path, cap: usize) -> Result<(String, Tensor), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proto = TensorProto::decode(Bytes::from(data))
        .map_err(|e| format!("{}: not a TensorProto: {e}", path.display()))?;
    let t = tensor_from_proto(&proto, None, cap).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((proto.name, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_round_trips_through_packing() {
        let vals: Vec<i8> = vec![-8, 7, -1, 0, 3];
        let t = Tensor::from_vec_as(DType::I4, vec![5], vals.clone());
        let p = tensor_to_proto(&t, "x");
        assert_eq!(p.raw_data.len(), 3);
        let back = tensor_from_proto(&p, None, 1 << 20).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.get_i64(0), -8);
        assert_eq!(back.get_i64(2), -1);
    }

    #[test]
    fn strings_round_trip_through_string_data() {
        let s: Vec<Bytes> = vec![Bytes::from_static(b"a\xff"), Bytes::new()];
        let t = Tensor::from_strings(vec![2, 1], s).unwrap();
        let p = tensor_to_proto(&t, "s");
        assert!(p.raw_data.is_empty());
        assert_eq!(tensor_from_proto(&p, None, 1 << 20).unwrap(), t);
        assert!(
            tensor_from_proto(&p, None, 1)
                .unwrap_err()
                .contains("memory cap")
        );
        let mut short = p.clone();
        short.string_data.pop();
        assert!(tensor_from_proto(&short, None, 1 << 20).is_err());
    }
}
