//! Differential testing of the JIT against the reference interpreter on random graphs:
//! - MLPs (MatMul or Gemm with trans_b, bias, an activation) with ternary, sparse or dense
//!   weights, some hidden units dead, batch 1–9;
//! - conv nets (Conv with random kernel, stride, padding and groups, BatchNormalization, an
//!   activation, pooling, a global pool, Flatten, Gemm);
//! - norm and broadcasting chains (LayerNormalization / RMSNormalization, broadcast Mul/Add,
//!   Softmax on a random axis, a reduction).
//!
//! Every graph is compiled with every strategy (auto, stream, packed, dense) and must give the
//! interpreter's outputs (on the graph as built, before optimization) within rtol 1e-4 /
//! atol 1e-5. `SHRINK_DIFF_CASES=N` sets the number of graphs per family (default 60 in CI; the
//! closing notes record local sweeps of 10,000).
use shrink::codegen::{CodegenOptions, Strategy};
use shrink::compare::{Tolerance, compare};
use shrink::demo::Rng;
use shrink::ir::op::{Binary, Conv, Linear, Norm, Op, Pool, Reduce, Unary};
use shrink::ir::{DType, Graph, Tensor, Value, ValueType};
use std::sync::Arc;

fn f32s(dims: &[usize], v: Vec<f32>) -> Arc<Tensor> {
    Arc::new(Tensor::from_vec(dims.to_vec(), v))
}

/// Shapes are left to the optimizer's shape inference.
fn any() -> Vec<ValueType> {
    vec![ValueType::unknown_shape(DType::F32)]
}

fn node(g: &mut Graph, op: Op, name: &str, ins: &[Option<Value>]) -> Value {
    g.add_node(op, name, ins, any()).into()
}

fn konst(g: &mut Graph, name: &str, dims: &[usize], v: Vec<f32>) -> Value {
    g.add_const(name, f32s(dims, v)).into()
}

/// Weights of one layer: ternary (per tensor or per row), sparse real, or dense real.
fn weights(rng: &mut Rng, rows: usize, cols: usize, row_major: bool) -> Vec<f32> {
    let kind = rng.below(3);
    let zero_pct = rng.below(80) as u64;
    let scales: Vec<f32> = (0..rows).map(|_| 0.05 + rng.uniform().abs()).collect();
    let per_row = rng.below(2) == 0;
    // Occasionally a whole output unit or input column is zero (dead units for sparsity).
    let dead_row = (rng.below(3) == 0).then(|| rng.below(rows as u64));
    let dead_col = (rng.below(3) == 0).then(|| rng.below(cols as u64));
    let mut w = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = match kind {
                0 => rng.trit(zero_pct) * if per_row { scales[r] } else { scales[0] },
                1 => {
                    if rng.below(100) < zero_pct as usize {
                        0.0
                    } else {
                        rng.uniform()
                    }
                }
                _ => rng.uniform(),
            };
            let v = if Some(r) == dead_row || Some(c) == dead_col {
                0.0
            } else {
                v
            };
            // MatMul's B is [cols, rows]; Gemm with trans_b and Conv lead with rows.
            let i = if row_major {
                r * cols + c
            } else {
                c * rows + r
            };
            w[i] = v;
        }
    }
    w
}

fn activation(rng: &mut Rng) -> Option<Unary> {
    match rng.below(7) {
        0 => Some(Unary::Relu),
        1 => Some(Unary::Sigmoid),
        2 => Some(Unary::Tanh),
        3 => Some(Unary::LeakyRelu { alpha: 0.1 }),
        4 => Some(Unary::Gelu {
            approximate: shrink::ir::op::GeluApprox::None,
        }),
        5 => Some(Unary::Softplus),
        _ => None,
    }
}

fn mlp(rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let batch = 1 + rng.below(9);
    let depth = 1 + rng.below(3);
    let dims: Vec<usize> = (0..=depth).map(|_| 1 + rng.below(48)).collect();
    // Sometimes a sequence of tokens, [seq, batch, features] (MatMul layers only: Gemm is 2-D).
    let seq = if rng.below(3) == 0 {
        1 + rng.below(3)
    } else {
        0
    };
    let x_dims: Vec<usize> = if seq > 0 {
        vec![seq, batch, dims[0]]
    } else {
        vec![batch, dims[0]]
    };
    let x = g.add_input("x", ValueType::fixed(DType::F32, &x_dims));
    let mut h: Value = x.into();
    for l in 0..depth {
        let (k, n) = (dims[l], dims[l + 1]);
        let gemm = seq == 0 && rng.below(2) == 0;
        let w = weights(rng, n, k, gemm);
        let bias: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
        if gemm {
            let wc = konst(&mut g, &format!("w{l}"), &[n, k], w);
            let bc = konst(&mut g, &format!("b{l}"), &[n], bias);
            let op = Op::Linear(Linear::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            });
            h = node(
                &mut g,
                op,
                &format!("fc{l}"),
                &[Some(h), Some(wc), Some(bc)],
            );
        } else {
            let wc = konst(&mut g, &format!("w{l}"), &[k, n], w);
            h = node(
                &mut g,
                Op::Linear(Linear::MatMul),
                &format!("fc{l}"),
                &[Some(h), Some(wc)],
            );
            if rng.below(2) == 0 {
                let bc = konst(&mut g, &format!("b{l}"), &[n], bias);
                h = node(
                    &mut g,
                    Op::Binary(Binary::Add),
                    &format!("add{l}"),
                    &[Some(h), Some(bc)],
                );
            }
        }
        if let Some(a) = activation(rng) {
            h = node(&mut g, Op::Unary(a), &format!("act{l}"), &[Some(h)]);
        }
    }
    g.outputs.push(("y".into(), h));
    let xs = (0..x_dims.iter().product::<usize>())
        .map(|_| rng.uniform() * 3.0)
        .collect();
    (g, vec![Tensor::from_vec(x_dims, xs)])
}

fn conv_net(rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let batch = 1 + rng.below(3);
    let c_in = 1 + rng.below(4);
    let hw = 4 + rng.below(6);
    let x = g.add_input("x", ValueType::fixed(DType::F32, &[batch, c_in, hw, hw]));
    let mut h: Value = x.into();
    let mut c = c_in;
    let mut size = hw;
    for l in 0..1 + rng.below(2) {
        let depthwise = rng.below(3) == 0;
        let c_out = if depthwise { c } else { 1 + rng.below(6) };
        let group = if depthwise { c } else { 1 };
        let k = [1, 3][rng.below(2)];
        let stride = 1 + rng.below(2);
        let pad = if k == 3 { rng.below(2) } else { 0 };
        if size + 2 * pad < k {
            break;
        }
        size = (size + 2 * pad - k) / stride + 1;
        let w = weights(rng, c_out, (c / group) * k * k, true);
        let wc = konst(&mut g, &format!("cw{l}"), &[c_out, c / group, k, k], w);
        let bias: Vec<f32> = (0..c_out).map(|_| rng.uniform()).collect();
        let bc = konst(&mut g, &format!("cb{l}"), &[c_out], bias);
        let op = Op::Conv(Conv::Conv {
            auto_pad: shrink::ir::op::AutoPad::NotSet,
            dilations: vec![],
            group: group as i64,
            kernel_shape: vec![k as i64, k as i64],
            pads: vec![pad as i64; 4],
            strides: vec![stride as i64; 2],
        });
        h = node(
            &mut g,
            op,
            &format!("conv{l}"),
            &[Some(h), Some(wc), Some(bc)],
        );
        if rng.below(2) == 0 {
            let p =
                |rng: &mut Rng, base: f32| (0..c_out).map(|_| base + rng.uniform() * 0.5).collect();
            let (s, b, m, v) = (p(rng, 1.0), p(rng, 0.0), p(rng, 0.0), p(rng, 1.0));
            let ins = [
                Some(h),
                Some(konst(&mut g, &format!("bn_s{l}"), &[c_out], s)),
                Some(konst(&mut g, &format!("bn_b{l}"), &[c_out], b)),
                Some(konst(&mut g, &format!("bn_m{l}"), &[c_out], m)),
                Some(konst(&mut g, &format!("bn_v{l}"), &[c_out], v)),
            ];
            let op = Op::Norm(Norm::BatchNormalization {
                epsilon: 1e-5,
                momentum: 0.9,
                training_mode: false,
            });
            h = node(&mut g, op, &format!("bn{l}"), &ins);
        }
        if let Some(a) = activation(rng) {
            h = node(&mut g, Op::Unary(a), &format!("act{l}"), &[Some(h)]);
        }
        c = c_out;
    }
    if size >= 2 && rng.below(2) == 0 {
        let op = if rng.below(2) == 0 {
            Op::Pool(Pool::MaxPool {
                auto_pad: shrink::ir::op::AutoPad::NotSet,
                ceil_mode: rng.below(2) == 0,
                dilations: vec![],
                kernel_shape: vec![2, 2],
                pads: vec![],
                storage_order: 0,
                strides: vec![1, 1],
            })
        } else {
            Op::Pool(Pool::AveragePool {
                auto_pad: shrink::ir::op::AutoPad::NotSet,
                ceil_mode: false,
                count_include_pad: rng.below(2) == 0,
                dilations: vec![],
                kernel_shape: vec![2, 2],
                pads: vec![0, 0, 1, 1],
                strides: vec![1, 1],
            })
        };
        h = node(&mut g, op, "pool", &[Some(h)]);
    }
    h = node(&mut g, Op::Pool(Pool::GlobalAveragePool), "gap", &[Some(h)]);
    h = node(
        &mut g,
        Op::Layout(shrink::ir::op::Layout::Flatten { axis: 1 }),
        "flatten",
        &[Some(h)],
    );
    let n = 1 + rng.below(5);
    let w = weights(rng, n, c, true);
    let wc = konst(&mut g, "fw", &[n, c], w);
    let op = Op::Linear(Linear::Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    });
    h = node(&mut g, op, "fc", &[Some(h), Some(wc)]);
    g.outputs.push(("y".into(), h));
    let xs = (0..batch * c_in * hw * hw)
        .map(|_| rng.uniform() * 2.0)
        .collect();
    (g, vec![Tensor::from_vec(vec![batch, c_in, hw, hw], xs)])
}

fn norm_chain(rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let dims = [1 + rng.below(4), 1 + rng.below(6), 2 + rng.below(12)];
    let x = g.add_input("x", ValueType::fixed(DType::F32, &dims));
    let d = dims[2];
    let scale = konst(
        &mut g,
        "gamma",
        &[d],
        (0..d).map(|_| rng.uniform() + 1.5).collect(),
    );
    let mut h: Value = x.into();
    let norm = if rng.below(2) == 0 {
        Op::Norm(Norm::LayerNormalization {
            axis: -1,
            epsilon: 1e-5,
            stash_type: 1,
        })
    } else {
        Op::Norm(Norm::RMSNormalization {
            axis: -1,
            epsilon: 1e-5,
            stash_type: 1,
        })
    };
    h = node(&mut g, norm, "norm", &[Some(h), Some(scale)]);
    // Broadcasting against a [1, T, 1] tensor and a [D] tensor.
    let t = konst(
        &mut g,
        "t",
        &[1, dims[1], 1],
        (0..dims[1]).map(|_| rng.uniform()).collect(),
    );
    h = node(
        &mut g,
        Op::Binary(Binary::Add),
        "add_t",
        &[Some(h), Some(t)],
    );
    let m = konst(&mut g, "m", &[d], (0..d).map(|_| rng.uniform()).collect());
    h = node(
        &mut g,
        Op::Binary(Binary::Mul),
        "mul_d",
        &[Some(h), Some(m)],
    );
    if let Some(a) = activation(rng) {
        h = node(&mut g, Op::Unary(a), "act", &[Some(h)]);
    }
    let axis = rng.below(3) as i64 - 3;
    let sm = if rng.below(2) == 0 {
        Norm::Softmax {
            axis,
            coerce_2d: false,
        }
    } else {
        Norm::LogSoftmax {
            axis,
            coerce_2d: false,
        }
    };
    h = node(&mut g, Op::Norm(sm), "softmax", &[Some(h)]);
    if rng.below(2) == 0 {
        let axes: Value = g
            .add_const(
                "axes",
                Arc::new(Tensor::from_vec(vec![1], vec![rng.below(3) as i64])),
            )
            .into();
        let op = Op::Reduce(Reduce::ReduceSum {
            keepdims: rng.below(2) == 0,
            noop_with_empty_axes: false,
        });
        h = node(&mut g, op, "reduce", &[Some(h), Some(axes)]);
    }
    g.outputs.push(("y".into(), h));
    let n = dims.iter().product();
    let xs = (0..n).map(|_| rng.uniform() * 4.0).collect();
    (g, vec![Tensor::from_vec(dims.to_vec(), xs)])
}

const STRATEGIES: [Strategy; 4] = [
    Strategy::Auto,
    Strategy::Stream,
    Strategy::Packed,
    Strategy::Dense,
];

/// Builds `cases` graphs with `family` and checks every strategy against the interpreter.
fn sweep(family: &str, make: fn(&mut Rng) -> (Graph, Vec<Tensor>)) -> usize {
    let cases: u64 = std::env::var("SHRINK_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut ternary_layers = 0;
    for seed in 0..cases {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (g0, inputs) = make(&mut rng);
        let want = shrink::interp::run(&g0, &inputs, &Default::default())
            .unwrap_or_else(|e| panic!("{family} seed {seed}: interpreter: {e}"));
        let mut g = g0.clone();
        let mut o = shrink::OptOptions::default();
        o.ctx.verify = true;
        shrink::optimize(&mut g, &o).unwrap_or_else(|e| panic!("{family} seed {seed}: {e}"));
        ternary_layers += g.ternary.len();
        every_strategy_agrees(&g, &inputs, &want, &format!("{family} seed {seed}"));
    }
    println!(
        "{family}: {cases} graphs × {} strategies agree; {ternary_layers} ternary layers",
        STRATEGIES.len()
    );
    ternary_layers
}

/// `g` (optimized) compiled with every strategy gives `want` on `inputs` within rtol 1e-4 /
/// atol 1e-5 (f64 sums against the interpreter's; `what` names the case in a failure).
fn every_strategy_agrees(g: &Graph, inputs: &[Tensor], want: &[Tensor], what: &str) {
    let tol = Tolerance {
        rtol: 1e-4,
        atol: 1e-5,
    };
    for s in STRATEGIES {
        let opts = CodegenOptions {
            strategy: s,
            ..Default::default()
        };
        let k = shrink::compile_jit_with(g, &opts).unwrap_or_else(|e| panic!("{what} {s}: {e}"));
        let got = k.run(inputs).unwrap_or_else(|e| panic!("{what} {s}: {e}"));
        for (o, (a, b)) in got.iter().zip(want).enumerate() {
            let c = compare(a, b, tol);
            assert!(
                c.mismatch.is_none(),
                "{what} strategy {s} output {o}: {:?}",
                c.mismatch
            );
        }
    }
}

#[test]
fn random_mlps_agree_with_the_interpreter() {
    assert!(sweep("mlp", mlp) > 0, "no ternary layer was generated");
}

#[test]
fn random_conv_nets_agree_with_the_interpreter() {
    sweep("conv", conv_net);
}

#[test]
fn random_norm_chains_agree_with_the_interpreter() {
    sweep("norm", norm_chain);
}

/// A ternary MLP that is sure to keep a ternary layer after optimization.
fn ternary_graph() -> Graph {
    for seed in 1.. {
        let (mut g, _) = mlp(&mut Rng(seed));
        shrink::optimize(&mut g, &shrink::OptOptions::default()).unwrap();
        if !g.ternary.is_empty() {
            return g;
        }
    }
    unreachable!()
}

#[test]
fn forced_stream_beyond_the_cap_is_refused() {
    let g = ternary_graph();
    let opts = CodegenOptions {
        strategy: Strategy::Stream,
        max_stream_terms: 0,
        ..Default::default()
    };
    let err = shrink::compile_jit_with(&g, &opts).unwrap_err().to_string();
    assert!(
        err.contains("over the cap") && err.contains("--strategy packed"),
        "{err}"
    );
}

#[test]
fn strategy_for_an_unknown_layer_is_an_error() {
    let g = ternary_graph();
    let opts = CodegenOptions {
        per_layer: vec![("no_such_layer".into(), Strategy::Packed)],
        ..Default::default()
    };
    let err = shrink::compile_jit_with(&g, &opts).unwrap_err().to_string();
    assert!(err.contains("no node named 'no_such_layer'"), "{err}");
}

/// An infinite activation meets zero weights (`0 · inf = NaN` in the graph) and nonzero ones
/// (±inf) in every layer kind and strategy: `stream` and `packed`, which skip or quantize the
/// zeros, must still give the graph's NaN and infinities (the fuzzer found `stream` giving inf).
#[test]
fn infinite_activations_give_the_graphs_nan_and_inf_on_every_strategy() {
    let mut checked = 0;
    for seed in 0..40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (g0, mut inputs) = mlp(&mut rng);
        let x = &inputs[0];
        let mut v: Vec<f32> = x.to_vec().unwrap();
        v[0] = f32::INFINITY;
        let half = v.len() / 2;
        if half > 0 {
            v[half] = f32::NEG_INFINITY;
        }
        inputs[0] = Tensor::from_vec(x.dims().to_vec(), v);
        // The optimizer deletes all-zero weight lines, 0 · inf included (it proves what
        // contributes nothing to finite inputs): the code is compared with its graph.
        let mut g = g0;
        shrink::optimize(&mut g, &shrink::OptOptions::default()).unwrap();
        if g.ternary.is_empty() {
            continue;
        }
        let want = shrink::interp::run(&g, &inputs, &Default::default()).unwrap();
        checked += 1;
        every_strategy_agrees(&g, &inputs, &want, &format!("infinite seed {seed}"));
    }
    assert!(checked >= 10, "only {checked} graphs kept a ternary layer");
}
