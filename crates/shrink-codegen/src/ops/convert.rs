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
use crate::loops::convert::encode_with;
use crate::loops::{Builder, Expr, TensorRef, Ty, status};
use shrink_ir::DType;
use shrink_ir::op::{Convert, RoundMode};
use shrink_ir::rng::Mt19937;

pub fn lower(b: &mut Builder, op: &Convert, cx: &NodeCtx) -> LowerResult {
    match op {
        Convert::Cast {
            to,
            saturate,
            round_mode,
        } => {
            let (x, y) = (cx.input(0), cx.output(0));
            if y.dtype != *to {
                return Err(format!("Cast to {to} but the output is {}", y.dtype));
            }
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
            let bits = if matches!(to, DType::I4 | DType::U4) { 4 } else { 2 };
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
    let even = bits.clone().and(Expr::int(Ty::U64, 1)).eq(Expr::int(Ty::U64, 0));
    let inexact = err.clone().ne(zero.clone());
    let adjust = Expr::select(inexact, even, Expr::bool(false));
    // Toward the exact value: away from zero when the error has the sign of the sum.
    let away = err.gt(zero.clone()).eq(s.gt(zero));
    let one = Expr::int(Ty::U64, 1);
    let moved = Expr::select(away, bits.clone().add(one.clone()), bits.clone().sub(one));
    Expr::select(adjust, moved, bits).bitcast(Ty::F64)
}

/// Dropout(data, ratio?, training_mode?) -> (output, mask?). Inference (or ratio 0) is the
/// identity with an all-true mask. Training draws the keep mask from `RandomState(seed)` at
/// compile time — it depends only on the seed, the ratio and the element count — and computes
/// `keep * x * scale` in the data's type, as the interpreter does.
fn dropout(b: &mut Builder, seed: Option<i64>, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let constant = |i: usize, what: &str| -> Result<Option<f64>, String> {
        match (cx.opt_input(i), cx.const_input(i)) {
            (None, _) => Ok(None),
            (Some(_), Some(t)) if !t.is_empty() => Ok(Some(t.get_f64(0))),
            (Some(_), Some(_)) => Err(format!("Dropout {what} is empty")),
            (Some(_), None) => Err(format!(
                "Dropout with a {what} computed at run time has no native lowering"
            )),
        }
    };
    let training = constant(2, "training_mode")?.is_some_and(|v| v != 0.0);
    let ratio = if training {
        constant(1, "ratio")?.unwrap_or(0.5)
    } else {
        0.0
    };
    let n = x.numel();
    let keep: Option<Vec<bool>> = if training && ratio != 0.0 {
        let seed = u32::try_from(seed.unwrap_or(0)).ok();
        match seed {
            Some(seed) if (0.0..1.0).contains(&ratio) => {
                let mut rng = Mt19937::new(seed);
                Some((0..n).map(|_| rng.next_f64() >= ratio).collect())
            }
            // The interpreter refuses these when it runs: so does the kernel.
            _ => {
                b.fail_if(Expr::bool(true), status::BAD_VALUE);
                return Ok(());
            }
        }
    } else {
        None
    };
    let table = keep
        .as_ref()
        .map(|k| b.table(DType::Bool, &[n], k.iter().map(|&v| v as u8).collect()));
    let scale = match &keep {
        None => None,
        Some(_) => Some(match x.dtype {
            DType::F32 => Expr::f32(1.0 / (1.0 - ratio as f32)),
            DType::F64 => Expr::f64(1.0 / (1.0 - ratio)),
            // The interpreter computes each step in f32 and rounds it to the type.
            DType::F16 => {
                use half::f16;
                let d = f16::from_f32(1.0 - f16::from_f64(ratio).to_f32());
                Expr::f32(f16::from_f32(1.0 / d.to_f32()).to_f32())
            }
            DType::BF16 => {
                use half::bf16;
                let d = bf16::from_f32(1.0 - bf16::from_f64(ratio).to_f32());
                Expr::f32(bf16::from_f32(1.0 / d.to_f32()).to_f32())
            }
            d => return Err(format!("training-mode Dropout on {d} is not supported")),
        }),
    };
    let mask = cx.outputs.get(1).cloned();
    b.for_(n, |b, i| {
        let k = table.as_ref().map(|t| b.load_raw(t, i.clone()));
        match (&k, &scale) {
            (Some(k), Some(scale)) => {
                let v = b.load(x, i.clone());
                let ty = v.ty;
                let m = Expr::select(k.clone(), Expr::lit(ty, 1.0), Expr::lit(ty, 0.0));
                b.store(y, i.clone(), m.mul(v).mul(scale.clone()));
            }
            _ => {
                let v = b.load_raw(x, i.clone());
                b.store_raw(y, i.clone(), v);
            }
        }
        if let Some(mask) = &mask {
            let k = k.unwrap_or(Expr::bool(true));
            let r = cast_value(b, DType::Bool, k, mask.dtype, true, RoundMode::Up);
            b.store_raw(mask, i, r);
        }
    });
    Ok(())
}
