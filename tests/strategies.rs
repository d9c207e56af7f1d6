//! Differential tests of the kernel strategies: random ternary MLPs (batch 1–9, random widths,
//! zero fractions, per-tensor or per-row scales, with and without bias and activation) compiled
//! with every strategy give the interpreter's outputs; a forced stream beyond the code cap and a
//! strategy for a layer that does not exist are clear errors.
use shrink::codegen::{CodegenOptions, Strategy};
use shrink::compare::{Tolerance, compare};
use shrink::demo::Rng;
use shrink::ir::op::{Binary, Linear, Op, Unary};
use shrink::ir::{DType, Graph, Tensor, ValueType};
use std::sync::Arc;

/// x[batch, dims[0]] → (MatMul → Add bias? → activation?)* with ternary weights.
fn random_mlp(rng: &mut Rng, per_row: bool) -> (Graph, Tensor) {
    let mut g = Graph::new();
    let batch = 1 + rng.below(9);
    let depth = 1 + rng.below(3);
    let dims: Vec<usize> = (0..=depth).map(|_| 1 + rng.below(40)).collect();
    let x = g.add_input("x", ValueType::fixed(DType::F32, &[batch, dims[0]]));
    let mut h: shrink::ir::Value = x.into();
    for l in 0..depth {
        let (k, n) = (dims[l], dims[l + 1]);
        let zero_pct = rng.below(70) as u64;
        let scales: Vec<f32> = (0..n).map(|_| 0.05 + rng.uniform().abs()).collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| {
                let s = if per_row { scales[i % n] } else { scales[0] };
                rng.trit(zero_pct) * s
            })
            .collect();
        let wc = g.add_const(&format!("w{l}"), Arc::new(Tensor::from_vec(vec![k, n], w)));
        let t = ValueType::fixed(DType::F32, &[batch, n]);
        let mm = g.add_node(
            Op::Linear(Linear::MatMul),
            &format!("fc{l}"),
            &[Some(h), Some(wc.into())],
            vec![t.clone()],
        );
        h = mm.into();
        if rng.below(2) == 0 {
            let bias: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
            let bc = g.add_const(&format!("b{l}"), Arc::new(Tensor::from_vec(vec![n], bias)));
            h = g
                .add_node(
                    Op::Binary(Binary::Add),
                    &format!("add{l}"),
                    &[Some(h), Some(bc.into())],
                    vec![t.clone()],
                )
                .into();
        }
        if rng.below(2) == 0 {
            h = g
                .add_node(
                    Op::Unary(Unary::Relu),
                    &format!("relu{l}"),
                    &[Some(h)],
                    vec![t],
                )
                .into();
        }
    }
    g.outputs.push(("y".into(), h));
    let xs: Vec<f32> = (0..batch * dims[0]).map(|_| rng.uniform() * 4.0).collect();
    (g, Tensor::from_vec(vec![batch, dims[0]], xs))
}

const STRATEGIES: [Strategy; 2] = [

    Strategy::Stream,
    Strategy::Packed,

];

#[test]
fn every_strategy_matches_the_interpreter_on_random_ternary_mlps() {
    let cases: u64 = std::env::var("SHRINK_STRATEGY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let tol = Tolerance {
        rtol: 1e-5,
        atol: 1e-6,
    };
    let mut ternary_layers = 0;
    for seed in 0..cases {
        let mut rng = Rng(seed * 7919 + 13);
        let (g0, x) = random_mlp(&mut rng, seed % 2 == 1);
        let mut g = g0.clone();
        let mut o = shrink::OptOptions::default();
        o.ctx.verify = true;
        shrink::optimize(&mut g, &o).unwrap();
        ternary_layers += g.ternary.len();
        let want = shrink::interp::run(&g0, &[x.clone()], &Default::default()).unwrap();
        for s in STRATEGIES {
            let opts = CodegenOptions {
                strategy: s,
                ..Default::default()
            };
            let k = shrink::compile_jit_with(&g, &opts)
                .unwrap_or_else(|e| panic!("seed {seed} {s}: {e}"));
            let got = k.run(&[x.clone()]).unwrap();
            let c = compare(&got[0], &want[0], tol);
            assert!(c.mismatch.is_none(), "seed {seed} {s}: {:?}", c.mismatch);
        }
    }
    assert!(ternary_layers >= cases as usize, "too few ternary layers were generated");
}

#[test]
fn forced_stream_beyond_the_cap_is_refused() {
    let mut rng = Rng(5);
    let (mut g, _) = random_mlp(&mut rng, false);
    shrink::optimize(&mut g, &shrink::OptOptions::default()).unwrap();
    let opts = CodegenOptions {
        strategy: Strategy::Stream,
        max_stream_terms: 1,
        ..Default::default()
    };
    let err = shrink::compile_jit_with(&g, &opts).unwrap_err().to_string();
    assert!(err.contains("over the cap") && err.contains("--strategy packed"), "{err}");
}

#[test]
fn strategy_for_an_unknown_layer_is_an_error() {
    let mut rng = Rng(9);
    let (mut g, _) = random_mlp(&mut rng, false);
    shrink::optimize(&mut g, &shrink::OptOptions::default()).unwrap();
    let opts = CodegenOptions {
        per_layer: vec![("no_such_layer".into(), Strategy::Packed)],
        ..Default::default()
    };
    let err = shrink::compile_jit_with(&g, &opts).unwrap_err().to_string();
    assert!(err.contains("no node named 'no_such_layer'"), "{err}");
}
