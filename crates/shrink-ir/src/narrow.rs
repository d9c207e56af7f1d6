//! Decoding and encoding of the narrow float formats (float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz,
//! e8m0 and float4 e2m1). They are storage formats: arithmetic converts through f32/f64.
//!
//! Encoding follows the ONNX Cast tables: the value is first rounded to the target precision
//! (round to nearest, ties to even, computed exactly from an f64 so there is no double rounding),
//! and only then compared with the largest finite value. With `saturate` an out-of-range value
//! (infinities included) becomes the largest finite value of its sign; without it the format's
//! infinity (e5m2) or NaN (formats with no infinity). float4 e2m1 has neither, so it always
//! saturates. e8m0 (an exponent-only format) has its own rounding modes, see [`encode_e8m0`].
use crate::DType;
use crate::op::RoundMode;

struct Layout {
    man_bits: u32,
    bias: i32,
    /// Code of the largest finite positive value.
    max_code: u8,
    /// Bit width of the whole format (sign included).
    total_bits: u32,
}

fn layout(d: DType) -> Option<Layout> {
    let (exp_bits, man_bits, bias, max_code) = match d {
        DType::F8E4M3FN => (4, 3, 7, 0x7e),
        DType::F8E4M3FNUZ => (4, 3, 8, 0x7f),
        DType::F8E5M2 => (5, 2, 15, 0x7b),
        DType::F8E5M2FNUZ => (5, 2, 16, 0x7f),
        DType::F4E2M1 => (2, 1, 1, 0x7),
        _ => return None,
    };
    Some(Layout {
        man_bits,
        bias,
        max_code,
        total_bits: 1 + exp_bits + man_bits,
    })
}

/// `2^k` for `k` in the normal f64 exponent range (callers stay well inside it).
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k.clamp(-1022, 1023) + 1023) as u64) << 52)
}

/// `floor(log2(|a|))` for a finite non-zero `a`, read from the bits (exact, unlike `log2`).
fn exponent_of(a: f64) -> i32 {
    let bits = a.to_bits();
    let field = ((bits >> 52) & 0x7ff) as i32;
    if field == 0 {
        let man = bits & ((1 << 52) - 1);
        -1074 + (63 - man.leading_zeros() as i32)
    } else {
        field - 1023
    }
}

/// Rounds `x` to the nearest value (ties to even) with `man_bits` explicit mantissa bits and
/// smallest normal exponent `min_exp` (below it the spacing stays fixed: gradual underflow).
/// The exponent range is unbounded above, so the caller detects overflow by comparing the result
/// with its format's largest value. NaN, infinities and zeros are returned unchanged.
pub fn round_to_precision(x: f64, man_bits: u32, min_exp: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let quantum = exponent_of(x).max(min_exp) - man_bits as i32;
    // Scaling by a power of two is exact, so the only rounding is round_ties_even.
    (x * pow2(-quantum)).round_ties_even() * pow2(quantum)
}

/// Decodes one narrow-float bit pattern to f32 (exact: every narrow value is an f32).
pub fn decode(d: DType, bits: u8) -> f32 {
    if d == DType::F8E8M0 {
        return match bits {
            0xff => f32::NAN,
            // 2^-127 is an f32 subnormal: only its mantissa bit 22 is set.
            0 => f32::from_bits(0x0040_0000),
            e => f32::from_bits((e as u32) << 23),
        };
    }
    let Some(l) = layout(d) else { return f32::NAN };
    let bits = bits as u32 & ((1 << l.total_bits) - 1);
    let sign = bits >> (l.total_bits - 1) & 1;
    let exp = (bits & ((1 << (l.total_bits - 1)) - 1)) >> l.man_bits;
    let man = bits & ((1 << l.man_bits) - 1);
    match d {
        DType::F8E4M3FN if exp == 15 && man == 7 => return f32::NAN,
        DType::F8E4M3FNUZ | DType::F8E5M2FNUZ if bits == 0x80 => return f32::NAN,
        DType::F8E5M2 if exp == 31 => {
            return if man != 0 {
                f32::NAN
            } else if sign == 1 {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            };
        }
        _ => {}
    }
    let scale = (1u32 << l.man_bits) as f32;
    let mag = if exp == 0 {
        man as f32 / scale * 2f32.powi(1 - l.bias)
    } else {
        (1.0 + man as f32 / scale) * 2f32.powi(exp as i32 - l.bias)
    };
    if sign == 1 { -mag } else { mag }
}

/// Encodes an f32 into a narrow float; see [`encode_f64`]. e8m0 uses round mode `up`.
pub fn encode(d: DType, x: f32, saturate: bool) -> u8 {
    encode_f64(d, x as f64, saturate)
}

/// Encodes a value into a narrow float per the ONNX Cast rules (module doc). e8m0 uses round
/// mode `up` (the ONNX default); use [`encode_e8m0`] for the other modes. A non-narrow `d` gives 0.
pub fn encode_f64(d: DType, x: f64, saturate: bool) -> u8 {
    if d == DType::F8E8M0 {
        return encode_e8m0(x, saturate, RoundMode::Up);
    }
    let Some(l) = layout(d) else { return 0 };
    let sign_bit: u8 = 1 << (l.total_bits - 1);
    let sign = if x.is_sign_negative() { sign_bit } else { 0 };
    let fnuz = matches!(d, DType::F8E4M3FNUZ | DType::F8E5M2FNUZ);
    // What an out-of-range value becomes without saturation.
    let overflow = match d {
        DType::F8E4M3FN => sign | 0x7f,
        DType::F8E5M2 => sign | 0x7c,
        DType::F4E2M1 => sign | l.max_code,
        _ => 0x80,
    };
    if x.is_nan() {
        return match d {
            DType::F8E4M3FN => sign | 0x7f,
            // ml_dtypes (which generated the ONNX test data) keeps the top two payload bits.
            DType::F8E5M2 => sign | 0x7c | ((x.to_bits() >> 50) & 3).max(1) as u8,
            // float4 has no NaN; ml_dtypes (and so the ONNX test data) gives the zero of the
            // opposite sign.
            DType::F4E2M1 => sign_bit ^ sign,
            _ => 0x80,
        };
    }
    let max = decode(d, l.max_code) as f64;
    let r = round_to_precision(x.abs(), l.man_bits, 1 - l.bias);
    if r > max {
        return if saturate || d == DType::F4E2M1 {
            sign | l.max_code
        } else {
            overflow
        };
    }
    if r == 0.0 {
        return if fnuz { 0 } else { sign };
    }
    let min_exp = 1 - l.bias;
    let e = exponent_of(r);
    let code = if e < min_exp {
        (r / pow2(min_exp - l.man_bits as i32)) as u32
    } else {
        let field = (e + l.bias) as u32;
        let man = (r / pow2(e - l.man_bits as i32)) as u32 - (1 << l.man_bits);
        field << l.man_bits | man
    };
    sign | code as u8
}

/// Encodes into float8 e8m0 (a power of two 2^-127..=2^127, 0xff = NaN). The sign is ignored
/// (negative inputs are undefined in ONNX; the reference implementation uses |x|). `Up` gives the
/// smallest power of two >= |x|, `Down` the largest <= |x|, `Nearest` the nearer one with ties
/// (|x| = 1.5 * 2^e) up. Zero, infinities and results outside the range become the nearest end of
/// the range with `saturate`, NaN without it, as the ONNX Cast table specifies.
pub fn encode_e8m0(x: f64, saturate: bool, mode: RoundMode) -> u8 {
    let out_of_range = |high: bool| match (saturate, high) {
        (true, true) => 0xfe,
        (true, false) => 0x00,
        (false, _) => 0xff,
    };
    if x.is_nan() {
        return 0xff;
    }
    let a = x.abs();
    if a.is_infinite() {
        return out_of_range(true);
    }
    if a == 0.0 {
        return out_of_range(false);
    }
    let e = exponent_of(a);
    let k = match mode {
        RoundMode::Down => e,
        RoundMode::Up if a == pow2(e) => e,
        RoundMode::Up => e + 1,
        RoundMode::Nearest if a >= 1.5 * pow2(e) => e + 1,
        RoundMode::Nearest => e,
    };
    if k > 127 {
        out_of_range(true)
    } else if k < -127 {
        out_of_range(false)
    } else {
        (k + 127) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_encode_roundtrip_every_code() {
        for d in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
            DType::F8E8M0,
        ] {
            for b in 0..=255u8 {
                let v = decode(d, b);
                if v.is_nan() {
                    continue;
                }
                let sat = !v.is_infinite();
                let got = encode(d, v, sat);
                assert_eq!(got, b, "{d} code {b:#x} ({v})");
            }
        }
        for b in 0..16u8 {
            assert_eq!(encode(DType::F4E2M1, decode(DType::F4E2M1, b), true), b);
        }
    }

    #[test]
    fn ties_and_overflow() {
        // e4m3fn: 464 is the tie between 448 (even code 0x7e) and the missing 480.
        assert_eq!(encode(DType::F8E4M3FN, 464.0, false), 0x7e);
        assert_eq!(encode(DType::F8E4M3FN, 464.1, false), 0x7f);
        assert_eq!(encode(DType::F8E4M3FN, -1e6, true), 0xfe);
        // e5m2: the tie above 57344 rounds to the odd-code side, i.e. infinity.
        assert_eq!(encode(DType::F8E5M2, 61440.0, false), 0x7c);
        assert_eq!(encode(DType::F8E5M2, 61439.0, false), 0x7b);
        assert_eq!(encode(DType::F8E4M3FNUZ, 248.0, false), 0x80);
        assert_eq!(encode(DType::F8E4M3FNUZ, 247.0, false), 0x7f);
        assert_eq!(encode(DType::F8E4M3FNUZ, -1e-7, true), 0);
        assert_eq!(encode(DType::F8E4M3FN, -1e-7, true), 0x80);
        assert_eq!(encode(DType::F8E5M2, f32::NAN, true), 0x7e);
        // A double-rounding trap: just above the e4m3 tie 1.0625 but equal to it in f32.
        assert_eq!(
            encode_f64(DType::F8E4M3FN, 1.0625 + 2f64.powi(-40), true),
            0x39
        );
        // float4: 0.25 ties to 0, 0.75 to 1.0, 7 to the (saturated) 6.
        let f4: Vec<u8> = [
            0.25f32,
            0.75,
            1.25,
            1.75,
            2.5,
            3.5,
            5.0,
            7.0,
            -5.0,
            f32::NAN,
            f32::INFINITY,
        ]
        .iter()
        .map(|&v| encode(DType::F4E2M1, v, false))
        .collect();
        assert_eq!(f4, [0, 2, 2, 4, 4, 6, 6, 7, 14, 8, 7]);
    }

    #[test]
    fn e8m0_modes() {
        let up = |x: f64| encode_e8m0(x, true, RoundMode::Up);
        assert_eq!(
            [up(0.0), up(0.124), up(0.25), up(1.1), up(8.0)],
            [0, 124, 125, 128, 130]
        );
        assert_eq!(up(f64::INFINITY), 0xfe);
        assert_eq!(encode_e8m0(f64::INFINITY, false, RoundMode::Up), 0xff);
        assert_eq!(encode_e8m0(0.0, false, RoundMode::Nearest), 0xff);
        assert_eq!(encode_e8m0(1.5, true, RoundMode::Nearest), 128);
        assert_eq!(encode_e8m0(1.49, true, RoundMode::Nearest), 127);
        assert_eq!(encode_e8m0(1.99, true, RoundMode::Down), 127);
        assert_eq!(encode_e8m0(3e38, true, RoundMode::Up), 0xfe);
        assert_eq!(encode_e8m0(3e38, false, RoundMode::Up), 0xff);
        assert_eq!(encode_e8m0(1e-39, true, RoundMode::Up), 0);
        assert_eq!(decode(DType::F8E8M0, 0), 2f32.powi(-127));
    }

    #[test]
    fn round_to_precision_matches_f16() {
        // f16: 10 mantissa bits, min normal exponent -14.
        for v in [65519.0, 65520.0, 1e-8, 3e-8, 0.1, 2049.0, 2051.0] {
            let want = half::f16::from_f32(v as f32).to_f64();
            let got = round_to_precision(v, 10, -14);
            assert!(
                got == want || got > 65504.0 && want.is_infinite(),
                "{v}: {got} vs {want}"
            );
        }
    }
}
