//! Elementwise families as loop nests: Unary, Binary, Variadic (all with numpy broadcasting) and
//! Ternary (Clip, Where). Every op here is a scalar function handed to [`map_broadcast`] (or its
//! raw-bits form), which writes the one loop nest they all share.
//!
//! Float-only functions are evaluated in f64 and rounded once to the element type, as the
//! interpreter does (`shrink-ref/src/ops/unary.rs`), but for Exp, Sigmoid, Tanh and Swish on
//! f32, which run in single precision (within 2.5 ulp: the math library's F32 bounds) so their
//! loops and the epilogues they end up in vectorize; sign-only ops and arithmetic work in the
//! element's compute type, integers wrapping.
use super::{LowerResult, NodeCtx};
use crate::loops::{
    Builder, Expr, TensorRef, Ty, broadcast_strides, convert, linear, math, status,
};
use shrink_ir::DType;
use shrink_ir::op::{Binary, GeluApprox, Ternary, Unary, Variadic};

/// `out[i] = f(a_0[i'], a_1[i''], …)` over `out`'s index space, each input read with numpy
/// broadcasting (in its compute type). Same-shape and single-element inputs share one flat loop.
pub fn map_broadcast(
    b: &mut Builder,
    ins: &[&TensorRef],
    out: &TensorRef,
    f: impl FnOnce(&mut Builder, &[Expr]) -> Expr,
) {
    map_broadcast_as(b, ins, out, false, f)
}

/// [`map_broadcast`] reading and writing compute-type values (`raw == false`) or stored bits
/// (`raw == true`, for ops that move elements of any dtype unchanged).
fn map_broadcast_as(
    b: &mut Builder,
    ins: &[&TensorRef],
    out: &TensorRef,
    raw: bool,
    f: impl FnOnce(&mut Builder, &[Expr]) -> Expr,
) {
    let load = |b: &mut Builder, t: &TensorRef, at: Expr| {
        if raw {
            b.load_raw(t, at)
        } else {
            b.load(t, at)
        }
    };
    let store = |b: &mut Builder, at: Expr, v: Expr| {
        if raw {
            b.store_raw(out, at, v)
        } else {
            b.store(out, at, v)
        }
    };
    let flat = ins
        .iter()
        .all(|t| t.dims == out.dims || t.numel() == 1 && out.numel() >= 1);
    if flat {
        b.for_(out.numel(), |b, i| {
            let xs: Vec<Expr> = ins
                .iter()
                .map(|t| {
                    let at = if t.dims == out.dims {
                        i.clone()
                    } else {
                        Expr::idx(0)
                    };
                    load(b, t, at)
                })
                .collect();
            let y = f(b, &xs);
            store(b, i, y);
        });
        return;
    }
    let strides: Vec<Vec<usize>> = ins
        .iter()
        .map(|t| broadcast_strides(&t.dims, &out.dims))
        .collect();
    let out_strides = broadcast_strides(&out.dims, &out.dims);
    b.nest(&out.dims, |b, idx| {
        let xs: Vec<Expr> = ins
            .iter()
            .zip(&strides)
            .map(|(t, s)| load(b, t, linear(idx, s)))
            .collect();
        let y = f(b, &xs);
        store(b, linear(idx, &out_strides), y);
    });
}

/// The dtypes the interpreter's numeric kernels take (`dispatch_num!`): not bool, sub-byte
/// integers or the 8-bit floats.
fn is_num(d: DType) -> bool {
    use DType::*;
    matches!(
        d,
        F32 | F64 | F16 | BF16 | I8 | I16 | I32 | I64 | U8 | U16 | U32 | U64
    )
}

/// The dtypes the interpreter's float functions take (`dispatch_float!`).
fn is_float_fn(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

fn refuse(op: &str, d: DType) -> LowerResult {
    Err(format!("{op} on {d} tensors"))
}

pub fn lower_unary(b: &mut Builder, op: &Unary, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    if *op == Unary::Identity {
        // Bit-for-bit, whatever the dtype.
        map_broadcast_as(b, &[x], y, true, |_, v| v[0].clone());
        return Ok(());
    }
    match op {
        Unary::Not if x.dtype != DType::Bool => {
            return Err(format!("Not needs a bool input, got {}", x.dtype));
        }
        Unary::Not => {}
        Unary::Abs | Unary::Neg | Unary::Sign | Unary::Relu if !is_num(x.dtype) => {
            return refuse(op.name(), x.dtype);
        }
        Unary::Abs | Unary::Neg | Unary::Sign | Unary::Relu => {}
        _ if !is_float_fn(x.dtype) => return refuse(op.name(), x.dtype),
        _ => {}
    }
    map_broadcast(b, &[x], y, |b, v| unary_scalar(b, op, v[0].clone()));
    Ok(())
}

/// Whether [`unary_scalar`] implements `op` (all of them now; kept for the fused ops' checks).
pub fn unary_supported(op: &Unary) -> bool {
    let _ = op;
    true
}

/// `v` clamped to [0, 1], NaN kept (the loop language's min/max propagate NaN).
fn clamp01(v: Expr) -> Expr {
    v.max(Expr::f64(0.0)).min(Expr::f64(1.0))
}

/// `ln(1 + e^x)` without overflow: max(x, 0) + log1p(e^-|x|) (F64).
fn softplus(b: &mut Builder, x: Expr) -> Expr {
    let x = b.let_(x);
    let e = math::exp(b, x.clone().abs().neg());
    let l = math::log1p(b, e);
    x.max(Expr::f64(0.0)).add(l)
}

/// The scalar function of a Unary op applied to `v` (in its compute type). Also used by fused
/// ops that carry an activation (DenseAct). Callers check [`unary_supported`] first.
pub fn unary_scalar(b: &mut Builder, op: &Unary, v: Expr) -> Expr {
    let ty = v.ty;
    let zero = Expr::lit(ty, 0.0);
    let v = b.let_(v);
    match op {
        Unary::Abs => return v.abs(),
        Unary::Neg => return v.neg(),
        Unary::Not => return v.not(),
        Unary::Identity => return v,
        // max(x, 0) with NaN kept: x < 0 ? 0 : x.
        Unary::Relu => return Expr::select(v.clone().lt(zero.clone()), zero, v),
        Unary::Sign => {
            let one = Expr::lit(ty, 1.0);
            // Zero and NaN map to themselves.
            let rest = Expr::select(v.clone().gt(zero.clone()), one, v.clone());
            return if ty.is_signed() {
                Expr::select(v.lt(zero), Expr::lit(ty, -1.0), rest)
            } else {
                rest
            };
        }
        _ => {}
    }
    if !ty.is_float() {
        b.unsupported(format!("{} of a {ty:?} value", op.name()));
        return v;
    }
    // Correctly rounded in the element type, so the same bits as the interpreter's f64 value
    // rounded once (an f64 square root or quotient of f32 operands, rounded to f32, is the
    // correctly rounded f32 one: 53 ≥ 2·24 + 2 bits; the same holds for f16/bf16 values computed
    // in f32), and vectorizable, unlike a widened f64 operation.
    if ty.is_float() {
        let same = match *op {
            Unary::Sqrt => Some(v.clone().sqrt()),
            Unary::Reciprocal => Some(Expr::lit(ty, 1.0).div(v.clone())),
            Unary::Floor => Some(v.clone().floor()),
            Unary::Ceil => Some(v.clone().ceil()),
            Unary::Round => Some(v.clone().nearest()),
            Unary::ThresholdedRelu { alpha } if ty == Ty::F32 => Some(Expr::select(
                v.clone().gt(Expr::f32(alpha)),
                v.clone(),
                zero.clone(),
            )),
            _ => None,
        };
        if let Some(r) = same {
            return r;
        }
    }
    // The common activations of f32 graphs in single precision: a few ulp from the
    // interpreter's rounded f64 (the math library's F32 bounds), and their loops vectorize.
    if ty == Ty::F32 {
        let f32_native = match *op {
            Unary::Exp => Some(math::exp(b, v.clone())),
            Unary::Sigmoid => Some(math::sigmoid(b, v.clone())),
            Unary::Tanh => Some(math::tanh(b, v.clone())),
            Unary::Swish { alpha } => {
                let s = math::sigmoid(b, Expr::f32(alpha).mul(v.clone()));
                Some(v.clone().mul(s))
            }
            _ => None,
        };
        if let Some(r) = f32_native {
            return r;
        }
    }
    // Other float-only functions: in f64, rounded once (as the interpreter).
    let x = b.let_(v.cast(Ty::F64));
    let c = Expr::f64;
    let r = match *op {
        Unary::Sqrt => x.sqrt(),
        Unary::Reciprocal => c(1.0).div(x),
        Unary::Floor => x.floor(),
        Unary::Ceil => x.ceil(),
        Unary::Round => x.nearest(),
        Unary::Exp => math::exp(b, x),
        Unary::Log => math::log(b, x),
        Unary::Erf => math::erf(b, x),
        Unary::Sigmoid => math::sigmoid(b, x),
        Unary::Tanh => math::tanh(b, x),
        Unary::Softplus => softplus(b, x),
        Unary::Softsign => x.clone().div(c(1.0).add(x.abs())),
        Unary::Mish => {
            let s = softplus(b, x.clone());
            let t = math::tanh(b, s);
            x.mul(t)
        }
        Unary::HardSwish => x.clone().mul(clamp01(x.div(c(6.0)).add(c(0.5)))),
        Unary::LeakyRelu { alpha } => {
            let a = c(alpha as f64);
            Expr::select(x.clone().lt(c(0.0)), a.mul(x.clone()), x)
        }
        Unary::HardSigmoid { alpha, beta } => clamp01(c(alpha as f64).mul(x).add(c(beta as f64))),
        Unary::Elu { alpha } => {
            let e = math::expm1(b, x.clone());
            Expr::select(x.clone().lt(c(0.0)), c(alpha as f64).mul(e), x)
        }
        Unary::Selu { alpha, gamma } => {
            let (a, g) = (alpha as f64, gamma as f64);
            let e = math::expm1(b, x.clone());
            let neg = c(g).mul(c(a)).mul(e);
            Expr::select(x.clone().gt(c(0.0)), c(g).mul(x.clone()), neg)
        }
        Unary::Celu { alpha } => {
            let a = alpha as f64;
            let e = math::expm1(b, x.clone().div(c(a)));
            // numpy's maximum/minimum: NaN if either side is NaN (the language's max/min).
            c(0.0).max(x).add(c(0.0).min(c(a).mul(e)))
        }
        Unary::ThresholdedRelu { alpha } => Expr::select(x.clone().gt(c(alpha as f64)), x, c(0.0)),
        Unary::Gelu {
            approximate: GeluApprox::None,
        } => {
            let e = math::erfc(b, x.clone().neg().div(c(std::f64::consts::SQRT_2)));
            c(0.5).mul(x).mul(e)
        }
        Unary::Gelu {
            approximate: GeluApprox::Tanh,
        } => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let cube = c(0.044715).mul(x.clone()).mul(x.clone()).mul(x.clone());
            let t = math::tanh(b, c(k).mul(x.clone().add(cube)));
            c(0.5).mul(x).mul(c(1.0).add(t))
        }
        Unary::Swish { alpha } => {
            let s = math::sigmoid(b, c(alpha as f64).mul(x.clone()));
            x.mul(s)
        }
        Unary::Abs | Unary::Neg | Unary::Not | Unary::Identity | Unary::Relu | Unary::Sign => {
            unreachable!("handled above")
        }
    };
    r.cast(ty)
}

pub fn lower_binary(b: &mut Builder, op: &Binary, cx: &NodeCtx) -> LowerResult {
    let (x, z, y) = (cx.input(0), cx.input(1), cx.output(0));
    let ty = x.compute_ty();
    match op {
        Binary::Pow => return lower_pow(b, x, z, y),
        Binary::PRelu if y.dims != x.dims => {
            return Err(format!(
                "PRelu: slope of shape {:?} does not broadcast to X of shape {:?}",
                z.dims, x.dims
            ));
        }
        _ => {}
    }
    if x.dtype != z.dtype {
        return Err(format!(
            "{}: input dtypes differ ({} vs {})",
            op.name(),
            x.dtype,
            z.dtype
        ));
    }
    let logic = matches!(op, Binary::And | Binary::Or);
    let compare = matches!(
        op,
        Binary::Equal
            | Binary::Less
            | Binary::Greater
            | Binary::LessOrEqual
            | Binary::GreaterOrEqual
    );
    if logic && x.dtype != DType::Bool {
        return Err(format!("{} needs bool inputs, got {}", op.name(), x.dtype));
    }
    let takes = logic || is_num(x.dtype) || compare && x.dtype == DType::Bool;
    if !takes {
        return refuse(op.name(), x.dtype);
    }
    if *op == Binary::Div && ty.is_int() && y.numel() > 0 {
        // The interpreter refuses a zero divisor; the kernel returns a status instead.
        let zero = Expr::lit(ty, 0.0);
        b.for_(z.numel(), |b, i| {
            let d = b.load(z, i);
            b.fail_if(d.eq(zero), status::DIV_BY_ZERO);
        });
    }
    let op = op.clone();
    map_broadcast(b, &[x, z], y, |b, v| {
        let (p, q) = (v[0].clone(), v[1].clone());
        match op {
            Binary::Add => p.add(q),
            Binary::Sub => p.sub(q),
            Binary::Mul => p.mul(q),
            Binary::Div => p.div(q),
            Binary::And => p.and(q),
            Binary::Or => p.or(q),
            Binary::Equal => p.eq(q),
            Binary::Less => p.lt(q),
            Binary::Greater => p.gt(q),
            Binary::LessOrEqual => p.le(q),
            Binary::GreaterOrEqual => p.ge(q),
            Binary::PRelu => {
                let p = b.let_(p);
                let zero = Expr::lit(p.ty, 0.0);
                Expr::select(p.clone().lt(zero), q.mul(p.clone()), p)
            }
            Binary::Pow => unreachable!("lowered above"),
        }
    });
    Ok(())
}

/// Pow as the interpreter: the result has the base's dtype; a float base or a float exponent
/// computes in f64 (an integer base truncates the result back, saturating, NaN → 0); integer
/// base and exponent use exact wrapping integer power, with a negative exponent giving the
/// truncated real result and 0^negative refused.
fn lower_pow(b: &mut Builder, x: &TensorRef, e: &TensorRef, y: &TensorRef) -> LowerResult {
    let (bt, et) = (x.compute_ty(), e.compute_ty());
    if !is_num(e.dtype) {
        return refuse("Pow exponent", e.dtype);
    }
    if !is_num(x.dtype) {
        return refuse("Pow", x.dtype);
    }
    if bt.is_float() || et.is_float() {
        map_broadcast(b, &[x, e], y, |b, v| {
            let r = math::pow(b, v[0].clone().cast(Ty::F64), v[1].clone().cast(Ty::F64));
            r.cast(bt)
        });
        return Ok(());
    }
    map_broadcast(b, &[x, e], y, |b, v| {
        let base = b.let_(v[0].clone().cast(Ty::I64));
        let ex = b.let_(v[1].clone().cast(Ty::I64));
        let zero = Expr::idx(0);
        let neg_e = b.let_(ex.clone().lt(zero.clone()));
        b.fail_if(
            neg_e.clone().and(base.clone().eq(zero.clone())),
            status::BAD_VALUE,
        );
        // Square-and-multiply over the exponent's 64 bits, wrapping.
        let acc = b.mutable(Expr::idx(1));
        let sq = b.mutable(base.clone());
        let bits = b.mutable(ex.clone().cast(Ty::U64));
        b.for_(64, |b, _| {
            let odd = b
                .get(bits)
                .and(Expr::int(Ty::U64, 1))
                .eq(Expr::int(Ty::U64, 1));
            let prod = b.get(acc).mul(b.get(sq));
            let next = Expr::select(odd, prod, b.get(acc));
            b.set(acc, next);
            let s = b.get(sq);
            b.set(sq, s.clone().mul(s));
            let shifted = b.get(bits).shr(Expr::int(Ty::U64, 1));
            b.set(bits, shifted);
        });
        // Negative exponents: 1 for base 1, ±1 for a signed base −1, else 0.
        let one = Expr::idx(1);
        let minus_one = if bt.is_signed() {
            let even = ex.clone().and(one.clone()).eq(zero.clone());
            Expr::select(even, one.clone(), Expr::idx(-1))
        } else {
            zero.clone()
        };
        let signed_m1 = base.clone().eq(Expr::idx(-1));
        let neg_val = Expr::select(
            base.clone().eq(one.clone()),
            one,
            Expr::select(signed_m1, minus_one, zero),
        );
        Expr::select(neg_e, neg_val, b.get(acc)).cast(bt)
    });
    Ok(())
}

/// Rounds an f32 compute value to the storage precision of `d` and back (f16/bf16 results of
/// every intermediate step, as the interpreter's step-by-step folds produce them).
fn round_to(b: &mut Builder, d: DType, v: Expr) -> Expr {
    if matches!(d, DType::F32 | DType::F64) || !v.ty.is_float() {
        return v;
    }
    let raw = convert::encode(b, d, v, true);
    convert::decode(b, d, raw)
}

pub fn lower_variadic(b: &mut Builder, op: &Variadic, cx: &NodeCtx) -> LowerResult {
    let ins: Vec<&TensorRef> = (0..cx.inputs.len())
        .map(|i| {
            cx.opt_input(i)
                .ok_or_else(|| format!("{}: input {i} is missing", op.name()))
        })
        .collect::<Result<_, _>>()?;
    let Some(first) = ins.first() else {
        return Err(format!("{} needs at least one input", op.name()));
    };
    if let Some(t) = ins.iter().find(|t| t.dtype != first.dtype) {
        return Err(format!(
            "{}: input dtypes differ ({} vs {})",
            op.name(),
            first.dtype,
            t.dtype
        ));
    }
    let (d, ty) = (first.dtype, first.compute_ty());
    if !is_num(d) || *op == Variadic::Mean && !ty.is_float() {
        return refuse(op.name(), d);
    }
    let n = ins.len();
    let op = op.clone();
    map_broadcast(b, &ins, cx.output(0), |b, v| {
        let mut acc = v[0].clone();
        for x in &v[1..] {
            let a = b.let_(acc);
            let x = b.let_(x.clone());
            let r = match op {
                Variadic::Sum | Variadic::Mean => a.add(x),
                Variadic::Max | Variadic::Min => {
                    // The first NaN wins; ties keep the earlier operand (as the interpreter).
                    let better = if op == Variadic::Max {
                        x.clone().gt(a.clone())
                    } else {
                        x.clone().lt(a.clone())
                    };
                    let r = Expr::select(better, x.clone(), a.clone());
                    if ty.is_float() {
                        let r = Expr::select(x.clone().ne(x.clone()), x, r);
                        Expr::select(a.clone().ne(a.clone()), a, r)
                    } else {
                        r
                    }
                }
            };
            acc = round_to(b, d, r);
        }
        if op == Variadic::Mean && n > 1 {
            acc = acc.div(Expr::lit(ty, n as f64));
        }
        acc
    });
    Ok(())
}

pub fn lower_ternary(b: &mut Builder, op: &Ternary, cx: &NodeCtx) -> LowerResult {
    match op {
        Ternary::Clip => lower_clip(b, cx),
        Ternary::Where => {
            let (c, x, z) = (cx.input(0), cx.input(1), cx.input(2));
            if c.dtype != DType::Bool {
                return Err(format!(
                    "Where: the condition must be bool, got {}",
                    c.dtype
                ));
            }
            if x.dtype != z.dtype {
                return Err(format!(
                    "Where: input dtypes differ ({} vs {})",
                    x.dtype, z.dtype
                ));
            }
            // Elements move bit-for-bit, whatever their dtype.
            map_broadcast_as(b, &[c, x, z], cx.output(0), true, |_, v| {
                Expr::select(v[0].clone(), v[1].clone(), v[2].clone())
            });
            Ok(())
        }
    }
}

/// Clip(x, min?, max?): `min` then `max` applied unless x is NaN; a NaN bound wins; an absent
/// bound is no bound. Bounds are one-element tensors.
fn lower_clip(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let x = cx.input(0);
    let ty = x.compute_ty();
    if !is_num(x.dtype) {
        return refuse("Clip", x.dtype);
    }
    let bounds = [cx.opt_input(1), cx.opt_input(2)];
    for (t, which) in bounds.iter().zip(["min", "max"]) {
        if let Some(t) = t {
            if t.dtype != x.dtype {
                return Err(format!(
                    "Clip: input dtypes differ ({} vs {})",
                    x.dtype, t.dtype
                ));
            }
            if t.numel() != 1 {
                return Err(format!(
                    "Clip: {which} must be a scalar, got shape {:?}",
                    t.dims
                ));
            }
        }
    }
    let lo = bounds[0].map(|t| b.load(t, Expr::idx(0)));
    let hi = bounds[1].map(|t| b.load(t, Expr::idx(0)));
    let lo = lo.map(|e| b.let_(e));
    let hi = hi.map(|e| b.let_(e));
    let is_nan = |e: &Expr| {
        if ty.is_float() {
            e.clone().ne(e.clone())
        } else {
            Expr::bool(false)
        }
    };
    map_broadcast(b, &[x], cx.output(0), |b, v| {
        let mut v = b.let_(v[0].clone());
        for (bound, upper) in [(lo, false), (hi, true)] {
            let Some(l) = bound else { continue };
            let past = if upper {
                v.clone().gt(l.clone())
            } else {
                v.clone().lt(l.clone())
            };
            let take = is_nan(&v).not().and(is_nan(&l).or(past));
            v = b.let_(Expr::select(take, l, v));
        }
        v
    });
    Ok(())
}

#[cfg(test)]
#[path = "elementwise_tests.rs"]
mod tests;
