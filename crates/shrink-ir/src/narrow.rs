//! Decoding and encoding of the narrow float formats (float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz,
//! e8m0 and float4 e2m1). They are storage formats: arithmetic converts through f32.
//!
//! Encoding follows the ONNX Cast rules: round to nearest, ties to even; with `saturate` an
//! out-of-range finite value becomes the largest finite value of its sign, without it the format's
//! infinity (e5m2) or NaN (formats with no infinity). float4 e2m1 always saturates.
use crate::DType;

struct Layout {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
}

fn layout(d: DType) -> Layout {
    match d {
        DType::F8E4M3FN => Layout { exp_bits: 4, man_bits: 3, bias: 7 },
        DType::F8E4M3FNUZ => Layout { exp_bits: 4, man_bits: 3, bias: 8 },
        DType::F8E5M2 => Layout { exp_bits: 5, man_bits: 2, bias: 15 },
        DType::F8E5M2FNUZ => Layout { exp_bits: 5, man_bits: 2, bias: 16 },
        DType::F4E2M1 => Layout { exp_bits: 2, man_bits: 1, bias: 1 },
        other => panic!("{other} is not a narrow float"),
    }
}

/// Decodes one narrow-float bit pattern to f32.
pub fn decode(d: DType, bits: u8) -> f32 {
    if d == DType::F8E8M0 {
        return if bits == 0xff { f32::NAN } else { 2f32.powi(bits as i32 - 127) };
    }
    let l = layout(d);
    let total = 1 + l.exp_bits + l.man_bits;
    let bits = bits as u32 & ((1 << total) - 1);
    let sign = bits >> (total - 1) & 1;
    let exp = (bits >> l.man_bits) & ((1 << l.exp_bits) - 1);
    let man = bits & ((1 << l.man_bits) - 1);
    match d {
        DType::F8E4M3FN if exp == 15 && man == 7 => return f32::NAN,
        DType::F8E4M3FNUZ | DType::F8E5M2FNUZ if bits == 0x80 => return f32::NAN,
        DType::F8E5M2 if exp == 31 => {
            return if man == 0 {
                if sign == 1 { f32::NEG_INFINITY } else { f32::INFINITY }
            } else {
                f32::NAN
            };
        }
        _ => {}
    }
    let mag = if exp == 0 {
        man as f32 / (1 << l.man_bits) as f32 * 2f32.powi(1 - l.bias)
    } else {
        (1.0 + man as f32 / (1 << l.man_bits) as f32) * 2f32.powi(exp as i32 - l.bias)
    };
    if sign == 1 { -mag } else { mag }
}

/// Encodes an f32 into a narrow float (round to nearest even), per the ONNX saturate rule.
pub fn encode(d: DType, x: f32, saturate: bool) -> u8 {
    if d == DType::F8E8M0 {
        return encode_e8m0(x, saturate);
    }
    let l = layout(d);
    let total = 1 + l.exp_bits + l.man_bits;
    let sign_bit: u8 = 1 << (total - 1);
    let neg = x.is_sign_negative();
    let nan: u8 = match d {
        DType::F8E4M3FN => 0x7f,
        DType::F8E5M2 => 0x7f,
        DType::F8E4M3FNUZ | DType::F8E5M2FNUZ => 0x80,
        // float4 has no NaN; ONNX maps NaN to the positive max pattern's NaN-less stand-in 0x7.
        _ => 0x7,
    };
    let fnuz = matches!(d, DType::F8E4M3FNUZ | DType::F8E5M2FNUZ);
    if x.is_nan() {
        return nan;
    }
    // Enumerate the finite non-negative codes in increasing order; pick the nearest (ties: even code).
    let max_code: u8 = match d {
        DType::F8E4M3FN => 0x7e,
        DType::F8E5M2 => 0x7b,
        DType::F8E4M3FNUZ | DType::F8E5M2FNUZ => 0x7f,
        _ => 0x7,
    };
    let a = x.abs();
    let max = decode(d, max_code);
    let with_sign = |code: u8| if neg && !(fnuz && code == 0) { code | sign_bit } else { code };
    if a.is_infinite() {
        if saturate {
            return with_sign(max_code);
        }
        return match d {
            DType::F8E5M2 => with_sign(0x7c),
            DType::F4E2M1 => with_sign(max_code),
            _ => nan,
        };
    }
    // Round to nearest even in the code space (monotone codes 0..=max_code).
    let mut lo = 0u8;
    while lo < max_code && decode(d, lo + 1) <= a {
        lo += 1;
    }
    let code = if lo == max_code {
        // Beyond max: values that round past the last representable step overflow.
        let step = max - decode(d, max_code - 1);
        if a > max && a >= max + step / 2.0 && !saturate && d != DType::F4E2M1 {
            return match d {
                DType::F8E5M2 => with_sign(0x7c),
                _ => nan,
            };
        }
        max_code
    } else {
        let (vl, vh) = (decode(d, lo), decode(d, lo + 1));
        let (dl, dh) = (a - vl, vh - a);
        if dl < dh || (dl == dh && lo % 2 == 0) { lo } else { lo + 1 }
    };
    with_sign(code)
}

fn encode_e8m0(x: f32, saturate: bool) -> u8 {
    if x.is_nan() || x <= 0.0 && !saturate {
        return 0xff;
    }
    if x.is_infinite() {
        return if saturate { 0xfe } else { 0xff };
    }
    if x <= 0.0 {
        return 0;
    }
    // Round up ("up" round_mode is the ONNX default for e8m0): smallest power of two >= x.
    let bits = x.to_bits();
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    let e = if exp == 0 {
        0
    } else if man != 0 {
        exp + 1
    } else {
        exp
    };
    if e > 254 {
        if saturate { 0xfe } else { 0xff }
    } else {
        e as u8
    }
}
