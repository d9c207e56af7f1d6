//! End-to-end latency on the shipped models' stored inputs: shrink's JIT (one line per kernel
//! strategy, allocation-free `run_into`), shrink's reference interpreter on the optimized graph,
//! and tract-onnx's optimized runnable plan, in one criterion group per model. Outputs are
//! checked to agree before timing, so every line computes the same thing. `run/one_add` (one
//! Add of 16 floats) measures the per-call overhead.
use criterion::{Criterion, criterion_group, criterion_main};
use shrink::codegen::{CodegenOptions, Strategy};
use shrink::compare::{Tolerance, compare};
use shrink_benches::{clean_vector_state, one_add, shipped_models};
use std::hint::black_box;
use tract_onnx::prelude::*;

fn to_tract(t: &shrink::ir::Tensor) -> TValue {
    let data = t
        .to_vec::<f32>()
        .expect("the benched models take f32 inputs");
    tract_onnx::prelude::Tensor::from_shape(t.dims(), &data)
        .expect("shape matches data")
        .into()
}

fn run(c: &mut Criterion) {
    let mut models = shipped_models();
    models.push(one_add());
    for m in models {
        let imp =
            shrink::onnx::load_model_bytes(&m.name, m.onnx.clone().into(), &Default::default())
                .expect("import");
        let mut g = imp.graph;
        shrink::optimize(&mut g, &Default::default()).expect("optimize");
        let plan = tract_onnx::onnx()
            .model_for_read(&mut m.onnx.as_slice())
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .expect("tract plan");
        let tract_inputs: TVec<TValue> = m.inputs.iter().map(to_tract).collect();

        // Same answer first.
        let ours = shrink::interp::run(&g, &m.inputs, &Default::default()).expect("interp");
        let theirs = plan.run(tract_inputs.clone()).expect("tract run");
        let theirs = theirs[0].to_plain_array_view::<f32>().expect("f32 output");
        let theirs = shrink::ir::Tensor::from_vec(
            theirs.shape().to_vec(),
            theirs.iter().copied().collect::<Vec<f32>>(),
        );
        let agree = compare(
            &ours[0],
            &theirs,
            Tolerance {
                rtol: 1e-3,
                atol: 1e-4,
            },
        );
        assert!(
            agree.mismatch.is_none(),
            "{}: shrink and tract disagree: {:?}",
            m.name,
            agree.mismatch
        );

        let mut group = c.benchmark_group(format!("run/{}", m.name));
        for strategy in [
            Strategy::Auto,
            Strategy::Stream,
            Strategy::Packed,
            Strategy::Dense,
        ] {
            let opts = CodegenOptions {
                strategy,
                ..Default::default()
            };
            let kernel = shrink::compile_jit_with(&g, &opts).expect("jit compile");
            let jit = kernel.run(&m.inputs).expect("jit run");
            let same = compare(
                &jit[0],
                &ours[0],
                Tolerance {
                    rtol: 1e-4,
                    atol: 1e-5,
                },
            );
            assert!(
                same.mismatch.is_none(),
                "{} jit {strategy}: {:?}",
                m.name,
                same.mismatch
            );
            let ins: Vec<&[u8]> = m.inputs.iter().map(|t| &t.bytes()[..]).collect();
            let mut outs: Vec<Vec<u8>> = kernel
                .outputs()
                .iter()
                .map(|s| vec![0; s.bytes()])
                .collect();
            let mut scratch = vec![0u8; kernel.scratch_bytes()];
            group.bench_function(format!("shrink-jit-{strategy}"), |b| {
                b.iter(|| {
                    let mut views: Vec<&mut [u8]> =
                        outs.iter_mut().map(|v| v.as_mut_slice()).collect();
                    kernel
                        .run_into(black_box(&ins), &mut views, &mut scratch)
                        .expect("jit run");
                })
            });
        }
        group.bench_function("shrink-interp", |b| {
            b.iter(|| {
                clean_vector_state();
                black_box(shrink::interp::run(&g, &m.inputs, &Default::default()).expect("interp"))
            })
        });
        group.bench_function("tract", |b| {
            b.iter(|| black_box(plan.run(tract_inputs.clone()).expect("tract run")))
        });
        group.finish();
    }
}

criterion_group!(benches, run);
criterion_main!(benches);
