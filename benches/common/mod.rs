//! Pieces the criterion benches share that need the dev-dependencies (tract-onnx): included by
//! each bench with `mod common;`.
// Each bench uses a different part of this module.
#![allow(dead_code)]
use shrink::compare::{Tolerance, compare};
use shrink::ir::Tensor;
use std::hint::black_box;
use tract_onnx::prelude::*;

/// tract's optimized runnable plan of an ONNX model.
pub type TractPlan = std::sync::Arc<TypedSimplePlan>;

pub fn tract_plan(onnx: &[u8]) -> TractPlan {
    tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .and_then(|model| model.into_optimized())
        .and_then(|model| model.into_runnable())
        .expect("tract plan")
}

pub fn to_tract(t: &Tensor) -> TValue {
    let data = t
        .to_vec::<f32>()
        .expect("the benched models take f32 inputs");
    tract_onnx::prelude::Tensor::from_shape(t.dims(), &data)
        .expect("shape matches data")
        .into()
}

/// tract's first output as a shrink tensor.
pub fn tract_output(plan: &TractPlan, inputs: &TVec<TValue>) -> Tensor {
    let out = plan.run(inputs.clone()).expect("tract run");
    let view = out[0].to_plain_array_view::<f32>().expect("f32 output");
    Tensor::from_vec(
        view.shape().to_vec(),
        view.iter().copied().collect::<Vec<f32>>(),
    )
}

/// Panics unless `got` agrees with `want` within (rtol, atol).
pub fn assert_agree(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    let c = compare(got, want, Tolerance { rtol, atol });
    assert!(c.mismatch.is_none(), "{what}: {:?}", c.mismatch);
}

/// A JIT kernel with its buffers allocated once, so a timed call is `run_into` alone.
pub struct JitRun {
    pub kernel: shrink::jit::Kernel,
    ins: Vec<Vec<u8>>,
    outs: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

impl JitRun {
    pub fn new(kernel: shrink::jit::Kernel, inputs: &[Tensor]) -> JitRun {
        let outs = kernel
            .outputs()
            .iter()
            .map(|s| vec![0; s.bytes()])
            .collect();
        let scratch = vec![0u8; kernel.scratch_bytes()];
        JitRun {
            kernel,
            ins: inputs.iter().map(|t| t.bytes().to_vec()).collect(),
            outs,
            scratch,
        }
    }

    pub fn run(&mut self) {
        let ins: Vec<&[u8]> = self.ins.iter().map(|v| &v[..]).collect();
        let mut views: Vec<&mut [u8]> = self.outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        self.kernel
            .run_into(black_box(&ins), &mut views, &mut self.scratch)
            .expect("jit run");
    }
}
