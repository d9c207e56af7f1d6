//! The benchmark suite of issue 13 item 9 (`shrink::demo::bench_model`): a ternary MLP
//! 784-1024-1024-10, the same shape 90% pruned with f32 weights and fully dense (each at batch 1
//! and 8), and a BitNet-style block (dim 256, FFN 683, 8 tokens, per-token int8 activation
//! fake-quant before every projection) in QAT and folded form. One criterion group
//! `models/<name>` per model: shrink's JIT per kernel strategy (allocation-free `run_into`; auto
//! also with its large layers on two threads, `shrink-jit-auto-2threads`), the interpreter on the optimized graph, and tract-onnx. Outputs are checked to agree first.
//!
//! Besides the timings it prints, once per model and strategy, what the compile costs: lowering
//! plus JIT time, machine-code bytes, the code bytes of the weight layers per nonzero weight,
//! and the strategy each weight layer got. `cargo bench --bench models -- ternary` runs only the
//! models whose name contains `ternary` (criterion's own filter still applies to the lines);
//! with `SHRINK_WRITE_MODELS=DIR` each model is also written to `DIR/<name>/` (model.onnx and
//! its test data set) for `shrink inspect` and `shrink bench --per-layer`.
use criterion::{Criterion, criterion_group, criterion_main};
use shrink::codegen::{CodegenOptions, Strategy};
use shrink::ir::{Graph, Tensor};
use shrink_benches::clean_vector_state;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;
use common::{JitRun, assert_agree, to_tract, tract_output, tract_plan};

/// What one strategy's compile produced.
struct Compiled {
    kernel: shrink::jit::Kernel,
    ms: f64,
    /// Machine code of the weight layers' kernels.
    layer_code_bytes: usize,
    /// Strategy per weight layer, in program order.
    layer_strategies: Vec<(String, &'static str)>,
}

/// Lowers and JIT-compiles `g` with `strategy`, timing both (the import and the optimizer are
/// shared by every strategy and timed once per model).
fn compile(
    g: &Graph,
    strategy: Strategy,
    threads: usize,
    layers: &BTreeMap<String, usize>,
) -> Result<Compiled, String> {
    let opts = CodegenOptions {
        strategy,
        threads,
        ..Default::default()
    };
    let t = Instant::now();
    let g = shrink::with_static_shapes(g)?;
    let program = shrink::codegen::lower(&g, &opts).map_err(|e| e.to_string())?;
    let kernel = shrink::jit::Kernel::compile(&program).map_err(|e| e.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut layer_code_bytes = 0;
    let mut layer_strategies: Vec<(String, &'static str)> = vec![];
    for (k, bytes) in program
        .kernels
        .iter()
        .zip(&kernel.stats().kernel_code_bytes)
    {
        if layers.contains_key(&k.node_name) {
            layer_code_bytes += bytes;
            if layer_strategies
                .last()
                .is_none_or(|(n, _)| n != &k.node_name)
            {
                layer_strategies.push((k.node_name.clone(), k.strategy));
            }
        }
    }
    Ok(Compiled {
        kernel,
        ms,
        layer_code_bytes,
        layer_strategies,
    })
}

/// Nonzero weights per weight layer (constant MatMul/Gemm/fused weights) of the optimized graph,
/// by node name.
fn layer_nonzeros(g: &Graph) -> BTreeMap<String, usize> {
    shrink::opt::layers::const_weight_layers(g)
        .into_iter()
        .map(|(id, _, c)| {
            let w = &g.consts[c.0 as usize];
            (g.node(id).name.clone(), w.len() - w.count_zeros())
        })
        .collect()
}

/// Tolerance (rtol, atol) of tract and of shrink's JIT against the interpreter, for every model.
/// The BitNet blocks round each projection's input to int8 steps (absmax/127 ≈ 0.02): where x·s
/// fell within an ulp of a .5, tract (f32 accumulation) or `packed` (24-bit fixed-point
/// activations) could round one activation a step apart and move outputs by ≈ 1e-4 … 1e-3.
/// That does not happen on these inputs (measured: all lines agree at this tolerance), so the
/// blocks get no looser one; a failure here after a change of input or kernel may be such a tie.
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-4;

/// The model filter: the first argument that is not a flag (`cargo bench` passes `--bench`),
/// without a leading `models/` and anything after its first `/`.
fn model_filter() -> Option<String> {
    let f = std::env::args().skip(1).find(|a| !a.starts_with('-'))?;
    let f = f.strip_prefix("models/").unwrap_or(&f);
    let f = f.split('/').next().unwrap_or_default();
    (!f.is_empty() && f != "models").then(|| f.to_string())
}

fn models(c: &mut Criterion) {
    let filter = model_filter();
    for &name in &shrink::demo::BENCH_MODELS {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let m = shrink::demo::bench_model(name).expect("suite model");
        // For `shrink inspect` / `shrink bench --per-layer` on the same files.
        if let Some(dir) = std::env::var_os("SHRINK_WRITE_MODELS") {
            shrink::demo::write(dir.as_ref(), &m).expect("write the model");
        }
        let inputs: Vec<Tensor> = m.inputs.iter().map(|(_, t)| t.clone()).collect();
        let t = Instant::now();
        let imp = shrink::onnx::load_model_bytes(name, m.model.clone().into(), &Default::default())
            .expect("import");
        let mut g = imp.graph;
        shrink::optimize(&mut g, &Default::default()).expect("optimize");
        let opt_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let plan = tract_plan(&m.model);
        let tract_ms = t.elapsed().as_secs_f64() * 1e3;
        let tract_inputs = inputs.iter().map(to_tract).collect();
        let layers = layer_nonzeros(&g);
        let nonzeros: usize = layers.values().sum();
        eprintln!(
            "models/{name}: {} bytes of ONNX; shrink import + optimize {opt_ms:.0} ms; tract \
             import + optimize + plan {tract_ms:.0} ms; {} weight layers, {nonzeros} nonzero \
             weights, {} ternary",
            m.model.len(),
            layers.len(),
            g.ternary.len()
        );

        // Same answer first: the interpreter is the oracle; for the MLPs it must itself match
        // the builder's plain-loop reference.
        let want = shrink::interp::run(&g, &inputs, &Default::default()).expect("interp");
        if let Some((_, reference)) = m.outputs.first() {
            assert_agree(
                &format!("{name}: interpreter"),
                &want[0],
                reference,
                1e-5,
                1e-5,
            );
        }
        let theirs = tract_output(&plan, &tract_inputs);
        assert_agree(&format!("{name}: tract"), &theirs, &want[0], RTOL, ATOL);

        let mut group = c.benchmark_group(format!("models/{name}"));
        group
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(10);
        // Every strategy on one thread, and auto with its large layers split over two
        // (`--threads 2`; on a machine with two cores, the most that can help).
        for (strategy, threads) in [
            (Strategy::Auto, 1),
            (Strategy::Stream, 1),
            (Strategy::Packed, 1),
            (Strategy::Dense, 1),
            (Strategy::Auto, 2),
        ] {
            let line = match threads {
                1 => format!("shrink-jit-{strategy}"),
                t => format!("shrink-jit-{strategy}-{t}threads"),
            };
            if matches!(strategy, Strategy::Stream | Strategy::Packed) && g.ternary.is_empty() {
                eprintln!(
                    "models/{name}: {line} skipped: no ternary layer, so every \
                     layer would be lowered dense (the shrink-jit-dense line)"
                );
                continue;
            }
            let compiled = match compile(&g, strategy, threads, &layers) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("models/{name}: {line} skipped: {e}");
                    continue;
                }
            };
            let stats = compiled.kernel.stats();
            let chosen: Vec<String> = compiled
                .layer_strategies
                .iter()
                .map(|(l, s)| format!("{l}={s}"))
                .collect();
            eprintln!(
                "models/{name}: {line}: compile {:.0} ms, code {} bytes ({} in \
                 weight layers: {:.3} per nonzero weight), rodata {} bytes (code + rodata {:.3} \
                 per nonzero weight); layers {}",
                compiled.ms,
                stats.code_bytes,
                compiled.layer_code_bytes,
                compiled.layer_code_bytes as f64 / nonzeros.max(1) as f64,
                stats.rodata_bytes,
                (stats.code_bytes + stats.rodata_bytes) as f64 / nonzeros.max(1) as f64,
                chosen.join(" ")
            );
            let got = compiled.kernel.run(&inputs).expect("jit run");
            assert_agree(&format!("{name} {line}"), &got[0], &want[0], RTOL, ATOL);
            let mut run = JitRun::new(compiled.kernel, &inputs);
            group.bench_function(line, |b| b.iter(|| run.run()));
        }
        group.bench_function("shrink-interp", |b| {
            b.iter(|| {
                clean_vector_state();
                black_box(shrink::interp::run(&g, &inputs, &Default::default()).expect("interp"))
            })
        });
        group.bench_function("tract", |b| {
            b.iter(|| black_box(plan.run(tract_inputs.clone()).expect("tract run")))
        });
        group.finish();
    }
}

criterion_group!(benches, models);
criterion_main!(benches);
