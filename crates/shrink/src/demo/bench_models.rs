//! The benchmark suite's models (issue 13 item 9), built in memory with the ONNX writer and never
//! shipped (the MLPs are ~7 MB each): a ternary MLP 784-1024-1024-10, the same shape 90% pruned
//! with f32 weights and fully dense, and a BitNet-style block at dim 256 in its QAT form (float
//! latent weights through in-graph absmean quantizers) and its folded form (ternary·scale
//! constants), both with BitNet b1.58 per-token int8 activation fake-quant before every
//! projection. `cargo bench --bench models` times them; [`activation_fake_quant`] is the
//! reusable builder of that fake-quant sub-graph.
//!
//! The MLPs' expected outputs come from plain f64 loops ([`Mlp::reference`]), independent of the
//! interpreter; the blocks carry none (their oracle in the bench is the interpreter itself).
use super::{DemoModel, Rng, absmean_quantizer};
use shrink_ir::{DType, Tensor};
use shrink_onnx::writer::{Attr, ModelBuilder, WDim};

/// The MLP widths of the suite, input first.
pub const BENCH_MLP_SIZES: [usize; 4] = [784, 1024, 1024, 10];

/// Fraction of each weight matrix that is exactly zero in the pruned MLP.
pub const PRUNED_ZERO_FRACTION: f64 = 0.9;

/// Every model of the suite, by name (see [`bench_model`]).
pub const BENCH_MODELS: [&str; 9] = [
    "ternary_mlp_b1",
    "ternary_mlp_b8",
    "pruned90_mlp_b1",
    "pruned90_mlp_b8",
    "dense_mlp_b1",
    "dense_mlp_b8",
    "bitnet256_qat",
    "bitnet256_folded",
    "int8_dynamic_b8",
];

/// Rows and columns of the int8 layer of the suite (BERT-base's hidden size).
pub const INT8_LAYER: usize = 768;

/// The suite's model called `name` (one of [`BENCH_MODELS`]) with one input set; `None` for
/// another name.
pub fn bench_model(name: &str) -> Option<DemoModel> {
    let name: &'static str = BENCH_MODELS.iter().find(|&&n| n == name)?;
    let (kind, tail) = name.rsplit_once('_')?;
    let block = BlockSizes {
        seq: 8,
        dim: 256,
        ffn: 683,
    };
    if kind == "int8_dynamic" {
        let batch: usize = tail.strip_prefix('b')?.parse().ok()?;
        return Some(dynamic_quant_layer(name, batch, INT8_LAYER, INT8_LAYER));
    }
    let mlp = match kind {
        "ternary_mlp" => Mlp::ternary(&BENCH_MLP_SIZES, 0x7e3a_0001),
        "pruned90_mlp" => Mlp::pruned(&BENCH_MLP_SIZES, PRUNED_ZERO_FRACTION, 0x9a1e_0002),
        "dense_mlp" => Mlp::pruned(&BENCH_MLP_SIZES, 0.0, 0xde25_0003),
        _ => return Some(bitnet_bench_block(name, &block, tail == "folded")),
    };
    let batch: usize = tail.strip_prefix('b')?.parse().ok()?;
    Some(mlp.demo(name, batch, 0xa11c_e000 ^ batch as u64))
}

/// A multi-layer perceptron `y = L_n(relu(… relu(L_1(x))))`, `L_l(h) = h·W_l + b_l`.
pub struct Mlp {
    /// Layer widths, input first.
    pub sizes: Vec<usize>,
    /// `W_l` as `[sizes[l], sizes[l + 1]]`, row-major (the MatMul B layout).
    pub weights: Vec<Vec<f32>>,
    pub biases: Vec<Vec<f32>>,
}

/// Uniform in [-1, 1] but never exactly zero (the zero count of a matrix must be the intended
/// one).
fn nonzero_uniform(rng: &mut Rng) -> f32 {
    match rng.uniform() {
        0.0 => 0.0005,
        u => u,
    }
}

impl Mlp {
    /// Ternary weights (about a third zero) with a scale per output unit (per-row in shrink's
    /// terms) around `2 / sqrt(fan_in)`, so hidden activations stay of order one; biases in
    /// [-0.1, 0.1].
    pub fn ternary(sizes: &[usize], seed: u64) -> Mlp {
        let mut rng = Rng(seed);
        Mlp::build(sizes, |l, k, n| {
            let base = 2.0 / (k as f32).sqrt();
            let scales: Vec<f32> = (0..n)
                .map(|o| base * (0.8 + 0.05 * ((o + l) % 9) as f32))
                .collect();
            let w = (0..k * n).map(|i| rng.trit(33) * scales[i % n]).collect();
            (w, (0..n).map(|_| 0.1 * rng.uniform()).collect())
        })
    }

    /// f32 weights with exactly `round(zero_fraction · k · n)` zeros per `[k, n]` matrix, at
    /// positions drawn uniformly (a partial Fisher–Yates shuffle); the others nonzero, uniform
    /// with a spread that keeps activations of order one. `zero_fraction` 0 is the dense MLP.
    pub fn pruned(sizes: &[usize], zero_fraction: f64, seed: u64) -> Mlp {
        let mut rng = Rng(seed);
        Mlp::build(sizes, |_, k, n| {
            let density = 1.0 - zero_fraction;
            let spread = 3.0 / ((density * k as f64).max(1.0)).sqrt() as f32;
            let mut w: Vec<f32> = (0..k * n)
                .map(|_| spread * nonzero_uniform(&mut rng))
                .collect();
            let zeros = (zero_fraction * (k * n) as f64).round() as usize;
            let mut order: Vec<usize> = (0..k * n).collect();
            for i in 0..zeros {
                let j = i + rng.below((k * n - i) as u64);
                order.swap(i, j);
                w[order[i]] = 0.0;
            }
            (w, (0..n).map(|_| 0.1 * rng.uniform()).collect())
        })
    }

    /// Calls `layer(l, fan_in, fan_out)` for each layer's (weights, biases).
    fn build(
        sizes: &[usize],
        mut layer: impl FnMut(usize, usize, usize) -> (Vec<f32>, Vec<f32>),
    ) -> Mlp {
        let (weights, biases) = sizes
            .windows(2)
            .enumerate()
            .map(|(l, kn)| layer(l, kn[0], kn[1]))
            .unzip();
        Mlp {
            sizes: sizes.to_vec(),
            weights,
            biases,
        }
    }

    /// The ONNX bytes for inputs `x: f32[batch, sizes[0]]`: per layer MatMul → Add (→ Relu).
    pub fn onnx(&self, name: &str, batch: usize) -> Vec<u8> {
        let layers = self.weights.len();
        let dims = |n: usize| [WDim::Fixed(batch), WDim::Fixed(n)];
        let mut m = ModelBuilder::new(name, 21);
        m.input("x", DType::F32, &dims(self.sizes[0])).output(
            "y",
            DType::F32,
            &dims(self.sizes[layers]),
        );
        let mut h = "x".to_string();
        for l in 0..layers {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let (w, b) = (format!("w{l}"), format!("b{l}"));
            m.initializer(&w, &Tensor::from_vec(vec![k, n], self.weights[l].clone()))
                .initializer(&b, &Tensor::from_vec(vec![n], self.biases[l].clone()));
            let (mm, sum) = (format!("fc{l}_mm"), format!("fc{l}_sum"));
            let out = if l + 1 == layers {
                "y".to_string()
            } else {
                format!("h{l}")
            };
            m.node("MatMul", &format!("fc{l}"), &[&h, &w], &[&mm], &[]);
            if l + 1 == layers {
                m.node("Add", &format!("fc{l}_bias"), &[&mm, &b], &[&out], &[]);
            } else {
                m.node("Add", &format!("fc{l}_bias"), &[&mm, &b], &[&sum], &[])
                    .node("Relu", &format!("act{l}"), &[&sum], &[&out], &[]);
            }
            h = out;
        }
        m.to_bytes()
    }

    /// The output for `x` (`[batch, sizes[0]]` row-major) by plain loops: each product
    /// accumulated in f64 and rounded once, then the bias added and relu applied in f32.
    pub fn reference(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let mut h = x.to_vec();
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let last = l + 1 == self.weights.len();
            let mut next = vec![0f32; batch * n];
            for r in 0..batch {
                for o in 0..n {
                    let acc: f64 = (0..k)
                        .map(|i| h[r * k + i] as f64 * w[i * n + o] as f64)
                        .sum();
                    let v = acc as f32 + b[o];
                    next[r * n + o] = if last { v } else { v.max(0.0) };
                }
            }
            h = next;
        }
        h
    }

    /// The model with one input (uniform in [-1, 1] from `seed`) and its reference output.
    pub fn demo(&self, name: &'static str, batch: usize, seed: u64) -> DemoModel {
        let mut rng = Rng(seed);
        let k = self.sizes[0];
        let x: Vec<f32> = (0..batch * k).map(|_| rng.uniform()).collect();
        let y = self.reference(&x, batch);
        let out = *self.sizes.last().unwrap_or(&0);
        DemoModel {
            name,
            model: self.onnx(name, batch),
            inputs: vec![("x".into(), Tensor::from_vec(vec![batch, k], x))],
            outputs: vec![("y".into(), Tensor::from_vec(vec![batch, out], y))],
        }
    }
}

/// Adds `out = fake_quant(x)` to `m`: BitNet b1.58's per-token int8 activation quantizer, as
/// QAT exports write it with plain ONNX ops over the last axis of `x`:
///
/// ```text
/// s  = 127 / Max(ReduceMax(Abs(x), axes=[-1], keepdims=1), 1e-5)
/// xq = Clip(Round(x · s), -128, 127) / s
/// ```
///
/// ReduceMax takes its axes as an input, so the model's opset must be 18 or later. Intermediate
/// values and the constants (initializers) are named `{out}_…`, so each call is independent.
pub fn activation_fake_quant(m: &mut ModelBuilder, x: &str, out: &str) {
    let n = |s: &str| format!("{out}_{s}");
    m.initializer(&n("axes"), &Tensor::from_vec(vec![1], vec![-1i64]))
        .initializer(&n("eps"), &Tensor::scalar(1e-5f32))
        .initializer(&n("qmax"), &Tensor::scalar(127f32))
        .initializer(&n("lo"), &Tensor::scalar(-128f32))
        .initializer(&n("hi"), &Tensor::scalar(127f32))
        .node("Abs", &n("abs"), &[x], &[&n("abs")], &[])
        .node(
            "ReduceMax",
            &n("absmax"),
            &[&n("abs"), &n("axes")],
            &[&n("absmax")],
            &[("keepdims", Attr::Int(1))],
        )
        .node(
            "Max",
            &n("floor"),
            &[&n("absmax"), &n("eps")],
            &[&n("range")],
            &[],
        )
        .node(
            "Div",
            &n("scale"),
            &[&n("qmax"), &n("range")],
            &[&n("s")],
            &[],
        )
        .node("Mul", &n("scaled"), &[x, &n("s")], &[&n("xs")], &[])
        .node("Round", &n("round"), &[&n("xs")], &[&n("rounded")], &[])
        .node(
            "Clip",
            &n("clip"),
            &[&n("rounded"), &n("lo"), &n("hi")],
            &[&n("q")],
            &[],
        )
        .node("Div", &n("dequant"), &[&n("q"), &n("s")], &[out], &[]);
}

/// What [`activation_fake_quant`] computes, by plain loops over rows of `row_len` values (f32
/// arithmetic throughout, round half to even as ONNX Round).
pub fn fake_quant_reference(x: &[f32], row_len: usize) -> Vec<f32> {
    x.chunks(row_len)
        .flat_map(|row| {
            let absmax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = 127f32 / absmax.max(1e-5);
            row.iter()
                .map(move |&v| (v * s).round_ties_even().clamp(-128.0, 127.0) / s)
        })
        .collect()
}

/// A model of one fake-quant sub-graph, `y = fake_quant(x)` on `x: f32[rows, cols]` (opset 21).
pub fn fake_quant_model(rows: usize, cols: usize) -> Vec<u8> {
    let dims = [WDim::Fixed(rows), WDim::Fixed(cols)];
    let mut m = ModelBuilder::new("fake_quant", 21);
    m.input("x", DType::F32, &dims)
        .output("y", DType::F32, &dims);
    activation_fake_quant(&mut m, "x", "y");
    m.to_bytes()
}

/// Sizes of a BitNet-style block: tokens, model width, FFN width.
#[derive(Clone, Copy, Debug)]
pub struct BlockSizes {
    pub seq: usize,
    pub dim: usize,
    pub ffn: usize,
}

/// BitNet b1.58's absmean weight quantizer in f32 (what [`absmean_quantizer`] computes in the
/// graph, up to the rounding of the mean): `s = mean|W| + 1e-5`, `W_q = clip(round(W/s), -1, 1)·s`.
pub fn absmean_ternary(w: &[f32]) -> Vec<f32> {
    let mean = (w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len().max(1) as f64) as f32;
    let s = mean + 1e-5;
    w.iter()
        .map(|&v| (v / s).round_ties_even().clamp(-1.0, 1.0) * s)
        .collect()
}

/// The BitNet-style block of [`super::bitnet_block`] (RMSNorm → Q/K/V → single-head attention →
/// output projection → residual → RMSNorm → SiLU-gated FFN → residual) at `sizes`, with an
/// [`activation_fake_quant`] before each of the seven projections. `folded` = false is the QAT
/// form (float latent weights through in-graph absmean quantizers); true the same weights already
/// quantized ([`absmean_ternary`]) as constants, no weight quantizer nodes.
pub fn bitnet_bench_block(name: &'static str, sizes: &BlockSizes, folded: bool) -> DemoModel {
    let BlockSizes { seq, dim, ffn } = *sizes;
    let mut rng = Rng(0xb17e_7b10_c4a1_0256);
    let io = [WDim::Fixed(1), WDim::Fixed(seq), WDim::Fixed(dim)];
    let mut m = ModelBuilder::new(name, 23);
    m.input("x", DType::F32, &io)
        .output("y", DType::F32, &io)
        .initializer("attn_scale", &Tensor::scalar(1.0 / (dim as f32).sqrt()));
    for norm in ["norm1", "norm2"] {
        let g: Vec<f32> = (0..dim).map(|_| 1.0 + 0.1 * rng.uniform()).collect();
        m.initializer(norm, &Tensor::from_vec(vec![dim], g));
    }
    if !folded {
        m.initializer("qat_eps", &Tensor::scalar(1e-5f32))
            .initializer("qat_lo", &Tensor::scalar(-1f32))
            .initializer("qat_hi", &Tensor::scalar(1f32));
    }
    let projections = [
        ("wq", dim, dim),
        ("wk", dim, dim),
        ("wv", dim, dim),
        ("wo", dim, dim),
        ("w_gate", dim, ffn),
        ("w_up", dim, ffn),
        ("w_down", ffn, dim),
    ];
    for (w, k, n) in projections {
        let latent: Vec<f32> = (0..k * n).map(|_| 0.02 * rng.uniform()).collect();
        if folded {
            let q = absmean_ternary(&latent);
            m.initializer(&format!("{w}_q"), &Tensor::from_vec(vec![k, n], q));
        } else {
            m.initializer(w, &Tensor::from_vec(vec![k, n], latent));
            absmean_quantizer(&mut m, w);
        }
    }
    // One projection: its own activation fake-quant, then the MatMul (as each BitLinear of an
    // exported QAT model has its own quantizer nodes).
    let project = |m: &mut ModelBuilder, node: &str, x: &str, w: &str, y: &str| {
        let xq = format!("{node}_xq");
        activation_fake_quant(m, x, &xq);
        m.node("MatMul", node, &[&xq, &format!("{w}_q")], &[y], &[]);
    };
    m.node(
        "RMSNormalization",
        "attn_norm",
        &["x", "norm1"],
        &["h"],
        &[("axis", Attr::Int(-1))],
    );
    project(&mut m, "q_proj", "h", "wq", "q");
    project(&mut m, "k_proj", "h", "wk", "k");
    project(&mut m, "v_proj", "h", "wv", "v");
    m.node(
        "Transpose",
        "k_t",
        &["k"],
        &["kt"],
        &[("perm", Attr::Ints(vec![0, 2, 1]))],
    )
    .node("MatMul", "scores", &["q", "kt"], &["s0"], &[])
    .node("Mul", "scale_scores", &["s0", "attn_scale"], &["s1"], &[])
    .node(
        "Softmax",
        "attn",
        &["s1"],
        &["p"],
        &[("axis", Attr::Int(-1))],
    )
    .node("MatMul", "mix", &["p", "v"], &["ctx"], &[]);
    project(&mut m, "o_proj", "ctx", "wo", "o");
    m.node("Add", "residual1", &["x", "o"], &["x1"], &[]).node(
        "RMSNormalization",
        "ffn_norm",
        &["x1", "norm2"],
        &["h2"],
        &[("axis", Attr::Int(-1))],
    );
    project(&mut m, "gate_proj", "h2", "w_gate", "g");
    project(&mut m, "up_proj", "h2", "w_up", "u");
    m.node("Sigmoid", "gate_sigmoid", &["g"], &["gs"], &[])
        .node("Mul", "gate_silu", &["g", "gs"], &["silu"], &[])
        .node("Mul", "gate_mul", &["silu", "u"], &["a"], &[]);
    project(&mut m, "down_proj", "a", "w_down", "d");
    m.node("Add", "residual2", &["x1", "d"], &["y"], &[]);
    let x: Vec<f32> = (0..seq * dim).map(|_| rng.uniform()).collect();
    DemoModel {
        name,
        model: m.to_bytes(),
        inputs: vec![("x".into(), Tensor::from_vec(vec![1, seq, dim], x))],
        outputs: vec![],
    }
}

/// A MatMul as ONNX Runtime's dynamic quantization writes it: the f32 input quantized per call
/// (DynamicQuantizeLinear: uint8, its own scale and zero point), MatMulInteger with int8 weights
/// (scale per tensor), the i32 sums cast to f32 and scaled by both scales. `x: f32[batch, k]`,
/// `y: f32[batch, n]`; the input set is uniform in [-1, 1], and no reference output is given
/// (the interpreter is the oracle).
pub fn dynamic_quant_layer(name: &'static str, batch: usize, k: usize, n: usize) -> DemoModel {
    let mut rng = Rng(0x1a78_0000 ^ (k * n) as u64);
    let w: Vec<i8> = (0..k * n)
        .map(|_| (rng.below(255) as i32 - 127) as i8)
        .collect();
    let w_scale = 0.002f32;
    let mut m = ModelBuilder::new(name, 21);
    m.input("x", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(k)])
        .output("y", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(n)])
        .initializer("w", &Tensor::from_vec(vec![k, n], w))
        .initializer("w_scale", &Tensor::from_vec(vec![], vec![w_scale]))
        .node(
            "DynamicQuantizeLinear",
            "quantize",
            &["x"],
            &["xq", "x_scale", "x_zp"],
            &[],
        )
        .node(
            "MatMulInteger",
            "matmul",
            &["xq", "w", "x_zp"],
            &["acc"],
            &[],
        )
        .node(
            "Cast",
            "to_float",
            &["acc"],
            &["accf"],
            &[("to", Attr::Int(DType::F32.onnx_code() as i64))],
        )
        .node("Mul", "scales", &["x_scale", "w_scale"], &["scale"], &[])
        .node("Mul", "rescale", &["accf", "scale"], &["y"], &[]);
    let x: Vec<f32> = (0..batch * k).map(|_| rng.uniform()).collect();
    DemoModel {
        name,
        model: m.to_bytes(),
        inputs: vec![("x".into(), Tensor::from_vec(vec![batch, k], x))],
        outputs: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Tolerance, compare};

    fn optimized(name: &str, model: &[u8]) -> shrink_ir::Graph {
        let mut g = shrink_onnx::load_model_bytes(name, model.to_vec().into(), &Default::default())
            .expect("import")
            .graph;
        crate::optimize(&mut g, &Default::default()).expect("optimize");
        g
    }

    fn interp(g: &shrink_ir::Graph, x: &Tensor) -> Tensor {
        shrink_ref::run(g, std::slice::from_ref(x), &Default::default())
            .expect("interpreter")
            .remove(0)
    }

    /// The interpreter on the optimized small MLPs agrees with the plain loops.
    #[test]
    fn mlps_match_the_scalar_reference() {
        let sizes = [16, 24, 20, 5];
        for (what, mlp) in [
            ("ternary", Mlp::ternary(&sizes, 11)),
            ("pruned", Mlp::pruned(&sizes, 0.9, 12)),
            ("dense", Mlp::pruned(&sizes, 0.0, 13)),
        ] {
            let d = mlp.demo("small", 3, 14);
            let g = optimized(what, &d.model);
            let got = interp(&g, &d.inputs[0].1);
            let c = compare(
                &got,
                &d.outputs[0].1,
                Tolerance {
                    rtol: 1e-5,
                    atol: 1e-6,
                },
            );
            assert!(c.mismatch.is_none(), "{what}: {:?}", c.mismatch);
        }
    }

    /// Every weight matrix of the suite's pruned MLP is exactly 90% zero, the dense one has no
    /// zero, and the ternary one is detected ternary with a scale per output unit.
    #[test]
    fn suite_mlps_have_the_intended_weights() {
        let layer_zeros = |name: &str| -> Vec<(usize, usize)> {
            let m = bench_model(name).expect("suite model");
            let g = shrink_onnx::load_model_bytes(name, m.model.into(), &Default::default())
                .expect("import")
                .graph;
            shrink_opt::layers::const_weight_layers(&g)
                .into_iter()
                .map(|(_, _, c)| {
                    let t = &g.consts[c.0 as usize];
                    (t.count_zeros(), t.len())
                })
                .collect()
        };
        let pruned = layer_zeros("pruned90_mlp_b1");
        assert_eq!(pruned.len(), 3);
        for (zeros, n) in pruned {
            assert_eq!(zeros, (0.9 * n as f64).round() as usize, "of {n}");
        }
        let dense = layer_zeros("dense_mlp_b8");
        assert_eq!(dense.len(), 3);
        assert!(dense.iter().all(|&(z, _)| z == 0), "{dense:?}");

        let m = bench_model("ternary_mlp_b1").expect("suite model");
        let g = optimized(m.name, &m.model);
        assert_eq!(g.ternary.len(), 3);
        assert!(g.ternary.values().all(|t| t.scale.kind() == "per_row"));
        let x = &m.inputs[0].1;
        let c = compare(
            &interp(&g, x),
            &m.outputs[0].1,
            Tolerance {
                rtol: 1e-5,
                atol: 1e-5,
            },
        );
        assert!(c.mismatch.is_none(), "{:?}", c.mismatch);
    }

    /// The fake-quant sub-graph computes the scalar quantizer bit for bit, including ties
    /// (rounded to even), the clip at -128 and an all-zero row (the 1e-5 floor).
    #[test]
    fn fake_quant_matches_the_scalar_quantizer() {
        let cols = 6;
        let mut rng = Rng(0xfa7e);
        let mut x: Vec<f32> = vec![127.0, 0.5, 1.5, -2.5, -127.0, 3.25];
        x.extend([0.0; 6]);
        x.extend((0..4 * cols).map(|_| 3.0 * rng.uniform()));
        let rows = x.len() / cols;
        let g = optimized("fake_quant", &fake_quant_model(rows, cols));
        let got = interp(&g, &Tensor::from_vec(vec![rows, cols], x.clone()))
            .to_vec::<f32>()
            .expect("f32");
        let want = fake_quant_reference(&x, cols);
        assert_eq!(&want[..6], &[127.0, 0.0, 2.0, -2.0, -127.0, 3.0]);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

    /// Both block forms fold to seven ternary projections and compute the same thing (the
    /// folded weights come from [`absmean_ternary`], the QAT ones from the graph's quantizer).
    #[test]
    fn block_forms_fold_to_the_same_ternary_block() {
        let sizes = BlockSizes {
            seq: 4,
            dim: 64,
            ffn: 96,
        };
        let qat = bitnet_bench_block("qat", &sizes, false);
        let folded = bitnet_bench_block("folded", &sizes, true);
        let x = &qat.inputs[0].1;
        let (gq, gf) = (
            optimized("qat", &qat.model),
            optimized("folded", &folded.model),
        );
        assert_eq!(gq.ternary.len(), 7);
        assert_eq!(gf.ternary.len(), 7);
        let (yq, yf) = (interp(&gq, x), interp(&gf, x));
        // A scale one ulp apart can move an activation across a rounding boundary of the next
        // fake-quant: one int8 step of a value of order one is 1/127 · absmax, times weights of
        // order 0.01.
        let c = compare(
            &yq,
            &yf,
            Tolerance {
                rtol: 1e-4,
                atol: 1e-3,
            },
        );
        assert!(c.mismatch.is_none(), "{:?}", c.mismatch);
        assert!(
            yq.to_vec::<f32>()
                .expect("f32")
                .iter()
                .all(|v| v.is_finite())
        );
    }
}
