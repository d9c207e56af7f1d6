//! Edge cases of the elementwise lowerings the conformance suite does not reach: integer Pow,
//! NaN rules of Clip/Max/Min, bit-exact Where, and the activations' tails — each node lowered
//! into one kernel and JIT-run on byte buffers.
use super::*;
use shrink_ir::Op;

/// An input tensor: dtype, dims, little-endian bytes.
type In = (DType, Vec<usize>, Vec<u8>);

fn bytes<T: Copy>(v: &[T], f: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}
fn f32s(v: &[f32]) -> Vec<u8> {
    bytes(v, |x| x.to_le_bytes().to_vec())
}
fn i32s(v: &[i32]) -> Vec<u8> {
    bytes(v, |x| x.to_le_bytes().to_vec())
}
fn i64s(v: &[i64]) -> Vec<u8> {
    bytes(v, |x| x.to_le_bytes().to_vec())
}
fn to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
fn to_i32(b: &[u8]) -> Vec<i32> {
    b.chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Lowers `op` on `ins` (None = absent optional input) to an output of `out` dtype and dims and
/// runs it: the status and the output bytes.
fn run(op: Op, ins: &[Option<In>], out: (DType, Vec<usize>)) -> (i32, Vec<u8>) {
    let ins: Vec<Option<crate::ops::op_testing::In>> = ins
        .iter()
        .map(|t| {
            t.as_ref()
                .map(|(d, dims, bytes)| crate::ops::op_testing::In::new(*d, dims, bytes.clone()))
        })
        .collect();
    let (code, mut outs) = crate::ops::op_testing::run_op(&op, &ins, &[(out.0, &out.1)]);
    (code, outs.remove(0))
}

#[test]
fn integer_pow_wraps_and_refuses_zero_to_negative() {
    let base = (DType::I64, vec![5], i64s(&[3, -1, 2, 2, -3]));
    let exp = (DType::I64, vec![5], i64s(&[40, -3, -1, 64, 3]));
    let (code, y) = run(
        Op::Binary(Binary::Pow),
        &[Some(base), Some(exp)],
        (DType::I64, vec![5]),
    );
    assert_eq!(code, 0);
    let y: Vec<i64> = y
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(y, vec![3i64.wrapping_pow(40), -1, 0, 0, -27]);
    let zero = (DType::I32, vec![1], i32s(&[0]));
    let neg = (DType::I32, vec![1], i32s(&[-1]));
    let (code, _) = run(
        Op::Binary(Binary::Pow),
        &[Some(zero), Some(neg)],
        (DType::I32, vec![1]),
    );
    assert_eq!(code, status::BAD_VALUE);
    // An integer base with a float exponent truncates the f64 result.
    let base = (DType::I32, vec![4], i32s(&[2, 3, 4, 9]));
    let exp = (DType::F32, vec![4], f32s(&[0.5, 2.0, 1.5, 3.0]));
    let (_, y) = run(
        Op::Binary(Binary::Pow),
        &[Some(base), Some(exp)],
        (DType::I32, vec![4]),
    );
    assert_eq!(to_i32(&y), vec![1, 9, 8, 729]);
}

#[test]
fn clip_nan_rules_and_crossed_bounds() {
    let x = (DType::F32, vec![4], f32s(&[-3.0, 0.5, 7.0, f32::NAN]));
    let s = |v: f32| Some((DType::F32, vec![], f32s(&[v])));
    let clip = |lo, hi| {
        run(
            Op::Ternary(Ternary::Clip),
            &[Some(x.clone()), lo, hi],
            (DType::F32, vec![4]),
        )
    };
    let y = to_f32(&clip(s(-1.0), s(1.0)).1);
    assert_eq!(&y[..3], &[-1.0, 0.5, 1.0]);
    assert!(y[3].is_nan());
    let y = to_f32(&clip(s(2.0), s(1.0)).1);
    assert_eq!(&y[..3], &[1.0, 1.0, 1.0]);
    let y = to_f32(&clip(None, s(0.0)).1);
    assert_eq!(&y[..3], &[-3.0, 0.0, 0.0]);
    // A NaN bound wins over every number.
    let y = to_f32(&clip(s(f32::NAN), None).1);
    assert!(y[..3].iter().all(|v| v.is_nan()));
}

#[test]
fn max_min_keep_the_first_nan_and_broadcast() {
    let a = (DType::F32, vec![3], f32s(&[1.0, f32::NAN, 5.0]));
    let b = (DType::F32, vec![2, 1], f32s(&[2.0, 4.0]));
    let c = (DType::F32, vec![], f32s(&[3.0]));
    let ins = [Some(a), Some(b), Some(c)];
    let y = to_f32(&run(Op::Variadic(Variadic::Max), &ins, (DType::F32, vec![2, 3])).1);
    assert_eq!((y[0], y[2], y[3], y[5]), (3.0, 5.0, 4.0, 5.0));
    assert!(y[1].is_nan() && y[4].is_nan());
    let y = to_f32(&run(Op::Variadic(Variadic::Min), &ins, (DType::F32, vec![2, 3])).1);
    assert_eq!((y[0], y[2], y[3], y[5]), (1.0, 2.0, 1.0, 3.0));
    let y = to_f32(&run(Op::Variadic(Variadic::Mean), &ins, (DType::F32, vec![2, 3])).1);
    assert_eq!((y[0], y[2], y[3]), (2.0, 10.0 / 3.0, 8.0 / 3.0));
}

#[test]
fn where_moves_bits_of_any_dtype() {
    let c = (DType::Bool, vec![2, 1], vec![1u8, 0]);
    // float8 payloads, NaN pattern included, must come through unchanged.
    let x = (DType::F8E4M3FN, vec![3], vec![0x7f, 0x01, 0x38]);
    let z = (DType::F8E4M3FN, vec![], vec![0xff]);
    let (_, y) = run(
        Op::Ternary(Ternary::Where),
        &[Some(c), Some(x), Some(z)],
        (DType::F8E4M3FN, vec![2, 3]),
    );
    assert_eq!(y, vec![0x7f, 0x01, 0x38, 0xff, 0xff, 0xff]);
}

#[test]
fn activation_tails() {
    let un = |op: Unary, x: &[f32]| {
        let n = x.len();
        to_f32(
            &run(
                Op::Unary(op),
                &[Some((DType::F32, vec![n], f32s(x)))],
                (DType::F32, vec![n]),
            )
            .1,
        )
    };
    let sp = un(
        Unary::Softplus,
        &[0.0, 100.0, -100.0, f32::NAN, f32::NEG_INFINITY],
    );
    assert_eq!(sp[0], 2f32.ln());
    assert_eq!(sp[1], 100.0);
    assert_eq!(sp[2], (-100f64).exp().ln_1p() as f32);
    assert!(sp[3].is_nan() && sp[4] == 0.0);
    let g = un(
        Unary::Gelu {
            approximate: GeluApprox::None,
        },
        &[1.0, -10.0, 0.0],
    );
    assert!((g[0] - 0.841_344_7).abs() < 1e-7, "{g:?}");
    assert!((g[1] / -7.619853e-23 - 1.0).abs() < 1e-5, "{g:?}");
    let e = un(Unary::Elu { alpha: 2.0 }, &[-1e-8, -1.0, 1.0]);
    assert_eq!(
        e,
        vec![
            (2.0 * (-1e-8f64).exp_m1()) as f32,
            (2.0 * (-1f64).exp_m1()) as f32,
            1.0
        ]
    );
    let s = un(Unary::Sigmoid, &[-1000.0, 1000.0, 0.0]);
    assert_eq!(s, vec![0.0, 1.0, 0.5]);
    let t = un(Unary::ThresholdedRelu { alpha: 1.0 }, &[1.0, 1.5, f32::NAN]);
    assert_eq!(t, vec![0.0, 1.5, 0.0]);
    let m = un(Unary::Mish, &[-30.0, 30.0]);
    let want = |x: f64| (x * (x.max(0.0) + (-x.abs()).exp().ln_1p()).tanh()) as f32;
    assert_eq!(m, vec![want(-30.0), want(30.0)]);
}

/// Sqrt, Reciprocal, Floor, Ceil and Round of f32 run in f32 (so they vectorize) and still give
/// the interpreter's bits: its f64 value rounded once to f32, on a sweep with ties, signed
/// zeros, subnormals, infinities and NaN — enough elements that the vector loop runs.
#[test]
fn correctly_rounded_f32_functions_give_the_interpreters_bits() {
    let mut xs: Vec<f32> = vec![
        0.0,
        -0.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        8_388_607.5,
    ];
    let mut s = 0x1234_5678u32;
    for _ in 0..4000 {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        xs.push(f32::from_bits(s));
    }
    let n = xs.len();
    type Reference = fn(f64) -> f64;
    let cases: [(Unary, Reference); 5] = [
        (Unary::Sqrt, f64::sqrt),
        (Unary::Reciprocal, |x| 1.0 / x),
        (Unary::Floor, f64::floor),
        (Unary::Ceil, f64::ceil),
        (Unary::Round, f64::round_ties_even),
    ];
    for (op, reference) in cases {
        let (code, y) = run(
            Op::Unary(op.clone()),
            &[Some((DType::F32, vec![n], f32s(&xs)))],
            (DType::F32, vec![n]),
        );
        assert_eq!(code, 0);
        for (&x, &g) in xs.iter().zip(&to_f32(&y)) {
            let want = reference(x as f64) as f32;
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{op:?}({x:e}): {g:e} vs {want:e}"
            );
        }
    }
}
