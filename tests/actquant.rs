//! In-graph activation fake-quantization end to end: models whose MatMul input is quantized by
//! the graph itself (BitNet's absmax quantizer in several spellings, QDQ with a constant scale)
//! run the ternary `packed` kernel with one int8 limb holding exactly the graph's integers, and
//! agree with the interpreter to within the f32 rounding of the graph's own dequantized values.
use shrink::ir::{DType, Tensor};
use shrink::onnx::writer::{Attr, ModelBuilder, WDim};

/// How the model writes its activation quantizer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spelling {
    /// `s = 127 / max(absmax, eps)`, `y = clip(round(x·s), -128, 127) / s`.
    DivByScale,
    /// The same with `Clip(absmax, eps)` for the epsilon and `y = q · (1/s)` (Reciprocal).
    ClipEpsReciprocal,
    /// `x / max(absmax, eps) · 127`, `y = q · (max(absmax, eps) / 127)`.
    DivAbsmaxMul127,
    /// `scale = max(absmax, eps) / 127`, `y = round(x / scale) · scale` (no Clip).
    ScaleOver127,
    /// `DequantizeLinear(QuantizeLinear(x, s, 0), s, 0)` with a constant int8 scale.
    Qdq,
    /// No quantizer: the MatMul reads `x` itself.
    Plain,
}

/// A model `y = x_q · W (+ bias)` with `x: [batch, cols]`, the quantizer of `spelling`, and a
/// ternary `W` with a per-row scale.
fn model(spelling: Spelling, batch: usize, cols: usize, rows: usize, bias: bool) -> Vec<u8> {
    let mut rng = shrink::demo::Rng(0x9a1d ^ (cols * 31 + rows) as u64);
    let w: Vec<f32> = (0..cols * rows)
        .map(|i| rng.trit(35) * 0.02 * (1 + (i % rows) % 3) as f32)
        .collect();
    let mut m = ModelBuilder::new("actquant", 21);
    m.input("x", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(cols)])
        .output("y", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(rows)])
        .initializer("w", &Tensor::from_vec(vec![cols, rows], w))
        .initializer("eps", &Tensor::scalar(1e-5f32))
        .initializer("k127", &Tensor::scalar(127f32))
        .initializer("one", &Tensor::scalar(1f32))
        .initializer("lo", &Tensor::scalar(-128f32))
        .initializer("hi", &Tensor::scalar(127f32))
        .initializer("axes", &Tensor::from_vec(vec![1], vec![-1i64]))
        .initializer("qs", &Tensor::scalar(0.0125f32))
        .initializer("qz", &Tensor::scalar(0i8));
    let absmax = |m: &mut ModelBuilder| {
        m.node("Abs", "abs", &["x"], &["ax"], &[]).node(
            "ReduceMax",
            "amax",
            &["ax", "axes"],
            &["amax"],
            &[("keepdims", Attr::Int(1))],
        );
    };
    let clip_round = |m: &mut ModelBuilder, v: &str| {
        m.node("Round", "round", &[v], &["r"], &[]).node(
            "Clip",
            "clip",
            &["r", "lo", "hi"],
            &["q"],
            &[],
        );
    };
    match spelling {
        Spelling::DivByScale => {
            absmax(&mut m);
            m.node("Max", "clamp", &["amax", "eps"], &["cl"], &[])
                .node("Div", "scale", &["k127", "cl"], &["s"], &[])
                .node("Mul", "quant", &["x", "s"], &["v"], &[]);
            clip_round(&mut m, "v");
            m.node("Div", "dequant", &["q", "s"], &["xq"], &[]);
        }
        Spelling::ClipEpsReciprocal => {
            absmax(&mut m);
            m.node("Clip", "clamp", &["amax", "eps", ""], &["cl"], &[])
                .node("Div", "scale", &["k127", "cl"], &["s"], &[])
                .node("Mul", "quant", &["s", "x"], &["v"], &[]);
            clip_round(&mut m, "v");
            m.node("Reciprocal", "inv", &["s"], &["si"], &[]).node(
                "Mul",
                "dequant",
                &["q", "si"],
                &["xq"],
                &[],
            );
        }
        Spelling::DivAbsmaxMul127 => {
            absmax(&mut m);
            m.node("Max", "clamp", &["eps", "amax"], &["cl"], &[])
                .node("Div", "norm", &["x", "cl"], &["xn"], &[])
                .node("Mul", "quant", &["xn", "k127"], &["v"], &[]);
            clip_round(&mut m, "v");
            m.node("Div", "step", &["cl", "k127"], &["st"], &[]).node(
                "Mul",
                "dequant",
                &["q", "st"],
                &["xq"],
                &[],
            );
        }
        Spelling::ScaleOver127 => {
            absmax(&mut m);
            m.node("Max", "clamp", &["amax", "eps"], &["cl"], &[])
                .node("Div", "scale", &["cl", "k127"], &["st"], &[])
                .node("Div", "quant", &["x", "st"], &["v"], &[])
                .node("Round", "round", &["v"], &["q"], &[])
                .node("Mul", "dequant", &["q", "st"], &["xq"], &[]);
        }
        Spelling::Qdq => {
            m.node("QuantizeLinear", "quant", &["x", "qs", "qz"], &["q8"], &[])
                .node(
                    "DequantizeLinear",
                    "dequant",
                    &["q8", "qs", "qz"],
                    &["xq"],
                    &[],
                );
        }
        Spelling::Plain => {
            m.node("Identity", "dequant", &["x"], &["xq"], &[]);
        }
    }
    if bias {
        let b: Vec<f32> = (0..rows).map(|_| rng.uniform() * 0.1).collect();
        m.initializer("b", &Tensor::from_vec(vec![rows], b))
            .node("MatMul", "layer", &["xq", "w"], &["z"], &[])
            .node("Add", "bias", &["z", "b"], &["y"], &[]);
    } else {
        m.node("MatMul", "layer", &["xq", "w"], &["y"], &[]);
    }
    m.to_bytes()
}

#[test]
fn dump_ir() {
    let Ok(dir) = std::env::var("ACTQUANT_DUMP") else {
        return;
    };
    for s in [
        Spelling::DivByScale,
        Spelling::ClipEpsReciprocal,
        Spelling::DivAbsmaxMul127,
        Spelling::ScaleOver127,
        Spelling::Qdq,
        Spelling::Plain,
    ] {
        let bytes = model(s, 4, 300, 40, true);
        std::fs::write(format!("{dir}/{s:?}.onnx"), &bytes).unwrap();
        let g = shrink::Compiler::new(Default::default())
            .optimized_graph(bytes.as_slice())
            .unwrap();
        println!("== {s:?}\n{}", shrink::ir::text::print::print_graph(&g));
    }
}
