//! The optimizer preserves semantics and reports exactly what it did.
//!
//! - On the shipped ternary MLP every pass's statistics equal counts computed independently from
//!   the weights, and the optimized graph reproduces the shipped expected output.
//! - On the BitNet-style block every projection is detected ternary after folding its in-graph
//!   absmean quantizer, and the optimized block computes what the unoptimized one does.
//! - Property test: random MLP / conv / norm graphs with random ternary, sparse and dead-unit
//!   weights compute the same outputs before and after the default pipeline.
use proptest::prelude::*;
use shrink::compare::{Tolerance, compare};
use shrink::demo::Rng;
use shrink::ir::op::{Binary, Conv, Layout, Linear, Norm, Pool, Unary};
use shrink::ir::{DType, Graph, Op, Tensor, ValueType};
use std::sync::Arc;

fn optimized(g: &Graph) -> (Graph, Vec<shrink::opt::Stats>) {
    let mut o = g.clone();
    let opts = shrink::OptOptions {
        ctx: shrink::opt::Ctx {
            verify: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let stats = shrink::optimize(&mut o, &opts)
        .unwrap_or_else(|e| panic!("optimize: {e}\n{}", shrink::ir::text::print_graph(g)));
    (o, stats)
}

/// Every test that optimizes with default options (this file, the CLI binary, the conformance
/// suite) must verify the IR after each pass: `crates/shrink` enables `shrink-opt/verify` for its
/// tests, because `cfg!(test)` is false for a dependency under `cargo test --release`.
#[test]
fn default_options_verify_in_tests() {
    assert!(shrink::opt::Ctx::default().verify);
    assert!(shrink::OptOptions::default().ctx.verify);
}

fn stat(stats: &[shrink::opt::Stats], pass: &str, counter: &str) -> usize {
    stats
        .iter()
        .filter(|s| s.pass == pass)
        .map(|s| s.get(counter))
        .sum()
}

fn assert_same(a: &[Tensor], b: &[Tensor], tol: Tolerance, what: &str) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let c = compare(x, y, tol);
        assert!(c.mismatch.is_none(), "{what}: output {k}: {:?}", c.mismatch);
    }
}

#[test]
fn ternary_mlp_stats_are_exact() {
    let demo = shrink::demo::ternary_mlp();
    let imp = shrink::onnx::load_model_bytes("mlp", demo.model.clone().into(), &Default::default())
        .unwrap();
    let g = imp.graph;
    let shrink::demo::MlpSparsity {
        dead,
        live,
        dead_inputs,
        ..
    } = shrink::demo::ternary_mlp_sparsity();
    assert!(
        dead.contains(&3) && dead.contains(&9) && dead.contains(&17),
        "the generator's dead units"
    );
    assert!(dead_inputs >= 1, "input 5 is dead by construction");

    let (o, stats) = optimized(&g);
    assert_eq!(stat(&stats, "sparsity", "dead_units"), dead.len());
    assert_eq!(stat(&stats, "sparsity", "dead_input_cols"), dead_inputs);
    assert_eq!(stat(&stats, "ternary", "ternary_layers"), 2);
    assert_eq!(stat(&stats, "ternary", "per_tensor"), 2);
    let remaining = (16 - dead_inputs) * live.len() + live.len() * 8;
    assert_eq!(stat(&stats, "ternary", "ternary_params"), remaining);
    let ins = vec![demo.inputs[0].1.clone()];
    let got = shrink::interp::run(&o, &ins, &Default::default()).unwrap();
    assert_same(
        &got,
        &[demo.outputs[0].1.clone()],
        Tolerance::INTERP,
        "optimized vs shipped output",
    );
}

#[test]
fn bitnet_block_projections_are_ternary_after_folding() {
    let demo = shrink::demo::bitnet_block();
    let imp =
        shrink::onnx::load_model_bytes("bitnet", demo.model.clone().into(), &Default::default())
            .unwrap();
    let staged = shrink::optimize_staged(&imp.graph, &Default::default()).unwrap();
    let report = shrink::inspect::inspect(&imp.graph, Some(&staged), None);
    let projections = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    for p in projections {
        let l = report
            .layers
            .iter()
            .find(|l| l.name == p)
            .unwrap_or_else(|| panic!("{p} is not a layer after folding"));
        assert!(l.ternary, "{p} not ternary");
        assert_eq!(l.scale_kind.as_deref(), Some("per_tensor"), "{p}");
    }
    assert_eq!(
        report.layers.iter().filter(|l| l.ternary).count(),
        projections.len()
    );
    let x = vec![demo.inputs[0].1.clone()];
    let a = shrink::interp::run(&imp.graph, &x, &Default::default()).unwrap();
    let b = shrink::interp::run(&staged.optimized, &x, &Default::default()).unwrap();
    assert_same(
        &a,
        &b,
        Tolerance::INTERP,
        "bitnet block optimized vs unoptimized",
    );
}

/// The BitNet-style block with dead FFN units planted in its latent weights: units 5 and 17 have
/// all-zero `w_down` rows, unit 40 an all-zero `w_gate` column (silu(0) = 0). After folding the
/// absmean quantizers the three units leave gate, up and down together, and the block computes
/// what it did before.
#[test]
fn bitnet_block_dead_ffn_units_are_removed_after_folding() {
    let demo = shrink::demo::bitnet_block();
    let mut g =
        shrink::onnx::load_model_bytes("bitnet", demo.model.clone().into(), &Default::default())
            .unwrap()
            .graph;
    let mut edit = |name: &str, zero: &dyn Fn(usize, usize) -> bool| {
        let id = g
            .node_ids()
            .into_iter()
            .find(|&id| g.node(id).name == name)
            .unwrap();
        let shrink::ir::Op::Const(c) = g.node(id).op else {
            panic!("{name} is not a constant")
        };
        let t = &g.consts[c.0 as usize];
        let (rows, cols) = (t.dims()[0], t.dims()[1]);
        let mut v = t.to_vec::<f32>().unwrap();
        for r in 0..rows {
            for k in 0..cols {
                if zero(r, k) {
                    v[r * cols + k] = 0.0;
                }
            }
        }
        g.consts[c.0 as usize] = Arc::new(Tensor::from_vec(vec![rows, cols], v));
    };
    edit("w_down", &|r, _| r == 5 || r == 17);
    edit("w_gate", &|_, k| k == 40);
    let staged = shrink::optimize_staged(&g, &Default::default()).unwrap();
    assert_eq!(stat(&staged.stats, "sparsity", "dead_gated_units"), 3);
    let report = shrink::inspect::inspect(&g, Some(&staged), None);
    let layer = |n: &str| report.layers.iter().find(|l| l.name == n).unwrap();
    assert_eq!(layer("gate_proj").dead_rows, Some(3));
    assert_eq!(layer("up_proj").dead_rows, Some(3));
    assert_eq!(layer("down_proj").dead_cols, Some(3));
    let x = vec![demo.inputs[0].1.clone()];
    let a = shrink::interp::run(&g, &x, &Default::default()).unwrap();
    let b = shrink::interp::run(&staged.optimized, &x, &Default::default()).unwrap();
    assert_same(
        &a,
        &b,
        Tolerance::INTERP,
        "bitnet block with dead FFN units",
    );
}

#[test]
fn ternary_cnn_channel_pruning_is_exact() {
    let demo = shrink::demo::ternary_cnn();
    let imp = shrink::onnx::load_model_bytes("cnn", demo.model.clone().into(), &Default::default())
        .unwrap();
    let staged = shrink::optimize_staged(&imp.graph, &Default::default()).unwrap();
    let dead1 = shrink::demo::CNN_DEAD_CONV1.len();
    let dead2 = shrink::demo::CNN_DEAD_CONV2.len();
    assert_eq!(stat(&staged.stats, "sparsity", "dead_units"), dead1 + dead2);
    let report = shrink::inspect::inspect(&imp.graph, Some(&staged), None);
    let layer = |n: &str| report.layers.iter().find(|l| l.name == n).unwrap();
    // [outputs × inputs] views: conv1 [8 × 3·3·3], conv2 [8 × 8·3·3], classifier [4 × 8].
    assert_eq!(
        (layer("conv1").dead_rows, layer("conv1").dead_cols),
        (Some(dead1), Some(0))
    );
    assert_eq!(
        (layer("conv2").dead_rows, layer("conv2").dead_cols),
        (Some(dead2), Some(dead1 * 9))
    );
    assert_eq!(
        (layer("classifier").dead_rows, layer("classifier").dead_cols),
        (Some(0), Some(dead2))
    );
    assert!(report.layers.iter().all(|l| l.ternary));
    assert_eq!(layer("conv1").scale_kind.as_deref(), Some("per_row"));
    let got = shrink::interp::run(
        &staged.optimized,
        &[demo.inputs[0].1.clone()],
        &Default::default(),
    )
    .unwrap();
    assert_same(
        &got,
        &[demo.outputs[0].1.clone()],
        Tolerance::INTERP,
        "optimized cnn vs shipped output",
    );
}

fn f32t(dims: &[usize]) -> ValueType {
    ValueType::fixed(DType::F32, dims)
}

/// A random ternary [k, n] (or [n, k] when `rows_first`) weight with zeros, dead rows/cols.
fn ternary_weight(r: &mut Rng, k: usize, n: usize, rows_first: bool) -> Tensor {
    let zero_pct = [0, 30, 70][r.below(3)];
    let per_row = r.below(2) == 0;
    let scales: Vec<f32> = (0..n)
        .map(|_| {
            if per_row {
                0.05 + 0.1 * r.uniform().abs()
            } else {
                0.1
            }
        })
        .collect();
    let dead_out = r.below(n as u64 + 1);
    let dead_in = r.below(k as u64 + 1);
    let mut v = vec![0f32; k * n];
    for i in 0..k {
        for (j, &scale) in scales.iter().enumerate() {
            let t = if j == dead_out || i == dead_in || (r.below(100) as u64) < zero_pct {
                0.0
            } else if r.below(2) == 0 {
                1.0
            } else {
                -1.0
            };
            let idx = if rows_first { j * k + i } else { i * n + j };
            v[idx] = t * scale;
        }
    }
    Tensor::from_vec(if rows_first { vec![n, k] } else { vec![k, n] }, v)
}

/// A random ternary conv weight [m, c, k, k] with zeros, one dead output channel and one dead
/// input channel (each possibly out of range, i.e. none).
fn conv_weight(r: &mut Rng, m: usize, c: usize, k: usize) -> Tensor {
    let zero_pct = [0, 30, 70][r.below(3)];
    let dead_out = r.below(m as u64 + 1);
    let dead_in = r.below(c as u64 + 1);
    let scale = [0.1f32, 0.25][r.below(2)];
    let mut v = Vec::with_capacity(m * c * k * k);
    for o in 0..m {
        for i in 0..c {
            for _ in 0..k * k {
                let t = if o == dead_out || i == dead_in || r.below(100) < zero_pct {
                    0.0
                } else if r.below(2) == 0 {
                    1.0
                } else {
                    -1.0
                };
                v.push(t * scale);
            }
        }
    }
    Tensor::from_vec(vec![m, c, k, k], v)
}

/// Per-channel values: mostly small random, some strongly negative (so Relu of a channel with
/// all-zero weights is provably zero).
fn channel_values(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if r.below(3) == 0 {
                -0.5
            } else {
                0.2 * r.uniform()
            }
        })
        .collect()
}

/// One conv layer on `x` [batch, c, hw, hw]: random kernel/padding, bias as Conv `B` or a
/// separate Add, activation, BatchNormalization and pool. Returns the output, its channels and
/// spatial size.
fn conv_layer(
    g: &mut Graph,
    r: &mut Rng,
    l: usize,
    x: shrink::ir::Value,
    (batch, c, hw): (usize, usize, usize),
) -> (shrink::ir::Value, usize, usize) {
    let m = 1 + r.below(4);
    let k = if hw >= 3 { [1, 3][r.below(2)] } else { 1 };
    let pad = if k == 3 { r.below(2) } else { 0 };
    let out_hw = hw + 2 * pad + 1 - k;
    let wc = g.add_const(&format!("wconv{l}"), Arc::new(conv_weight(r, m, c, k)));
    let bias = Arc::new(Tensor::from_vec(vec![m], channel_values(r, m)));
    let bias_kind = r.below(3);
    let b_in = (bias_kind == 1).then(|| g.add_const(&format!("bconv{l}"), bias.clone()).into());
    let op = Op::Conv(Conv::Conv {
        auto_pad: shrink::ir::op::AutoPad::NotSet,
        dilations: vec![],
        group: 1,
        kernel_shape: vec![],
        pads: vec![pad as i64; 4],
        strides: vec![],
    });
    let ty = f32t(&[batch, m, out_hw, out_hw]);
    let mut y: shrink::ir::Value = g
        .add_node(
            op,
            &format!("conv{l}"),
            &[Some(x), Some(wc.into()), b_in],
            vec![ty.clone()],
        )
        .into();
    if bias_kind == 2 {
        let b = g.add_const(
            &format!("bconv{l}"),
            Arc::new(bias.reshaped(vec![m, 1, 1]).unwrap()),
        );
        y = g
            .add_node(
                Op::Binary(Binary::Add),
                &format!("conv{l}_bias"),
                &[Some(y), Some(b.into())],
                vec![ty.clone()],
            )
            .into();
    }
    if r.below(3) != 0 {
        let act = [Unary::Relu, Unary::LeakyRelu { alpha: 0.1 }][r.below(2)].clone();
        y = g
            .add_node(
                Op::Unary(act),
                &format!("conv{l}_act"),
                &[Some(y)],
                vec![ty.clone()],
            )
            .into();
    }
    if r.below(3) == 0 {
        // A depthwise conv (same spatial size): some channels' kernels are all zero.
        let dk = if out_hw >= 3 { 3 } else { 1 };
        let mut kernel: Vec<f32> = (0..m * dk * dk).map(|_| 0.5 * r.uniform()).collect();
        let dead = r.below(m as u64 + 1);
        if dead < m {
            kernel[dead * dk * dk..(dead + 1) * dk * dk].fill(0.0);
        }
        let wk = g.add_const(
            &format!("dw{l}"),
            Arc::new(Tensor::from_vec(vec![m, 1, dk, dk], kernel)),
        );
        let db = (r.below(2) == 0).then(|| {
            g.add_const(
                &format!("dw_b{l}"),
                Arc::new(Tensor::from_vec(vec![m], channel_values(r, m))),
            )
            .into()
        });
        let op = Op::Conv(Conv::Conv {
            auto_pad: shrink::ir::op::AutoPad::NotSet,
            dilations: vec![],
            group: m as i64,
            kernel_shape: vec![],
            pads: vec![(dk / 2) as i64; 4],
            strides: vec![],
        });
        y = g
            .add_node(
                op,
                &format!("dwconv{l}"),
                &[Some(y), Some(wk.into()), db],
                vec![ty.clone()],
            )
            .into();
    }
    if r.below(3) == 0 {
        let zero_scale = r.below(m as u64 + 1);
        let mut param = |name: &str, lo: f32| {
            let v: Vec<f32> = (0..m)
                .map(|c| {
                    if name == "bn_s" && c == zero_scale {
                        0.0
                    } else {
                        lo + 0.5 * r.uniform().abs()
                    }
                })
                .collect();
            Some(
                g.add_const(
                    &format!("{name}{l}"),
                    Arc::new(Tensor::from_vec(vec![m], v)),
                )
                .into(),
            )
        };
        let (scale, shift, mean, var) = (
            param("bn_s", 0.5),
            param("bn_b", -0.2),
            param("bn_m", -0.1),
            param("bn_v", 0.5),
        );
        let op = Op::Norm(Norm::BatchNormalization {
            epsilon: 1e-5,
            momentum: 0.9,
            training_mode: false,
        });
        y = g
            .add_node(
                op,
                &format!("bn{l}"),
                &[Some(y), scale, shift, mean, var],
                vec![ty.clone()],
            )
            .into();
    }
    if out_hw >= 2 && r.below(3) == 0 {
        let op = Op::Pool(Pool::MaxPool {
            auto_pad: shrink::ir::op::AutoPad::NotSet,
            ceil_mode: false,
            dilations: vec![],
            kernel_shape: vec![2, 2],
            pads: vec![],
            storage_order: 0,
            strides: vec![],
        });
        let pty = f32t(&[batch, m, out_hw - 1, out_hw - 1]);
        y = g
            .add_node(op, &format!("pool{l}"), &[Some(y)], vec![pty])
            .into();
        return (y, m, out_hw - 1);
    }
    (y, m, out_hw)
}

/// A gated FFN layer `act(x·Wg [+ b]) · (x·Wu)` with `wg` as the gate weight; the activation is
/// SiLU written out (x·sigmoid(x)), a squared Relu (r·r) or none, and the product's operand
/// order is random.
fn gated_layer(
    g: &mut Graph,
    r: &mut Rng,
    l: usize,
    x: shrink::ir::Value,
    wg: shrink::ir::Value,
    (batch, width, out): (usize, usize, usize),
) -> shrink::ir::Value {
    let ty = f32t(&[batch, out]);
    let mut gate: shrink::ir::Value = g
        .add_node(
            Op::Linear(Linear::MatMul),
            &format!("gate{l}"),
            &[Some(x), Some(wg)],
            vec![ty.clone()],
        )
        .into();
    if r.below(2) == 0 {
        let b = g.add_const(
            &format!("gate_b{l}"),
            Arc::new(Tensor::from_vec(vec![out], channel_values(r, out))),
        );
        gate = g
            .add_node(
                Op::Binary(Binary::Add),
                &format!("gate_bias{l}"),
                &[Some(gate), Some(b.into())],
                vec![ty.clone()],
            )
            .into();
    }
    let mul = |g: &mut Graph, name: String, a, b| -> shrink::ir::Value {
        g.add_node(
            Op::Binary(Binary::Mul),
            &name,
            &[Some(a), Some(b)],
            vec![ty.clone()],
        )
        .into()
    };
    let act = match r.below(3) {
        0 => {
            let s = g.add_node(
                Op::Unary(Unary::Sigmoid),
                &format!("gate_sigmoid{l}"),
                &[Some(gate)],
                vec![ty.clone()],
            );
            mul(g, format!("silu{l}"), gate, s.into())
        }
        1 => {
            let relu = g
                .add_node(
                    Op::Unary(Unary::Relu),
                    &format!("gate_relu{l}"),
                    &[Some(gate)],
                    vec![ty.clone()],
                )
                .into();
            mul(g, format!("relu_sq{l}"), relu, relu)
        }
        _ => gate,
    };
    let wu = g.add_const(
        &format!("w_up{l}"),
        Arc::new(ternary_weight(r, width, out, false)),
    );
    let up = g
        .add_node(
            Op::Linear(Linear::MatMul),
            &format!("up{l}"),
            &[Some(x), Some(wu.into())],
            vec![ty.clone()],
        )
        .into();
    if r.below(2) == 0 {
        mul(g, format!("gated{l}"), act, up)
    } else {
        mul(g, format!("gated{l}"), up, act)
    }
}

/// Builds a random graph: optional conv front end (1–2 conv layers, flattened by Flatten or
/// Reshape), then dense layers with biases (Gemm with random alpha/beta and per-unit or scalar
/// `C`, or MatMul + Add), activations and norms. Returns the graph and one input tensor.
fn random_graph(seed: u64, layers: usize, conv: bool) -> (Graph, Tensor) {
    let mut r = Rng(seed | 1);
    let mut g = Graph::new();
    let batch = 1 + r.below(3);
    let (mut x, mut width, input) = if conv {
        let (c, hw) = (1 + r.below(3), 3 + r.below(3));
        let inp = g.add_input("x", f32t(&[batch, c, hw, hw]));
        let data: Vec<f32> = (0..batch * c * hw * hw).map(|_| r.uniform()).collect();
        let mut v: shrink::ir::Value = inp.into();
        let mut shape = (c, hw);
        for l in 0..1 + r.below(2) {
            let (y, m, h) = conv_layer(&mut g, &mut r, l, v, (batch, shape.0, shape.1));
            v = y;
            shape = (m, h);
        }
        let (m, s) = shape;
        let flat = f32t(&[batch, m * s * s]);
        let fl = if r.below(2) == 0 {
            g.add_node(
                Op::Layout(Layout::Flatten { axis: 1 }),
                "flatten",
                &[Some(v)],
                vec![flat],
            )
        } else {
            let s = g.add_const(
                "flat_shape",
                Arc::new(Tensor::from_vec(
                    vec![2],
                    vec![batch as i64, (m * s * s) as i64],
                )),
            );
            g.add_node(
                Op::Layout(Layout::Reshape { allowzero: false }),
                "flatten",
                &[Some(v), Some(s.into())],
                vec![flat],
            )
        };
        (
            shrink::ir::Value::from(fl),
            m * s * s,
            Tensor::from_vec(vec![batch, c, hw, hw], data),
        )
    } else {
        let d0 = 1 + r.below(10);
        let inp = g.add_input("x", f32t(&[batch, d0]));
        let data: Vec<f32> = (0..batch * d0).map(|_| r.uniform()).collect();
        (
            shrink::ir::Value::from(inp),
            d0,
            Tensor::from_vec(vec![batch, d0], data),
        )
    };
    for l in 0..layers {
        let out = 1 + r.below(10);
        let gemm = r.below(2) == 0;
        let trans_b = gemm && r.below(2) == 0;
        let w = g.add_const(
            &format!("w{l}"),
            Arc::new(ternary_weight(&mut r, width, out, trans_b)),
        );
        let bias_vals = channel_values(&mut r, out);
        let ty = f32t(&[batch, out]);
        if !trans_b && r.below(4) == 0 {
            x = gated_layer(&mut g, &mut r, l, x, w.into(), (batch, width, out));
            width = out;
            continue;
        }
        let y = if gemm {
            let alpha = [1.0, 0.5][r.below(2)];
            let beta = [1.0, 2.0][r.below(2)];
            let c = if r.below(4) == 0 {
                Tensor::from_vec(vec![1], vec![bias_vals[0]])
            } else {
                Tensor::from_vec(vec![out], bias_vals)
            };
            let b = g.add_const(&format!("b{l}"), Arc::new(c));
            let op = Op::Linear(Linear::Gemm {
                alpha,
                beta,
                trans_a: false,
                trans_b,
            });
            g.add_node(
                op,
                &format!("fc{l}"),
                &[Some(x), Some(w.into()), Some(b.into())],
                vec![ty.clone()],
            )
        } else {
            let b = g.add_const(
                &format!("b{l}"),
                Arc::new(Tensor::from_vec(vec![out], bias_vals)),
            );
            let mm = g.add_node(
                Op::Linear(Linear::MatMul),
                &format!("fc{l}"),
                &[Some(x), Some(w.into())],
                vec![ty.clone()],
            );
            g.add_node(
                Op::Binary(Binary::Add),
                &format!("fc{l}_bias"),
                &[Some(mm.into()), Some(b.into())],
                vec![ty.clone()],
            )
        };
        let act = match r.below(6) {
            0 => Some(Unary::Relu),
            1 => Some(Unary::Sigmoid),
            2 => Some(Unary::Tanh),
            3 => Some(Unary::LeakyRelu { alpha: 0.1 }),
            4 => Some(Unary::Gelu {
                approximate: shrink::ir::op::GeluApprox::None,
            }),
            _ => None,
        };
        x = match act {
            Some(a) => g
                .add_node(
                    Op::Unary(a),
                    &format!("act{l}"),
                    &[Some(y.into())],
                    vec![ty.clone()],
                )
                .into(),
            None => y.into(),
        };
        if r.below(4) == 0 && l + 1 < layers {
            let gamma = g.add_const(
                &format!("gamma{l}"),
                Arc::new(Tensor::from_vec(vec![out], vec![1.5f32; out])),
            );
            let op = Op::Norm(Norm::RMSNormalization {
                axis: -1,
                epsilon: 1e-5,
                stash_type: 1,
            });
            x = g
                .add_node(
                    op,
                    &format!("norm{l}"),
                    &[Some(x), Some(gamma.into())],
                    vec![ty],
                )
                .into();
        }
        width = out;
    }
    g.outputs.push(("y".into(), x));
    (g, input)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn optimization_preserves_random_graphs(seed in any::<u64>(), layers in 1usize..4, conv in any::<bool>()) {
        let (g, x) = random_graph(seed, layers, conv);
        shrink::ir::verify(&g).unwrap();
        let (o, _) = optimized(&g);
        let a = shrink::interp::run(&g, std::slice::from_ref(&x), &Default::default()).unwrap();
        let b = shrink::interp::run(&o, std::slice::from_ref(&x), &Default::default()).unwrap();
        assert_same(&a, &b, Tolerance { rtol: 1e-4, atol: 1e-5 }, "random graph");
    }
}

/// The random graphs reach every way sparsity elimination deletes something (so the property
/// test above checks each of them), and every deletion keeps the outputs.
#[test]
fn random_graphs_exercise_every_sparsity_path() {
    let counters = [
        "dead_units",
        "units_folded_into_bias",
        "dead_input_cols",
        "dead_input_channels",
        "dead_gated_units",
    ];
    let mut seen = vec![0usize; counters.len()];
    for seed in 0..300u64 {
        let (g, x) = random_graph(seed * 7919, 1 + (seed % 3) as usize, seed % 2 == 0);
        let (o, stats) = optimized(&g);
        for (k, c) in counters.iter().enumerate() {
            seen[k] += stat(&stats, "sparsity", c);
        }
        let a = shrink::interp::run(&g, std::slice::from_ref(&x), &Default::default()).unwrap();
        let b = shrink::interp::run(&o, std::slice::from_ref(&x), &Default::default()).unwrap();
        assert_same(
            &a,
            &b,
            Tolerance {
                rtol: 1e-4,
                atol: 1e-5,
            },
            "random graph",
        );
    }
    for (c, n) in counters.iter().zip(&seen) {
        assert!(*n > 0, "no random graph exercised sparsity.{c}: {seen:?}");
    }
}

/// Same model and options ⇒ the same optimized graph, to the byte (codegen's byte-identical
/// objects rest on it): every suite model and shipped example, imported and optimized twice.
#[test]
fn optimization_is_deterministic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut models: Vec<_> = std::fs::read_dir(root.join("../shared/onnx-node"))
        .expect("../shared/onnx-node")
        .map(|e| e.unwrap().path().join("model.onnx"))
        .collect();
    models.sort();
    models.extend(
        shrink::demo::all()
            .iter()
            .map(|m| root.join("examples/models").join(m.name).join("model.onnx")),
    );
    let once = |p: &std::path::Path| -> Option<(String, Vec<Vec<u8>>)> {
        let mut g = shrink::onnx::load_model(p, &Default::default()).ok()?.graph;
        shrink::optimize(&mut g, &Default::default()).ok()?;
        let consts = g.consts.iter().map(|t| t.bytes().to_vec()).collect();
        Some((shrink::ir::text::print_graph(&g), consts))
    };
    let mut compared = 0;
    for p in &models {
        let a = once(p);
        assert!(a == once(p), "{}: two optimizations differ", p.display());
        compared += a.is_some() as usize;
    }
    assert!(compared >= 950, "only {compared} models optimized");
}
