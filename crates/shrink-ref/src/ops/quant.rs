//! Interpreter for the `Quant` family: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear.
//!
//! Scale and zero point apply per tensor (one element), per axis (1-D along `axis`) or per block
//! (the input's shape with dimension `axis` divided into blocks of `block_size`).
//!
//! QuantizeLinear divides in the precision the spec names (the `precision` attribute, else the
//! scale's type: both operands rounded to it, the quotient rounded once), then for integer targets
//! rounds half to even, adds the zero point and saturates; NaN (undefined in ONNX) gives the
//! lowest value, as numpy and ONNX Runtime do on x86. Float targets add the zero point and use
//! the Cast rules (`saturate`). DequantizeLinear computes `x - zero_point` exactly and multiplies
//! in f32 (as the ONNX reference and ONNX Runtime do), rounding once more to an f16/bf16 output.
//!
//! Which dtypes are accepted, the scale/zero-point checks and the granularity are the rules the
//! code generator shares ([`shrink_ir::rules::quant`]); this module only computes.
use super::convert::{Scalar, build, round_float, scalar_at};
use super::{optional, required};
use crate::{EvalCtx, EvalError};
use shrink_ir::op::{Quant, RoundMode};
use shrink_ir::rules::quant::{self, Granularity, Param, QuantTarget, QuantizePlan};
use shrink_ir::{DType, Tensor, ValueType};

pub fn eval(
    op: &Quant,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    match op {
        Quant::QuantizeLinear {
            axis,
            block_size,
            output_dtype,
            saturate,
            precision,
        } => {
            let to = declared(outs, 0, "QuantizeLinear")?;
            quant::check_output_dtype(*output_dtype, to)?;
            quantize(ins, to, *axis, *block_size, *saturate, *precision, ctx).map(|t| vec![t])
        }
        Quant::DequantizeLinear {
            axis,
            block_size,
            output_dtype,
        } => {
            let to = declared(outs, 0, "DequantizeLinear")?;
            quant::check_output_dtype(*output_dtype, to)?;
            dequantize(ins, to, *axis, *block_size, ctx).map(|t| vec![t])
        }
        Quant::DynamicQuantizeLinear => dynamic_quantize(required(ins, 0)?, outs),
    }
}

fn declared(outs: &[ValueType], k: usize, op: &str) -> Result<DType, EvalError> {
    outs.get(k)
        .map(|t| t.dtype)
        .ok_or_else(|| EvalError::invalid(format!("{op} needs a declared output {k}")))
}

/// Index into the scale / zero point of input element `i`.
fn scale_index(g: &Granularity, i: usize) -> usize {
    match *g {
        Granularity::PerTensor => 0,
        Granularity::PerAxis { len, inner, .. } => i / inner % len,
        Granularity::Blocked {
            len,
            inner,
            blocks,
            block,
            ..
        } => {
            let (outer, a, inn) = (i / (len * inner), i / inner % len, i % inner);
            (outer * blocks + a / block) * inner + inn
        }
    }
}

/// Scale and optional zero point (inputs 1 and 2).
fn params<'a>(ins: &[Option<&'a Tensor>]) -> Result<(&'a Tensor, Option<&'a Tensor>), EvalError> {
    Ok((required(ins, 1)?, optional(ins, 2)))
}

fn param(t: &Tensor) -> Param<'_> {
    Param {
        dtype: t.dtype(),
        dims: t.dims(),
    }
}

fn as_f64(s: Scalar) -> f64 {
    match s {
        Scalar::Int(v) => v as f64,
        Scalar::Float(f) => f,
    }
}

fn quantize(
    ins: &[Option<&Tensor>],
    to: DType,
    axis: i64,
    block_size: i64,
    saturate: bool,
    precision: Option<DType>,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let x = required(ins, 0)?;
    let (scale, zp) = params(ins)?;
    let QuantizePlan {
        granularity: g,
        target,
        precision: p,
    } = quant::quantize_plan(
        x.dtype(),
        x.dims(),
        param(scale),
        zp.map(param),
        to,
        axis,
        block_size,
        precision,
    )?;
    ctx.check_alloc(to, x.dims())?;
    let zero = |j: usize| zp.map_or(0.0, |z| as_f64(scalar_at(z, j)));
    let value = |i: usize| {
        let j = scale_index(&g, i);
        let s = round_float(p, as_f64(scalar_at(scale, j)));
        let q = round_float(p, round_float(p, as_f64(scalar_at(x, i))) / s);
        match target {
            QuantTarget::Int { lo, hi } => {
                let y = q.round_ties_even() + zero(j);
                Scalar::Int(if y.is_nan() { lo } else { y.clamp(lo, hi) } as i128)
            }
            QuantTarget::Float => Scalar::Float(q + zero(j)),
        }
    };
    Ok(build(
        to,
        x.dims().to_vec(),
        x.len(),
        value,
        saturate,
        RoundMode::Up,
    ))
}

fn dequantize(
    ins: &[Option<&Tensor>],
    to: DType,
    axis: i64,
    block_size: i64,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let x = required(ins, 0)?;
    let (scale, zp) = params(ins)?;
    let g = quant::dequantize_plan(
        x.dtype(),
        x.dims(),
        scale.dims(),
        zp.map(param),
        to,
        axis,
        block_size,
    )?;
    ctx.check_alloc(to, x.dims())?;
    let value = |i: usize| {
        let j = scale_index(&g, i);
        let s = as_f64(scalar_at(scale, j));
        let d = match (scalar_at(x, i), zp.map(|z| scalar_at(z, j))) {
            (Scalar::Int(a), Some(Scalar::Int(b))) => (a - b) as f64,
            (a, b) => as_f64(a) - b.map_or(0.0, as_f64),
        };
        let y = if to == DType::F64 {
            d * s
        } else {
            (d as f32 * s as f32) as f64
        };
        Scalar::Float(y)
    };
    Ok(build(
        to,
        x.dims().to_vec(),
        x.len(),
        value,
        true,
        RoundMode::Up,
    ))
}

/// DynamicQuantizeLinear(x: f32) -> (y: u8, y_scale: f32, y_zero_point: u8), every step in f32
/// as the spec's formulas (and the ONNX reference) compute it. NaN in the input propagates to the
/// scale; NaN quantizes to 0.
fn dynamic_quantize(x: &Tensor, outs: &[ValueType]) -> Result<Vec<Tensor>, EvalError> {
    let declared: Vec<DType> = outs.iter().map(|t| t.dtype).collect();
    quant::check_dynamic_quantize(x.dtype(), &declared)?;
    let v = x
        .to_vec::<f32>()
        .ok_or_else(|| EvalError::invalid("input bytes do not match its dtype"))?;
    let nan = v.iter().any(|f| f.is_nan());
    // The range always includes 0, which also covers an empty input.
    let (mut lo, mut hi) = (0f32, 0f32);
    for &f in &v {
        lo = lo.min(f);
        hi = hi.max(f);
    }
    if nan {
        (lo, hi) = (f32::NAN, f32::NAN);
    }
    let scale = if hi == lo { 1.0 } else { hi - lo } / 255.0;
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even();
    let q = |f: f32| -> u8 {
        let y = (f / scale).round_ties_even() + zp;
        if y.is_nan() {
            0
        } else {
            y.clamp(0.0, 255.0) as u8
        }
    };
    let zp_u8 = if zp.is_nan() { 0 } else { zp as u8 };
    Ok(vec![
        Tensor::from_vec(x.dims().to_vec(), v.iter().map(|&f| q(f)).collect()),
        Tensor::scalar(scale),
        Tensor::scalar(zp_u8),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Quant, ins: &[&Tensor], out: DType) -> Result<Tensor, EvalError> {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
        eval(
            &op,
            &ins,
            &[ValueType::unknown_shape(out)],
            &EvalCtx::default(),
        )
        .map(|mut v| v.remove(0))
    }

    fn q(axis: i64, block_size: i64) -> Quant {
        Quant::QuantizeLinear {
            axis,
            block_size,
            output_dtype: None,
            saturate: true,
            precision: None,
        }
    }

    fn dq(axis: i64, block_size: i64) -> Quant {
        Quant::DequantizeLinear {
            axis,
            block_size,
            output_dtype: None,
        }
    }

    #[test]
    fn quantize_per_tensor_rounds_half_even_and_saturates() {
        let x = Tensor::from_vec(
            vec![8],
            vec![0.0f32, 2.0, 3.0, 5.0, 1000.0, -254.0, -1000.0, f32::NAN],
        );
        let s = Tensor::scalar(2.0f32);
        let z = Tensor::scalar(128u8);
        let y = run(q(1, 0), &[&x, &s, &z], DType::U8).unwrap();
        assert_eq!(
            y.to_vec::<u8>().unwrap(),
            [128, 129, 130, 130, 255, 1, 0, 0]
        );
        let z = Tensor::from_bits(DType::I4, vec![], vec![1]);
        let y = run(q(1, 0), &[&x, &s, &z], DType::I4).unwrap();
        let got: Vec<i8> = y.to_vec::<u8>().unwrap().iter().map(|&b| b as i8).collect();
        assert_eq!(got, [1, 2, 3, 3, 7, -8, -8, -8]);
    }

    #[test]
    fn quantize_per_axis_and_blocked() {
        let x = Tensor::from_vec(
            vec![2, 4],
            vec![6.0f32, 12.0, 50.0, 5.0, 1.0, 8.0, 4.0, 5.0],
        );
        let s = Tensor::from_vec(vec![2, 2], vec![1.5f32, 2.5, 3.0, 4.9]);
        let z = Tensor::from_vec(vec![2, 2], vec![0u8, 1, 1, 0]);
        let y = run(q(1, 2), &[&x, &s, &z], DType::U8).unwrap();
        assert_eq!(y.to_vec::<u8>().unwrap(), [4, 8, 21, 3, 1, 4, 1, 1]);
        let s = Tensor::from_vec(vec![2], vec![2.0f32, 4.0]);
        let y = run(q(0, 0), &[&x, &s], DType::U8).unwrap();
        assert_eq!(y.to_vec::<u8>().unwrap(), [3, 6, 25, 2, 0, 2, 1, 1]);
        // The wrong number of blocks is rejected.
        let s = Tensor::from_vec(vec![2, 3], vec![1.0f32; 6]);
        assert!(run(q(1, 2), &[&x, &s], DType::U8).is_err());
    }

    #[test]
    fn quantize_to_float8() {
        let x = Tensor::from_vec(vec![5], vec![0.0f32, 1.0, 2.0, 1e5, 200.0]);
        let s = Tensor::scalar(2.0f32);
        let z = Tensor::from_bits(DType::F8E4M3FN, vec![1], vec![0]);
        let y = run(q(1, 0), &[&x, &s, &z], DType::F8E4M3FN).unwrap();
        assert_eq!(y.to_vec::<u8>().unwrap(), [0, 48, 56, 126, 108]);
    }

    #[test]
    fn dequantize() {
        let x = Tensor::from_vec(vec![4], vec![0u8, 3, 128, 255]);
        let s = Tensor::scalar(2.0f32);
        let z = Tensor::scalar(128u8);
        let y = run(dq(1, 0), &[&x, &s, &z], DType::F32).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), [-256.0, -250.0, 0.0, 254.0]);
        let x = Tensor::from_bits(DType::I4, vec![5], vec![0, 1, 7, 0xfc, 0xf8]);
        let z = Tensor::from_bits(DType::I4, vec![1], vec![1]);
        let y = run(dq(0, 0), &[&x, &s, &z], DType::F16).unwrap();
        let want: Vec<half::f16> = [-2.0, 0.0, 12.0, -10.0, -18.0]
            .iter()
            .map(|&v| half::f16::from_f32(v))
            .collect();
        assert_eq!(y.to_vec::<half::f16>().unwrap(), want);
        let x = Tensor::from_vec(vec![1, 4], vec![3u8, 89, 34, 200]);
        let s = Tensor::from_vec(vec![1, 2], vec![3.0f32, 2.0]);
        let z = Tensor::from_vec(vec![1, 2], vec![1u8, 0]);
        let y = run(dq(1, 2), &[&x, &s, &z], DType::F32).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), [6.0, 264.0, 68.0, 400.0]);
    }

    #[test]
    fn dynamic_quantize() {
        let x = Tensor::from_vec(vec![6], vec![0.0f32, 2.0, -3.0, -2.5, 1.34, 0.5]);
        let outs = [DType::U8, DType::F32, DType::U8].map(ValueType::unknown_shape);
        let r = eval(
            &Quant::DynamicQuantizeLinear,
            &[Some(&x)],
            &outs,
            &EvalCtx::default(),
        )
        .unwrap();
        assert_eq!(r[0].to_vec::<u8>().unwrap(), [153, 255, 0, 26, 221, 179]);
        assert_eq!(r[1].to_vec::<f32>().unwrap(), [5.0f32 / 255.0]);
        assert_eq!(r[2].to_vec::<u8>().unwrap(), [153]);
    }
}
