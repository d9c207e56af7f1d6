//! Untrusted models against the caps of code generation (`--max-code`, `--max-memory`): models
//! built to blow up code (a big ternary layer forced to `stream`, thousands of nodes, thousands of
//! outputs), memory (a huge Conv, a huge intermediate) or the emitter's recursion (deeply nested
//! shapes). Each either compiles within the cap — and then computes what the interpreter does —
//! or is refused with one line naming the node, the op and the cap.
use shrink::codegen::{CodegenOptions, Strategy};
use shrink::ir::{DType, Tensor};
use shrink::onnx::writer::{ModelBuilder, WDim};
use shrink::{CompileOptions, Compiler, Model};
use std::process::Command;

/// A deterministic stream of pseudo-random numbers.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// A value in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() % 2000) as f32 / 1000.0 - 1.0
    }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    (0..t.len()).map(|i| t.get_f64(i) as f32).collect()
}

/// `y = x · W` with `W` [cols × rows] ternary (scale 0.05, about 2/3 nonzero), node "fc1";
/// and its count of nonzero weights.
fn ternary_layer(cols: usize, rows: usize) -> (ModelBuilder, usize) {
    let mut rng = Lcg(7);
    let w: Vec<f32> = (0..cols * rows)
        .map(|_| 0.05 * ((rng.next() % 3) as f32 - 1.0))
        .collect();
    let nonzeros = w.iter().filter(|&&v| v != 0.0).count();
    let mut m = ModelBuilder::new("ternary", 17);
    m.input("x", DType::F32, &[WDim::Fixed(1), WDim::Fixed(cols)])
        .output("y", DType::F32, &[WDim::Fixed(1), WDim::Fixed(rows)])
        .initializer("w", &Tensor::from_vec(vec![cols, rows], w))
        .node("MatMul", "fc1", &["x", "w"], &["y"], &[]);
    (m, nonzeros)
}

fn compiler(codegen: CodegenOptions) -> Compiler {
    Compiler::new(CompileOptions {
        codegen,
        ..Default::default()
    })
}

/// Inputs of `m`'s declared shapes, filled with values in [-1, 1).
fn inputs_for(kernel: &shrink::Kernel) -> Vec<Tensor> {
    let mut rng = Lcg(11);
    kernel
        .inputs()
        .iter()
        .map(|s| {
            let n = s.dims.iter().product();
            Tensor::from_vec(s.dims.clone(), (0..n).map(|_| rng.uniform()).collect())
        })
        .collect()
}

/// Compiles `bytes` with `c`, runs it and the interpreter on the same inputs, and asserts every
/// output agrees within `atol`. Returns the kernel.
fn agrees_with_the_interpreter(c: &Compiler, bytes: &[u8], atol: f32) -> shrink::Kernel {
    let kernel = c.compile_jit(Model::Bytes(bytes)).unwrap();
    let inputs = inputs_for(&kernel);
    let got = kernel.run(&inputs).unwrap();
    let imp = shrink::onnx::load_model_bytes(
        "model",
        bytes.to_vec().into(),
        &shrink::onnx::ImportOptions {
            max_memory: 1 << 30,
        },
    )
    .unwrap();
    let want = shrink::interp::run(&imp.graph, &inputs, &Default::default()).unwrap();
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.dims(), w.dims(), "output {k}");
        for (i, (a, b)) in f32s(g).iter().zip(f32s(w)).enumerate() {
            assert!((a - b).abs() <= atol, "output {k}[{i}]: {a} vs {b}");
        }
    }
    kernel
}

fn refusal(c: &Compiler, bytes: &[u8]) -> String {
    c.compile_jit(Model::Bytes(bytes)).unwrap_err().to_string()
}

#[test]
fn a_forced_stream_over_the_cap_is_refused_before_it_is_built() {
    // 1024 × 1024, about 700k terms: a stream of about 4.6 MiB.
    let big = ternary_layer(1024, 1024).0.to_bytes();
    let c = compiler(CodegenOptions {
        strategy: Strategy::Stream,
        max_code_bytes: Some(1 << 20),
        ..Default::default()
    });
    let e = refusal(&c, &big);
    let re = regex::Regex::new(
        r"^node 'fc1' \(op MatMul\): code would exceed --max-code 1\.0 MiB \(stream needs 4\.[0-9] MiB\)$",
    )
    .unwrap();
    assert!(re.is_match(&e), "{e}");
    // `auto` under the same cap never picks a stream it would refuse: it compiles (packed).
    let auto = compiler(CodegenOptions {
        max_code_bytes: Some(1 << 20),
        ..Default::default()
    });
    let k = auto.compile_jit(Model::Bytes(&big)).unwrap();
    assert!(k.stats().code_bytes <= 1 << 20);
    // A stream at exactly its cap (the larger of its predicted and its real size) compiles and
    // computes the graph; one byte less than its kernels is refused, naming the layer.
    let (small, nonzeros) = ternary_layer(96, 64);
    let small = small.to_bytes();
    let stream = |cap| {
        compiler(CodegenOptions {
            strategy: Strategy::Stream,
            max_code_bytes: cap,
            ..Default::default()
        })
    };
    let uncapped = stream(None).compile_jit(Model::Bytes(&small)).unwrap();
    let real = uncapped.stats().code_bytes;
    let kernels: usize = uncapped.stats().kernel_code_bytes.iter().sum();
    let cap = real.max(shrink::codegen::cost::bytes(
        Strategy::Stream,
        &shrink::codegen::cost::LayerShape {
            rows: 64,
            cols: 96,
            nonzeros,
            batch: 1,
            limbs: 3,
        },
    ));
    println!("stream: {nonzeros} terms, {real} bytes of code");
    agrees_with_the_interpreter(&stream(Some(cap)), &small, 1e-5);
    let e = refusal(&stream(Some(kernels - 1)), &small);
    assert!(
        e.starts_with("node 'fc1' (op MatMul): code would exceed --max-code"),
        "{e}"
    );
}

/// x [16] → Tanh → Mul(c) → Softplus → Add(c) → Sigmoid → MatMul (dense 16×16) → y.
fn mixed_chain() -> Vec<u8> {
    let mut rng = Lcg(3);
    let w: Vec<f32> = (0..256).map(|_| rng.uniform()).collect();
    let mut m = ModelBuilder::new("chain", 17);
    m.input("x", DType::F32, &[WDim::Fixed(1), WDim::Fixed(16)])
        .output("y", DType::F32, &[WDim::Fixed(1), WDim::Fixed(16)])
        .initializer("c", &Tensor::from_vec(vec![16], vec![0.75f32; 16]))
        .initializer("w", &Tensor::from_vec(vec![16, 16], w))
        .node("Tanh", "t", &["x"], &["a"], &[])
        .node("Mul", "m", &["a", "c"], &["b"], &[])
        .node("Softplus", "s", &["b"], &["d"], &[])
        .node("MatMul", "mm", &["d", "w"], &["e"], &[])
        .node("Sigmoid", "sg", &["e"], &["y"], &[]);
    m.to_bytes()
}

#[test]
fn the_real_code_is_capped_exactly_and_the_function_that_crosses_it_is_named() {
    let model = mixed_chain();
    let uncapped = compiler(CodegenOptions {
        max_code_bytes: None,
        ..Default::default()
    });
    let k = uncapped.compile_jit(Model::Bytes(&model)).unwrap();
    let total = k.stats().code_bytes;
    let kernels = &k.stats().kernel_code_bytes;
    // Exactly the code it takes: compiles and computes the graph.
    let at = |cap| {
        compiler(CodegenOptions {
            max_code_bytes: Some(cap),
            ..Default::default()
        })
    };
    agrees_with_the_interpreter(&at(total), &model, 1e-5);
    // One byte short of its kernels: the last kernel crosses the cap, after all before it.
    let program = shrink::lower_with(
        &uncapped.optimized_graph(Model::Bytes(&model)).unwrap(),
        &Default::default(),
    )
    .unwrap();
    let last = program.kernels.last().unwrap();
    let before: usize = kernels[..kernels.len() - 1].iter().sum();
    let cap = kernels.iter().sum::<usize>() - 1;
    let e = refusal(&at(cap), &model);
    assert_eq!(
        e,
        format!(
            "node '{}' (op {}): code would exceed --max-code {} (this function compiled to {}, after {} before it)",
            last.node_name,
            last.op,
            shrink::codegen::caps::human(cap),
            shrink::codegen::caps::human(kernels[kernels.len() - 1]),
            shrink::codegen::caps::human(before),
        )
    );
    // The object-file writer honours the same cap.
    let aot = at(total / 4)
        .compile_aot(Model::Bytes(&model), "host", "m")
        .unwrap_err()
        .to_string();
    assert!(
        aot.contains("code would exceed --max-code") && aot.starts_with("node '"),
        "{aot}"
    );
}

/// `n` Tanh nodes in a chain on x [1, 64], named n0, n1, ….
fn tanh_chain(n: usize) -> Vec<u8> {
    let mut m = ModelBuilder::new("chain", 17);
    m.input("x", DType::F32, &[WDim::Fixed(1), WDim::Fixed(64)])
        .output("y", DType::F32, &[WDim::Fixed(1), WDim::Fixed(64)]);
    for i in 0..n {
        let (a, b) = (format!("v{i}"), format!("v{}", i + 1));
        let a = if i == 0 { "x".to_string() } else { a };
        let b = if i + 1 == n { "y".to_string() } else { b };
        m.node("Tanh", &format!("n{i}"), &[&a], &[&b], &[]);
    }
    m.to_bytes()
}

#[test]
fn a_chain_of_thousands_of_nodes_is_refused_before_it_is_compiled() {
    let c = compiler(CodegenOptions {
        max_code_bytes: Some(64 << 10),
        ..Default::default()
    });
    let e = refusal(&c, &tanh_chain(4000));
    let re = regex::Regex::new(
        r"^node 'n[0-9]+' \(op Tanh\): code would exceed --max-code 64\.0 KiB \(this node needs at least [0-9.]+ (B|KiB), after [0-9.]+ KiB before it\)$",
    )
    .unwrap();
    assert!(re.is_match(&e), "{e}");
    // Two hundred of them compile under the default cap and compute the graph.
    let k = agrees_with_the_interpreter(&Compiler::default(), &tanh_chain(200), 1e-5);
    assert!(k.stats().code_bytes < shrink::codegen::caps::DEFAULT_MAX_CODE);
}

/// x [4] → 1500 outputs `x + i`.
fn many_outputs(n: usize) -> Vec<u8> {
    let mut m = ModelBuilder::new("outputs", 17);
    m.input("x", DType::F32, &[WDim::Fixed(4)]);
    for i in 0..n {
        let (c, y) = (format!("c{i}"), format!("y{i}"));
        m.initializer(&c, &Tensor::from_vec(vec![1], vec![i as f32]))
            .output(&y, DType::F32, &[WDim::Fixed(4)])
            .node("Add", &format!("add{i}"), &["x", &c], &[&y], &[]);
    }
    m.to_bytes()
}

#[test]
fn thousands_of_outputs_compile_within_the_cap_or_are_refused() {
    let model = many_outputs(1500);
    let k = agrees_with_the_interpreter(&Compiler::default(), &model, 0.0);
    assert_eq!(k.outputs().len(), 1500);
    let c = compiler(CodegenOptions {
        max_code_bytes: Some(16 << 10),
        ..Default::default()
    });
    let e = refusal(&c, &model);
    let re = regex::Regex::new(
        r"^node 'add[0-9]+' \(op Add\): code would exceed --max-code 16\.0 KiB \(",
    )
    .unwrap();
    assert!(re.is_match(&e), "{e}");
}

/// x [1, 1, 2048, 2048] → Conv (256 3×3 filters, pad 1) → `tail`: a 4 GiB feature map.
fn huge_conv(tail: &str) -> Vec<u8> {
    let mut rng = Lcg(5);
    let w: Vec<f32> = (0..256 * 9).map(|_| rng.uniform()).collect();
    let mut m = ModelBuilder::new("conv", 17);
    let x = [1, 1, 2048, 2048].map(WDim::Fixed);
    m.input("x", DType::F32, &x)
        .initializer("w", &Tensor::from_vec(vec![256, 1, 3, 3], w));
    let pads = shrink::onnx::writer::Attr::Ints(vec![1, 1, 1, 1]);
    let conv_out = if tail.is_empty() { "y" } else { "f" };
    m.node("Conv", "conv", &["x", "w"], &[conv_out], &[("pads", pads)]);
    if tail.is_empty() {
        m.output("y", DType::F32, &[1, 256, 2048, 2048].map(WDim::Fixed));
    } else {
        m.node(tail, "pool", &["f"], &["y"], &[]).output(
            "y",
            DType::F32,
            &[1, 256, 1, 1].map(WDim::Fixed),
        );
    }
    m.to_bytes()
}

#[test]
fn a_huge_conv_and_a_huge_intermediate_are_refused_by_the_memory_cap() {
    let c = Compiler::new(CompileOptions {
        max_memory: 1 << 30,
        ..Default::default()
    });
    assert_eq!(
        refusal(&c, &huge_conv("")),
        "node 'conv' (op Conv): output 'y' would exceed --max-memory 1.0 GiB (needs 4.0 GiB)"
    );
    let e = refusal(&c, &huge_conv("GlobalAveragePool"));
    let re = regex::Regex::new(
        r"^node '(conv|pool)' \(op (Conv|GlobalAveragePool)\): scratch would exceed --max-memory 1\.0 GiB \(needs [4-9]\.[0-9] GiB\)$",
    )
    .unwrap();
    assert!(re.is_match(&e), "{e}");
}

#[test]
fn a_big_conv_compiles_to_little_code() {
    // 64 → 64 channels, 3×3, on 128 × 128: 604M multiply-adds in a few KiB of loops.
    let mut rng = Lcg(9);
    let w: Vec<f32> = (0..64 * 64 * 9).map(|_| rng.uniform()).collect();
    let mut m = ModelBuilder::new("conv", 17);
    m.input("x", DType::F32, &[1, 64, 128, 128].map(WDim::Fixed))
        .output("y", DType::F32, &[1, 64, 126, 126].map(WDim::Fixed))
        .initializer("w", &Tensor::from_vec(vec![64, 64, 3, 3], w))
        .node("Conv", "conv", &["x", "w"], &["y"], &[]);
    let k = compiler(CodegenOptions {
        max_code_bytes: Some(256 << 10),
        ..Default::default()
    })
    .compile_jit(Model::Bytes(&m.to_bytes()))
    .unwrap();
    assert!(k.stats().code_bytes <= 256 << 10);
}

#[test]
fn deeply_nested_shapes_compile_and_compute_the_graph() {
    // Rank 40: dims 1 except three, transposed end to end, then added to itself.
    let mut dims = vec![1usize; 40];
    (dims[3], dims[20], dims[38]) = (2, 3, 5);
    let perm: Vec<i64> = (0..40).rev().collect();
    let out: Vec<usize> = dims.iter().rev().copied().collect();
    let mut m = ModelBuilder::new("deep", 17);
    m.input(
        "x",
        DType::F32,
        &dims.iter().map(|&d| WDim::Fixed(d)).collect::<Vec<_>>(),
    )
    .output(
        "y",
        DType::F32,
        &out.iter().map(|&d| WDim::Fixed(d)).collect::<Vec<_>>(),
    )
    .node(
        "Transpose",
        "t",
        &["x"],
        &["a"],
        &[("perm", shrink::onnx::writer::Attr::Ints(perm))],
    )
    .node("Add", "add", &["a", "a"], &["y"], &[]);
    agrees_with_the_interpreter(&Compiler::default(), &m.to_bytes(), 0.0);
}

#[test]
fn the_cli_refuses_an_over_cap_model_in_one_line() {
    let dir = std::env::temp_dir().join(format!("shrink-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.onnx");
    std::fs::write(&model, ternary_layer(1024, 1024).0.to_bytes()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shrink"))
        .args(["--strategy", "stream", "--max-code", "1M", "compile"])
        .arg(&model)
        .args(["--target", "host", "-o"])
        .arg(dir.join("m.o"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let want = format!(
        "error: {}: node 'fc1' (op MatMul): code would exceed --max-code 1.0 MiB (stream needs 4.",
        model.display()
    );
    assert!(err.starts_with(&want), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
