//! What the benches share: the models they measure and their inputs.
//!
//! Every bench measures shrink side by side with tract-onnx (the pure-Rust peer most Rust users
//! would otherwise pick) in the same criterion group, so the report reads as ratios on the same
//! machine and run. shrink's end-to-end lines are its JIT per kernel strategy, with the
//! reference interpreter beside them as the baseline the generated code must beat.
use shrink::ir::Tensor;

/// A model to measure: its ONNX bytes and one set of inputs.
pub struct BenchModel {
    pub name: String,
    pub onnx: Vec<u8>,
    pub inputs: Vec<Tensor>,
}

/// One `Add` of two f32[16] inputs: what a call costs beyond the work (checks, dispatch), beside
/// tract's per-run overhead.
pub fn one_add() -> BenchModel {
    use shrink::ir::DType;
    use shrink::onnx::writer::{ModelBuilder, WDim};
    let mut m = ModelBuilder::new("one_add", 21);
    m.input("a", DType::F32, &[WDim::Fixed(16)])
        .input("b", DType::F32, &[WDim::Fixed(16)])
        .output("y", DType::F32, &[WDim::Fixed(16)])
        .node("Add", "add", &["a", "b"], &["y"], &[]);
    let t = |k: f32| {
        Tensor::from_vec(
            vec![16],
            (0..16).map(|i| i as f32 * k).collect::<Vec<f32>>(),
        )
    };
    BenchModel {
        name: "one_add".into(),
        onnx: m.to_bytes(),
        inputs: vec![t(0.5), t(-0.25)],
    }
}

/// The shipped example models (built in memory by their generator, identical to the files).
pub fn shipped_models() -> Vec<BenchModel> {
    shrink::demo::all()
        .into_iter()
        .map(|m| BenchModel {
            name: m.name.to_string(),
            onnx: m.model,
            inputs: m.inputs.into_iter().map(|(_, t)| t).collect(),
        })
        .collect()
}

/// Clears the upper halves of the vector registers (x86 with AVX). tract's hand-written AVX
/// kernels return with them dirty, which slows every legacy-SSE instruction run after them in
/// this process; the interpreter's line would measure that instead of the interpreter. shrink's
/// own kernels clear the state at their entry point.
pub fn clean_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX; vzeroupper only zeroes bits no Rust value lives in across
        // an asm block.
        unsafe { std::arch::asm!("vzeroupper") };
    }
}

/// A ternary matrix-vector (or, with `batch > 1`, matrix-matrix) product `y = x·W` with W of
/// shape `[n, n]`: about a third of the weights zero, the rest ±s_c with a scale per output
/// column (per-row scales in shrink's terms). Inputs uniform in [-1, 1].
pub fn ternary_matvec(n: usize, batch: usize) -> BenchModel {
    let mut rng = shrink::demo::Rng(0x7e57_0000 | (n * 16 + batch) as u64);
    let scales: Vec<f32> = (0..n).map(|c| 0.01 + 0.001 * (c % 7) as f32).collect();
    let w: Vec<f32> = (0..n * n).map(|i| rng.trit(33) * scales[i % n]).collect();
    let x: Vec<f32> = (0..batch * n).map(|_| rng.uniform()).collect();
    let name = format!("ternary_{n}x{n}_b{batch}");
    BenchModel {
        onnx: shrink::demo::matmul_model(&name, batch, n, n, w),
        name,
        inputs: vec![Tensor::from_vec(vec![batch, n], x)],
    }
}
