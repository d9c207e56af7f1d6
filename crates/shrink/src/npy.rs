//! Reading and writing numpy `.npy` files (C order; little-endian numeric and bool dtypes), so that
//! `shrink run --input NAME=FILE.npy` accepts what numpy users have at hand.
use shrink_ir::{DType, Tensor};

fn dtype_of(descr: &str) -> Option<DType> {
    Some(match descr.trim_start_matches(['<', '|', '=']) {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "f2" => DType::F16,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        "b1" => DType::Bool,
        _ => return None,
    })
}

fn descr_of(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        _ => return None,
    })
}

/// The value of `'key': value` in the header dict (value up to the next top-level comma).
fn header_field<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let start = h.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = h[start..].trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        return rest.find(')').map(|e| &rest[..=e]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Parses a `.npy` file body.
pub fn parse_npy(data: &[u8], cap: usize) -> Result<Tensor, String> {
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, hstart) = match data[6] {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10usize),
        2 | 3 if data.len() >= 12 => (
            u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let hend = hstart
        .checked_add(hlen)
        .filter(|&e| e <= data.len())
        .ok_or("truncated .npy header")?;
    let header =
        std::str::from_utf8(&data[hstart..hend]).map_err(|_| "the .npy header is not text")?;
    let descr = header_field(header, "descr")
        .ok_or("the .npy header has no descr")?
        .trim_matches(['\'', '"']);
    let dtype = dtype_of(descr)
        .filter(|_| !descr.starts_with('>'))
        .ok_or_else(|| format!("unsupported .npy dtype '{descr}'"))?;
    if header_field(header, "fortran_order") == Some("True") {
        return Err("Fortran-order .npy arrays are not supported".into());
    }
    let shape = header_field(header, "shape").ok_or("the .npy header has no shape")?;
    let dims: Vec<usize> = shape
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad .npy shape {shape}"))
        })
        .collect::<Result<_, _>>()?;
    let bytes = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()))
        .filter(|&b| b <= cap)
        .ok_or_else(|| format!("the .npy shape {dims:?} exceeds the memory cap"))?;
    let body = &data[hend..];
    if body.len() != bytes {
        return Err(format!(
            "the .npy body has {} bytes, the shape needs {bytes}",
            body.len()
        ));
    }
    Tensor::from_bytes(dtype, dims, body.to_vec().into()).map_err(|e| e.to_string())
}

/// Serializes a tensor as `.npy` (version 1.0).
pub fn write_npy(t: &Tensor) -> Result<Vec<u8>, String> {
    let descr =
        descr_of(t.dtype()).ok_or_else(|| format!("{} has no .npy equivalent", t.dtype()))?;
    let shape = match t.dims() {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(t.bytes().iter());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let t = Tensor::from_vec(vec![2, 3], vec![1.5f32, -2.0, 0.0, 4.0, 5.25, -6.0]);
        let back = parse_npy(&write_npy(&t).unwrap(), 1 << 20).unwrap();
        assert_eq!(back, t);
        let s = Tensor::from_vec(vec![3], vec![1i64, -2, 3]);
        assert_eq!(parse_npy(&write_npy(&s).unwrap(), 1 << 20).unwrap(), s);
    }

    #[test]
    fn string_tensors_have_no_npy_form() {
        let t = Tensor::from_strings(vec![1], vec!["a".into()]).unwrap();
        assert_eq!(write_npy(&t).unwrap_err(), "string has no .npy equivalent");
    }

    #[test]
    fn npy_rejects_truncated_body() {
        let t = Tensor::from_vec(vec![4], vec![1i32, 2, 3, 4]);
        let mut b = write_npy(&t).unwrap();
        b.truncate(b.len() - 1);
        assert!(parse_npy(&b, 1 << 20).unwrap_err().contains("body"));
    }
}
