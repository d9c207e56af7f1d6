//! Transcendental functions written in the loop language (inline polynomial code on every ISA,
//! never a libm call), each for F32 and F64 operands, with documented, tested max errors.
//!
//! API contract (every function takes the builder to bind shared subexpressions with `let_`):
//! `exp, expm1, log, log1p, tanh, erf, erfc, sigmoid` of one operand and `pow` of two, the result
//! in the operand's type. NaN propagates, ±inf and ±0 follow IEEE/libm conventions.
//!
//! Every function is one straight-line expression (branches are `select`s, so both sides are
//! computed; none of them can trap). The F64 versions are the real implementations; an F32
//! operand is widened, computed in F64 and rounded once, which makes the F32 results all but
//! correctly rounded (what the interpreter does too: its float ops evaluate in f64) — except
//! for `exp`, `sigmoid` and `tanh`, the activations of the hot elementwise chains and
//! epilogues, which have F32 implementations of their own ([`f32_native`]): f32 and i32 lane
//! operations only, so the vectorizer turns their loops into 4-lane SIMD (an f64 polynomial
//! with i64 exponent arithmetic stays scalar), at an error of a few ulp.
//!
//! Errors in the doc comments are the maxima measured by the tests (`math_tests.rs`) against
//! Rust's std functions on dense sweeps of the whole input range (`ulp` = the spacing of the
//! result type at the reference value, subnormal spacing for subnormal results); F32 errors are
//! measured against the f64 reference, so 0.5 ulp means correctly rounded but for ties.
use super::builder::Builder;
use super::ir::{Expr, Ty};

/// ln 2 split for Cody–Waite reduction: `LN2_HI` has 25 significant bits, so `k·LN2_HI` is exact
/// for |k| < 2^28; `LN2_LO` is the rest of ln 2 (to 2^-80).
const LN2_HI: f64 = 0.693_147_152_662_277_2;
const LN2_LO: f64 = 2.789_766_808_773_754_5e-8;
const LOG2_E: f64 = std::f64::consts::LOG2_E;

fn f(v: f64) -> Expr {
    Expr::f64(v)
}

fn i64k(v: i64) -> Expr {
    Expr::idx(v)
}

/// Runs the F64 implementation `f64_fn` on `x` (F32 operands widened and rounded back).
fn via_f64(b: &mut Builder, x: Expr, f64_fn: impl FnOnce(&mut Builder, Expr) -> Expr) -> Expr {
    match x.ty {
        Ty::F64 => f64_fn(b, x),
        Ty::F32 => {
            let r = f64_fn(b, x.cast(Ty::F64));
            r.cast(Ty::F32)
        }
        t => panic!("math function of a {t:?} operand"),
    }
}

/// 2^k as an F64 for an I64 `k` in [-1022, 1023] (built from the exponent bits).
fn pow2(k: Expr) -> Expr {
    k.add_k(1023).shl(i64k(52)).bitcast(Ty::F64)
}

/// `y · 2^k` for I64 `k` in [-2044, 2046], with one rounding (the first product is exact for
/// `y` near 1, so subnormal results round once, as libm's do).
fn scale(b: &mut Builder, y: Expr, k: Expr) -> Expr {
    let k = b.let_(k);
    let k1 = b.let_(k.clone().shr(i64k(1)));
    let k2 = k.sub(k1.clone());
    y.mul(pow2(k1)).mul(pow2(k2))
}

/// Horner evaluation of `c[0] + z·(c[1] + z·(…))`, the coefficients rounded to `z`'s type.
fn horner(z: &Expr, c: &[f64]) -> Expr {
    let (last, rest) = c.split_last().expect("coefficients");
    let k = |v: f64| Expr::lit(z.ty, v);
    rest.iter()
        .rev()
        .fold(k(*last), |acc, &ci| k(ci).add(z.clone().mul(acc)))
}

/// 1/n! for n = 2..=13: the Taylor coefficients of (e^r − 1 − r)/r².
const EXPM1_TAYLOR: [f64; 12] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
];

/// Cody–Waite reduction of an F64 `x + lo` (`x` already clamped to a finite range, or NaN;
/// `lo` a small low part or none): `x + lo = k·ln2 + r` with |r| ≤ ln2/2, returning
/// `(k as I64, e^r − 1)`. The polynomial is Taylor to degree 13, whose truncation error on
/// |r| ≤ 0.3466 is below 2^-56 relative.
fn reduce_exp(b: &mut Builder, x: Expr, lo: Option<Expr>) -> (Expr, Expr) {
    let kf = b.let_(x.clone().mul(f(LOG2_E)).nearest());
    let r = x
        .sub(kf.clone().mul(f(LN2_HI)))
        .sub(kf.clone().mul(f(LN2_LO)));
    let r = match lo {
        Some(lo) => r.add(lo),
        None => r,
    };
    let r = b.let_(r);
    let p = r
        .clone()
        .add(r.clone().mul(r.clone()).mul(horner(&r, &EXPM1_TAYLOR)));
    let k = b.let_(kf.cast(Ty::I64));
    (k, b.let_(p))
}

/// e^x. F64: max error 1 ulp, subnormal results included; overflow to +inf above 709.78, 0
/// below −745.13. F32 (single precision, [`f32_native`]): max 0.96 ulp.
pub fn exp(b: &mut Builder, x: Expr) -> Expr {
    if x.ty == Ty::F32 {
        return f32_native::exp(b, x);
    }
    via_f64(b, x, |b, x| {
        // Beyond these, e^x is inf / 0 in f64; clamping keeps k in scale()'s range (NaN stays).
        let xc = b.let_(x.max(f(-746.0)).min(f(710.0)));
        let (k, p) = reduce_exp(b, xc, None);
        scale(b, f(1.0).add(p), k)
    })
}

/// 1/n! for n = 2..=19: Taylor coefficients of (e^x − 1 − x)/x², for |x| < 1 without
/// reduction (truncation error below 2^-60 relative there).
const EXPM1_DIRECT: [f64; 18] = {
    let mut c = [0.0; 18];
    let mut fact = 1.0;
    let mut n = 2;
    while n <= 19 {
        fact *= n as f64;
        c[n - 2] = 1.0 / fact;
        n += 1;
    }
    c
};

/// e^x − 1, accurate near 0 (and −0 for −0). F64: max error 1 ulp. F32: 0.5 ulp.
pub fn expm1(b: &mut Builder, x: Expr) -> Expr {
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        // |x| < 1: the Taylor series itself (reducing there would add the rounding of 2^k·p + …
        // to a result smaller than its terms).
        let direct = x
            .clone()
            .add(x.clone().mul(x.clone()).mul(horner(&x, &EXPM1_DIRECT)));
        // Below −50 the result is −1 to f64 precision; above 710 it overflows.
        let xc = b.let_(x.clone().max(f(-50.0)).min(f(710.0)));
        let (k, p) = reduce_exp(b, xc, None);
        // |k| ≤ 53: 2^k·p + (2^k − 1), where 2^k − 1 is exact. Larger k: e^x − 1 directly.
        let t = b.let_(pow2(k.clone().min(i64k(60))));
        let small = t.clone().mul(p.clone()).add(t.sub(f(1.0)));
        let big = scale(b, f(1.0).add(p), k.clone()).sub(f(1.0));
        let r = Expr::select(k.gt(i64k(53)), big, small);
        let r = Expr::select(x.clone().abs().lt(f(1.0)), direct, r);
        Expr::select(x.clone().eq(f(0.0)), x, r)
    })
}

/// Coefficients 2/(2n+1), n = 1..=10, of the atanh series: log(1+f) = 2s + s·Σ 2s^2n/(2n+1).
const LOG_ATANH: [f64; 10] = [
    2.0 / 3.0,
    2.0 / 5.0,
    2.0 / 7.0,
    2.0 / 9.0,
    2.0 / 11.0,
    2.0 / 13.0,
    2.0 / 15.0,
    2.0 / 17.0,
    2.0 / 19.0,
    2.0 / 21.0,
];

/// x = 2^e·m with m in [√½, √2) for a positive finite F64 `x` (subnormals too): `(e, m − 1)`
/// as F64s, both exact.
fn log_parts(b: &mut Builder, x: Expr) -> (Expr, Expr) {
    // Subnormals are scaled into the normal range first.
    let x = b.let_(x);
    let tiny = b.let_(x.clone().lt(f(f64::MIN_POSITIVE)));
    let xs = Expr::select(tiny.clone(), x.clone().mul(f(2f64.powi(54))), x);
    let bits = b.let_(xs.bitcast(Ty::I64));
    // Offsetting by the bits of √½ makes the exponent field round m into [√½, √2).
    let t = bits.clone().sub(i64k(0x3fe6_a09e_667f_3bcd));
    let e = b.let_(t.shr(i64k(52)));
    let m = bits.sub(e.clone().shl(i64k(52))).bitcast(Ty::F64);
    let e = e.sub(Expr::select(tiny, i64k(54), i64k(0)));
    (b.let_(e.cast(Ty::F64)), b.let_(m.sub(f(1.0))))
}

/// log of a positive finite F64 (garbage otherwise: the caller selects the special cases).
/// log m = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.1716.
fn log_finite(b: &mut Builder, x: Expr) -> Expr {
    let (ef, fr) = log_parts(b, x);
    let s = b.let_(fr.clone().div(f(2.0).add(fr.clone())));
    let z = b.let_(s.clone().mul(s.clone()));
    let big_s = z.clone().mul(horner(&z, &LOG_ATANH));
    // log(1+f) = f − s·(f − S): f is exact, the correction is at most 0.18·f.
    let corr = s.mul(fr.clone().sub(big_s));
    let lo = ef.clone().mul(f(LN2_LO)).sub(corr);
    ef.mul(f(LN2_HI)).add(fr.add(lo))
}

/// Knuth's TwoSum: `a + c = s + e` exactly.
fn two_sum(b: &mut Builder, a: Expr, c: Expr) -> (Expr, Expr) {
    let (a, c) = (b.let_(a), b.let_(c));
    let s = b.let_(a.clone().add(c.clone()));
    let bb = b.let_(s.clone().sub(a.clone()));
    let e = a.sub(s.clone().sub(bb.clone())).add(c.sub(bb));
    (s, b.let_(e))
}

/// Veltkamp's split: `a = hi + lo` with 26-bit halves (|a| < 2^995).
fn split(b: &mut Builder, a: Expr) -> (Expr, Expr) {
    let a = b.let_(a);
    let c = b.let_(a.clone().mul(f(134_217_729.0)));
    let hi = b.let_(c.clone().sub(c.sub(a.clone())));
    (hi.clone(), b.let_(a.sub(hi)))
}

/// Dekker's exact product without FMA: `x·y = p + e` (|x|, |y| < 2^995).
fn two_prod(b: &mut Builder, x: Expr, y: Expr) -> (Expr, Expr) {
    let (x, y) = (b.let_(x), b.let_(y));
    let p = b.let_(x.clone().mul(y.clone()));
    let (xh, xl) = split(b, x);
    let (yh, yl) = split(b, y);
    let e = xh
        .clone()
        .mul(yh.clone())
        .sub(p.clone())
        .add(xh.mul(yl.clone()))
        .add(xl.clone().mul(yh))
        .add(xl.mul(yl));
    (p, b.let_(e))
}

/// log of a positive finite F64 as `hi + lo`, good to about 2^-58 relative (for pow, whose
/// error is this times |y·ln x|): s = f/(2+f) is carried as s_hi + s_lo, the series tail
/// (≤ 1% of the result) in plain f64.
fn log_dd(b: &mut Builder, x: Expr) -> (Expr, Expr) {
    let (ef, fr) = log_parts(b, x);
    let d_hi = b.let_(f(2.0).add(fr.clone()));
    // Exact: |fr| < 2, so this is Fast2Sum's error term.
    let d_lo = fr.clone().sub(d_hi.clone().sub(f(2.0)));
    let s_hi = b.let_(fr.clone().div(d_hi.clone()));
    let (p, pe) = two_prod(b, s_hi.clone(), d_hi.clone());
    let r = fr.sub(p).sub(pe).sub(s_hi.clone().mul(d_lo));
    let s_lo = r.div(d_hi);
    let z = b.let_(s_hi.clone().mul(s_hi.clone()));
    let tail = s_hi.clone().mul(z.clone()).mul(horner(&z, &LOG_ATANH));
    let (h, e1) = two_sum(b, ef.clone().mul(f(LN2_HI)), s_hi.mul(f(2.0)));
    let lo = e1.add(s_lo.mul(f(2.0)).add(tail).add(ef.mul(f(LN2_LO))));
    let lo = b.let_(lo);
    let hi = b.let_(h.clone().add(lo.clone()));
    (hi.clone(), lo.sub(hi.sub(h)))
}

/// Natural logarithm. F64: max error 1 ulp; log(0) = −inf, log(x<0) = NaN,
/// log(+inf) = +inf. F32: 0.5 ulp.
pub fn log(b: &mut Builder, x: Expr) -> Expr {
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        let y = log_finite(b, x.clone());
        let y = Expr::select(x.clone().eq(f(f64::INFINITY)), x.clone(), y);
        let y = Expr::select(x.clone().eq(f(0.0)), f(f64::NEG_INFINITY), y);
        // Negative and NaN operands both fail `x >= 0`.
        Expr::select(x.clone().ge(f(0.0)), y, f(f64::NAN))
    })
}

/// ln(1 + x), accurate near 0. F64: max error 1 ulp. F32: 0.5 ulp.
pub fn log1p(b: &mut Builder, x: Expr) -> Expr {
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        // w = 1 + x rounded; log1p(x) = log(w) + (x − (w − 1))/w corrects the rounding of w.
        let w = b.let_(f(1.0).add(x.clone()));
        let lw = log_finite(b, w.clone());
        let c = x.clone().sub(w.clone().sub(f(1.0))).div(w);
        let y = lw.add(c);
        let y = Expr::select(x.clone().eq(f(f64::INFINITY)), x.clone(), y);
        let y = Expr::select(x.clone().eq(f(-1.0)), f(f64::NEG_INFINITY), y);
        let y = Expr::select(x.clone().eq(f(0.0)), x.clone(), y);
        Expr::select(x.clone().ge(f(-1.0)), y, f(f64::NAN))
    })
}

/// `|a|` with the sign bit of `s` (F64).
fn copysign(a: Expr, s: Expr) -> Expr {
    let sign = s.bitcast(Ty::U64).and(Expr::int(Ty::U64, i64::MIN));
    a.abs().bitcast(Ty::U64).or(sign).bitcast(Ty::F64)
}

/// Taylor coefficients of (tanh x − x)/x³ in powers of x² (2^2n·(2^2n − 1)·B_2n/(2n)!,
/// n = 2..=16, from exact Bernoulli numbers): truncation below 2^-57 relative for |x| < 0.4.
const TANH_TAYLOR: [f64; 15] = [
    -0.3333333333333333,
    0.13333333333333333,
    -0.05396825396825397,
    0.021869488536155203,
    -0.008863235529902197,
    0.003592128036572481,
    -0.0014558343870513183,
    0.000590027440945586,
    -0.00023912911424355248,
    9.691537956929451e-05,
    -3.927832388331683e-05,
    1.5918905069328964e-05,
    -6.451689215655431e-06,
    2.6147711512907546e-06,
    -1.0597268320104654e-06,
];

/// Hyperbolic tangent: its Taylor series below |x| = 0.4, sign(x)·e/(e+2) with
/// e = expm1(2|x|) above. F64: max error 2 ulp. F32 (single precision, [`f32_native`]):
/// 1.8 ulp.
pub fn tanh(b: &mut Builder, x: Expr) -> Expr {
    if x.ty == Ty::F32 {
        return f32_native::tanh(b, x);
    }
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        let z = b.let_(x.clone().mul(x.clone()));
        let series = x
            .clone()
            .add(x.clone().mul(z.clone()).mul(horner(&z, &TANH_TAYLOR)));
        // tanh(22) rounds to 1 in f64; the clamp keeps e finite (NaN propagates through min).
        let a = x.clone().abs().min(f(22.0));
        let e = expm1(b, a.mul(f(2.0)));
        let e = b.let_(e);
        let t = e.clone().div(e.add(f(2.0)));
        let big = copysign(t, x.clone());
        // copysign keeps tanh(−0) = −0, which the series' last addition would lose.
        let series = copysign(series, x.clone());
        Expr::select(x.abs().lt(f(0.4)), series, big)
    })
}

/// 1 / (1 + e^-x), computed from e = e^-|x| so neither side overflows. F64: max error 2 ulp.
/// F32 (single precision, [`f32_native`]): 2.1 ulp.
pub fn sigmoid(b: &mut Builder, x: Expr) -> Expr {
    if x.ty == Ty::F32 {
        return f32_native::sigmoid(b, x);
    }
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        let e = exp(b, x.clone().abs().neg());
        let e = b.let_(e);
        let num = Expr::select(x.lt(f(0.0)), e.clone(), f(1.0));
        num.div(f(1.0).add(e))
    })
}

/// e^(hi + lo) for F64 `hi` and a small `lo` (|lo| ≪ 1): the low part joins the reduced
/// argument, so the rounding of `hi + lo` is never made.
fn exp_dd(b: &mut Builder, hi: Expr, lo: Expr) -> Expr {
    let xc = b.let_(hi.max(f(-746.0)).min(f(710.0)));
    let (k, p) = reduce_exp(b, xc, Some(lo));
    scale(b, f(1.0).add(p), k)
}

/// 2/√π·(−1)^n/(n!·(2n+1)), n = 0..=12: erf(x) = x·Σ c_n x^2n, truncation below 2^-60 for
/// |x| < 0.5.
const ERF_TAYLOR: [f64; 13] = {
    let mut c = [0.0; 13];
    let mut fact = 1.0;
    let mut n = 0;
    while n < 13 {
        if n > 0 {
            fact *= n as f64;
        }
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        c[n] = sign * std::f64::consts::FRAC_2_SQRT_PI / (fact * (2 * n + 1) as f64);
        n += 1;
    }
    c
};

/// erf(x) for |x| < 0.5 (F64).
fn erf_small(x: &Expr) -> Expr {
    let z = x.clone().mul(x.clone());
    x.clone().mul(horner(&z, &ERF_TAYLOR))
}

/// erfc(a) for F64 `a` ≥ 0.5 (NaN for NaN; garbage below 0.5): e^(−a²)·erfcx(a), erfcx from
/// the piecewise table, e^(−a²) with a² split exactly into a high and a low part.
fn erfc_tail(b: &mut Builder, a: Expr) -> Expr {
    use erfc_table::{COEFFS, PIECES, TERMS};
    let bytes = COEFFS.iter().flat_map(|v| v.to_le_bytes()).collect();
    let table = b.table(shrink_ir::DType::F64, &[COEFFS.len()], bytes);
    let a = b.let_(a);
    // erfc(28.4) is far below the smallest subnormal; clamping keeps the index in the table.
    let ac = b.let_(a.clone().min(f(28.4)));
    let j = ac.clone().sub(f(0.5)).floor().cast(Ty::I64);
    let j = b.let_(j.max(i64k(0)).min(i64k(PIECES as i64 - 1)));
    // t = 2·(x − (j + 1)) is exact: both terms are within a factor 2 of each other.
    let t = ac.clone().sub(j.clone().add_k(1).cast(Ty::F64)).mul(f(2.0));
    let t = b.let_(t);
    let base = b.let_(j.mul_k(TERMS as i64));
    let mut g = b.load(&table, base.clone().add_k(TERMS as i64 - 1));
    for i in (0..TERMS - 1).rev() {
        let c = b.load(&table, base.clone().add_k(i as i64));
        g = c.add(t.clone().mul(g));
    }
    // a = ah + al with ah of 26 significant bits, so ah² is exact and a² = ah² + al·(a + ah).
    let ah = b.let_(
        ac.clone()
            .bitcast(Ty::U64)
            .and(Expr::int(Ty::U64, 0xffff_ffff_f800_0000u64 as i64))
            .bitcast(Ty::F64),
    );
    let al = ac.clone().sub(ah.clone());
    let hi = ah.clone().mul(ah.clone()).neg();
    let lo = al.mul(ac.add(ah)).neg();
    let e = exp_dd(b, hi, lo);
    Expr::select(a.ge(f(28.4)), f(0.0), e.mul(g))
}

/// The error function. F64: within 1 ulp of 20 correctly rounded values, within 6 ulp of the
/// test's f64 series reference on the full sweep (that bound includes the reference's own
/// error). F32: 0.5 ulp. erf(±inf) = ±1, erf(−0) = −0.
pub fn erf(b: &mut Builder, x: Expr) -> Expr {
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        let a = b.let_(x.clone().abs());
        let small = erf_small(&x);
        let tail = erfc_tail(b, a.clone());
        let big = copysign(f(1.0).sub(tail), x);
        Expr::select(a.lt(f(0.5)), small, big)
    })
}

/// The complementary error function 1 − erf(x), accurate in relative terms in the positive
/// tail (subnormal results included). F64: as [`erf`] (1 ulp at 20 correctly rounded values
/// up to x = 27, 6 ulp against the sweep reference). F32: 0.5 ulp.
pub fn erfc(b: &mut Builder, x: Expr) -> Expr {
    via_f64(b, x, |b, x| {
        let x = b.let_(x);
        let a = b.let_(x.clone().abs());
        let small = f(1.0).sub(erf_small(&x));
        let tail = erfc_tail(b, a.clone());
        let tail = b.let_(tail);
        let big = Expr::select(x.lt(f(0.0)), f(2.0).sub(tail.clone()), tail);
        Expr::select(a.lt(f(0.5)), small, big)
    })
}

/// x^y for floats, as `e^(y·log|x|)` with the
/// C99/IEEE special cases: pow(x, ±0) = 1 and
/// pow(1, y) = 1 even for NaN, pow(−1, ±inf) = 1, a negative base takes the sign of an odd
/// integer exponent, a finite negative base with a finite non-integer exponent gives NaN, and
/// zeros/infinities follow from log|x| = ∓inf. F32: 0.5 ulp. F64: y·log|x| is formed in
/// double-double (log good to ~2^-58), so the error grows only as |y·ln x|/32 ulp: measured
/// max 2 ulp, with |y·ln x| up to 700. Results that are integers below 2^53 (or their
/// reciprocals) from integer and half-integer exponents up to 64 are exact.
pub fn pow(b: &mut Builder, x: Expr, y: Expr) -> Expr {
    assert_eq!(x.ty, y.ty, "pow operands");
    let ty = x.ty;
    let (x, y) = (x.cast(Ty::F64), y.cast(Ty::F64));
    let x = b.let_(x);
    let y = b.let_(y);
    let a = b.let_(x.clone().abs());
    // y·log|x| as a double-double zh + zl, so that exp sees the product's rounding error.
    let (lh, ll) = log_dd(b, a.clone());
    // 0, inf and NaN take log's special values (log_dd would read their bits as numbers).
    let special = b.let_(
        a.clone()
            .eq(f(0.0))
            .or(a.clone().lt(f(f64::INFINITY)).not()),
    );
    let lh = Expr::select(special.clone(), log(b, a.clone()), lh);
    let (zh, ze) = two_prod(b, y.clone(), lh);
    let zl = ze.add(y.clone().mul(ll));
    // Beyond these the result over/underflows anyway (and the split of y could overflow).
    let keep = special
        .not()
        .and(zh.clone().abs().lt(f(1e4)))
        .and(y.clone().abs().lt(f(1e290)));
    let zl = Expr::select(keep, zl, f(0.0));
    let mag = exp_dd(b, zh, zl);
    let is_int = b.let_(y.clone().trunc().eq(y.clone()));
    // Integer and half-integer exponents up to 64 whose result is an exact integer (9^3 is 729,
    // not 728.99…, which an integer Pow would truncate): square-and-multiply (and a square root).
    let n = b.let_(y.clone().abs().min(f(127.0)).cast(Ty::I64));
    let (mut acc, mut sq) = (f(1.0), a.clone());
    for bit in 0..7 {
        let set = n.clone().shr(i64k(bit)).and(i64k(1)).eq(i64k(1));
        acc = b.let_(Expr::select(set, acc.clone().mul(sq.clone()), acc));
        if bit < 6 {
            sq = b.let_(sq.clone().mul(sq));
        }
    }
    // Half-integer exponents take one correctly rounded square root (4^1.5 is 8).
    let twice = y.clone().mul(f(2.0));
    let half_int = twice.clone().trunc().eq(twice);
    let acc = Expr::select(is_int.clone(), acc.clone(), acc.mul(a.clone().sqrt()));
    let acc = b.let_(acc);
    // Taken only when x^|y| is an integer below 2^53: then every partial product was an exact
    // integer too, so the result is exact (1/x^|y| rounds once).
    let exact = acc
        .clone()
        .trunc()
        .eq(acc.clone())
        .and(acc.clone().lt(f(9_007_199_254_740_992.0)));
    let acc = Expr::select(y.clone().lt(f(0.0)), f(1.0).div(acc.clone()), acc);
    let small = half_int.and(y.clone().abs().le(f(64.0))).and(exact);
    let mag = b.let_(Expr::select(small, acc, mag));
    let half = b.let_(y.clone().mul(f(0.5)));
    let odd = is_int.clone().and(half.clone().trunc().ne(half));
    let neg = x.clone().bitcast(Ty::I64).lt(i64k(0));
    let r = Expr::select(neg.and(odd), mag.clone().neg(), mag);
    let finite_neg = x.clone().lt(f(0.0)).and(x.clone().gt(f(f64::NEG_INFINITY)));
    let y_finite = y.clone().abs().lt(f(f64::INFINITY));
    let bad = finite_neg.and(y_finite.clone()).and(is_int.not());
    let r = Expr::select(bad, f(f64::NAN), r);
    // |x| = 1 with an infinite exponent: 0·inf in the product; the limit is 1.
    let y_inf = y.clone().abs().eq(f(f64::INFINITY));
    let r = Expr::select(a.eq(f(1.0)).and(y_inf), f(1.0), r);
    let r = Expr::select(y.eq(f(0.0)).or(x.eq(f(1.0))), f(1.0), r);
    r.cast(ty)
}

#[path = "erfc_table.rs"]
mod erfc_table;

#[cfg(test)]
#[path = "math_tests.rs"]
mod tests;

/// The F32 implementations of `exp`, `sigmoid` and `tanh`: the same methods as the F64 ones at
/// single precision, written with f32 and i32 operations of one width only, so a loop of them
/// vectorizes. Errors (measured by `math_tests.rs` against the f64 reference) are in the
/// public functions' docs.
mod f32_native {
    use super::{Builder, EXPM1_TAYLOR, Expr, TANH_TAYLOR, Ty, horner};

    fn f(v: f64) -> Expr {
        Expr::f32(v as f32)
    }

    fn i(v: i64) -> Expr {
        Expr::int(Ty::I32, v)
    }

    /// Terms of the F64 series e^r uses here: 1/n! for n = 2..=7, truncation below 2^-27
    /// relative on |r| ≤ ln2/2.
    const EXP_TERMS: usize = 6;

    /// ln 2 in two parts for the reduction: the high part has 9 significant bits, so `k·hi` is
    /// exact for every `k` the clamp allows.
    const LN2_HI: f64 = 0.693_359_375;
    const LN2_LO: f64 = std::f64::consts::LN_2 - LN2_HI;

    /// 1.5 · 2^23: adding and subtracting it rounds an f32 below 2^22 to an integer, nearest
    /// even, with plain additions (a native vector round is missing on some targets).
    const ROUNDER: f64 = 12_582_912.0;

    /// 2^k as an f32 for an I32 `k` in [-126, 127] (the exponent bits).
    fn pow2(k: Expr) -> Expr {
        k.add(i(127)).shl(i(23)).bitcast(Ty::F32)
    }

    /// e^x: `x = k·ln2 + r`, e^r by its Taylor series, scaled by 2^k in two steps (subnormal
    /// results round once). Beyond the clamp e^x is inf or 0 in f32 (NaN passes the clamp).
    pub(super) fn exp(b: &mut Builder, x: Expr) -> Expr {
        let xc = b.let_(x.max(f(-104.0)).min(f(89.0)));
        let kf = b.let_(
            xc.clone()
                .mul(f(std::f64::consts::LOG2_E))
                .add(f(ROUNDER))
                .sub(f(ROUNDER)),
        );
        let r = xc
            .sub(kf.clone().mul(f(LN2_HI)))
            .sub(kf.clone().mul(f(LN2_LO)));
        let r = b.let_(r);
        let p = r.clone().add(
            r.clone()
                .mul(r.clone())
                .mul(horner(&r, &EXPM1_TAYLOR[..EXP_TERMS])),
        );
        let k = b.let_(kf.cast(Ty::I32));
        let k1 = b.let_(k.clone().shr(i(1)));
        let k2 = k.sub(k1.clone());
        f(1.0).add(p).mul(pow2(k1)).mul(pow2(k2))
    }

    /// 1 / (1 + e^-x) from e = e^-|x|, so neither side overflows.
    pub(super) fn sigmoid(b: &mut Builder, x: Expr) -> Expr {
        let x = b.let_(x);
        let e = exp(b, x.clone().abs().neg());
        let e = b.let_(e);
        let num = Expr::select(x.lt(f(0.0)), e.clone(), f(1.0));
        num.div(f(1.0).add(e))
    }

    /// `|a|` with the sign bit of `s`.
    fn copysign(a: Expr, s: Expr) -> Expr {
        let sign = s.bitcast(Ty::I32).and(i(i32::MIN as i64));
        a.abs().bitcast(Ty::I32).or(sign).bitcast(Ty::F32)
    }

    /// Taylor series below |x| = 0.4 (to x^17), `1 − 2/(e^2|x| + 1)` with the sign of x above.
    pub(super) fn tanh(b: &mut Builder, x: Expr) -> Expr {
        let x = b.let_(x);
        let z = b.let_(x.clone().mul(x.clone()));
        let series = x
            .clone()
            .add(x.clone().mul(z.clone()).mul(horner(&z, &TANH_TAYLOR[..7])));
        // tanh(9.1) rounds to 1 in f32; the clamp keeps e finite (NaN passes it).
        let a = x.clone().abs().min(f(9.5));
        let e = exp(b, a.mul(f(2.0)));
        let t = f(1.0).sub(f(2.0).div(e.add(f(1.0))));
        let big = copysign(t, x.clone());
        // copysign keeps tanh(−0) = −0.
        let series = copysign(series, x.clone());
        Expr::select(x.abs().lt(f(0.4)), series, big)
    }
}
