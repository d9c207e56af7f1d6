//! Interpreter for the `Unary` family: elementwise functions of one tensor.
//!
//! Sign-only ops (Abs Neg Sign Relu) work on every numeric dtype in the type itself (integers
//! wrap: Abs/Neg of MIN is MIN, as in numpy). Every other function is float-only: it is evaluated
//! in f64 and rounded once to the element type, which makes the oracle at least as accurate as
//! numpy's float32 kernels. NaN propagates unless the ONNX definition selects by a comparison
//! that NaN fails (ThresholdedRelu gives 0, as the reference does).
use super::binary::check_declared;
use super::required;
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_float, dispatch_num};
use shrink_ir::op::{GeluApprox, Unary};
use shrink_ir::{DType, Tensor, ValueType};
use std::f64::consts::{FRAC_2_SQRT_PI, PI, SQRT_2};

pub fn eval(
    op: &Unary,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    _ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let x = required(ins, 0)?;
    let dt = x.dtype();
    let y = match op {
        Unary::Identity => x.clone(),
        Unary::Not => {
            if dt != DType::Bool {
                return Err(EvalError::invalid(format!(
                    "Not needs a bool input, got {dt}"
                )));
            }
            let v = super::binary::elems::<bool>(x)?;
            Tensor::from_vec(x.dims().to_vec(), v.into_iter().map(|b| !b).collect())
        }
        Unary::Abs => sign_only(SignOp::Abs, op, x)?,
        Unary::Neg => sign_only(SignOp::Neg, op, x)?,
        Unary::Sign => sign_only(SignOp::Sign, op, x)?,
        Unary::Relu => sign_only(SignOp::Relu, op, x)?,
        // Every other op is a float function; `float_fn` is exhaustive, so a new variant has to
        // be given one (or an arm above) before this compiles.
        float_op => {
            let f = float_fn(float_op).ok_or_else(|| {
                EvalError::invalid(format!("internal error: {} has no function", op.name()))
            })?;
            dispatch_float!(dt, T => map_f64::<T>(x, f)?, else return Err(unsupported(op, dt)))
        }
    };
    check_declared(outs, &y)?;
    Ok(vec![y])
}

fn unsupported(op: &Unary, dt: DType) -> EvalError {
    EvalError::unsupported(format!("{} on {dt} tensors", op.name()))
}

/// The ops that work on every numeric dtype in the type itself.
#[derive(Clone, Copy)]
enum SignOp {
    Abs,
    Neg,
    Sign,
    Relu,
}

fn sign_only(k: SignOp, op: &Unary, x: &Tensor) -> Result<Tensor, EvalError> {
    let dt = x.dtype();
    dispatch_num!(dt, T => map_num::<T>(k, x), else Err(unsupported(op, dt)))
}

fn map_num<T: Num>(k: SignOp, x: &Tensor) -> Result<Tensor, EvalError> {
    let v = super::binary::elements::<T>(x)?;
    let (zero, one) = (T::zero(), T::one());
    let f = |v: T| -> T {
        match k {
            SignOp::Abs => v.abs(),
            SignOp::Neg => v.neg(),
            // Zero and NaN map to themselves.
            SignOp::Sign if v > zero => one,
            SignOp::Sign if v < zero => zero.sub(one),
            SignOp::Sign => v,
            SignOp::Relu if v < zero => zero,
            SignOp::Relu => v,
        }
    };
    Tensor::from_elements(T::DTYPE, x.dims().to_vec(), v.map(f)).ok_or_else(count_mismatch)
}

fn count_mismatch() -> EvalError {
    EvalError::invalid("the element count does not match the shape")
}

fn map_f64<T: Num>(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor, EvalError> {
    let v = super::binary::elements::<T>(x)?;
    Tensor::from_elements(
        T::DTYPE,
        x.dims().to_vec(),
        v.map(|v| T::from_f64(f(v.to_f64()))),
    )
    .ok_or_else(count_mismatch)
}

/// The f64 function of a float-only unary op (attributes captured).
fn float_fn(op: &Unary) -> Option<Box<dyn Fn(f64) -> f64>> {
    Some(match *op {
        Unary::Sqrt => Box::new(f64::sqrt),
        Unary::Reciprocal => Box::new(|x| 1.0 / x),
        Unary::Exp => Box::new(f64::exp),
        Unary::Log => Box::new(f64::ln),
        Unary::Erf => Box::new(erf),
        Unary::Round => Box::new(f64::round_ties_even),
        Unary::Floor => Box::new(f64::floor),
        Unary::Ceil => Box::new(f64::ceil),
        Unary::Sigmoid => Box::new(sigmoid),
        Unary::Tanh => Box::new(f64::tanh),
        Unary::Softplus => Box::new(softplus),
        Unary::Softsign => Box::new(|x| x / (1.0 + x.abs())),
        Unary::Mish => Box::new(|x| x * softplus(x).tanh()),
        Unary::HardSwish => Box::new(|x| x * clamp01(x / 6.0 + 0.5)),
        Unary::LeakyRelu { alpha } => {
            let a = alpha as f64;
            Box::new(move |x| if x < 0.0 { a * x } else { x })
        }
        Unary::HardSigmoid { alpha, beta } => {
            let (a, b) = (alpha as f64, beta as f64);
            Box::new(move |x| clamp01(a * x + b))
        }
        Unary::Elu { alpha } => {
            let a = alpha as f64;
            Box::new(move |x| if x < 0.0 { a * x.exp_m1() } else { x })
        }
        Unary::Selu { alpha, gamma } => {
            let (a, g) = (alpha as f64, gamma as f64);
            Box::new(move |x| if x > 0.0 { g * x } else { g * a * x.exp_m1() })
        }
        Unary::Celu { alpha } => {
            let a = alpha as f64;
            Box::new(move |x| nan_max(0.0, x) + nan_min(0.0, a * (x / a).exp_m1()))
        }
        Unary::ThresholdedRelu { alpha } => {
            let a = alpha as f64;
            Box::new(move |x| if x > a { x } else { 0.0 })
        }
        Unary::Gelu {
            approximate: GeluApprox::None,
        } => Box::new(|x| 0.5 * x * erfc(-x / SQRT_2)),
        Unary::Gelu {
            approximate: GeluApprox::Tanh,
        } => {
            let k = (2.0 / PI).sqrt();
            Box::new(move |x| 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh()))
        }
        Unary::Swish { alpha } => {
            let a = alpha as f64;
            Box::new(move |x| x * sigmoid(a * x))
        }
        // Not float functions (handled by `eval`); total so a new variant must be placed.
        Unary::Abs | Unary::Neg | Unary::Sign | Unary::Relu | Unary::Not | Unary::Identity => {
            return None;
        }
    })
}

/// `min(max(v, 0), 1)`; `f64::clamp` keeps NaN, as numpy's clip does.
fn clamp01(v: f64) -> f64 {
    v.clamp(0.0, 1.0)
}

/// numpy's `maximum`: NaN if either side is NaN (f64::max would drop it).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `1 / (1 + e^-x)`, written so that neither branch overflows.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)` without overflow for large x and without losing small results for negative x.
fn softplus(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Below this |x| the Maclaurin-type series is used; above, the continued fraction for erfc.
const ERF_SPLIT: f64 = 2.5;

/// The error function to near f64 precision (Rust's `f64::erf` is not stable).
///
/// For |x| < 2.5: erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)) (Abramowitz & Stegun
/// 7.1.6), whose terms are all positive, so there is no cancellation. Beyond that,
/// erf = 1 − erfc with erfc from its continued fraction.
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < ERF_SPLIT {
        erf_series(a)
    } else {
        1.0 - erfc_cf(a)
    };
    r.copysign(x)
}

/// The complementary error function 1 − erf(x), accurate in relative terms for large x too
/// (used by exact Gelu, whose negative tail would otherwise be lost to cancellation).
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x >= ERF_SPLIT {
        erfc_cf(x)
    } else if x > -ERF_SPLIT {
        1.0 - erf(x)
    } else {
        2.0 - erfc_cf(-x)
    }
}

fn erf_series(a: f64) -> f64 {
    let x2 = a * a;
    let (mut term, mut sum) = (a, a);
    // Terms grow until n ≈ x² (< 6.25) and then shrink geometrically; 200 is far beyond need.
    for n in 1..200 {
        term *= 2.0 * x2 / (2 * n + 1) as f64;
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    FRAC_2_SQRT_PI * (-x2).exp() * sum
}

/// erfc(a) for a ≥ 2.5 from the continued fraction
/// erfc(a) = e^(−a²)/√π · 1/(a + (1/2)/(a + (2/2)/(a + (3/2)/(a + …)))), evaluated bottom-up.
fn erfc_cf(a: f64) -> f64 {
    if a > 27.0 {
        return 0.0;
    }
    let mut f = a;
    for k in (1..=120).rev() {
        f = a + (k as f64 / 2.0) / f;
    }
    (-a * a).exp() / (PI.sqrt() * f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Unary, x: Tensor) -> Result<Tensor, EvalError> {
        eval(&op, &[Some(&x)], &[], &EvalCtx::default()).map(|mut v| v.remove(0))
    }

    fn run_f32(op: Unary, x: &[f32]) -> Vec<f32> {
        run(op, Tensor::from_vec(vec![x.len()], x.to_vec()))
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn erf_matches_known_values() {
        // Reference values from Python's math.erf / math.erfc.
        let cases = [
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.4999, 0.9995928300996666),
            (3.0, 0.9999779095030014),
            (-1.5, -0.9661051464753108),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() <= 4e-16,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
        let tails = [
            (3.0, 2.2090496998585438e-05),
            (5.0, 1.5374597944280351e-12),
            (10.0, 2.088487583762545e-45),
            (1.0, 0.15729920705028513),
        ];
        for (x, want) in tails {
            assert!(
                ((erfc(x) - want) / want).abs() <= 1e-13,
                "erfc({x}) = {} want {want}",
                erfc(x)
            );
        }
        assert_eq!(erfc(-30.0), 2.0);
        assert_eq!(erf(40.0), 1.0);
        assert!(erf(-0.0).is_sign_negative() && erf(-0.0) == 0.0);
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn round_is_half_to_even() {
        assert_eq!(
            run_f32(Unary::Round, &[0.5, 1.5, 2.5, -2.5, -4.5, 2.3, 0.9]),
            vec![0., 2., 2., -2., -4., 2., 1.]
        );
    }

    #[test]
    fn integer_sign_ops_wrap() {
        let x = Tensor::from_vec(vec![4], vec![i8::MIN, -3, 0, 5]);
        assert_eq!(
            run(Unary::Abs, x.clone()).unwrap().to_vec::<i8>().unwrap(),
            vec![i8::MIN, 3, 0, 5]
        );
        assert_eq!(
            run(Unary::Neg, x.clone()).unwrap().to_vec::<i8>().unwrap(),
            vec![i8::MIN, 3, 0, -5]
        );
        assert_eq!(
            run(Unary::Sign, x.clone()).unwrap().to_vec::<i8>().unwrap(),
            vec![-1, -1, 0, 1]
        );
        assert_eq!(
            run(Unary::Relu, x.clone()).unwrap().to_vec::<i8>().unwrap(),
            vec![0, 0, 0, 5]
        );
        assert!(run(Unary::Exp, x).is_err());
    }

    #[test]
    fn activations() {
        let y = run_f32(Unary::Relu, &[-1.0, f32::NAN, 2.0]);
        assert!(y[0] == 0.0 && y[1].is_nan() && y[2] == 2.0);
        assert_eq!(
            run_f32(Unary::LeakyRelu { alpha: 0.5 }, &[-2.0, 3.0]),
            vec![-1.0, 3.0]
        );
        assert_eq!(
            run_f32(
                Unary::HardSigmoid {
                    alpha: 0.5,
                    beta: 0.5
                },
                &[-3.0, 0.0, 3.0]
            ),
            vec![0.0, 0.5, 1.0]
        );
        assert_eq!(
            run_f32(Unary::HardSwish, &[-4.0, 0.0, 4.0]),
            vec![0.0, 0.0, 4.0]
        );
        assert_eq!(
            run_f32(Unary::ThresholdedRelu { alpha: 1.0 }, &[1.0, 1.5]),
            vec![0.0, 1.5]
        );
        assert_eq!(run_f32(Unary::Softsign, &[-1.0, 3.0]), vec![-0.5, 0.75]);
        let s = run_f32(Unary::Sigmoid, &[0.0, -1000.0, 1000.0]);
        assert_eq!(s, vec![0.5, 0.0, 1.0]);
        let sp = run_f32(Unary::Softplus, &[0.0, 100.0, -100.0]);
        assert!((sp[0] - 2f32.ln()).abs() < 1e-7 && sp[1] == 100.0 && sp[2] > 0.0 && sp[2] < 1e-43);
        let g = run_f32(
            Unary::Gelu {
                approximate: GeluApprox::None,
            },
            &[1.0, -10.0],
        );
        assert!((g[0] - 0.841_344_7).abs() < 1e-7, "{g:?}");
        assert!(
            g[1] < 0.0 && (g[1] / -7.619853e-23 - 1.0).abs() < 1e-5,
            "{g:?}"
        );
        let e = run_f32(Unary::Elu { alpha: 2.0 }, &[-1.0, 1.0]);
        assert!((e[0] - 2.0 * ((-1f32).exp() - 1.0)).abs() < 1e-6 && e[1] == 1.0);
        let c = run_f32(Unary::Celu { alpha: 2.0 }, &[-1.0, 1.0]);
        assert!((c[0] - 2.0 * ((-0.5f32).exp() - 1.0)).abs() < 1e-6 && c[1] == 1.0);
    }

    #[test]
    fn half_types_and_logic() {
        let x = Tensor::from_vec(
            vec![2],
            vec![half::f16::from_f32(4.0), half::f16::from_f32(0.25)],
        );
        let y = run(Unary::Sqrt, x).unwrap().to_vec::<half::f16>().unwrap();
        assert_eq!(y, vec![half::f16::from_f32(2.0), half::f16::from_f32(0.5)]);
        let b = Tensor::from_vec(vec![2], vec![true, false]);
        assert_eq!(
            run(Unary::Not, b).unwrap().to_vec::<bool>().unwrap(),
            vec![false, true]
        );
        assert!(run(Unary::Not, Tensor::scalar(1u8)).is_err());
        let raw = Tensor::from_bits(DType::F8E4M3FN, vec![2], vec![1, 2]);
        assert_eq!(run(Unary::Identity, raw.clone()).unwrap(), raw);
    }
}
