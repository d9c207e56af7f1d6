//! Numeric tests of the fusion pass: each unfused graph runs on the reference interpreter before
//! and after `fusion,dce`, and the outputs must agree — within rtol 1e-5 / atol 1e-6 for float
//! patterns (the fused ops compute in f64 and round once, the decomposed graph rounds every step
//! to f32), exactly for QDQ → QLinear* (power-of-two scales keep the float path exact, so both
//! forms round the same real value half-to-even; see `fusion/qdq.rs` for the general caveat).
use shrink_ir::text::{parse_graph, print_graph};
use shrink_ir::{DType, Graph, Tensor};
use shrink_opt::{Ctx, run_passes};

/// Deterministic pseudo-random numbers (a 64-bit LCG), so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` f32 values uniform in `[lo, hi)`.
    fn floats(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (lo + (hi - lo) * self.next()) as f32)
            .collect()
    }

    /// `n` integers uniform in `[lo, hi]`.
    fn ints(&mut self, n: usize, lo: i64, hi: i64) -> Vec<i64> {
        (0..n)
            .map(|_| lo + ((hi - lo + 1) as f64 * self.next()) as i64)
            .collect()
    }
}

/// A tensor literal in the text form: `[a, b, ...]`.
fn lit<T: std::fmt::Debug>(v: &[T]) -> String {
    format!("{v:?}")
}

/// Runs `src` before and after `fusion,dce`, checks the fusion counter `counter` is `times`,
/// that no op named in `gone` remains, and compares the outputs.
/// How fused and unfused outputs are compared.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// rtol 1e-5, atol 1e-6.
    Float,
    /// Bit for bit.
    Exact,
    /// Integers within one quantization step (QDQ with scales that are not powers of two).
    Step,
}

fn check(
    src: &str,
    inputs: &[Tensor],
    counter: &str,
    times: usize,
    gone: &[&str],
    cmp: Cmp,
) -> Graph {
    let mut g = parse_graph(src).unwrap_or_else(|e| panic!("parse: {e}\n{src}"));
    let ctx = Ctx {
        verify: true,
        ..Default::default()
    };
    let before = shrink_ref::run(&g, inputs, &Default::default())
        .unwrap_or_else(|e| panic!("unfused run: {e}"));
    let stats =
        run_passes(&mut g, &["fusion", "dce"], &ctx).unwrap_or_else(|e| panic!("passes: {e}"));
    let printed = print_graph(&g);
    assert_eq!(
        stats[0].get(counter),
        times,
        "fusion.{counter}; stats {stats:?}\n{printed}"
    );
    for op in gone {
        assert!(
            !printed.contains(op),
            "{op} is still in the fused graph:\n{printed}"
        );
    }
    let after = shrink_ref::run(&g, inputs, &Default::default())
        .unwrap_or_else(|e| panic!("fused run: {e}\n{printed}"));
    assert_eq!(before.len(), after.len());
    for (k, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            (b.dtype(), b.dims()),
            (a.dtype(), a.dims()),
            "output {k} type"
        );
        match cmp {
            Cmp::Exact => {
                assert_eq!(
                    b.bytes(),
                    a.bytes(),
                    "output {k} differs:\n{:?}\n{:?}",
                    b.to_i64_vec(),
                    a.to_i64_vec()
                );
                continue;
            }
            Cmp::Step => {
                let (bv, av) = (b.to_i64_vec(), a.to_i64_vec());
                assert!(
                    bv.iter().zip(&av).all(|(x, y)| (x - y).abs() <= 1),
                    "output {k}:\n{bv:?}\n{av:?}"
                );
                continue;
            }
            Cmp::Float => {}
        }
        for (i, (x, y)) in b.to_f64_vec().into_iter().zip(a.to_f64_vec()).enumerate() {
            assert!(
                (x - y).abs() <= 1e-6 + 1e-5 * x.abs(),
                "output {k}[{i}]: unfused {x}, fused {y}\n{printed}"
            );
        }
    }
    g
}

fn conv_bn_src(rng: &mut Lcg, group: usize, bias: bool) -> String {
    let (c, m) = (3, if group == 1 { 4 } else { 3 });
    let w = rng.floats(m * (c / group) * 9, -1.0, 1.0);
    let b = rng.floats(m, -1.0, 1.0);
    let (gamma, beta, mean, var) = (
        rng.floats(m, 0.5, 2.0),
        rng.floats(m, -1.0, 1.0),
        rng.floats(m, -0.5, 0.5),
        rng.floats(m, 0.1, 2.0),
    );
    let (b_line, b_ref) = if bias {
        (
            format!("%2 = Const f32[{m}] {} \"b\" : f32[{m}]", lit(&b)),
            "%2",
        )
    } else {
        ("%2 = Const f32[] [0.0] \"unused\" : f32[]".into(), "_")
    };
    format!(
        "graph {{
  %0 = Input 0 \"x\" : f32[2,3,5,5]
  %1 = Const f32[{m},{cg},3,3] {w} \"w\" : f32[{m},{cg},3,3]
  {b_line}
  %3 = Conv{{group={group}, kernel_shape=[3,3], pads=[1,1,1,1], strides=[2,2]}}(%0, %1, {b_ref}) \"conv\" : f32[2,{m},3,3]
  %4 = Const f32[{m}] {gamma} \"gamma\" : f32[{m}]
  %5 = Const f32[{m}] {beta} \"beta\" : f32[{m}]
  %6 = Const f32[{m}] {mean} \"mean\" : f32[{m}]
  %7 = Const f32[{m}] {var} \"var\" : f32[{m}]
  %8 = BatchNormalization{{epsilon=0.001}}(%3, %4, %5, %6, %7) \"bn\" : f32[2,{m},3,3]
  output \"y\" = %8
}}
",
        cg = c / group,
        w = lit(&w),
        gamma = lit(&gamma),
        beta = lit(&beta),
        mean = lit(&mean),
        var = lit(&var),
    )
}

#[test]
fn conv_bn_matches_unfused() {
    let mut rng = Lcg(1);
    for (group, bias) in [(1, true), (3, false)] {
        let src = conv_bn_src(&mut rng, group, bias);
        let x = Tensor::from_vec(vec![2, 3, 5, 5], rng.floats(150, -2.0, 2.0));
        check(
            &src,
            &[x],
            "conv_bn",
            1,
            &["BatchNormalization"],
            Cmp::Float,
        );
    }
}

fn q8(dtype: DType, dims: Vec<usize>, v: &[i64]) -> Tensor {
    match dtype {
        DType::I8 => Tensor::from_vec(dims, v.iter().map(|&x| x as i8).collect()),
        _ => Tensor::from_vec(dims, v.iter().map(|&x| x as u8).collect()),
    }
}

#[test]
fn qdq_matmul_is_exact() {
    let mut rng = Lcg(2);
    let src = qdq_matmul_src(&mut rng, "0.125", "0.03125", "2.0");
    let x = q8(DType::U8, vec![2, 4, 8], &rng.ints(64, 0, 255));
    check(
        &src,
        &[x],
        "qdq_matmul",
        1,
        &["DequantizeLinear", "QuantizeLinear", "= MatMul("],
        Cmp::Exact,
    );
}

#[test]
fn qdq_matmul_general_scales_within_one_step() {
    // The float path rounds products and sums to f32; the integer kernel rounds once. They may
    // differ by one step where y/ys is within f32 rounding of a .5 boundary, never more.
    let mut rng = Lcg(8);
    for _ in 0..20 {
        let src = qdq_matmul_src(&mut rng, "0.1", "0.0371", "0.3");
        let x = q8(DType::U8, vec![2, 4, 8], &rng.ints(64, 0, 255));
        check(
            &src,
            &[x],
            "qdq_matmul",
            1,
            &["DequantizeLinear"],
            Cmp::Step,
        );
    }
}

fn qdq_matmul_src(rng: &mut Lcg, xs: &str, ws: &str, ys: &str) -> String {
    let w = rng.ints(8 * 5, -128, 127);
    format!(
        "graph {{
  %0 = Input 0 \"xq\" : u8[2,4,8]
  %1 = Const f32[] [{xs}] \"xs\" : f32[]
  %2 = Const u8[] [128] \"xz\" : u8[]
  %3 = DequantizeLinear(%0, %1, %2) \"dqx\" : f32[2,4,8]
  %4 = Const i8[8,5] {} \"wq\" : i8[8,5]
  %5 = Const f32[1] [{ws}] \"ws\" : f32[1]
  %6 = DequantizeLinear(%4, %5, _) \"dqw\" : f32[8,5]
  %7 = MatMul(%3, %6) \"mm\" : f32[2,4,5]
  %8 = Const f32[] [{ys}] \"ys\" : f32[]
  %9 = Const i8[] [3] \"yz\" : i8[]
  %10 = QuantizeLinear(%7, %8, %9) \"q\" : i8[2,4,5]
  output \"y\" = %10
}}
",
        lit(&w)
    )
}

#[test]
fn qdq_conv_with_exact_bias_is_exact() {
    let mut rng = Lcg(3);
    let w = rng.ints(3 * 2 * 9, -128, 127);
    // Multiples of xs·ws = 2^-6, so the bias is carried as int32.
    let b: Vec<f32> = rng
        .ints(3, -300, 300)
        .into_iter()
        .map(|q| q as f32 / 64.0)
        .collect();
    let src = format!(
        "graph {{
  %0 = Input 0 \"xq\" : i8[1,2,5,5]
  %1 = Const f32[] [0.25] \"xs\" : f32[]
  %2 = Const i8[] [-1] \"xz\" : i8[]
  %3 = DequantizeLinear(%0, %1, %2) \"dqx\" : f32[1,2,5,5]
  %4 = Const i8[3,2,3,3] {} \"wq\" : i8[3,2,3,3]
  %5 = Const f32[] [0.0625] \"ws\" : f32[]
  %6 = DequantizeLinear(%4, %5, _) \"dqw\" : f32[3,2,3,3]
  %7 = Const f32[3] {} \"b\" : f32[3]
  %8 = Conv{{kernel_shape=[3,3], pads=[1,1,1,1]}}(%3, %6, %7) \"conv\" : f32[1,3,5,5]
  %9 = Const f32[] [4.0] \"ys\" : f32[]
  %11 = Const u8[] [128] \"yz\" : u8[]
  %10 = QuantizeLinear(%8, %9, %11) \"q\" : u8[1,3,5,5]
  output \"y\" = %10
}}
",
        lit(&w),
        lit(&b)
    );
    let x = q8(DType::I8, vec![1, 2, 5, 5], &rng.ints(50, -128, 127));
    check(
        &src,
        &[x],
        "qdq_conv",
        1,
        &["DequantizeLinear", "QuantizeLinear", "= Conv{"],
        Cmp::Exact,
    );
}

/// LayerNorm over the last two axes (γ of shape [8] broadcast over [3, 8]); `square` is either
/// `Pow(%3, two)` or `Mul(%3, %3)`.
fn layernorm_src(rng: &mut Lcg, square: &str) -> String {
    format!(
        "graph {{
  %0 = Input 0 \"x\" : f32[2,3,8]
  %1 = Const i64[2] [-2, -1] \"axes\" : i64[2]
  %2 = ReduceMean(%0, %1) \"mean\" : f32[2,1,1]
  %3 = Sub(%0, %2) \"centred\" : f32[2,3,8]
  %4 = Const f32[] [2.0] \"two\" : f32[]
  %5 = {square} \"sq\" : f32[2,3,8]
  %6 = ReduceMean(%5, %1) \"var\" : f32[2,1,1]
  %7 = Const f32[] [0.00001] \"eps\" : f32[]
  %8 = Add(%6, %7) \"var_eps\" : f32[2,1,1]
  %9 = Sqrt(%8) \"std\" : f32[2,1,1]
  %10 = Div(%3, %9) \"normed\" : f32[2,3,8]
  %11 = Const f32[8] {} \"gamma\" : f32[8]
  %12 = Mul(%11, %10) \"scaled\" : f32[2,3,8]
  %13 = Const f32[1,8] {} \"beta\" : f32[1,8]
  %14 = Add(%12, %13) \"y\" : f32[2,3,8]
  output \"y\" = %14
}}
",
        lit(&rng.floats(8, 0.5, 1.5)),
        lit(&rng.floats(8, -0.5, 0.5))
    )
}

#[test]
fn layernorm_matches_unfused() {
    let mut rng = Lcg(4);
    for square in ["Pow(%3, %4)", "Mul(%3, %3)"] {
        let src = layernorm_src(&mut rng, square);
        let x = Tensor::from_vec(vec![2, 3, 8], rng.floats(48, -3.0, 3.0));
        let g = check(
            &src,
            &[x],
            "layernorm",
            1,
            &["ReduceMean", "Sqrt", "Sub("],
            Cmp::Float,
        );
        assert!(print_graph(&g).contains("LayerNormalization{axis=1,"));
    }
}

#[test]
fn rmsnorm_matches_unfused() {
    let mut rng = Lcg(5);
    let gamma = rng.floats(16, 0.5, 1.5);
    // Pow + Div + Mul γ.
    let with_gamma = format!(
        "graph {{
  %0 = Input 0 \"x\" : f32[4,16]
  %1 = Const f32[] [2.0] \"two\" : f32[]
  %2 = Pow(%0, %1) \"sq\" : f32[4,16]
  %3 = Const i64[1] [1] \"axes\" : i64[1]
  %4 = ReduceMean(%2, %3) \"ms\" : f32[4,1]
  %5 = Const f32[] [0.000001] \"eps\" : f32[]
  %6 = Add(%4, %5) \"ms_eps\" : f32[4,1]
  %7 = Sqrt(%6) \"rms\" : f32[4,1]
  %8 = Div(%0, %7) \"normed\" : f32[4,16]
  %9 = Const f32[16] {} \"gamma\" : f32[16]
  %10 = Mul(%8, %9) \"y\" : f32[4,16]
  output \"y\" = %10
}}
",
        lit(&gamma)
    );
    let x = Tensor::from_vec(vec![4, 16], rng.floats(64, -3.0, 3.0));
    check(
        &with_gamma,
        &[x],
        "rmsnorm",
        1,
        &["ReduceMean", "Sqrt", "Pow"],
        Cmp::Float,
    );
    // Mul(x, x) + Reciprocal + Mul, no γ (ones are created).
    let no_gamma = "graph {
  %0 = Input 0 \"x\" : f32[4,16]
  %1 = Mul(%0, %0) \"sq\" : f32[4,16]
  %2 = Const i64[1] [-1] \"axes\" : i64[1]
  %3 = ReduceMean(%1, %2) \"ms\" : f32[4,1]
  %4 = Const f32[] [0.000001] \"eps\" : f32[]
  %5 = Add(%3, %4) \"ms_eps\" : f32[4,1]
  %6 = Sqrt(%5) \"rms\" : f32[4,1]
  %7 = Reciprocal(%6) \"inv\" : f32[4,1]
  %8 = Mul(%0, %7) \"y\" : f32[4,16]
  output \"y\" = %8
}
";
    let x = Tensor::from_vec(vec![4, 16], rng.floats(64, -3.0, 3.0));
    check(
        no_gamma,
        &[x],
        "rmsnorm",
        1,
        &["ReduceMean", "Reciprocal", "Mul("],
        Cmp::Float,
    );
}

#[test]
fn gelu_forms_match_unfused() {
    let mut rng = Lcg(6);
    // erf form with Mul 1/√2 and 0.5 applied first: (x·0.5)·(1 + erf(x·0.70710677)).
    let erf = "graph {
  %0 = Input 0 \"x\" : f32[3,7]
  %1 = Const f32[] [0.70710677] \"inv_sqrt2\" : f32[]
  %2 = Mul(%1, %0) \"scaled\" : f32[3,7]
  %3 = Erf(%2) \"erf\" : f32[3,7]
  %4 = Const f32[] [1.0] \"one\" : f32[]
  %5 = Add(%4, %3) \"one_plus\" : f32[3,7]
  %6 = Const f32[] [0.5] \"half\" : f32[]
  %7 = Mul(%0, %6) \"half_x\" : f32[3,7]
  %8 = Mul(%7, %5) \"y\" : f32[3,7]
  output \"y\" = %8
}
";
    let x = Tensor::from_vec(vec![3, 7], rng.floats(21, -5.0, 5.0));
    check(erf, &[x], "gelu", 1, &["Erf", "Mul("], Cmp::Float);
    // tanh form with Pow(x, 3), ((1 + t)·0.5)·x.
    let tanh = "graph {
  %0 = Input 0 \"x\" : f32[3,7]
  %1 = Const f32[] [3.0] \"three\" : f32[]
  %2 = Pow(%0, %1) \"cube\" : f32[3,7]
  %3 = Const f32[] [0.044715] \"c\" : f32[]
  %4 = Mul(%3, %2) \"c_cube\" : f32[3,7]
  %5 = Add(%4, %0) \"inner\" : f32[3,7]
  %6 = Const f32[] [0.7978846] \"k\" : f32[]
  %7 = Mul(%5, %6) \"u\" : f32[3,7]
  %8 = Tanh(%7) \"t\" : f32[3,7]
  %9 = Const f32[] [1.0] \"one\" : f32[]
  %10 = Add(%8, %9) \"one_plus\" : f32[3,7]
  %11 = Const f32[] [0.5] \"half\" : f32[]
  %12 = Mul(%10, %11) \"half_p\" : f32[3,7]
  %13 = Mul(%12, %0) \"y\" : f32[3,7]
  output \"y\" = %13
}
";
    let x = Tensor::from_vec(vec![3, 7], rng.floats(21, -5.0, 5.0));
    check(
        tanh,
        &[x],
        "gelu_tanh",
        1,
        &["Tanh", "Pow", "Mul("],
        Cmp::Float,
    );
}

#[test]
fn softmax_forms_match_unfused() {
    let mut rng = Lcg(7);
    let shifted = "graph {
  %0 = Input 0 \"x\" : f32[2,3,5]
  %1 = Const i64[1] [1] \"axes\" : i64[1]
  %2 = ReduceMax(%0, %1) \"max\" : f32[2,1,5]
  %3 = Sub(%0, %2) \"shifted\" : f32[2,3,5]
  %4 = Exp(%3) \"e\" : f32[2,3,5]
  %5 = ReduceSum(%4, %1) \"sum\" : f32[2,1,5]
  %6 = Div(%4, %5) \"y\" : f32[2,3,5]
  output \"y\" = %6
}
";
    let x = Tensor::from_vec(vec![2, 3, 5], rng.floats(30, -4.0, 4.0));
    let g = check(shifted, &[x], "softmax", 1, &["Exp", "Reduce"], Cmp::Float);
    assert!(print_graph(&g).contains("Softmax{axis=1,"));
    let unshifted = "graph {
  %0 = Input 0 \"x\" : f32[2,3,5]
  %1 = Exp(%0) \"e\" : f32[2,3,5]
  %2 = Const i64[1] [-1] \"axes\" : i64[1]
  %3 = ReduceSum(%1, %2) \"sum\" : f32[2,3,1]
  %4 = Div(%1, %3) \"y\" : f32[2,3,5]
  output \"y\" = %4
}
";
    let x = Tensor::from_vec(vec![2, 3, 5], rng.floats(30, -4.0, 4.0));
    check(
        unshifted,
        &[x],
        "softmax",
        1,
        &["Exp", "Reduce"],
        Cmp::Float,
    );
    let log = "graph {
  %0 = Input 0 \"x\" : f32[2,3,5]
  %1 = Const i64[1] [2] \"axes\" : i64[1]
  %2 = ReduceMax(%0, %1) \"max\" : f32[2,3,1]
  %3 = Sub(%0, %2) \"shifted\" : f32[2,3,5]
  %4 = Exp(%3) \"e\" : f32[2,3,5]
  %5 = ReduceSum(%4, %1) \"sum\" : f32[2,3,1]
  %6 = Log(%5) \"lse\" : f32[2,3,1]
  %7 = Sub(%3, %6) \"y\" : f32[2,3,5]
  output \"y\" = %7
}
";
    let x = Tensor::from_vec(vec![2, 3, 5], rng.floats(30, -4.0, 4.0));
    check(
        log,
        &[x],
        "log_softmax",
        1,
        &["Exp", "Reduce", "Log("],
        Cmp::Float,
    );
}

#[test]
fn shared_intermediate_blocks_fusion() {
    // The Erf's input is also a graph output: fusing would drop a value someone reads.
    let src = "graph {
  %0 = Input 0 \"x\" : f32[4]
  %1 = Const f32[] [1.4142135] \"sqrt2\" : f32[]
  %2 = Div(%0, %1) \"scaled\" : f32[4]
  %3 = Erf(%2) \"erf\" : f32[4]
  %4 = Const f32[] [1.0] \"one\" : f32[]
  %5 = Add(%3, %4) \"one_plus\" : f32[4]
  %6 = Mul(%0, %5) \"x_times\" : f32[4]
  %7 = Const f32[] [0.5] \"half\" : f32[]
  %8 = Mul(%6, %7) \"y\" : f32[4]
  output \"y\" = %8
  output \"scaled\" = %2
}
";
    let x = Tensor::from_vec(vec![4], vec![-1.0f32, 0.0, 0.5, 2.0]);
    let g = check(src, &[x], "gelu", 0, &["Gelu"], Cmp::Exact);
    assert!(print_graph(&g).contains("Erf("));
}
