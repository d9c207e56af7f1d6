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
/// ternary `W` (`[cols, rows]`, returned) with a per-row scale; with `expose`, the quantizer's
/// output `x_q` is a second graph output.
fn model(
    spelling: Spelling,
    (batch, cols, rows): (usize, usize, usize),
    bias: bool,
    expose: bool,
) -> (Vec<u8>, Vec<f32>) {
    let mut rng = shrink::demo::Rng(0x9a1d ^ (cols * 31 + rows) as u64);
    let w: Vec<f32> = (0..cols * rows)
        .map(|i| rng.trit(35) * 0.02 * (1 + (i % rows) % 3) as f32)
        .collect();
    let mut m = ModelBuilder::new("actquant", 21);
    m.input("x", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(cols)])
        .output("y", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(rows)])
        .initializer("w", &Tensor::from_vec(vec![cols, rows], w.clone()))
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
    if expose {
        m.output("xq", DType::F32, &[WDim::Fixed(batch), WDim::Fixed(cols)]);
    }
    (m.to_bytes(), w)
}

const GRID_SPELLINGS: [Spelling; 5] = [
    Spelling::DivByScale,
    Spelling::ClipEpsReciprocal,
    Spelling::DivAbsmaxMul127,
    Spelling::ScaleOver127,
    Spelling::Qdq,
];

fn optimized(bytes: &[u8]) -> shrink::ir::Graph {
    shrink::Compiler::new(Default::default())
        .optimized_graph(bytes)
        .unwrap()
}

/// Activations `[batch, cols]`: uniform in [-2, 2], except batch row 1 all below the quantizer's
/// epsilon (its clamp acts, the row's integers stay far below 127), row 2 all zeros, and row 3
/// ten times larger.
fn activations(batch: usize, cols: usize) -> Tensor {
    let mut rng = shrink::demo::Rng(0xac7_9a1d);
    let x: Vec<f32> = (0..batch * cols)
        .map(|i| {
            let v = 2.0 * rng.uniform();
            match i / cols {
                1 => v * 4e-6,
                2 => 0.0,
                3 => v * 10.0,
                _ => v,
            }
        })
        .collect();
    Tensor::from_vec(vec![batch, cols], x)
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// The activation mode `inspect` reports for `layer` of `g` compiled with `opts`.
fn mode(g: &shrink::ir::Graph, opts: &shrink::codegen::CodegenOptions) -> Option<&'static str> {
    let p = shrink::codegen::lower(g, opts).unwrap();
    let k = p.kernels.iter().find(|k| k.node_name == "layer").unwrap();
    k.activations
}

/// Every spelling of the quantizer, with and without a fused bias: the `packed` layer runs one
/// limb on the graph's integers (reported `int8-graph`) and matches the interpreter to within
/// `2⁻²⁰ · Σ |w · x_q|` plus the output's f32 rounding — the f32 rounding of the graph's own
/// dequantized values, far inside the faithful three-limb bound `Σ |w| · absmax · 2⁻²⁴` (which
/// needs that slack too) and the contract's rtol 1e-3 / atol 1e-4. The row below epsilon and the
/// zero row take the kernel's fallbacks.
#[test]
fn every_spelling_runs_one_limb_on_the_graphs_integers() {
    use shrink::codegen::{CodegenOptions, Strategy};
    let (batch, cols, rows) = (5, 300, 40);
    let x = activations(batch, cols);
    let opts = CodegenOptions {
        strategy: Strategy::Packed,
        ..Default::default()
    };
    for spelling in GRID_SPELLINGS {
        for bias in [false, true] {
            let (bytes, w) = model(spelling, (batch, cols, rows), bias, false);
            let g = optimized(&bytes);
            assert_eq!(g.ternary.len(), 1, "{spelling:?}: the weight is ternary");
            assert_eq!(mode(&g, &opts), Some("int8-graph"), "{spelling:?}");
            let want = shrink::interp::run(&g, std::slice::from_ref(&x), &Default::default())
                .unwrap()
                .remove(0);
            let got = shrink::compile_jit_with(&g, &opts)
                .unwrap()
                .run(std::slice::from_ref(&x))
                .unwrap()
                .remove(0);
            // The graph's own quantized activations, from the same model with them exposed.
            let (exposed, _) = model(spelling, (batch, cols, rows), bias, true);
            let xq = shrink::interp::run(
                &optimized(&exposed),
                std::slice::from_ref(&x),
                &Default::default(),
            )
            .unwrap()
            .remove(1);
            // The faithful three-limb kernel on the same activations: the model without the
            // quantizer, fed the graph's quantized values.
            let (plain, _) = model(Spelling::Plain, (batch, cols, rows), bias, false);
            let faithful = shrink::compile_jit_with(&optimized(&plain), &opts)
                .unwrap()
                .run(std::slice::from_ref(&xq))
                .unwrap()
                .remove(0);
            let (got, want, xq) = (f32s(&got), f32s(&want), f32s(&xq));
            let faithful = f32s(&faithful);
            // Errors in units of 2⁻²⁴ · Σ |w · x_q| (one f32 ulp of the row's scale).
            let (mut worst, mut worst_faithful, mut scaled, mut scaled_faithful) =
                (0f64, 0f64, 0f64, 0f64);
            for n in 0..batch {
                let row = &xq[n * cols..(n + 1) * cols];
                let a = row.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
                for r in 0..rows {
                    let wy: f64 = (0..cols)
                        .map(|c| (w[c * rows + r] as f64 * row[c] as f64).abs())
                        .sum();
                    let l1: f64 = (0..cols).map(|c| w[c * rows + r].abs() as f64).sum();
                    let (g, e) = (got[n * rows + r] as f64, want[n * rows + r] as f64);
                    let rounding = 2.0 * e.abs() * f32::EPSILON as f64 + 1e-30;
                    let bound = wy * f64::powi(2.0, -20) + rounding;
                    assert!(
                        (g - e).abs() <= bound,
                        "{spelling:?} bias {bias} [{n},{r}]: {g} vs {e} (bound {bound:e})"
                    );
                    worst = worst.max((g - e).abs());
                    let unit = wy * f64::powi(2.0, -24) + 1e-30;
                    scaled = scaled.max((g - e).abs() / unit);
                    let f = faithful[n * rows + r] as f64;
                    scaled_faithful = scaled_faithful.max((f - e).abs() / unit);
                    let faithful_bound = l1 * a / 16_711_422.0 + rounding;
                    worst_faithful = worst_faithful.max((g - e).abs() / faithful_bound);
                }
            }
            assert!(
                worst_faithful < 0.5,
                "{worst_faithful} of the faithful bound"
            );
            println!(
                "{spelling:?} bias {bias}: max error {worst:.2e}, {scaled:.2} × 2⁻²⁴ Σ|w·x_q| \
                 ({worst_faithful:.3} of the faithful bound); the faithful kernel on the same \
                 x_q: {scaled_faithful:.2} × 2⁻²⁴ Σ|w·x_q|"
            );
        }
    }
}

/// `auto` prices such a layer with one limb: its prediction is the cost model's one-limb
/// `packed` figure (below the three-limb one), and it runs one limb.
#[test]
fn auto_prices_the_one_limb_kernel() {
    use shrink::codegen::cost::LayerShape;
    use shrink::codegen::{CodegenOptions, Strategy};
    // A layer where packed beats the dense tiles with either limb count (at batch 1 a dense
    // layer is bound by its 4-byte weights, 16 times packed's).
    let (batch, cols, rows) = (1, 2048, 1024);
    let (bytes, _) = model(Spelling::DivByScale, (batch, cols, rows), false, false);
    let g = optimized(&bytes);
    let nonzeros = g.ternary.values().next().unwrap().nonzeros();
    let opts = CodegenOptions::default();
    let p = shrink::codegen::lower(&g, &opts).unwrap();
    let k = p.kernels.iter().find(|k| k.node_name == "layer").unwrap();
    assert_eq!((k.strategy, k.activations), ("packed", Some("int8-graph")));
    let shape = |limbs| LayerShape {
        rows,
        cols,
        nonzeros,
        batch,
        limbs,
    };
    let one = opts.cost.predict(Strategy::Packed, &shape(1)).unwrap();
    let three = opts.cost.predict(Strategy::Packed, &shape(3)).unwrap();
    assert_eq!(k.predicted_ns, Some(one));
    assert!(one < three, "{one} vs {three}");
    // The same layer without the quantizer is priced and run with three limbs.
    let (bytes, _) = model(Spelling::Plain, (batch, cols, rows), false, false);
    let p = shrink::codegen::lower(&optimized(&bytes), &opts).unwrap();
    let k = p.kernels.iter().find(|k| k.node_name == "layer").unwrap();
    assert_eq!((k.activations, k.predicted_ns), (Some("f32"), Some(three)));
}

/// `shrink inspect --json` and its table name the mode per layer: `int8-graph` for a graph
/// that quantizes the layer's input, else `f32`, or `int8-flag` with `--activations int8`.
#[test]
fn inspect_reports_the_activation_mode() {
    let dir = std::env::temp_dir().join(format!("shrink-actquant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shape = (2, 300, 40);
    let cases = [
        (Spelling::DivByScale, &[][..], "int8-graph"),
        (Spelling::Qdq, &["--activations", "int8"][..], "int8-graph"),
        (Spelling::Plain, &[][..], "f32"),
        (Spelling::Plain, &["--activations", "int8"][..], "int8-flag"),
    ];
    for (spelling, flags, want) in cases {
        let path = dir.join(format!("{spelling:?}.onnx"));
        std::fs::write(&path, model(spelling, shape, true, false).0).unwrap();
        let run = |json: bool| {
            let mut args = vec!["inspect", path.to_str().unwrap()];
            if json {
                args.push("--json");
            }
            args.extend(["--strategy", "packed"]);
            args.extend(flags);
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_shrink"))
                .args(&args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let report: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
        let layer = &report["layers"][0];
        assert_eq!(layer["name"], "layer");
        assert_eq!(
            layer["strategy"], "packed",
            "the existing field is unchanged"
        );
        assert_eq!(layer["activations"], want, "{spelling:?} {flags:?}");
        let table = run(false);
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with("layer "))
            .unwrap();
        assert!(line.trim_end().ends_with(want), "{line}");
        let header = table.lines().find(|l| l.contains("predicted_us")).unwrap();
        assert!(
            header.trim_end().ends_with("predicted_us activations"),
            "{header}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
