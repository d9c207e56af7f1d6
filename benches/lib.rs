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
