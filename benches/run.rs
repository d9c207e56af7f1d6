//! End-to-end latency on the shipped models' stored inputs: shrink's reference interpreter on the
//! optimized graph beside tract-onnx's optimized runnable plan. Outputs are checked to agree
//! before timing, so both sides compute the same thing.
use criterion::{Criterion, criterion_group, criterion_main};
use shrink::compare::{Tolerance, compare};
use shrink_benches::shipped_models;
use std::hint::black_box;
use tract_onnx::prelude::*;

fn to_tract(t: &shrink::ir::Tensor) -> TValue {
    let data = t
        .to_vec::<f32>()
        .expect("the shipped models take f32 inputs");
    tract_onnx::prelude::Tensor::from_shape(t.dims(), &data)
        .expect("shape matches data")
        .into()
}

fn run(c: &mut Criterion) {
    for m in shipped_models() {
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
        group.bench_function("shrink-interp", |b| {
            b.iter(|| {
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
