//! The `Quant` family as loop nests: QuantizeLinear, DequantizeLinear (per tensor, per axis and
//! blocked) and DynamicQuantizeLinear (a min/max reduction, then the quantization).
//!
//! The arithmetic is the interpreter's (`shrink-ref/src/ops/quant.rs`) step for step: quantize
//! divides in the precision the spec names (both operands and the quotient rounded to it), rounds
//! half to even, adds the zero point and saturates (NaN gives the lowest value), or for float
//! targets adds the zero point in f64 and applies the Cast rules; dequantize subtracts exactly and
//! multiplies in f32 (f64 for an f64 output). Element conversions are
//! [`super::convert::cast_value`]'s, so they round exactly as Cast does. Which dtypes are
//! accepted, the parameter checks and the granularity are the rules both engines share
//! ([`shrink_ir::rules::quant`]).
use super::convert::{cast_value, normalize};
use super::{LowerResult, NodeCtx};
use crate::loops::convert::{decode, encode};
use crate::loops::{Builder, Expr, TensorRef, Ty};
use shrink_ir::DType;
use shrink_ir::op::{Quant, RoundMode};
use shrink_ir::rules::quant::{self, Granularity, Param, QuantTarget, QuantizePlan};

pub fn lower(b: &mut Builder, op: &Quant, cx: &NodeCtx) -> LowerResult {
    match op {
        Quant::QuantizeLinear {
            axis,
            block_size,
            output_dtype,
            saturate,
            precision,
        } => {
            quant::check_output_dtype(*output_dtype, cx.output(0).dtype)?;
            quantize(b, cx, *axis, *block_size, *saturate, *precision)
        }
        Quant::DequantizeLinear {
            axis,
            block_size,
            output_dtype,
        } => {
            quant::check_output_dtype(*output_dtype, cx.output(0).dtype)?;
            dequantize(b, cx, *axis, *block_size)
        }
        Quant::DynamicQuantizeLinear => dynamic_quantize(b, cx),
    }
}

/// Calls `f(b, i, j)` for every element `i` of an input of `n` elements, with `j` the index of
/// its scale under `g`.
fn walk(g: &Granularity, b: &mut Builder, n: usize, f: impl FnOnce(&mut Builder, Expr, Expr)) {
    match *g {
        Granularity::PerTensor => b.for_(n, |b, i| f(b, i, Expr::idx(0))),
        Granularity::PerAxis { outer, len, inner } => b.nest(&[outer, len, inner], |b, ix| {
            let (o, a, k) = (ix[0].clone(), ix[1].clone(), ix[2].clone());
            let i = o
                .mul_k((len * inner) as i64)
                .add(a.clone().mul_k(inner as i64));
            f(b, i.add(k), a)
        }),
        Granularity::Blocked {
            outer,
            len,
            inner,
            blocks,
            block,
        } => b.nest(&[outer, len, inner], |b, ix| {
            let (o, a, k) = (ix[0].clone(), ix[1].clone(), ix[2].clone());
            let i = o.clone().mul_k((len * inner) as i64);
            let i = i.add(a.clone().mul_k(inner as i64)).add(k.clone());
            let blk = a.div(Expr::idx(block as i64));
            let j = o.mul_k(blocks as i64).add(blk).mul_k(inner as i64).add(k);
            f(b, i, j)
        }),
    }
}

fn param(t: &TensorRef) -> Param<'_> {
    Param {
        dtype: t.dtype,
        dims: &t.dims,
    }
}

/// `v` (compute value of dtype `from`) rounded to the float dtype `p`, as a value of `p`'s
/// compute type (F32 for f16/bf16).
fn round_to(b: &mut Builder, from: DType, v: Expr, p: DType) -> Expr {
    if from == p {
        return v;
    }
    let raw = cast_value(b, from, v, p, true, RoundMode::Up);
    decode(b, p, raw)
}

fn quantize(
    b: &mut Builder,
    cx: &NodeCtx,
    axis: i64,
    block_size: i64,
    saturate: bool,
    precision: Option<DType>,
) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let to = y.dtype;
    let (scale, zp) = (cx.input(1), cx.opt_input(2));
    let QuantizePlan {
        granularity: g,
        target,
        precision: p,
    } = quant::quantize_plan(
        x.dtype,
        &x.dims,
        param(scale),
        zp.map(param),
        to,
        axis,
        block_size,
        precision,
    )?;
    walk(&g, b, x.numel(), |b, i, j| {
        let xv = b.load(x, i.clone());
        let xv = round_to(b, x.dtype, xv, p);
        let s = b.load(scale, j.clone());
        let s = round_to(b, scale.dtype, s, p);
        // Division of two values of p in f32 (or f64) then rounding to p equals the exactly
        // rounded quotient: f32 has more than twice the bits of f16 and bf16, plus two.
        let q = xv.div(s);
        let q = if p == DType::F16 || p == DType::BF16 {
            let raw = encode(b, p, q, true);
            decode(b, p, raw)
        } else {
            q
        };
        let q = b.let_(q);
        let z = zp.map(|z| {
            let v = b.load(z, j.clone());
            normalize(z.dtype, v)
        });
        match target {
            QuantTarget::Int { lo, hi } => {
                let ty = q.ty;
                let z = z.map_or(Expr::lit(ty, 0.0), |z| z.cast(ty));
                // The sum is exact while it can still land in range (|q| < 2^24 in f32).
                let v = b.let_(q.nearest().add(z));
                let (lo, hi) = (Expr::lit(ty, lo), Expr::lit(ty, hi));
                let clamped = v.clone().max(lo.clone()).min(hi);
                let r = Expr::select(v.clone().ne(v), lo, clamped);
                b.store_raw(y, i, r.cast(Ty::storage(to).expect("integer dtype")));
            }
            QuantTarget::Float => {
                let z = z.map_or(Expr::f64(0.0), |z| z.cast(Ty::F64));
                let v = q.cast(Ty::F64).add(z);
                let r = cast_value(b, DType::F64, v, to, saturate, RoundMode::Up);
                b.store_raw(y, i, r);
            }
        }
    });
    Ok(())
}

fn dequantize(b: &mut Builder, cx: &NodeCtx, axis: i64, block_size: i64) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let (xt, to) = (x.dtype, y.dtype);
    let (scale, zp) = (cx.input(1), cx.opt_input(2));
    let g = quant::dequantize_plan(
        xt,
        &x.dims,
        &scale.dims,
        zp.map(param),
        to,
        axis,
        block_size,
    )?;
    let ty = if to == DType::F64 { Ty::F64 } else { Ty::F32 };
    walk(&g, b, x.numel(), |b, i, j| {
        let v = b.load(x, i.clone());
        let v = normalize(xt, v);
        let z = zp.map(|z| {
            let v = b.load(z, j.clone());
            normalize(xt, v)
        });
        // x - zero_point is exact: in i64 for integers, in f64 for float8 values.
        let d = if v.ty.is_float() {
            let v = v.cast(Ty::F64);
            z.map_or(v.clone(), |z| v.sub(z.cast(Ty::F64))).cast(ty)
        } else {
            let v = v.cast(Ty::I64);
            z.map_or(v.clone(), |z| v.sub(z.cast(Ty::I64))).cast(ty)
        };
        let s = b.load(scale, j);
        let s = s.cast(ty);
        b.store(y, i, d.mul(s));
    });
    Ok(())
}

/// DynamicQuantizeLinear(x: f32) -> (y: u8, y_scale: f32, y_zero_point: u8), in f32 as the
/// interpreter: the range [min(x, 0), max(x, 0)] (NaN anywhere makes it NaN), scale =
/// (hi - lo) / 255 (1 / 255 for an empty range), zero point = round(clamp(-lo / scale)), then
/// y = saturate(round(x / scale) + zero point) with NaN giving 0.
fn dynamic_quantize(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let x = cx.input(0);
    let declared: Vec<DType> = cx.outputs.iter().map(|t| t.dtype).collect();
    quant::check_dynamic_quantize(x.dtype, &declared)?;
    let f = Expr::f32;
    // Min and max propagate NaN, which is what the interpreter's NaN rule gives.
    let lo = b.mutable(f(0.0));
    let hi = b.mutable(f(0.0));
    b.for_(x.numel(), |b, i| {
        let v = b.load(x, i);
        let v = b.let_(v);
        let (l, h) = (b.get(lo), b.get(hi));
        b.set(lo, l.min(v.clone()));
        b.set(hi, h.max(v));
    });
    let (lo, hi) = (b.get(lo), b.get(hi));
    let range = Expr::select(hi.clone().eq(lo.clone()), f(1.0), hi.sub(lo.clone()));
    let scale = b.let_(range.div(f(255.0)));
    let zp = f(0.0).sub(lo.div(scale.clone()));
    let zp = b.let_(zp.max(f(0.0)).min(f(255.0)).nearest());
    let nan_to_zero = |v: Expr| Expr::select(v.clone().ne(v.clone()), f(0.0), v);
    b.for_(x.numel(), |b, i| {
        let v = b.load(x, i.clone());
        let q = b.let_(v.div(scale.clone()).nearest().add(zp.clone()));
        let q = nan_to_zero(q.max(f(0.0)).min(f(255.0)));
        b.store_raw(cx.output(0), i, q.cast(Ty::U8));
    });
    if let Some(s) = cx.outputs.get(1) {
        b.store_raw(s, Expr::idx(0), scale);
    }
    if let Some(z) = cx.outputs.get(2) {
        b.store_raw(z, Expr::idx(0), nan_to_zero(zp).cast(Ty::U8));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::op_testing::{In, f32s, run_op};
    use shrink_ir::Op;

    fn q(axis: i64, block_size: i64) -> Op {
        Op::Quant(Quant::QuantizeLinear {
            axis,
            block_size,
            output_dtype: None,
            saturate: true,
            precision: None,
        })
    }

    fn dq(axis: i64, block_size: i64) -> Op {
        Op::Quant(Quant::DequantizeLinear {
            axis,
            block_size,
            output_dtype: None,
        })
    }

    fn run(op: &Op, ins: Vec<In>, out: DType, dims: &[usize]) -> Vec<u8> {
        let ins: Vec<Option<In>> = ins.into_iter().map(Some).collect();
        let (code, mut outs) = run_op(op, &ins, &[(out, dims)]);
        assert_eq!(code, 0);
        outs.remove(0)
    }

    #[test]
    fn quantize_per_tensor_rounds_half_even_and_saturates() {
        let x = || {
            In::f32s(
                &[8],
                &[0.0, 2.0, 3.0, 5.0, 1000.0, -254.0, -1000.0, f32::NAN],
            )
        };
        let s = || In::f32s(&[], &[2.0]);
        let z = In::new(DType::U8, &[], vec![128]);
        let y = run(&q(1, 0), vec![x(), s(), z], DType::U8, &[8]);
        assert_eq!(y, [128, 129, 130, 130, 255, 1, 0, 0]);
        // An int4 zero point stored with junk high bits reads as its low four.
        let z = In::new(DType::I4, &[], vec![0xf1]);
        let y = run(&q(1, 0), vec![x(), s(), z], DType::I4, &[8]);
        assert_eq!(y, [1i8, 2, 3, 3, 7, -8, -8, -8].map(|v| v as u8));
    }

    #[test]
    fn quantize_per_axis_and_blocked() {
        let x = || In::f32s(&[2, 4], &[6.0, 12.0, 50.0, 5.0, 1.0, 8.0, 4.0, 5.0]);
        let s = In::f32s(&[2, 2], &[1.5, 2.5, 3.0, 4.9]);
        let z = In::new(DType::U8, &[2, 2], vec![0, 1, 1, 0]);
        let y = run(&q(1, 2), vec![x(), s, z], DType::U8, &[2, 4]);
        assert_eq!(y, [4, 8, 21, 3, 1, 4, 1, 1]);
        let s = In::f32s(&[2], &[2.0, 4.0]);
        let z = In::new(DType::U8, &[2], vec![0, 0]);
        let y = run(&q(0, 0), vec![x(), s, z], DType::U8, &[2, 4]);
        assert_eq!(y, [3, 6, 25, 2, 0, 2, 1, 1]);
    }

    #[test]
    fn quantize_to_float8_and_with_f16_precision() {
        let x = In::f32s(&[5], &[0.0, 1.0, 2.0, 1e5, 200.0]);
        let s = In::f32s(&[], &[2.0]);
        let z = In::new(DType::F8E4M3FN, &[1], vec![0]);
        let y = run(&q(1, 0), vec![x, s, z], DType::F8E4M3FN, &[5]);
        assert_eq!(y, [0, 48, 56, 126, 108]);
        // precision f16: 2049 / 1 rounds to 2048 in f16 before rounding to an integer.
        let op = Op::Quant(Quant::QuantizeLinear {
            axis: 1,
            block_size: 0,
            output_dtype: Some(DType::I16),
            saturate: true,
            precision: Some(DType::F16),
        });
        let x = In::f32s(&[2], &[2049.0, 2051.0]);
        let s = In::f32s(&[], &[1.0]);
        let z = In::new(DType::I16, &[], vec![0, 0]);
        let y = run(&op, vec![x, s, z], DType::I16, &[2]);
        assert_eq!(y, [0x00, 0x08, 0x04, 0x08]);
    }

    #[test]
    fn dequantize_forms() {
        let x = In::new(DType::U8, &[4], vec![0, 3, 128, 255]);
        let s = || In::f32s(&[], &[2.0]);
        let z = In::new(DType::U8, &[], vec![128]);
        let y = run(&dq(1, 0), vec![x, s(), z], DType::F32, &[4]);
        assert_eq!(f32s(&y), [-256.0, -250.0, 0.0, 254.0]);
        let x = In::new(DType::I4, &[5], vec![0, 1, 7, 0xfc, 0xf8]);
        let z = In::new(DType::I4, &[1], vec![1]);
        let y = run(&dq(0, 0), vec![x, s(), z], DType::F16, &[5]);
        let want: Vec<u8> = [-2.0f32, 0.0, 12.0, -10.0, -18.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(y, want);
        let x = In::new(DType::U8, &[1, 4], vec![3, 89, 34, 200]);
        let s = In::f32s(&[1, 2], &[3.0, 2.0]);
        let z = In::new(DType::U8, &[1, 2], vec![1, 0]);
        let y = run(&dq(1, 2), vec![x, s, z], DType::F32, &[1, 4]);
        assert_eq!(f32s(&y), [6.0, 264.0, 68.0, 400.0]);
    }

    #[test]
    fn dynamic_quantize() {
        let run = |v: &[f32]| {
            let ins = [Some(In::f32s(&[v.len()], v))];
            let op = Op::Quant(Quant::DynamicQuantizeLinear);
            let outs = [
                (DType::U8, &[v.len()][..]),
                (DType::F32, &[][..]),
                (DType::U8, &[][..]),
            ];
            let (code, outs) = run_op(&op, &ins, &outs);
            assert_eq!(code, 0);
            outs
        };
        let outs = run(&[0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
        assert_eq!(outs[0], [153, 255, 0, 26, 221, 179]);
        assert_eq!(f32s(&outs[1]), [5.0f32 / 255.0]);
        assert_eq!(outs[2], [153]);
        // NaN anywhere: the scale is NaN and everything quantizes to 0.
        let outs = run(&[1.0, f32::NAN, -1.0]);
        assert_eq!(outs[0], [0, 0, 0]);
        assert!(f32s(&outs[1])[0].is_nan());
        assert_eq!(outs[2], [0]);
        // All zeros: scale 1 / 255.
        let outs = run(&[0.0, 0.0]);
        assert_eq!(
            (outs[0].clone(), f32s(&outs[1]), outs[2].clone()),
            (vec![0, 0], vec![1.0 / 255.0], vec![0])
        );
    }
}
