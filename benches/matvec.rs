//! Ternary matrix-vector products, K×N = 256² … 4096² at batch 1 and 8 (a third of the weights
//! zero, a scale per output row): each shrink strategy and activation mode (`lut` in int8 mode,
//! beside `packed-int8`; `packed` also on two threads) beside the dense f32 JIT, tract-onnx and (at the small sizes) the
//! reference interpreter, one criterion group per
//! shape, throughput in weights (criterion reports elements/s = weights/s). Every line is
//! checked against the interpreter before it is timed: f32-activation lines within rtol 1e-3 /
//! atol 1e-4, the int8 line within the error of its 8-bit activations.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shrink::codegen::{Activations, CodegenOptions, Strategy};
use shrink_benches::{clean_vector_state, ternary_matvec};
use std::hint::black_box;
use std::time::Duration;

mod common;
use common::{JitRun, assert_agree, tract_output, tract_plan};

/// Sizes at which the interpreter (f64 loops) and `stream` (code per nonzero) are still worth
/// timing.
const SMALL: usize = 1024;

fn matvec(c: &mut Criterion) {
    for n in [256, 1024, 2048, 4096] {
        for batch in [1, 8] {
            let m = ternary_matvec(n, batch);
            let imp =
                shrink::onnx::load_model_bytes(&m.name, m.onnx.clone().into(), &Default::default())
                    .expect("import");
            let mut g = imp.graph;
            shrink::optimize(&mut g, &Default::default()).expect("optimize");
            let want = shrink::interp::run(&g, &m.inputs, &Default::default()).expect("interp");
            let plan = tract_plan(&m.onnx);
            let tract_inputs = m.inputs.iter().map(common::to_tract).collect();
            assert_agree(
                "tract",
                &tract_output(&plan, &tract_inputs),
                &want[0],
                1e-3,
                1e-4,
            );

            let mut group = c.benchmark_group(format!("matvec/{n}x{n}/b{batch}"));
            group
                .throughput(Throughput::Elements((n * n * batch) as u64))
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2))
                .sample_size(20);
            let mut lines = vec![
                ("packed", Strategy::Packed, Activations::F32, 1),
                ("packed-int8", Strategy::Packed, Activations::Int8, 1),
                ("lut-int8", Strategy::Lut, Activations::Int8, 1),
                ("dense", Strategy::Dense, Activations::F32, 1),
                ("auto", Strategy::Auto, Activations::F32, 1),
                // The layer's output rows split over two threads (`--threads 2`).
                ("packed-2threads", Strategy::Packed, Activations::F32, 2),
                (
                    "packed-int8-2threads",
                    Strategy::Packed,
                    Activations::Int8,
                    2,
                ),
            ];
            if n <= 256 {
                lines.push(("stream", Strategy::Stream, Activations::F32, 1));
            }
            for (label, strategy, activations, threads) in lines {
                let opts = CodegenOptions {
                    strategy,
                    activations,
                    threads,
                    ..Default::default()
                };
                let kernel = shrink::compile_jit_with(&g, &opts).expect("jit compile");
                let got = kernel.run(&m.inputs).expect("jit run");
                // int8 activations: each activation is off by up to absmax/254, times |w| ≤ 0.016.
                let atol = match activations {
                    Activations::F32 => 1e-4,
                    Activations::Int8 => 0.016 * n as f64 / 254.0,
                };
                assert_agree(label, &got[0], &want[0], 1e-3, atol);
                let mut line = JitRun::new(kernel, &m.inputs);
                group.bench_function(format!("shrink-jit-{label}"), |b| b.iter(|| line.run()));
            }
            if n <= SMALL {
                group.bench_function("shrink-interp", |b| {
                    b.iter(|| {
                        clean_vector_state();
                        black_box(
                            shrink::interp::run(&g, &m.inputs, &Default::default())
                                .expect("interp"),
                        )
                    })
                });
            }
            group.bench_function("tract", |b| {
                b.iter(|| black_box(plan.run(tract_inputs.clone()).expect("tract run")))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, matvec);
criterion_main!(benches);
