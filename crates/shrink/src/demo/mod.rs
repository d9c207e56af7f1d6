//! Models shrink ships in `examples/models/`, built with the ONNX writer so that they can be
//! regenerated bit-for-bit (`cargo run --release --example gen_models`) and checked in tests.
//!
//! Expected outputs are computed here with plain scalar loops, independently of the interpreter,
//! so the shipped test data is a second oracle rather than the interpreter's own answer.
use shrink_ir::{DType, Tensor};
use shrink_onnx::writer::{Attr, ModelBuilder, WDim};

mod cnn;
pub use cnn::{CNN_DEAD_CONV1, CNN_DEAD_CONV2, ternary_cnn};
mod bench_models;
pub use bench_models::{
    BENCH_MLP_SIZES, BENCH_MODELS, BlockSizes, Mlp, PRUNED_ZERO_FRACTION, absmean_ternary,
    activation_fake_quant, bench_model, bitnet_bench_block, dynamic_quant_layer, fake_quant_model,
    fake_quant_reference,
};

/// A model with one test data set.
pub struct DemoModel {
    pub name: &'static str,
    pub model: Vec<u8>,
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

/// Deterministic xorshift generator (no dependency, same sequence on every platform); also used
/// by tests that build random graphs. The seed must be nonzero.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A ternary digit: -1, 0 or +1, zero with probability `zero_pct`/100.
    pub fn trit(&mut self, zero_pct: u64) -> f32 {
        let r = self.next_u64() % 100;
        if r < zero_pct {
            0.0
        } else if r.is_multiple_of(2) {
            1.0
        } else {
            -1.0
        }
    }

    /// Uniform in [-1, 1] on a grid of 0.001.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() % 2001) as f32 / 1000.0 - 1.0
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> usize {
        (self.next_u64() % n) as usize
    }
}

/// Sizes of the ternary MLP.
const BATCH: usize = 4;
const IN: usize = 16;
const HIDDEN: usize = 32;
const OUT: usize = 8;

/// `y = W2ᵀ·relu(W1ᵀ·x + b1) + b2` with ternary W1 (per-tensor scale 0.05) and W2 (per-tensor
/// scale 0.125), 40% zero weights, one all-zero input column, and dead hidden units: units 3 and
/// 17 have all-zero outgoing weights, unit 9 has all-zero incoming weights and bias −0.5 (so
/// relu keeps it at 0).
pub fn ternary_mlp() -> DemoModel {
    let mut rng = Rng(0x5eed_7e57_ab1e_0001);
    let (s1, s2) = (0.05f32, 0.125f32);
    // MatMul B layout: [in, out].
    let mut w1 = vec![0f32; IN * HIDDEN];
    for i in 0..IN {
        for h in 0..HIDDEN {
            let dead_in = i == 5 || h == 9;
            w1[i * HIDDEN + h] = if dead_in { 0.0 } else { s1 * rng.trit(40) };
        }
    }
    let mut b1: Vec<f32> = (0..HIDDEN).map(|_| 0.1 * rng.uniform()).collect();
    b1[9] = -0.5;
    let mut w2 = vec![0f32; HIDDEN * OUT];
    for h in 0..HIDDEN {
        for o in 0..OUT {
            w2[h * OUT + o] = if h == 3 || h == 17 {
                0.0
            } else {
                s2 * rng.trit(40)
            };
        }
    }
    let b2: Vec<f32> = (0..OUT).map(|_| 0.1 * rng.uniform()).collect();
    let x: Vec<f32> = (0..BATCH * IN).map(|_| rng.uniform()).collect();

    // Reference computation, accumulated in f64 and rounded once.
    let mut y = vec![0f32; BATCH * OUT];
    for b in 0..BATCH {
        let hidden: Vec<f32> = (0..HIDDEN)
            .map(|h| {
                let acc: f64 = (0..IN)
                    .map(|i| x[b * IN + i] as f64 * w1[i * HIDDEN + h] as f64)
                    .sum();
                ((acc as f32) + b1[h]).max(0.0)
            })
            .collect();
        for o in 0..OUT {
            let acc: f64 = (0..HIDDEN)
                .map(|h| hidden[h] as f64 * w2[h * OUT + o] as f64)
                .sum();
            y[b * OUT + o] = acc as f32 + b2[o];
        }
    }

    let mut m = ModelBuilder::new("ternary_mlp", 21);
    m.input("x", DType::F32, &[WDim::Fixed(BATCH), WDim::Fixed(IN)])
        .output("y", DType::F32, &[WDim::Fixed(BATCH), WDim::Fixed(OUT)])
        .initializer("w1", &Tensor::from_vec(vec![IN, HIDDEN], w1))
        .initializer("b1", &Tensor::from_vec(vec![HIDDEN], b1))
        .initializer("w2", &Tensor::from_vec(vec![HIDDEN, OUT], w2))
        .initializer("b2", &Tensor::from_vec(vec![OUT], b2))
        .node("MatMul", "fc1", &["x", "w1"], &["h0"], &[])
        .node("Add", "fc1_bias", &["h0", "b1"], &["h1"], &[])
        .node("Relu", "act1", &["h1"], &["h2"], &[])
        .node(
            "Gemm",
            "fc2",
            &["h2", "w2", "b2"],
            &["y"],
            &[("alpha", Attr::Float(1.0))],
        );
    DemoModel {
        name: "ternary_mlp",
        model: m.to_bytes(),
        inputs: vec![("x".into(), Tensor::from_vec(vec![BATCH, IN], x))],
        outputs: vec![("y".into(), Tensor::from_vec(vec![BATCH, OUT], y))],
    }
}

/// One `n × n` ternary MatMul (`y = x·W`, x of shape [1, n], 40% zero weights, per-tensor scale
/// 0.02): the large-layer case of the compile-time benches. Not shipped (a 4096² layer is a
/// 64 MiB model); its expected output comes from a plain f64 loop.
pub fn ternary_layer(n: usize) -> DemoModel {
    let mut rng = Rng(0x4096_0000 | n as u64);
    let w: Vec<f32> = (0..n * n).map(|_| rng.trit(40) * 0.02).collect();
    let x: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
    let y: Vec<f32> = (0..n)
        .map(|c| {
            let acc: f64 = (0..n).map(|k| x[k] as f64 * w[k * n + c] as f64).sum();
            acc as f32
        })
        .collect();
    DemoModel {
        name: "ternary_layer",
        model: matmul_model("ternary_layer", 1, n, n, w),
        inputs: vec![("x".into(), Tensor::from_vec(vec![1, n], x))],
        outputs: vec![("y".into(), Tensor::from_vec(vec![1, n], y))],
    }
}

/// The ONNX bytes of one MatMul node `layer`: `y[batch, rows] = x[batch, cols] · w`, with `w`
/// (`[cols, rows]`, row-major) an initializer.
pub fn matmul_model(name: &str, batch: usize, cols: usize, rows: usize, w: Vec<f32>) -> Vec<u8> {
    let mut m = ModelBuilder::new(name, 21);
    m.input("x", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(cols)])
        .output("y", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(rows)])
        .initializer("w", &Tensor::from_vec(vec![cols, rows], w))
        .node("MatMul", "layer", &["x", "w"], &["y"], &[]);
    m.to_bytes()
}

/// Every shipped model.
pub fn all() -> Vec<DemoModel> {
    vec![ternary_mlp(), bitnet_block(), ternary_cnn()]
}

/// Writes `dir/<name>/model.onnx` and `dir/<name>/test_data_set_0/{input,output}_<j>.pb`.
pub fn write(dir: &std::path::Path, m: &DemoModel) -> std::io::Result<()> {
    let root = dir.join(m.name);
    let data = root.join("test_data_set_0");
    std::fs::create_dir_all(&data)?;
    std::fs::write(root.join("model.onnx"), &m.model)?;
    for (kind, list) in [("input", &m.inputs), ("output", &m.outputs)] {
        for (j, (name, t)) in list.iter().enumerate() {
            std::fs::write(
                data.join(format!("{kind}_{j}.pb")),
                shrink_onnx::writer::tensor_pb_bytes(t, name),
            )?;
        }
    }
    Ok(())
}

/// Adds `name_q = absmean_ternary(name)` to `m`: the BitNet b1.58 weight quantizer written as
/// graph ops (s = mean|W| + eps; W_q = clip(round(W / s), -1, 1) · s), so the ternary weights only
/// exist after constant folding.
fn absmean_quantizer(m: &mut ModelBuilder, name: &str) {
    let n = |s: &str| format!("{name}_{s}");
    m.node("Abs", &n("abs"), &[name], &[&n("abs")], &[])
        .node(
            "ReduceMean",
            &n("mean"),
            &[&n("abs")],
            &[&n("mean")],
            &[("keepdims", Attr::Int(1))],
        )
        .node(
            "Add",
            &n("eps"),
            &[&n("mean"), "qat_eps"],
            &[&n("scale")],
            &[],
        )
        .node("Div", &n("div"), &[name, &n("scale")], &[&n("scaled")], &[])
        .node("Round", &n("round"), &[&n("scaled")], &[&n("rounded")], &[])
        .node(
            "Clip",
            &n("clip"),
            &[&n("rounded"), "qat_lo", "qat_hi"],
            &[&n("trits")],
            &[],
        )
        .node(
            "Mul",
            &n("dequant"),
            &[&n("trits"), &n("scale")],
            &[&format!("{name}_q")],
            &[],
        );
}

/// Sizes of the BitNet-style block.
const SEQ: usize = 8;
const DIM: usize = 32;
const FFN: usize = 64;

/// One BitNet-style transformer block: RMSNorm → Q/K/V projections → single-head attention →
/// output projection → residual → RMSNorm → gated FFN (SiLU(gate)·up → down) → residual. Every
/// projection's weight is a float latent weight passed through an in-graph absmean quantizer.
/// The test data is the interpreter's own output on the unoptimized graph (a regression check;
/// the independent oracle for shipped data is [`ternary_mlp`]).
pub fn bitnet_block() -> DemoModel {
    let mut rng = Rng(0xb17e_7b10_c4a1_0002);
    let mut m = ModelBuilder::new("bitnet_block", 23);
    m.input(
        "x",
        DType::F32,
        &[WDim::Fixed(1), WDim::Fixed(SEQ), WDim::Fixed(DIM)],
    )
    .output(
        "y",
        DType::F32,
        &[WDim::Fixed(1), WDim::Fixed(SEQ), WDim::Fixed(DIM)],
    )
    .initializer("qat_eps", &Tensor::scalar(1e-5f32))
    .initializer("qat_lo", &Tensor::scalar(-1f32))
    .initializer("qat_hi", &Tensor::scalar(1f32))
    .initializer("attn_scale", &Tensor::scalar(1.0 / (DIM as f32).sqrt()))
    .initializer(
        "norm1",
        &Tensor::from_vec(
            vec![DIM],
            (0..DIM).map(|_| 1.0 + 0.1 * rng.uniform()).collect(),
        ),
    )
    .initializer(
        "norm2",
        &Tensor::from_vec(
            vec![DIM],
            (0..DIM).map(|_| 1.0 + 0.1 * rng.uniform()).collect(),
        ),
    );
    let projections = [
        ("wq", DIM, DIM),
        ("wk", DIM, DIM),
        ("wv", DIM, DIM),
        ("wo", DIM, DIM),
        ("w_gate", DIM, FFN),
        ("w_up", DIM, FFN),
        ("w_down", FFN, DIM),
    ];
    for (name, k, n) in projections {
        let latent: Vec<f32> = (0..k * n).map(|_| 0.02 * rng.uniform()).collect();
        m.initializer(name, &Tensor::from_vec(vec![k, n], latent));
        absmean_quantizer(&mut m, name);
    }
    m.node(
        "RMSNormalization",
        "attn_norm",
        &["x", "norm1"],
        &["h"],
        &[("axis", Attr::Int(-1))],
    )
    .node("MatMul", "q_proj", &["h", "wq_q"], &["q"], &[])
    .node("MatMul", "k_proj", &["h", "wk_q"], &["k"], &[])
    .node("MatMul", "v_proj", &["h", "wv_q"], &["v"], &[])
    .node(
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
    .node("MatMul", "mix", &["p", "v"], &["ctx"], &[])
    .node("MatMul", "o_proj", &["ctx", "wo_q"], &["o"], &[])
    .node("Add", "residual1", &["x", "o"], &["x1"], &[])
    .node(
        "RMSNormalization",
        "ffn_norm",
        &["x1", "norm2"],
        &["h2"],
        &[("axis", Attr::Int(-1))],
    )
    .node("MatMul", "gate_proj", &["h2", "w_gate_q"], &["g"], &[])
    .node("MatMul", "up_proj", &["h2", "w_up_q"], &["u"], &[])
    .node("Sigmoid", "gate_sigmoid", &["g"], &["gs"], &[])
    .node("Mul", "gate_silu", &["g", "gs"], &["silu"], &[])
    .node("Mul", "gate_mul", &["silu", "u"], &["a"], &[])
    .node("MatMul", "down_proj", &["a", "w_down_q"], &["d"], &[])
    .node("Add", "residual2", &["x1", "d"], &["y"], &[]);
    let x = Tensor::from_vec(
        vec![1, SEQ, DIM],
        (0..SEQ * DIM).map(|_| rng.uniform()).collect(),
    );
    let model = m.to_bytes();
    let outputs = match shrink_onnx::load_model_bytes(
        "bitnet_block",
        model.clone().into(),
        &Default::default(),
    )
    .map_err(|e| e.to_string())
    .and_then(|imp| {
        shrink_ref::run(&imp.graph, std::slice::from_ref(&x), &Default::default())
            .map_err(|e| e.to_string())
    }) {
        Ok(mut o) => vec![("y".into(), o.remove(0))],
        Err(_) => vec![],
    };
    DemoModel {
        name: "bitnet_block",
        model,
        inputs: vec![("x".into(), x)],
        outputs,
    }
}

/// What sparsity elimination must find in [`ternary_mlp`], counted by plain loops over its
/// weights (the oracle for the optimizer's statistics in tests).
pub struct MlpSparsity {
    /// W1 as `[IN][HIDDEN]` and W2 as `[HIDDEN][OUT]`, row-major.
    pub w1: Vec<f64>,
    pub w2: Vec<f64>,
    /// Hidden units with no effect: all-zero outgoing weights, or all-zero incoming weights and
    /// a bias that relu maps to 0.
    pub dead: Vec<usize>,
    pub live: Vec<usize>,
    /// Inputs no live unit reads.
    pub dead_inputs: usize,
}

/// Counts [`MlpSparsity`] for the shipped ternary MLP.
pub fn ternary_mlp_sparsity() -> MlpSparsity {
    let m = shrink_onnx::load_model_bytes(
        "ternary_mlp",
        ternary_mlp().model.into(),
        &Default::default(),
    )
    .expect("the generated model imports");
    let g = m.graph;
    let w = |name: &str| {
        let id = g
            .node_ids()
            .into_iter()
            .find(|&id| g.node(id).name == name)
            .expect("initializer");
        g.const_value(id.into()).expect("constant").to_f64_vec()
    };
    let (w1, b1, w2) = (w("w1"), w("b1"), w("w2"));
    let dead: Vec<usize> = (0..HIDDEN)
        .filter(|&h| {
            (0..OUT).all(|o| w2[h * OUT + o] == 0.0)
                || ((0..IN).all(|i| w1[i * HIDDEN + h] == 0.0) && b1[h] <= 0.0)
        })
        .collect();
    let live: Vec<usize> = (0..HIDDEN).filter(|h| !dead.contains(h)).collect();
    let dead_inputs = (0..IN)
        .filter(|&i| live.iter().all(|&h| w1[i * HIDDEN + h] == 0.0))
        .count();
    MlpSparsity {
        w1,
        w2,
        dead,
        live,
        dead_inputs,
    }
}
