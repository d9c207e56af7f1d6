//! Fuzz target: any bytes as an ONNX model go through import, the optimizer (verifier on after
//! every pass) and the interpreter on zero inputs, with small memory caps. Every stage may refuse
//! the input, but only with an error: a panic, abort or out-of-memory is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;

const CAP: usize = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let opts = shrink::onnx::ImportOptions { max_memory: CAP };
    let Ok(imp) = shrink::onnx::load_model_bytes("fuzz", data.to_vec().into(), &opts) else {
        return;
    };
    let mut g = imp.graph;
    if shrink::optimize(&mut g, &shrink::OptOptions::verified_within(CAP)).is_err() {
        return;
    }
    // Zero inputs of every input's declared static shape (skipped when a shape is unknown).
    let mut inputs = Vec::new();
    for &id in &g.inputs {
        let ty = &g.node(id).outputs[0];
        let Some(dims) = ty.shape.as_ref().and_then(|s| s.as_fixed()) else {
            return;
        };
        let Some(bytes) = dims
            .iter()
            .try_fold(ty.dtype.size(), |a, &d| a.checked_mul(d))
            .filter(|&b| b <= CAP)
        else {
            return;
        };
        let Ok(t) = shrink::ir::Tensor::from_bytes(ty.dtype, dims, vec![0u8; bytes].into()) else {
            return;
        };
        inputs.push(t);
    }
    let _ = shrink::interp::run(&g, &inputs, &shrink::interp::EvalCtx { max_bytes: CAP });
});
