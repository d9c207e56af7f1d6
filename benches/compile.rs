//! Compile throughput: parsing a model and optimizing it, shrink (import + the default pass
//! pipeline) beside tract-onnx (`model_for_read` + `into_optimized`), per shipped model.
use criterion::{Criterion, criterion_group, criterion_main};
use shrink_benches::shipped_models;
use std::hint::black_box;
use tract_onnx::prelude::*;

fn compile(c: &mut Criterion) {
    for m in shipped_models() {
        let mut group = c.benchmark_group(format!("compile/{}", m.name));
        group.bench_function("shrink", |b| {
            b.iter(|| {
                let imp = shrink::onnx::load_model_bytes(
                    &m.name,
                    m.onnx.clone().into(),
                    &Default::default(),
                )
                .expect("import");
                let mut g = imp.graph;
                shrink::optimize(&mut g, &Default::default()).expect("optimize");
                black_box(g)
            })
        });
        group.bench_function("tract", |b| {
            b.iter(|| {
                let model = tract_onnx::onnx()
                    .model_for_read(&mut m.onnx.as_slice())
                    .expect("tract import")
                    .into_optimized()
                    .expect("tract optimize");
                black_box(model)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, compile);
criterion_main!(benches);
