//! The `Convert` family as loop nests: Cast (CastLike arrives as Cast) between every pair of
//! numeric dtypes, and Dropout (inference: identity; training with constant ratio and
//! training_mode: the interpreter's MT19937 keep mask, drawn at compile time into a table).
//!
//! [`cast_value`] is the element conversion, shared with the `Quant` family. It follows the
//! interpreter's rules (`shrink-ref/src/ops/convert.rs`) bit for bit:
//! - every float result is rounded once from the exact source value: integers too wide for the
//!   intermediate go through an f64 rounded to odd, f64 sources round directly to f16/bf16;
//! - integers to integers wrap; floats to 8–64-bit integers truncate and saturate (NaN → 0);
//! - anything to int4/uint4/int2/uint2 keeps the low bits (floats truncated first, NaN and
//!   infinities give 0), stored sign-extended for the signed ones;
//! - to bool: nonzero (NaN included) is true.
use super::{LowerResult, NodeCtx};
use crate::loops::convert::{decode, encode_with};
use crate::loops::{Builder, Expr, TensorRef, Ty, status};
use shrink_ir::DType;
use shrink_ir::op::{Convert, RoundMode};
use shrink_ir::rng::Mt19937;
use shrink_ir::rules::convert::check_cast_output;

pub fn lower(b: &mut Builder, op: &Convert, cx: &NodeCtx) -> LowerResult {
    match op {
        Convert::Cast {
            to,
            saturate,
            round_mode,
        } => {
            let (x, y) = (cx.input(0), cx.output(0));
            check_cast_output(*to, y.dtype)?;
            cast(b, x, y, *saturate, *round_mode);
            Ok(())
        }
        Convert::Dropout { seed } => dropout(b, *seed, cx),
    }
}

/// `y = x` converted elementwise to `y.dtype` (same dims).
pub fn cast(b: &mut Builder, x: &TensorRef, y: &TensorRef, saturate: bool, mode: RoundMode) {
    let (from, to) = (x.dtype, y.dtype);
    b.for_(x.numel(), |b, i| {
        if from == to {
            // The interpreter hands the tensor on unchanged, bits included.
            let v = b.load_raw(x, i.clone());
            b.store_raw(y, i, v);
            return;
        }
        let v = b.load(x, i.clone());
        let r = cast_value(b, from, v, to, saturate, mode);
        b.store_raw(y, i, r);
    });
}

/// A compute value of dtype `d` (what [`Builder::load`] gives) as the interpreter reads it:
/// sub-byte integers re-extended from their low bits (they may be stored either way), bools
/// as 0 or 1.
pub fn normalize(d: DType, v: Expr) -> Expr {
    let low = |v: Expr, bits: i64| {
        let sh = Expr::int(v.ty, 8 - bits);
        v.shl(sh.clone()).shr(sh)
    };
    match d {
        DType::I4 => low(v, 4),
        DType::I2 => low(v, 2),
        DType::U4 => v.and(Expr::int(Ty::U8, 0xf)),
        DType::U2 => v.and(Expr::int(Ty::U8, 0x3)),
        DType::Bool => v.ne(Expr::bool(false)),
        _ => v,
    }
}

/// The raw stored element of dtype `to` for the value `v` (compute type of dtype `from`), by
/// the Cast rules (module doc). `saturate` and `mode` matter only for narrow-float targets.
pub fn cast_value(
    b: &mut Builder,
    from: DType,
    v: Expr,
    to: DType,
    saturate: bool,
    mode: RoundMode,
) -> Expr {
    let v = normalize(from, v);
    if to == DType::Bool {
        let zero = if v.ty.is_float() {
            Expr::lit(v.ty, 0.0)
        } else {
            Expr::int(v.ty, 0)
        };
        return v.ne(zero);
    }
    // Bools convert as the integers 0 and 1.
    let v = if v.ty == Ty::Bool { v.cast(Ty::U8) } else { v };
    let v = b.let_(v);
    let float = v.ty.is_float();
    let wide = v.ty.bytes() == 8 && !float;
    let target = Ty::storage(to).expect("numeric dtype");
    match to {
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            let bits = if matches!(to, DType::I4 | DType::U4) {
                4
            } else {
                2
            };
            let w = if float {
                // Floats of magnitude 2^62 and up are multiples of 16 already.
                let big = Expr::lit(v.ty, 4_611_686_018_427_387_904.0);
                Expr::select(v.clone().abs().lt(big), v.cast(Ty::I64), Expr::idx(0))
            } else {
                v.cast(Ty::I64)
            };
            let sh = Expr::idx(64 - bits);
            if to == DType::I4 || to == DType::I2 {
                w.shl(sh.clone()).shr(sh).cast(Ty::I8)
            } else {
                w.and(Expr::idx((1 << bits) - 1)).cast(Ty::U8)
            }
        }
        _ if !to.is_float() => v.cast(target),
        DType::F64 => v.cast(Ty::F64),
        DType::F32 if wide => int_to_f64_odd(b, v).cast(Ty::F32),
        DType::F32 => v.cast(Ty::F32),
        _ => {
            // f16, bf16 and the narrow floats: an exact (or rounded-to-odd) intermediate, then
            // one rounding in `encode_with`.
            let exact = if float {
                v
            } else if wide {
                int_to_f64_odd(b, v)
            } else if to == DType::F16 && v.ty.bytes() == 4 {
                // Beyond 2^17 every f16 result is infinity anyway; below, f32 is exact.
                let (ty, lim) = (v.ty, 1 << 17);
                let c = if ty.is_signed() {
                    v.max(Expr::int(ty, -lim)).min(Expr::int(ty, lim))
                } else {
                    v.min(Expr::int(ty, lim))
                };
                c.cast(Ty::F32)
            } else if v.ty.bytes() <= 2 {
                v.cast(Ty::F32)
            } else {
                v.cast(Ty::F64)
            };
            encode_with(b, to, exact, saturate, mode)
        }
    }
}

/// A 64-bit integer as an f64 rounded to odd: exact when it fits 53 bits, else truncated with
/// the lowest bit forced to 1 when anything was dropped — so a second rounding to any format of
/// at most 51 bits is correct, as the interpreter's `int_to_f64_odd`. The two 32-bit halves
/// convert exactly, their sum rounds once and Fast2Sum recovers the rounding error exactly.
fn int_to_f64_odd(b: &mut Builder, v: Expr) -> Expr {
    let ty = v.ty;
    let hi = v.clone().shr(Expr::int(ty, 32)).cast(Ty::F64);
    let a = b.let_(hi.mul(Expr::f64(4_294_967_296.0)));
    let lo = b.let_(v.and(Expr::int(ty, 0xffff_ffff)).cast(Ty::F64));
    let s = b.let_(a.clone().add(lo.clone()));
    let err = b.let_(lo.sub(s.clone().sub(a)));
    let bits = b.let_(s.clone().bitcast(Ty::U64));
    let zero = Expr::f64(0.0);
    let even = bits
        .clone()
        .and(Expr::int(Ty::U64, 1))
        .eq(Expr::int(Ty::U64, 0));
    let inexact = err.clone().ne(zero.clone());
    let adjust = Expr::select(inexact, even, Expr::bool(false));
    // Toward the exact value: away from zero when the error has the sign of the sum.
    let away = err.gt(zero.clone()).eq(s.gt(zero));
    let one = Expr::int(Ty::U64, 1);
    let moved = Expr::select(away, bits.clone().add(one.clone()), bits.clone().sub(one));
    Expr::select(adjust, moved, bits).bitcast(Ty::F64)
}

/// Dropout(data, ratio?, training_mode?) -> (output, mask?). Inference (or ratio 0) is the
/// identity with an all-true mask. Training keeps element `i` where the `i`-th uniform draw of
/// `RandomState(seed)` is `>= ratio` and computes `keep * x * scale` in the data's type, as the
/// interpreter does. The draws depend only on the seed and the element count, so they are made
/// at compile time into a table; ratio and training_mode may then be constants or run-time
/// inputs alike (read from their first element).
fn dropout(b: &mut Builder, seed: Option<i64>, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let mask = cx.outputs.get(1).cloned();
    let n = x.numel();
    if y.dtype != x.dtype {
        return Err(format!(
            "Dropout output is {} for a {} input",
            y.dtype, x.dtype
        ));
    }
    let first = |b: &mut Builder, t: &TensorRef| -> Expr {
        if t.numel() == 0 {
            // The interpreter refuses an empty ratio or training_mode.
            b.fail_if(Expr::bool(true), status::BAD_VALUE);
            let ty = t.compute_ty();
            return if ty.is_float() {
                Expr::lit(ty, 0.0)
            } else {
                Expr::int(ty, 0)
            };
        }
        b.load(t, Expr::idx(0))
    };
    // Training is possible unless training_mode is absent or a constant zero.
    let training = match (cx.opt_input(2), cx.const_input(2)) {
        (None, _) => None,
        (Some(_), Some(t)) if !t.is_empty() && t.get_f64(0) == 0.0 => None,
        (Some(t), _) => {
            let v = first(b, t);
            let v = cast_value(b, t.dtype, v, DType::Bool, true, RoundMode::Up);
            Some(b.let_(v))
        }
    };
    let identity = |b: &mut Builder| {
        b.for_(n, |b, i| {
            let v = b.load_raw(x, i.clone());
            b.store_raw(y, i.clone(), v);
            if let Some(mask) = &mask {
                let r = cast_value(
                    b,
                    DType::Bool,
                    Expr::bool(true),
                    mask.dtype,
                    true,
                    RoundMode::Up,
                );
                b.store_raw(mask, i, r);
            }
        })
    };
    let Some(training) = training else {
        identity(b);
        return Ok(());
    };
    if !matches!(x.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(format!(
            "training-mode Dropout on {} is not supported",
            x.dtype
        ));
    }
    let ratio = match cx.opt_input(1) {
        None => Expr::f64(0.5),
        Some(t) => {
            let v = first(b, t);
            let v = cast_value(b, t.dtype, v, DType::F64, true, RoundMode::Up);
            b.let_(v)
        }
    };
    let zero = Expr::f64(0.0);
    let active = Expr::select(training, ratio.clone().ne(zero.clone()), Expr::bool(false));
    let seed = u32::try_from(seed.unwrap_or(0)).ok();
    b.if_else(
        active,
        |b| {
            let in_range = Expr::select(
                ratio.clone().ge(zero),
                ratio.clone().lt(Expr::f64(1.0)),
                Expr::bool(false),
            );
            b.fail_if(in_range.not(), status::BAD_VALUE);
            let Some(seed) = seed else {
                // numpy (and so the interpreter) refuses seeds outside 0..2^32.
                b.fail_if(Expr::bool(true), status::BAD_VALUE);
                return;
            };
            let mut rng = Mt19937::new(seed);
            let draws: Vec<u8> = (0..n).flat_map(|_| rng.next_f64().to_le_bytes()).collect();
            let draws = b.table(DType::F64, &[n], draws);
            let scale = dropout_scale(b, x.dtype, ratio.clone());
            b.for_(n, |b, i| {
                let keep = b.load_raw(&draws, i.clone()).ge(ratio.clone());
                let keep = b.let_(keep);
                let v = b.load(x, i.clone());
                let ty = v.ty;
                let m = Expr::select(keep.clone(), Expr::lit(ty, 1.0), Expr::lit(ty, 0.0));
                // A dropped NaN or infinity gives NaN (0 * x), as in the reference runtime.
                b.store(y, i.clone(), m.mul(v).mul(scale.clone()));
                if let Some(mask) = &mask {
                    let r = cast_value(b, DType::Bool, keep, mask.dtype, true, RoundMode::Up);
                    b.store_raw(mask, i, r);
                }
            });
        },
        identity,
    );
    Ok(())
}

/// `1 / (1 - ratio)` in the data's type `d`, each step rounded to it as the interpreter's `Num`
/// does (f16 and bf16 compute in f32 and round after every operation); `ratio` is an F64.
fn dropout_scale(b: &mut Builder, d: DType, ratio: Expr) -> Expr {
    match d {
        DType::F64 => b.let_(Expr::f64(1.0).div(Expr::f64(1.0).sub(ratio))),
        DType::F32 => b.let_(Expr::f32(1.0).div(Expr::f32(1.0).sub(ratio.cast(Ty::F32)))),
        _ => {
            let round = |b: &mut Builder, v: Expr| {
                let raw = encode_with(b, d, v, true, RoundMode::Up);
                let v = decode(b, d, raw);
                b.let_(v)
            };
            let r = round(b, ratio);
            let den = round(b, Expr::f32(1.0).sub(r));
            round(b, Expr::f32(1.0).div(den))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::Place;
    use crate::loops::testing::run_kernel;
    use crate::ops::op_testing::{In, f32s, run_op};
    use half::{bf16, f16};
    use shrink_ir::Op;

    /// Casts the raw elements `xs` (each `from.size()` bytes) to `to` and returns the raw bytes.
    fn cast_bytes(from: DType, to: DType, saturate: bool, xs: Vec<u8>) -> Vec<u8> {
        let n = xs.len() / from.size();
        let mut b = Builder::new("cast");
        let x = b.buffer(Place::Input(0), from, &[n]);
        let y = b.buffer(Place::Output(0), to, &[n]);
        cast(&mut b, &x, &y, saturate, RoundMode::Up);
        let k = b.finish().unwrap();
        let (code, mut outs) = run_kernel(&k, &[xs], &[n * to.size()], 0);
        assert_eq!(code, 0);
        outs.remove(0)
    }

    fn bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    fn u16s(b: &[u8]) -> Vec<u16> {
        b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn wide_integers_round_once() {
        // Just above the bf16 tie at 2^60 + 2^52: a plain i64 → f64 (or f32) cast loses the +1
        // and the tie would round to even, downwards.
        let v = (1i64 << 60) + (1 << 52) + 1;
        let got = cast_bytes(
            DType::I64,
            DType::BF16,
            true,
            bytes(&[v, -v, i64::MAX], i64::to_le_bytes),
        );
        let want: Vec<u16> = [
            2f64.powi(60) + 2f64.powi(53),
            -(2f64.powi(60) + 2f64.powi(53)),
            2f64.powi(63),
        ]
        .iter()
        .map(|&w| bf16::from_f64(w).to_bits())
        .collect();
        assert_eq!(u16s(&got), want);
        // i32 through f32 would round twice: 2^24 + 2^16 + 1 is above the bf16 tie.
        let got = cast_bytes(
            DType::I32,
            DType::BF16,
            true,
            bytes(&[(1 << 24) + (1 << 16) + 1], i32::to_le_bytes),
        );
        assert_eq!(u16s(&got), [0x4b81]);
        let v = (1i64 << 60) + (1 << 36) + 1;
        let got = cast_bytes(DType::I64, DType::F32, true, bytes(&[v], i64::to_le_bytes));
        assert_eq!(f32s(&got), [2f32.powi(60) + 2f32.powi(37)]);
        let u = [u64::MAX, (1 << 63) + (1 << 39) + 1, 3];
        let got = cast_bytes(DType::U64, DType::F32, true, bytes(&u, u64::to_le_bytes));
        assert_eq!(
            f32s(&got),
            [2f32.powi(64), 2f32.powi(63) + 2f32.powi(40), 3.0]
        );
        let got = cast_bytes(DType::U64, DType::F64, true, bytes(&u, u64::to_le_bytes));
        let got: Vec<f64> = got
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            got,
            [2f64.powi(64), (((1u64 << 63) + (1 << 39)) as f64), 3.0]
        );
        // To f16: beyond the range is infinity, whatever the width.
        let got = cast_bytes(
            DType::I64,
            DType::F16,
            true,
            bytes(&[70_000, -65_519, 65_520, 1 << 40, -3], i64::to_le_bytes),
        );
        assert_eq!(
            u16s(&got),
            [
                0x7c00,
                0xfbff,
                0x7c00,
                0x7c00,
                f16::from_f32(-3.0).to_bits()
            ]
        );
        // To float8 and e8m0 (round up: 2^40 + 1 needs 2^41).
        let got = cast_bytes(
            DType::U64,
            DType::F8E4M3FN,
            true,
            bytes(&[u64::MAX, 3], u64::to_le_bytes),
        );
        assert_eq!(got, [0x7e, 0x44]);
        let got = cast_bytes(
            DType::I64,
            DType::F8E8M0,
            true,
            bytes(&[(1 << 40) + 1, 1 << 62], i64::to_le_bytes),
        );
        assert_eq!(got, [168, 189]);
    }

    #[test]
    fn f64_to_f16_rounds_directly() {
        let v = [1.0 + 2f64.powi(-11) + 2f64.powi(-40), 65520.0, -0.0];
        let got = cast_bytes(DType::F64, DType::F16, true, bytes(&v, f64::to_le_bytes));
        assert_eq!(u16s(&got), [0x3c01, 0x7c00, 0x8000]);
    }

    #[test]
    fn floats_to_integers_saturate_and_sub_byte_keeps_low_bits() {
        let v = [
            -9.0f32,
            -2.7,
            -0.5,
            2.7,
            200.0,
            1e10,
            f32::NAN,
            f32::INFINITY,
        ];
        let x = bytes(&v, f32::to_le_bytes);
        let got = cast_bytes(DType::F32, DType::I8, true, x.clone());
        assert_eq!(got, [-9i8, -2, 0, 2, 127, 127, 0, 127].map(|b| b as u8));
        assert_eq!(
            cast_bytes(DType::F32, DType::U8, true, x),
            [0, 0, 0, 2, 200, 255, 0, 255]
        );
        let v = [-9.0f32, -8.0, 7.0, 8.0, 15.0, 1e6, f32::NAN, -1e30];
        let got = cast_bytes(DType::F32, DType::I4, true, bytes(&v, f32::to_le_bytes));
        assert_eq!(got, [7i8, -8, 7, -8, -1, 0, 0, 0].map(|b| b as u8));
        let got = cast_bytes(
            DType::F32,
            DType::U2,
            true,
            bytes(&[-3.0f32, -1.0, 3.0, 5.9], f32::to_le_bytes),
        );
        assert_eq!(got, [1, 3, 3, 1]);
        let got = cast_bytes(
            DType::I64,
            DType::I4,
            true,
            bytes(&[-9i64, 23, i64::MIN], i64::to_le_bytes),
        );
        assert_eq!(got, [7, 7, 0]);
    }

    #[test]
    fn integers_wrap_bools_and_sub_byte_sources() {
        let x = bytes(&[200i16, -1, 0, 256], i16::to_le_bytes);
        assert_eq!(
            cast_bytes(DType::I16, DType::I8, true, x.clone()),
            [200u8, 255, 0, 0]
        );
        assert_eq!(cast_bytes(DType::I16, DType::Bool, true, x), [1, 1, 0, 1]);
        let f = bytes(&[0.0f32, -0.0, f32::NAN, 0.1], f32::to_le_bytes);
        assert_eq!(cast_bytes(DType::F32, DType::Bool, true, f), [0, 0, 1, 1]);
        let got = cast_bytes(DType::Bool, DType::F16, true, vec![1, 0]);
        assert_eq!(u16s(&got), [0x3c00, 0]);
        // Sub-byte integers are read from their low bits, whatever the high bits hold.
        assert_eq!(
            cast_bytes(DType::I4, DType::I8, true, vec![0x0f, 0x08, 0xf7]),
            [0xff, 0xf8, 7]
        );
        assert_eq!(
            f32s(&cast_bytes(DType::I4, DType::F32, true, vec![0x0f, 0x08])),
            [-1.0, -8.0]
        );
        assert_eq!(
            cast_bytes(DType::U4, DType::U8, true, vec![0xff, 0x13]),
            [15, 3]
        );
        assert_eq!(
            cast_bytes(DType::I2, DType::I32, true, vec![0x02])[..1],
            [0xfe]
        );
        // Same dtype: the bits pass unchanged.
        assert_eq!(cast_bytes(DType::I4, DType::I4, true, vec![0x0f]), [0x0f]);
    }

    #[test]
    fn dropout_training_follows_numpy_random_state() {
        // RandomState(0) draws 0.5488…, 0.7152…, 0.6028…: ratio 0.6 drops the first element.
        let x = In::f32s(&[3], &[f32::NAN, 2.0, -1.0]);
        let run = |ratio: f32, training: bool, seed: Option<i64>| {
            let ins = [
                Some(In::f32s(&[3], &[f32::NAN, 2.0, -1.0])),
                Some(In::f32s(&[], &[ratio])),
                Some(In::new(DType::Bool, &[], vec![training as u8])),
            ];
            let op = Op::Convert(Convert::Dropout { seed });
            run_op(&op, &ins, &[(DType::F32, &[3]), (DType::Bool, &[3])])
        };
        let (code, outs) = run(0.6, true, None);
        assert_eq!(code, 0);
        let scale = 1.0f32 / (1.0f32 - 0.6f32);
        let y = f32s(&outs[0]);
        assert!(y[0].is_nan());
        assert_eq!(y[1..], [2.0 * scale, -scale]);
        assert_eq!(outs[1], [0, 1, 1]);
        // Inference, or ratio 0: identity and all kept.
        for (r, t) in [(0.6, false), (0.0, true)] {
            let (code, outs) = run(r, t, Some(3));
            assert_eq!(code, 0);
            assert_eq!(outs[0], x.bytes);
            assert_eq!(outs[1], [1, 1, 1]);
        }
        assert_eq!(run(1.0, true, None).0, status::BAD_VALUE);
        assert_eq!(run(f32::NAN, true, None).0, status::BAD_VALUE);
        assert_eq!(run(0.5, true, Some(-1)).0, status::BAD_VALUE);
        assert_eq!(run(0.5, false, Some(-1)).0, 0);
        // A constant training_mode of false needs no draws and takes any ratio.
        let ins = [
            Some(In::f32s(&[3], &[1.0, 2.0, 3.0])),
            Some(In::f32s(&[], &[0.3])),
            Some(In::new(DType::Bool, &[], vec![0]).constant()),
        ];
        let op = Op::Convert(Convert::Dropout { seed: None });
        let (code, outs) = run_op(&op, &ins, &[(DType::F32, &[3]), (DType::F32, &[3])]);
        assert_eq!(code, 0);
        assert_eq!(f32s(&outs[0]), [1.0, 2.0, 3.0]);
        assert_eq!(f32s(&outs[1]), [1.0; 3]);
    }
}
