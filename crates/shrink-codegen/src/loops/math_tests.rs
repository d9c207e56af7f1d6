//! Accuracy tests of the math library: each function JIT-compiled for F64 and F32 and compared
//! with Rust's std on dense sweeps of its whole input range, specials and subnormals included.
use super::*;
use crate::loops::Place;
use crate::loops::testing::run_kernel;
use shrink_ir::DType;

type MathFn = fn(&mut Builder, Expr) -> Expr;

fn run_f64(fun: MathFn, xs: &[f64]) -> Vec<f64> {
    let mut b = Builder::new("t");
    let n = xs.len();
    let x = b.buffer(Place::Input(0), DType::F64, &[n]);
    let y = b.buffer(Place::Output(0), DType::F64, &[n]);
    b.for_(n, |b, i| {
        let v = b.load(&x, i.clone());
        let r = fun(b, v);
        b.store(&y, i, r);
    });
    let k = b.finish().unwrap();
    let bytes = xs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (code, outs) = run_kernel(&k, &[bytes], &[n * 8], 0);
    assert_eq!(code, 0);
    outs[0]
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn run_f32(fun: MathFn, xs: &[f32]) -> Vec<f32> {
    let mut b = Builder::new("t");
    let n = xs.len();
    let x = b.buffer(Place::Input(0), DType::F32, &[n]);
    let y = b.buffer(Place::Output(0), DType::F32, &[n]);
    b.for_(n, |b, i| {
        let v = b.load(&x, i.clone());
        let r = fun(b, v);
        b.store(&y, i, r);
    });
    let k = b.finish().unwrap();
    let bytes = xs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (code, outs) = run_kernel(&k, &[bytes], &[n * 4], 0);
    assert_eq!(code, 0);
    outs[0]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The spacing of f64 values at `v` (subnormal spacing below the normal range).
fn ulp64(v: f64) -> f64 {
    let a = v.abs();
    if a == f64::MAX {
        a - a.next_down()
    } else {
        a.next_up() - a
    }
}

/// The spacing of f32 values at `v`, as an f64.
fn ulp32(v: f64) -> f64 {
    let a = (v as f32).abs();
    if a == f32::MAX {
        (a - a.next_down()) as f64
    } else {
        (a.next_up() - a) as f64
    }
}

/// Error of `got` against `want` in ulps of `want`; specials must match exactly (inf and NaN
/// by kind, zeros by sign).
fn err(got: f64, want: f64, ulp: fn(f64) -> f64, x: f64) -> f64 {
    if want.is_nan() || got.is_nan() {
        assert!(
            want.is_nan() && got.is_nan(),
            "x={x:e}: got {got:e} want {want:e}"
        );
        return 0.0;
    }
    if want.is_infinite() || got.is_infinite() || want == 0.0 && got == 0.0 {
        assert!(
            got == want && got.is_sign_negative() == want.is_sign_negative(),
            "x={x:e}: got {got:e} want {want:e}"
        );
        return 0.0;
    }
    (got - want).abs() / ulp(want)
}

/// Test inputs: the specials, subnormals, a geometric sweep of both signs over every binade, and
/// a uniform sweep over `[lo, hi]`.
fn inputs64(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        1.0,
        -1.0,
        0.5,
        2.0,
    ];
    let mut bits: u64 = 1;
    while bits < 0x7ff0_0000_0000_0000 {
        let x = f64::from_bits(bits);
        v.push(x);
        v.push(-x);
        bits += 0x0000_3e7f_0000_1234;
    }
    for i in 0..=n {
        v.push(lo + (hi - lo) * i as f64 / n as f64);
    }
    v
}

fn inputs32(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
    ];
    let mut bits: u32 = 1;
    while bits < 0x7f80_0000 {
        let x = f32::from_bits(bits);
        v.push(x);
        v.push(-x);
        bits += 0x0000_1f3b;
    }
    for i in 0..=n {
        v.push(lo + (hi - lo) * i as f32 / n as f32);
    }
    v
}

/// Asserts `fun` is within `max64` ulps (F64) and `max32` ulps (F32, against the f64 reference)
/// of `reference`, returning the measured maxima.
fn check(
    name: &str,
    fun: MathFn,
    reference: fn(f64) -> f64,
    range: (f64, f64),
    max64: f64,
    max32: f64,
) {
    let xs = inputs64(range.0, range.1, 200_000);
    let got = run_f64(fun, &xs);
    let mut worst = (0.0, 0.0);
    for (&x, &g) in xs.iter().zip(&got) {
        let e = err(g, reference(x), ulp64, x);
        if e > worst.0 {
            worst = (e, x);
        }
    }
    let xs = inputs32(range.0 as f32, range.1 as f32, 200_000);
    let got = run_f32(fun, &xs);
    let mut worst32 = (0.0, 0.0);
    for (&x, &g) in xs.iter().zip(&got) {
        let want = reference(x as f64);
        let e = if (want as f32).is_infinite() || want as f32 == 0.0 {
            err(g as f64, want as f32 as f64, ulp32, x as f64)
        } else {
            err(g as f64, want, ulp32, x as f64)
        };
        if e > worst32.0 {
            worst32 = (e, x as f64);
        }
    }
    eprintln!(
        "{name}: f64 max {:.3} ulp at {:e}; f32 max {:.3} ulp at {:e}",
        worst.0, worst.1, worst32.0, worst32.1
    );
    assert!(worst.0 <= max64, "{name} f64: {worst:?}");
    assert!(worst32.0 <= max32, "{name} f32: {worst32:?}");
}

#[test]
fn exp_accuracy() {
    // F32 has its own single-precision implementation (vectorizable), hence more than 0.5 ulp.
    check("exp", exp, f64::exp, (-760.0, 720.0), 1.0, 1.0);
}

#[test]
fn expm1_accuracy() {
    check("expm1", expm1, f64::exp_m1, (-60.0, 720.0), 1.0, 0.501);
    let y = run_f64(expm1, &[-0.0, 1e-300]);
    assert!(y[0] == 0.0 && y[0].is_sign_negative() && y[1] == 1e-300);
}

#[test]
fn log_accuracy() {
    check("log", log, f64::ln, (0.0, 10.0), 1.0, 0.501);
}

#[test]
fn log1p_accuracy() {
    check("log1p", log1p, f64::ln_1p, (-1.0, 10.0), 1.0, 0.501);
}

#[test]
fn tanh_accuracy() {
    check("tanh", tanh, f64::tanh, (-25.0, 25.0), 2.0, 2.0);
}

fn sigmoid_ref(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[test]
fn sigmoid_accuracy() {
    check("sigmoid", sigmoid, sigmoid_ref, (-800.0, 50.0), 2.0, 2.5);
}

/// erf and erfc to about 1e-16 relative, independently of the code under test: the positive
/// Taylor-type series e^(−x²)·Σ 2ⁿx^(2n+1)/(2n+1)!! below 1 (erfc below 0.5), the continued
/// fraction of erfc above, with e^(−x²) from an exact split of x².
fn exp_neg_sq(x: f64) -> f64 {
    let h = f64::from_bits(x.to_bits() & 0xffff_ffff_f800_0000);
    let l = x - h;
    (-h * h).exp() * (-l * (x + h)).exp()
}

fn erf_ref(x: f64) -> f64 {
    let a = x.abs();
    if a.is_nan() {
        return a;
    }
    let r = if a < 1.0 {
        let (mut term, mut sum) = (a, a);
        for n in 1..200 {
            term *= 2.0 * a * a / (2 * n + 1) as f64;
            sum += term;
        }
        std::f64::consts::FRAC_2_SQRT_PI * exp_neg_sq(a) * sum
    } else {
        1.0 - erfc_ref(a)
    };
    r.copysign(x)
}

fn erfc_ref(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < 0.5 {
        return 1.0 - erf_ref(x);
    }
    if x > 28.0 {
        return 0.0;
    }
    let mut f = x;
    let terms = if x < 1.0 {
        40000
    } else if x < 2.5 {
        4000
    } else {
        400
    };
    for k in (1..=terms).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    exp_neg_sq(x) / (std::f64::consts::PI.sqrt() * f)
}

#[test]
fn erf_accuracy() {
    check("erf", erf, erf_ref, (-7.0, 7.0), 8.0, 0.501);
    check("erfc", erfc, erfc_ref, (-3.0, 28.0), 8.0, 0.501);
    // Correctly rounded values (45-digit arithmetic): within 1 ulp (the f64 sweep above is
    // limited by the accuracy of the reference).
    let erf_spots: [(f64, f64); 20] = [
        (0.3238, 0.35299177196432013),
        (0.1508, 0.16887848463458244),
        (0.6509, 0.642694530043589),
        (0.0724, 0.08155213462998197),
        (0.5359, 0.5514754083139013),
        (0.3657, 0.39496802195535385),
        (0.058, 0.06537267892217197),
        (0.5074, 0.5269787490286733),
        (1.1875, 0.9069217197816865),
        (3.1682, 0.9999925535600673),
        (1.3493, 0.9436344164392435),
        (1.4536, 0.9601886385315272),
        (3.1226, 0.9999899466733303),
        (5.1343, 0.9999999999996158),
        (1.619, 0.9779561671887036),
        (2.1162, 0.9972353179408597),
        (4.1372, 0.9999999951103387),
        (5.7385, 0.9999999999999996),
        (3.8855, 0.9999999609127482),
        (2.9834, 0.9999754790944447),
    ];
    let erfc_spots: [(f64, f64); 20] = [
        (2.9406, 3.201530353959168e-05),
        (0.6165, 0.3832833055296572),
        (2.6462, 0.00018234950278832543),
        (1.224, 0.08345222813234768),
        (0.8606, 0.2235767499273541),
        (0.7945, 0.26118586488675727),
        (1.2712, 0.07221690665603084),
        (2.5403, 0.000327487071380767),
        (7.3736, 1.8503698432985125e-25),
        (17.0747, 7.975915355987636e-129),
        (18.4617, 2.897569127914139e-150),
        (12.012, 1.0157173280948652e-64),
        (16.2554, 6.0602633226678246e-117),
        (4.5195, 1.642252472353127e-10),
        (4.4423, 3.3346958423059733e-10),
        (7.9842, 1.447724819217395e-29),
        (19.4657, 7.971717117868855e-167),
        (13.3477, 1.7800313962823508e-79),
        (10.6024, 8.029394258317752e-51),
        (17.1706, 2.972208866994834e-130),
    ];
    for (spots, fun) in [(erf_spots, erf as MathFn), (erfc_spots, erfc)] {
        let xs: Vec<f64> = spots.iter().map(|s| s.0).collect();
        for (g, (x, w)) in run_f64(fun, &xs).into_iter().zip(spots) {
            assert!((g - w).abs() <= ulp64(w), "x={x}: {g} vs {w}");
        }
    }
}

fn run_pow(xs: &[f64], ys: &[f64], ty: DType) -> Vec<f64> {
    let mut b = Builder::new("t");
    let n = xs.len();
    let x = b.buffer(Place::Input(0), ty, &[n]);
    let yb = b.buffer(Place::Input(1), ty, &[n]);
    let out = b.buffer(Place::Output(0), ty, &[n]);
    b.for_(n, |b, i| {
        let u = b.load(&x, i.clone());
        let v = b.load(&yb, i.clone());
        let r = pow(b, u, v);
        b.store(&out, i, r);
    });
    let k = b.finish().unwrap();
    let enc = |v: &[f64]| -> Vec<u8> {
        if ty == DType::F64 {
            v.iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            v.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect()
        }
    };
    let w = if ty == DType::F64 { 8 } else { 4 };
    let (code, outs) = run_kernel(&k, &[enc(xs), enc(ys)], &[n * w], 0);
    assert_eq!(code, 0);
    outs[0]
        .chunks(w)
        .map(|c| {
            if w == 8 {
                f64::from_le_bytes(c.try_into().unwrap())
            } else {
                f32::from_le_bytes(c.try_into().unwrap()) as f64
            }
        })
        .collect()
}

#[test]
fn pow_special_cases_and_accuracy() {
    let vals = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        -2.0,
        3.0,
        -3.0,
        2.5,
        -2.5,
        1e-310,
        1e300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let (mut xs, mut ys) = (vec![], vec![]);
    for &x in &vals {
        for &y in &vals {
            xs.push(x);
            ys.push(y);
        }
    }
    // A sweep of ordinary operands.
    for i in 0..20_000 {
        xs.push(((i * 7919) % 10_007) as f64 / 97.0 - 40.0);
        ys.push(((i * 104_729) % 9_973) as f64 / 613.0 - 8.0);
    }
    // Large |y·ln x|, where the rounding of the product matters most.
    for i in 0..20_000 {
        xs.push(1.0 + ((i * 7919) % 10_007) as f64 * 0.731);
        ys.push(((i * 104_729) % 9_973) as f64 / 71.3 - 70.0);
    }
    for (ty, max) in [(DType::F64, 0.0), (DType::F32, 0.501)] {
        let got = run_pow(&xs, &ys, ty);
        let mut worst: f64 = 0.0;
        for ((&x, &y), &g) in xs.iter().zip(&ys).zip(&got) {
            let (x, y) = if ty == DType::F32 {
                (x as f32 as f64, y as f32 as f64)
            } else {
                (x, y)
            };
            let want = x.powf(y);
            let e = if ty == DType::F32 {
                let w32 = want as f32 as f64;
                if w32.is_infinite() || w32 == 0.0 || want.is_nan() {
                    err(g, w32, ulp32, x)
                } else {
                    err(g, want, ulp32, x)
                }
            } else {
                err(g, want, ulp64, x)
            };
            // The documented f64 bound grows with |y·ln x| (the rounding of the product).
            let bound = if ty != DType::F64 {
                max
            } else {
                let p = (y * x.abs().ln()).abs();
                2.0 + if p.is_finite() { p / 16.0 } else { 0.0 }
            };
            assert!(
                e <= bound,
                "{ty:?} pow({x:e}, {y:e}) = {g:e}, want {want:e}"
            );
            worst = worst.max(e);
        }
        eprintln!("pow {ty:?}: max {worst:.3} ulp");
    }
    // Integer exponents give exact results where they are representable.
    let exact = [
        (9.0, 3.0),
        (3.0, 33.0),
        (-7.0, 5.0),
        (2.0, -10.0),
        (10.0, 15.0),
        (4.0, 1.5),
        (16.0, -2.5),
    ];
    let (xs, ys): (Vec<f64>, Vec<f64>) = exact.iter().copied().unzip();
    for (g, (x, y)) in run_pow(&xs, &ys, DType::F64).into_iter().zip(exact) {
        assert_eq!(g, x.powf(y), "pow({x}, {y})");
    }
}
