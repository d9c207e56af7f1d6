//! Interpreter for the `Convert` family: Cast between every pair of supported dtypes, and Dropout
//! (inference: identity; training: the seeded mask of the ONNX reference runtime, see
//! [`crate::rng`]). Also the element conversion ([`Scalar`], [`build`]) that the `Quant` family
//! reuses to write its outputs.
//!
//! Every element is read exactly (integers as i128, floats as f64) and rounded once to the target:
//! - to floats: round to nearest even, computed from the exact value (no double rounding through
//!   f32); f16/bf16 overflow to infinity; float8/e8m0/float4 follow `shrink_ir::narrow` (the ONNX
//!   saturate tables);
//! - integers to integers, and anything to int4/uint4/int2/uint2: keep the low bits (two's
//!   complement), as the spec says for fixed point and as the ONNX test data shows for floats to
//!   4/2-bit ints (floats are truncated toward zero first; NaN and infinities give 0);
//! - floats to 8–64-bit integers: truncation toward zero; out of range is undefined in ONNX, here
//!   it saturates and NaN gives 0;
//! - to bool: zero (either sign) is false, everything else (NaN included) true.
//!
//! Casts to or from strings are not supported: the type rules reject them (only Equal and Identity
//! take string tensors), and the importer names `to = STRING` as unsupported.
use super::{optional, required};
use crate::num::Num;
use crate::rng::Mt19937;
use crate::{EvalCtx, EvalError};
use half::{bf16, f16};
use shrink_ir::narrow::{self, round_to_precision};
use shrink_ir::op::{Convert, RoundMode};
use shrink_ir::rules::convert::check_cast_output;
use shrink_ir::{DType, Element, Tensor, ValueType};

pub fn eval(
    op: &Convert,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    match op {
        Convert::Cast {
            to,
            saturate,
            round_mode,
        } => {
            let x = required(ins, 0)?;
            if let Some(ty) = outs.first() {
                check_cast_output(*to, ty.dtype)?;
            }
            ctx.check_alloc(*to, x.dims())?;
            Ok(vec![cast(x, *to, *saturate, *round_mode)])
        }
        Convert::Dropout { seed } => dropout(*seed, ins, outs, ctx),
    }
}

/// `x` converted to `to` (see the module doc for the rules).
pub fn cast(x: &Tensor, to: DType, saturate: bool, round_mode: RoundMode) -> Tensor {
    if x.dtype() == to {
        return x.clone();
    }
    build(
        to,
        x.dims().to_vec(),
        x.len(),
        |i| scalar_at(x, i),
        saturate,
        round_mode,
    )
}

/// Dropout(data, ratio?, training_mode?) -> (output, mask?). In inference (or with ratio 0) the
/// data passes through and the mask is all true. In training mode element `i` is kept where the
/// `i`-th uniform draw of numpy's `RandomState(seed)` is `>= ratio` (see [`crate::rng`]); kept
/// elements are scaled by `1 / (1 - ratio)`, computed in the data's type, as
/// `mask * x * scale` (so a dropped NaN or infinity gives NaN, as in the ONNX reference runtime).
/// Without a `seed` attribute the seed is 0: the interpreter is an oracle and stays deterministic.
fn dropout(
    seed: Option<i64>,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let x = required(ins, 0)?;
    let first = |t: &Tensor, what: &str| -> Result<f64, EvalError> {
        if t.is_empty() {
            return Err(EvalError::invalid(format!("Dropout {what} is empty")));
        }
        Ok(t.get_f64(0))
    };
    let ratio = optional(ins, 1)
        .map(|t| first(t, "ratio"))
        .transpose()?
        .unwrap_or(0.5);
    let training = optional(ins, 2)
        .map(|t| first(t, "training_mode"))
        .transpose()?
        .is_some_and(|v| v != 0.0);
    if let Some(ty) = outs.first()
        && ty.dtype != x.dtype()
    {
        return Err(EvalError::invalid(format!(
            "Dropout output declared {} for a {} input",
            ty.dtype,
            x.dtype()
        )));
    }
    let keep: Option<Vec<bool>> = if training && ratio != 0.0 {
        Some(draw_mask(seed, ratio, x.len())?)
    } else {
        None
    };
    let dtype = x.dtype();
    let unsupported = || EvalError::unsupported(format!("training-mode Dropout on {dtype}"));
    let y = match &keep {
        None => x.clone(),
        Some(keep) => {
            crate::dispatch_float!(dtype, T => scale_kept::<T>(x, keep, ratio),
                else return Err(unsupported()))
        }
    };
    let mut res = vec![y];
    if let Some(ty) = outs.get(1) {
        // Before opset 10 the mask had the data's type, so the declared type decides.
        ctx.check_alloc(ty.dtype, x.dims())?;
        res.push(build(
            ty.dtype,
            x.dims().to_vec(),
            x.len(),
            |i| Scalar::Int(keep.as_ref().is_none_or(|k| k[i]) as i128),
            true,
            RoundMode::Up,
        ));
    }
    Ok(res)
}

/// The training-mode keep mask: `n` draws of `RandomState(seed).uniform(0, 1)` compared with
/// `ratio` (which must lie in [0, 1); the seed in 0..2^32, as numpy requires).
fn draw_mask(seed: Option<i64>, ratio: f64, n: usize) -> Result<Vec<bool>, EvalError> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(EvalError::invalid(format!(
            "Dropout ratio {ratio} is outside [0, 1)"
        )));
    }
    let seed = seed.unwrap_or(0);
    let seed = u32::try_from(seed)
        .map_err(|_| EvalError::invalid(format!("Dropout seed {seed} is outside 0..2^32")))?;
    let mut rng = Mt19937::new(seed);
    Ok((0..n).map(|_| rng.next_f64() >= ratio).collect())
}

/// `mask * x * scale` elementwise in `T`, with `scale = 1 / (1 - ratio)` rounded to `T`.
fn scale_kept<T: Num>(x: &Tensor, keep: &[bool], ratio: f64) -> Tensor {
    let xs = x.to_vec::<T>().expect("dispatched on the tensor's dtype");
    let scale = T::one()
        .div(T::one().sub(T::from_f64(ratio)))
        .expect("float division");
    let ys = xs
        .iter()
        .zip(keep)
        .map(|(&v, &k)| if k { T::one() } else { T::zero() }.mul(v).mul(scale))
        .collect();
    Tensor::from_vec(x.dims().to_vec(), ys)
}

/// One element held exactly: every integer dtype (and bool) fits i128, every float dtype f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    Int(i128),
    Float(f64),
}

/// Sign-extends the low `bits` bits of a byte (sub-byte ints may be stored either way).
fn sext(b: u8, bits: u32) -> i128 {
    ((b << (8 - bits)) as i8 >> (8 - bits)) as i128
}

fn read<T: Element>(b: &[u8]) -> T {
    T::read_le(b)
}

/// Element `i` of `t` (`i < t.len()`).
pub fn scalar_at(t: &Tensor, i: usize) -> Scalar {
    let s = t.dtype().size();
    let b = &t.bytes()[i * s..(i + 1) * s];
    use Scalar::{Float, Int};
    match t.dtype() {
        DType::Bool => Int((b[0] != 0) as i128),
        DType::U8 => Int(b[0] as i128),
        DType::I8 => Int(b[0] as i8 as i128),
        DType::U16 => Int(read::<u16>(b) as i128),
        DType::I16 => Int(read::<i16>(b) as i128),
        DType::U32 => Int(read::<u32>(b) as i128),
        DType::I32 => Int(read::<i32>(b) as i128),
        DType::U64 => Int(read::<u64>(b) as i128),
        DType::I64 => Int(read::<i64>(b) as i128),
        DType::U4 => Int((b[0] & 0xf) as i128),
        DType::I4 => Int(sext(b[0], 4)),
        DType::U2 => Int((b[0] & 0x3) as i128),
        DType::I2 => Int(sext(b[0], 2)),
        DType::F32 => Float(read::<f32>(b) as f64),
        DType::F64 => Float(read::<f64>(b)),
        DType::F16 => Float(read::<f16>(b).to_f64()),
        DType::BF16 => Float(read::<bf16>(b).to_f64()),
        d => Float(narrow::decode(d, b[0]) as f64),
    }
}

/// The value of an integer as an f64 rounded to odd: exact below 2^53, else the top 53 bits with
/// the lowest forced to 1 if anything was dropped. Rounding that to any format of at most 51
/// mantissa bits then gives the correctly rounded result (no double-rounding error).
fn int_to_f64_odd(v: i128) -> f64 {
    let m = v.unsigned_abs();
    let bits = 128 - m.leading_zeros();
    let mag = if bits <= 53 {
        m as f64
    } else {
        let shift = bits - 53;
        let kept = (m >> shift) | ((m & ((1u128 << shift) - 1) != 0) as u128);
        kept as f64 * 2f64.powi(shift as i32)
    };
    if v < 0 { -mag } else { mag }
}

/// The exact value of `s` for float targets narrower than f64.
fn narrow_value(s: Scalar) -> f64 {
    match s {
        Scalar::Int(v) => int_to_f64_odd(v),
        Scalar::Float(f) => f,
    }
}

/// Rounds `v` to f16 (`F16`), bf16 (`BF16`) or f32 (`F32`), returned as the exact f64 of the
/// result (overflow gives infinity); other dtypes return `v`.
pub fn round_float(to: DType, v: f64) -> f64 {
    let (man, min_exp, max) = match to {
        DType::F16 => (10, -14, f16::MAX.to_f64()),
        DType::BF16 => (7, -126, bf16::MAX.to_f64()),
        DType::F32 => return v as f32 as f64,
        _ => return v,
    };
    let r = round_to_precision(v, man, min_exp);
    if r.is_finite() && r.abs() > max {
        f64::INFINITY.copysign(r)
    } else {
        r
    }
}

fn to_f16(s: Scalar) -> f16 {
    // The value is already rounded, so the conversion is exact whichever path `half` takes.
    f16::from_f64(round_float(DType::F16, narrow_value(s)))
}

fn to_bf16(s: Scalar) -> bf16 {
    bf16::from_f64(round_float(DType::BF16, narrow_value(s)))
}

/// Low `bits` bits of the integer (truncated toward zero for floats; NaN and ±inf give 0),
/// sign-extended for signed targets: the byte shrink stores for a sub-byte int.
fn sub_byte(s: Scalar, bits: u32, signed: bool) -> u8 {
    let low = match s {
        Scalar::Int(v) => (v & ((1 << bits) - 1)) as u8,
        Scalar::Float(f) if !f.is_finite() => 0,
        // fmod is exact, so this is the true remainder even for huge values.
        Scalar::Float(f) => f.trunc().rem_euclid((1u32 << bits) as f64) as u8,
    };
    if signed { sext(low, bits) as u8 } else { low }
}

macro_rules! int_target {
    ($t:ty) => {
        |s: Scalar| -> $t {
            match s {
                Scalar::Int(v) => v as $t,
                Scalar::Float(f) => f as $t,
            }
        }
    };
}

/// A tensor of `to` with `n` elements, element `i` being `f(i)` converted (module doc rules).
pub fn build(
    to: DType,
    dims: Vec<usize>,
    n: usize,
    f: impl Fn(usize) -> Scalar,
    saturate: bool,
    round_mode: RoundMode,
) -> Tensor {
    fn collect<T: Element>(
        dims: Vec<usize>,
        n: usize,
        f: impl Fn(usize) -> Scalar,
        g: impl Fn(Scalar) -> T,
    ) -> Tensor {
        Tensor::from_vec(dims, (0..n).map(|i| g(f(i))).collect())
    }
    let bits = |dims: Vec<usize>, g: &dyn Fn(Scalar) -> u8| {
        Tensor::from_bits(to, dims, (0..n).map(|i| g(f(i))).collect())
    };
    match to {
        DType::Bool => collect(dims, n, &f, |s| match s {
            Scalar::Int(v) => v != 0,
            Scalar::Float(v) => v != 0.0,
        }),
        DType::U8 => collect(dims, n, &f, int_target!(u8)),
        DType::I8 => collect(dims, n, &f, int_target!(i8)),
        DType::U16 => collect(dims, n, &f, int_target!(u16)),
        DType::I16 => collect(dims, n, &f, int_target!(i16)),
        DType::U32 => collect(dims, n, &f, int_target!(u32)),
        DType::I32 => collect(dims, n, &f, int_target!(i32)),
        DType::U64 => collect(dims, n, &f, int_target!(u64)),
        DType::I64 => collect(dims, n, &f, int_target!(i64)),
        // Rust's int-to-float and f64-to-f32 casts round to nearest even, once.
        DType::F64 => collect(dims, n, &f, |s| match s {
            Scalar::Int(v) => v as f64,
            Scalar::Float(v) => v,
        }),
        DType::F32 => collect(dims, n, &f, |s| match s {
            Scalar::Int(v) => v as f32,
            Scalar::Float(v) => v as f32,
        }),
        DType::F16 => collect(dims, n, &f, to_f16),
        DType::BF16 => collect(dims, n, &f, to_bf16),
        DType::U4 => bits(dims, &|s| sub_byte(s, 4, false)),
        DType::I4 => bits(dims, &|s| sub_byte(s, 4, true)),
        DType::U2 => bits(dims, &|s| sub_byte(s, 2, false)),
        DType::I2 => bits(dims, &|s| sub_byte(s, 2, true)),
        DType::F8E8M0 => bits(dims, &|s| {
            narrow::encode_e8m0(narrow_value(s), saturate, round_mode)
        }),
        d => bits(dims, &|s| narrow::encode_f64(d, narrow_value(s), saturate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast_f32(v: &[f32], to: DType, saturate: bool) -> Tensor {
        cast(
            &Tensor::from_vec(vec![v.len()], v.to_vec()),
            to,
            saturate,
            RoundMode::Up,
        )
    }

    #[test]
    fn float_to_ints() {
        let v = [-9.0, -2.7, -0.5, 2.7, 200.0, 1e10, f32::NAN, f32::INFINITY];
        assert_eq!(
            cast_f32(&v, DType::I8, true).to_vec::<i8>().unwrap(),
            [-9, -2, 0, 2, 127, 127, 0, 127]
        );
        assert_eq!(
            cast_f32(&v, DType::U8, true).to_vec::<u8>().unwrap(),
            [0, 0, 0, 2, 200, 255, 0, 255]
        );
        assert_eq!(
            cast_f32(&v, DType::I64, true).to_vec::<i64>().unwrap(),
            [-9, -2, 0, 2, 200, 10_000_000_000, 0, i64::MAX]
        );
        // Sub-byte targets keep the low bits, stored sign-extended.
        let i4 = cast_f32(
            &[-9.0, -8.0, 7.0, 8.0, 15.0, 1e6, f32::NAN],
            DType::I4,
            true,
        );
        assert_eq!(
            i4.to_vec::<u8>()
                .unwrap()
                .iter()
                .map(|&b| b as i8)
                .collect::<Vec<_>>(),
            [7, -8, 7, -8, -1, 0, 0]
        );
        let u2 = cast_f32(&[-3.0, -1.0, 3.0, 5.9], DType::U2, true);
        assert_eq!(u2.to_vec::<u8>().unwrap(), [1, 3, 3, 1]);
    }

    #[test]
    fn ints_wrap_and_bool() {
        let x = Tensor::from_vec(vec![4], vec![200i16, -1, 0, 256]);
        assert_eq!(
            cast(&x, DType::I8, true, RoundMode::Up)
                .to_vec::<i8>()
                .unwrap(),
            [-56, -1, 0, 0]
        );
        assert_eq!(
            cast(&x, DType::U32, true, RoundMode::Up)
                .to_vec::<u32>()
                .unwrap(),
            [200, u32::MAX, 0, 256]
        );
        assert_eq!(
            cast(&x, DType::Bool, true, RoundMode::Up)
                .to_vec::<bool>()
                .unwrap(),
            [true, true, false, true]
        );
        let f = cast_f32(&[0.0, -0.0, f32::NAN, 0.1], DType::Bool, true);
        assert_eq!(f.to_vec::<bool>().unwrap(), [false, false, true, true]);
        let b = Tensor::from_vec(vec![2], vec![true, false]);
        assert_eq!(
            cast(&b, DType::F16, true, RoundMode::Up)
                .to_vec::<f16>()
                .unwrap(),
            [f16::ONE, f16::ZERO]
        );
    }

    #[test]
    fn exact_rounding_to_narrow_floats() {
        // Just above the f32 tie at 2^60 + 2^36.
        let v: i64 = (1 << 60) + (1 << 36) + 1;
        let x = Tensor::from_vec(vec![1], vec![v]);
        let want = (1u64 << 60) as f32 + 2f32.powi(37);
        assert_eq!(
            cast(&x, DType::F32, true, RoundMode::Up)
                .to_vec::<f32>()
                .unwrap(),
            [want]
        );
        // Just above the bf16 tie at 2^60 + 2^52: a plain i64 -> f64 cast drops the +1 and the
        // tie would then round to even, downwards.
        let v: i64 = (1 << 60) + (1 << 52) + 1;
        let x = Tensor::from_vec(vec![1], vec![v]);
        let want = bf16::from_f64((1u64 << 60) as f64 + 2f64.powi(53));
        assert_eq!(
            cast(&x, DType::BF16, true, RoundMode::Up)
                .to_vec::<bf16>()
                .unwrap(),
            [want]
        );
        // f64 -> f16 just above the tie between 1 and 1 + 2^-10.
        let x = Tensor::from_vec(
            vec![2],
            vec![1.0 + 2f64.powi(-11) + 2f64.powi(-40), 65520.0],
        );
        let y = cast(&x, DType::F16, true, RoundMode::Up)
            .to_vec::<f16>()
            .unwrap();
        assert_eq!(y, [f16::from_f64(1.0 + 2f64.powi(-10)), f16::INFINITY]);
    }

    #[test]
    fn float8_and_e8m0() {
        let v = [0.478_925_47, 1e6, -1e6, f32::NAN, f32::NEG_INFINITY, -1e-7];
        assert_eq!(
            cast_f32(&v, DType::F8E4M3FN, true).to_vec::<u8>().unwrap(),
            [47, 126, 254, 127, 254, 128]
        );
        assert_eq!(
            cast_f32(&v, DType::F8E4M3FN, false).to_vec::<u8>().unwrap(),
            [47, 127, 255, 127, 255, 128]
        );
        assert_eq!(
            cast_f32(&v, DType::F8E5M2, false).to_vec::<u8>().unwrap(),
            [56, 124, 252, 126, 252, 128]
        );
        assert_eq!(
            cast_f32(&v, DType::F8E5M2FNUZ, false)
                .to_vec::<u8>()
                .unwrap(),
            [60, 128, 128, 128, 128, 0]
        );
        let e = cast(
            &Tensor::from_vec(vec![3], vec![0.124f32, 1.1, 2.0]),
            DType::F8E8M0,
            true,
            RoundMode::Nearest,
        );
        assert_eq!(e.to_vec::<u8>().unwrap(), [124, 127, 128]);
        let back = cast(&e, DType::F32, true, RoundMode::Up)
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(back, [0.125, 1.0, 2.0]);
    }

    #[test]
    fn dropout_inference() {
        let x = Tensor::from_vec(vec![2], vec![1.5f32, -2.0]);
        let outs = [
            ValueType::unknown_shape(DType::F32),
            ValueType::unknown_shape(DType::Bool),
        ];
        let r = Tensor::scalar(0.3f32);
        let y = eval(
            &Convert::Dropout { seed: None },
            &[Some(&x), Some(&r)],
            &outs,
            &EvalCtx::default(),
        )
        .unwrap();
        assert_eq!(y[0], x);
        assert_eq!(y[1].to_vec::<bool>().unwrap(), [true, true]);
    }

    #[test]
    fn dropout_training_follows_numpy_random_state() {
        // RandomState(0).random_sample(3) = [0.5488…, 0.7152…, 0.6028…]: with ratio 0.6 the
        // first draw drops, the other two keep and scale by 1 / 0.4 (rounded to f32).
        let x = Tensor::from_vec(vec![3], vec![f32::NAN, 2.0, -1.0]);
        let outs = [
            ValueType::unknown_shape(DType::F32),
            ValueType::unknown_shape(DType::Bool),
        ];
        let run = |seed: Option<i64>, r: f32| {
            let (r, t) = (Tensor::scalar(r), Tensor::scalar(true));
            eval(
                &Convert::Dropout { seed },
                &[Some(&x), Some(&r), Some(&t)],
                &outs,
                &EvalCtx::default(),
            )
        };
        let y = run(None, 0.6).unwrap();
        let scale = 1.0f32 / (1.0f32 - 0.6f32);
        let v = y[0].to_vec::<f32>().unwrap();
        // A dropped NaN stays NaN (0 * NaN), as in the reference runtime.
        assert!(v[0].is_nan());
        assert_eq!(v[1..], [2.0 * scale, -scale]);
        assert_eq!(y[1].to_vec::<bool>().unwrap(), [false, true, true]);
        assert_eq!(run(Some(0), 0.6).unwrap(), y);
        for bad in [1.0, -0.1, f32::NAN] {
            assert!(matches!(run(Some(0), bad), Err(EvalError::Invalid(_))));
        }
        assert!(matches!(run(Some(-1), 0.5), Err(EvalError::Invalid(_))));
        assert!(matches!(
            run(Some(1 << 32), 0.5),
            Err(EvalError::Invalid(_))
        ));
        // Ratio 0 keeps everything without drawing.
        let y = run(Some(-1), 0.0).unwrap();
        assert_eq!(y[1].to_vec::<bool>().unwrap(), [true; 3]);
    }
}
