//! The models shipped in `examples/models/` are exactly what `cargo run --example gen_models`
//! writes (so they can be trusted and regenerated), and each one's stored expected output is
//! reproduced by the interpreter on the graph as imported and after the full optimizer pipeline.
//! `ternary_mlp` and `ternary_cnn` store outputs computed by scalar loops in the generator;
//! `bitnet_block` stores the interpreter's own output (a regression value), so it is checked here
//! against a scalar computation of the block written in this file.
use shrink::compare::{Tolerance, compare};
use std::path::Path;

#[test]
fn shipped_models_match_their_generator_and_their_data() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    for m in shrink::demo::all() {
        let dir = root.join(m.name);
        let on_disk = std::fs::read(dir.join("model.onnx")).unwrap();
        assert!(
            on_disk == m.model,
            "{}: model.onnx differs from the generator (run gen_models)",
            m.name
        );
        let data = shrink::dataset::load_dataset(&dir.join("test_data_set_0"), 1 << 30).unwrap();
        assert_eq!(data.inputs.len(), m.inputs.len());
        assert_eq!(data.outputs.len(), m.outputs.len());
        for ((_, a), (_, b)) in data
            .inputs
            .iter()
            .chain(&data.outputs)
            .zip(m.inputs.iter().chain(&m.outputs))
        {
            assert_eq!(
                a, b,
                "{}: stored test data differs from the generator",
                m.name
            );
        }
        let imp = shrink::onnx::load_model(&dir.join("model.onnx"), &Default::default()).unwrap();
        let mut opt = imp.graph.clone();
        shrink::optimize(&mut opt, &Default::default()).unwrap();
        let ins: Vec<_> = data.inputs.iter().map(|(_, t)| t.clone()).collect();
        for (what, g) in [("imported", &imp.graph), ("optimized", &opt)] {
            let got = shrink::interp::run(g, &ins, &Default::default()).unwrap();
            for ((_, want), got) in data.outputs.iter().zip(&got) {
                let c = compare(got, want, Tolerance::INTERP);
                assert!(c.mismatch.is_none(), "{} {what}: {:?}", m.name, c.mismatch);
            }
        }
    }
}

/// `examples/models/bitnet_block`'s stored output is the interpreter's own (see
/// `shrink::demo::bitnet_block`): a regression value. This recomputes the block from the model
/// file's initializers with plain scalar loops — each op evaluated in f64 and rounded to f32, as
/// the ONNX ops are specified — so the stored value is also checked independently of the
/// interpreter.
#[test]
fn bitnet_block_output_matches_an_independent_scalar_computation() {
    use prost::Message;
    const SEQ: usize = 8;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/bitnet_block");
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let model = shrink::onnx::proto::ModelProto::decode(&bytes[..]).unwrap();
    let graph = model.graph.unwrap();
    let init = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let p = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no initializer {name}"));
        let t = shrink::onnx::tensor_from_proto(p, None, 1 << 30).unwrap();
        (t.dims().to_vec(), t.to_vec::<f32>().unwrap())
    };
    let eps = init("qat_eps").1[0];
    // BitNet absmean quantizer: s = mean|W| + eps; W_q = clip(round_half_even(W / s), -1, 1) * s.
    let quantized = |name: &str| -> (usize, usize, Vec<f32>) {
        let (d, w) = init(name);
        let mean = (w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64) as f32;
        let s = mean + eps;
        let q = w
            .iter()
            .map(|&v| (v / s).round_ties_even().clamp(-1.0, 1.0) * s)
            .collect();
        (d[0], d[1], q)
    };
    // [m, k] x [k, n] with f64 accumulation.
    let matmul = |a: &[f32], m: usize, k: usize, b: &[f32], n: usize| -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let acc: f64 = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
                out[i * n + j] = acc as f32;
            }
        }
        out
    };
    let rms_norm = |x: &[f32], scale: &[f32]| -> Vec<f32> {
        let d = scale.len();
        let mut out = vec![0f32; x.len()];
        for (row, o) in x.chunks(d).zip(out.chunks_mut(d)) {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + 1e-5).sqrt();
            for j in 0..d {
                o[j] = (row[j] as f64 * r * scale[j] as f64) as f32;
            }
        }
        out
    };
    let proj = |h: &[f32], name: &str| {
        let (k, n, w) = quantized(name);
        matmul(h, SEQ, k, &w, n)
    };
    let data = shrink::dataset::load_dataset(&dir.join("test_data_set_0"), 1 << 30).unwrap();
    let x = data.inputs[0].1.to_vec::<f32>().unwrap();
    let dim = x.len() / SEQ;
    let h = rms_norm(&x, &init("norm1").1);
    let (q, k, v) = (proj(&h, "wq"), proj(&h, "wk"), proj(&h, "wv"));
    let attn_scale = init("attn_scale").1[0];
    // p = softmax(q k^T * scale) over the last axis.
    let mut p = vec![0f32; SEQ * SEQ];
    for i in 0..SEQ {
        let s: Vec<f32> = (0..SEQ)
            .map(|j| {
                let dot: f64 = (0..dim)
                    .map(|c| q[i * dim + c] as f64 * k[j * dim + c] as f64)
                    .sum();
                dot as f32 * attn_scale
            })
            .collect();
        let max = s.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let e: Vec<f64> = s.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for j in 0..SEQ {
            p[i * SEQ + j] = (e[j] / sum) as f32;
        }
    }
    let ctx = matmul(&p, SEQ, SEQ, &v, dim);
    let o = proj(&ctx, "wo");
    let x1: Vec<f32> = x.iter().zip(&o).map(|(a, b)| a + b).collect();
    let h2 = rms_norm(&x1, &init("norm2").1);
    let (g, u) = (proj(&h2, "w_gate"), proj(&h2, "w_up"));
    let a: Vec<f32> = g
        .iter()
        .zip(&u)
        .map(|(&g, &u)| {
            let sig = (1.0 / (1.0 + (-(g as f64)).exp())) as f32;
            (g * sig) * u
        })
        .collect();
    let d = proj(&a, "w_down");
    let want: Vec<f32> = x1.iter().zip(&d).map(|(a, b)| a + b).collect();
    let stored = data.outputs[0].1.to_vec::<f32>().unwrap();
    let c = compare(
        &data.outputs[0].1,
        &shrink::ir::Tensor::from_vec(vec![1, SEQ, dim], want.clone()),
        Tolerance::INTERP,
    );
    assert!(
        c.mismatch.is_none(),
        "stored bitnet_block output: {:?}",
        c.mismatch
    );
    // The block adds ~1e-3 to an input of ~1, so y alone at rtol 1e-4 would only check the
    // residual: compare what the block adds (y - x, exact in f64 up to y's f32 rounding) with a
    // tolerance relative to that.
    let max_delta = want
        .iter()
        .zip(&x)
        .fold(0f64, |m, (&w, &x)| m.max((w as f64 - x as f64).abs()));
    assert!(
        max_delta > 1e-4,
        "the block must change its input ({max_delta})"
    );
    for i in 0..want.len() {
        let (got, exp) = (stored[i] as f64 - x[i] as f64, want[i] as f64 - x[i] as f64);
        assert!(
            // y and x1 each round once to f32 near 1 (half an ulp is 6e-8).
            (got - exp).abs() <= 5e-7 + 1e-4 * exp.abs(),
            "element {i}: the stored block adds {got}, the scalar computation {exp}"
        );
    }
}
