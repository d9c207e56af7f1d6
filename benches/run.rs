//! End-to-end latency on the shipped models' stored inputs: shrink's JIT (one line per kernel
//! strategy, allocation-free `run_into`), shrink's reference interpreter on the optimized graph,
//! and tract-onnx's optimized runnable plan, in one criterion group per model. Outputs are
//! checked to agree before timing, so every line computes the same thing. `run/one_add` (one
//! Add of 16 floats) measures the per-call overhead.
use criterion::{Criterion, criterion_group, criterion_main};
use shrink::codegen::{CodegenOptions, Strategy};
use shrink_benches::{clean_vector_state, one_add, shipped_models};
use std::hint::black_box;

mod common;
use common::{JitRun, assert_agree, to_tract, tract_output, tract_plan};

fn run(c: &mut Criterion) {
    let mut models = shipped_models();
    models.push(one_add());
    for m in models {
        let imp =
            shrink::onnx::load_model_bytes(&m.name, m.onnx.clone().into(), &Default::default())
                .expect("import");
        let mut g = imp.graph;
        shrink::optimize(&mut g, &Default::default()).expect("optimize");
        let plan = tract_plan(&m.onnx);
        let tract_inputs = m.inputs.iter().map(to_tract).collect();

        // Same answer first.
        let ours = shrink::interp::run(&g, &m.inputs, &Default::default()).expect("interp");
        let theirs = tract_output(&plan, &tract_inputs);
        assert_agree(&format!("{}: tract", m.name), &theirs, &ours[0], 1e-3, 1e-4);

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
            assert_agree(
                &format!("{} jit {strategy}", m.name),
                &jit[0],
                &ours[0],
                1e-4,
                1e-5,
            );
            let mut line = JitRun::new(kernel, &m.inputs);
            group.bench_function(format!("shrink-jit-{strategy}"), |b| b.iter(|| line.run()));
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
