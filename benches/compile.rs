//! Compile throughput: shrink's import + default pass pipeline, the same followed by the JIT
//! compile (what `Compiler::compile_jit` does), and tract-onnx's `model_for_read` +
//! `into_optimized`, per shipped model and for one 4096×4096 ternary MatMul (the case where
//! compile time must stay linear in the weights).
use criterion::{Criterion, criterion_group, criterion_main};
use shrink_benches::{BenchModel, shipped_models};
use std::hint::black_box;
use tract_onnx::prelude::*;

fn import_and_optimize(m: &BenchModel) -> shrink::ir::Graph {
    let imp = shrink::onnx::load_model_bytes(&m.name, m.onnx.clone().into(), &Default::default())
        .expect("import");
    let mut g = imp.graph;
    shrink::optimize(&mut g, &Default::default()).expect("optimize");
    g
}

fn compile(c: &mut Criterion) {
    let mut models = shipped_models();
    let big = shrink::demo::ternary_layer(4096);
    models.push(BenchModel {
        name: "ternary_4096x4096".into(),
        onnx: big.model,
        inputs: big.inputs.into_iter().map(|(_, t)| t).collect(),
    });
    for m in &models {
        let mut group = c.benchmark_group(format!("compile/{}", m.name));
        if m.onnx.len() > 1 << 20 {
            group.sample_size(10);
        }
        group.bench_function("shrink", |b| b.iter(|| black_box(import_and_optimize(m))));
        group.bench_function("shrink-jit", |b| {
            b.iter(|| {
                let g = import_and_optimize(m);
                black_box(shrink::compile_jit(&g).expect("jit compile"))
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
