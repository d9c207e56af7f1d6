//! The JIT engine's guarantees beyond conformance, over every conformance case the JIT passes
//! (tests/conformance/jit.txt) and every shipped model:
//! - self-contained code: the module imports no function or data;
//! - memory safety: with every input, output and the scratch arena placed against PROT_NONE guard
//!   pages (right after the buffer, then right before it), each kernel runs to the same outputs —
//!   a stray access would fault and end this test process;
//! - `Kernel` is `Send + Sync`: two threads run one kernel at once and agree;
//! - code memory is freed on drop: compiling and dropping 1000 kernels keeps resident memory flat;
//! - bad data is a status, not an access: a Gather index out of range returns BAD_INDEX.
use shrink::dataset::load_dataset;
use shrink::ir::Tensor;
use shrink::onnx::{ImportOptions, load_model};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Model folders the JIT must handle: passing conformance cases plus the shipped examples.
fn jit_models() -> Vec<PathBuf> {
    let list = std::fs::read_to_string(repo().join("tests/conformance/jit.txt")).unwrap();
    let suite = repo().join("../shared/onnx-node");
    let mut dirs: Vec<PathBuf> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| !w.starts_with('#') && !w.starts_with('!'))
        .map(|w| suite.join(w))
        .collect();
    assert!(
        dirs.len() >= 100,
        "jit.txt lists only {} passing cases",
        dirs.len()
    );
    dirs.extend(shipped_model_dirs());
    dirs.sort();
    dirs
}

/// The folders of the shipped example models.
fn shipped_model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    dirs
}

/// The optimized graph of a model folder, its stored inputs, and the codegen options that guard
/// the input values the graph was specialized on.
fn prepared(
    dir: &Path,
) -> (
    shrink::ir::Graph,
    Vec<Tensor>,
    shrink::codegen::CodegenOptions,
) {
    let opts = ImportOptions::default();
    let model = load_model(&dir.join("model.onnx"), &opts).unwrap();
    let data = load_dataset(&dir.join("test_data_set_0"), opts.max_memory).unwrap();
    let inputs = shrink::bind_inputs(&model.graph, &data.inputs).unwrap();
    let mut g = model.graph.clone();
    let value_guards = shrink::specialize_to_values(&mut g, &inputs).unwrap();
    let mut o = shrink::OptOptions::default();
    o.ctx.verify = true;
    shrink::optimize(&mut g, &o).unwrap();
    let options = shrink::codegen::CodegenOptions {
        value_guards,
        ..Default::default()
    };
    (g, inputs, options)
}

fn graph_and_inputs(dir: &Path) -> (shrink::ir::Graph, Vec<Tensor>) {
    let (g, inputs, options) = prepared(dir);
    assert!(
        options.value_guards.is_empty(),
        "{} needs its value guards",
        dir.display()
    );
    (g, inputs)
}

/// A buffer of `len` bytes inside an mmapped region whose neighbouring pages are PROT_NONE;
/// `at_end` puts the buffer's last byte just before the trailing guard page, else its first byte
/// just after the leading one.
struct Guarded {
    base: *mut u8,
    total: usize,
    start: *mut u8,
    len: usize,
}

impl Guarded {
    fn new(len: usize, at_end: bool) -> Guarded {
        let page = 4096;
        let body = len.div_ceil(page).max(1) * page;
        let total = body + 2 * page;
        // SAFETY: plain anonymous mapping; the guard pages are made inaccessible below.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert!(base as isize != -1, "mmap failed");
            assert_eq!(libc::mprotect(base as _, page, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(base.add(page + body) as _, page, libc::PROT_NONE),
                0
            );
            let start = if at_end {
                base.add(page + body - len)
            } else {
                base.add(page)
            };
            Guarded {
                base,
                total,
                start,
                len,
            }
        }
    }
    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: `start..start+len` lies inside the read-write body of the mapping.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base as _, self.total) };
    }
}

/// Runs `kernel` with every buffer against a guard page; returns the outputs' bytes.
fn run_guarded(kernel: &shrink::Kernel, inputs: &[Tensor], at_end: bool) -> Vec<Vec<u8>> {
    let mut ins: Vec<Guarded> = inputs
        .iter()
        .map(|t| {
            let mut g = Guarded::new(t.bytes().len(), at_end);
            g.slice().copy_from_slice(t.bytes());
            g
        })
        .collect();
    let mut outs: Vec<Guarded> = kernel
        .outputs()
        .iter()
        .map(|s| Guarded::new(s.bytes(), at_end))
        .collect();
    let mut scratch = Guarded::new(kernel.scratch_bytes(), at_end);
    {
        let in_views: Vec<&[u8]> = ins.iter_mut().map(|g| &*g.slice()).collect();
        let mut out_views: Vec<&mut [u8]> = outs.iter_mut().map(|g| g.slice()).collect();
        kernel
            .run_into(&in_views, &mut out_views, scratch.slice())
            .unwrap();
    }
    outs.iter_mut().map(|g| g.slice().to_vec()).collect()
}

#[test]
fn every_kernel_is_self_contained_and_stays_inside_its_buffers() {
    use shrink::codegen::Strategy;
    let mut checked = 0;
    for dir in jit_models() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (g, inputs, options) = prepared(&dir);
        // The shipped models have ternary layers: every strategy's code runs against the guards.
        let strategies: &[Strategy] = if dir.starts_with(repo().join("examples")) {
            &[
                Strategy::Auto,
                Strategy::Stream,
                Strategy::Packed,
                Strategy::Dense,
            ]
        } else {
            &[Strategy::Auto]
        };
        for &strategy in strategies {
            let options = shrink::codegen::CodegenOptions {
                strategy,
                ..options.clone()
            };
            let kernel = shrink::compile_jit_with(&g, &options)
                .unwrap_or_else(|e| panic!("{name} {strategy}: {e}"));
            assert!(
                kernel.stats().imports.is_empty(),
                "{name} imports {:?}",
                kernel.stats().imports
            );
            let plain: Vec<Vec<u8>> = kernel
                .run(&inputs)
                .unwrap()
                .iter()
                .map(|t| t.bytes().to_vec())
                .collect();
            for at_end in [true, false] {
                assert_eq!(
                    run_guarded(&kernel, &inputs, at_end),
                    plain,
                    "{name} {strategy}: guarded run (at_end={at_end}) differs"
                );
            }
            checked += 1;
        }
    }
    println!("{checked} kernels checked against guard pages, none imports a symbol");
    assert!(checked >= 100);
}

#[test]
fn one_kernel_runs_on_two_threads_at_once() {
    let dir = repo().join("../shared/onnx-node/test_add_bcast");
    let (g, inputs) = graph_and_inputs(&dir);
    let kernel = shrink::compile_jit(&g).unwrap();
    let want = kernel.run(&inputs).unwrap();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..200 {
                        assert_eq!(kernel.run(&inputs).unwrap(), want);
                    }
                })
            })
            .collect();
        for r in runs {
            r.join().unwrap();
        }
    });
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn dropping_kernels_frees_their_code() {
    // Resident memory is process-wide: measure in a child process that runs this test alone,
    // so the other tests of this binary running meanwhile do not count.
    if std::env::var_os("SHRINK_RSS_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "dropping_kernels_frees_their_code",
                "--nocapture",
            ])
            .env("SHRINK_RSS_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
        return;
    }
    let dir = repo().join("../shared/onnx-node/test_add_bcast");
    let (g, _) = graph_and_inputs(&dir);
    let program = shrink::codegen::lower(&g, &Default::default()).unwrap();
    // Warm up allocator pools first, then measure 1000 more.
    for _ in 0..100 {
        drop(shrink::Kernel::compile(&program).unwrap());
    }
    let before = resident_bytes();
    for _ in 0..1000 {
        drop(shrink::Kernel::compile(&program).unwrap());
    }
    let grown = resident_bytes().saturating_sub(before);
    // Each kernel maps at least a page of code and one of data: leaking would cost ≥ 8 MB.
    assert!(
        grown < 4 << 20,
        "resident memory grew by {grown} bytes over 1000 compile+drop cycles"
    );
}

/// Hosts may leave the upper halves of the vector registers dirty (hand-written AVX code without
/// `vzeroupper`); that made every legacy-SSE instruction ten times slower. On x86 with AVX the
/// entry point must clear the state first, and results must not depend on what the host left.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_entry_point_clears_a_dirty_upper_vector_state() {
    let dir = shipped_model_dirs().remove(0);
    let (g, inputs) = graph_and_inputs(&dir);
    let program = shrink::codegen::lower(&g, &Default::default()).unwrap();
    let asm = shrink::jit::Kernel::listing(&program, shrink::codegen::Listing::Asm).unwrap();
    let entry = asm
        .split("; shrink_run\n")
        .nth(1)
        .expect("the listing shows the entry point");
    assert_eq!(
        entry.trim_start().starts_with("vzeroupper"),
        std::arch::is_x86_feature_detected!("avx"),
        "{}",
        &entry[..entry.len().min(200)]
    );
    let kernel = shrink::compile_jit(&g).unwrap();
    let clean = kernel.run(&inputs).unwrap();
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: sets all bits of ymm1 (declared clobbered); the CPU has AVX.
        unsafe { std::arch::asm!("vpcmpeqd ymm1, ymm1, ymm1", out("ymm1") _) };
    }
    assert_eq!(kernel.run(&inputs).unwrap(), clean);
}

#[test]
fn kernel_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<shrink::Kernel>();
}

#[test]
fn wrong_buffers_are_refused_before_any_code_runs() {
    let dir = repo().join("../shared/onnx-node/test_add_bcast");
    let (g, inputs) = graph_and_inputs(&dir);
    let kernel = shrink::compile_jit(&g).unwrap();
    let err = kernel.run(&inputs[..1]).unwrap_err().to_string();
    assert!(err.contains("2 inputs, 1 were given"), "{err}");
    let ins: Vec<&[u8]> = inputs.iter().map(|t| &t.bytes()[..]).collect();
    let mut small = [0u8; 4];
    let err = kernel
        .run_into(&ins, &mut [&mut small[..]], &mut [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs") && err.contains("bytes"), "{err}");
}

#[test]
fn a_chain_of_20000_nodes_compiles_and_runs() {
    use shrink::ir::op::{Op, Unary};
    use shrink::ir::{DType, Graph, ValueType};
    let mut g = Graph::new();
    let t = ValueType::fixed(DType::F32, &[4]);
    let mut h: shrink::ir::Value = g.add_input("x", t.clone()).into();
    for i in 0..20_000 {
        let op = if i % 2 == 0 { Unary::Neg } else { Unary::Abs };
        h = g
            .add_node(Op::Unary(op), &format!("n{i}"), &[Some(h)], vec![t.clone()])
            .into();
    }
    g.outputs.push(("y".into(), h));
    let x = Tensor::from_vec(vec![4], vec![1.5f32, -2.0, 0.0, -0.25]);
    let kernel = shrink::compile_jit(&g).unwrap();
    assert_eq!(kernel.stats().kernel_code_bytes.len(), 20_000);
    let want = shrink::interp::run(&g, std::slice::from_ref(&x), &Default::default()).unwrap();
    assert_eq!(kernel.run(std::slice::from_ref(&x)).unwrap(), want);
    // The optimizer and the compile of what it leaves take the same chain without recursion.
    let mut o = g.clone();
    shrink::optimize(&mut o, &shrink::OptOptions::default()).unwrap();
    assert_eq!(shrink::compile_jit(&o).unwrap().run(&[x]).unwrap(), want);
}

#[test]
fn shipped_models_pass_on_every_strategy() {
    use shrink::codegen::{CodegenOptions, Strategy};
    use shrink::compare::{Tolerance, compare};
    for dir in shipped_model_dirs() {
        let (g, inputs) = graph_and_inputs(&dir);
        let data = load_dataset(&dir.join("test_data_set_0"), 1 << 30).unwrap();
        assert!(!g.ternary.is_empty(), "{}: no ternary layer", dir.display());
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
            let kernel = shrink::compile_jit_with(&g, &opts).unwrap();
            let outs = kernel.run(&inputs).unwrap();
            for (got, (_, want)) in outs.iter().zip(&data.outputs) {
                let c = compare(
                    got,
                    want,
                    Tolerance {
                        rtol: 1e-4,
                        atol: 1e-5,
                    },
                );
                assert!(
                    c.mismatch.is_none(),
                    "{} {strategy}: {:?}",
                    dir.display(),
                    c.mismatch
                );
            }
        }
    }
}

#[test]
fn a_kernel_specialized_on_an_input_value_refuses_other_values() {
    // ReduceSum with its axes as a runtime input and keepdims=0: the output shape depends on the
    // axes, so the graph is specialized to the stored axes, and the kernel guards them.
    let dir = repo().join("../shared/onnx-node/test_reduce_l2_do_not_keepdims_example_expanded");
    let (g, mut inputs, options) = prepared(&dir);
    assert!(
        !options.value_guards.is_empty(),
        "{}: nothing was specialized",
        dir.display()
    );
    let kernel = shrink::compile_jit_with(&g, &options).unwrap();
    kernel.run(&inputs).unwrap();
    let (i, axes) = &options.value_guards[0];
    let other: Vec<i64> = axes.to_i64_vec().iter().map(|a| a + 1).collect();
    inputs[*i] = Tensor::from_vec(axes.dims().to_vec(), other);
    let err = kernel.run(&inputs).unwrap_err().to_string();
    assert!(err.contains("status 4"), "{err}");
}

/// A batched stream: vectorized across the batch (an odd batch leaves a scalar remainder), per-row
/// scales, rows split over several functions, a bias and an activation — against the interpreter.
#[test]
fn a_batched_stream_splits_into_functions_and_agrees() {
    use shrink::codegen::{CodegenOptions, Listing, Strategy};
    use shrink::ir::op::{Fused, Op, Unary};
    use shrink::ir::{DType, Graph, ValueType};
    let (batch, cols, rows) = (5, 96, 80);
    let mut rng = shrink::demo::Rng(0x5157);
    // Row r's weights are ternary with its own scale (per-row), ~70% nonzero: ~5400 terms.
    let mut w = vec![0f32; cols * rows];
    for r in 0..rows {
        let s = 0.01 * (1 + r % 7) as f32;
        for c in 0..cols {
            w[c * rows + r] = rng.trit(30) * s;
        }
    }
    let mut g = Graph::new();
    let x = g.add_input("x", ValueType::fixed(DType::F32, &[batch, cols]));
    let wc = g.add_const(
        "w",
        std::sync::Arc::new(Tensor::from_vec(vec![cols, rows], w)),
    );
    let bias: Vec<f32> = (0..rows).map(|_| rng.uniform() - 0.5).collect();
    let bc = g.add_const("b", std::sync::Arc::new(Tensor::from_vec(vec![rows], bias)));
    let y = g.add_node(
        Op::Fused(Fused::DenseAct {
            trans_b: false,
            activation: Some(Unary::Tanh),
        }),
        "layer",
        &[Some(x.into()), Some(wc.into()), Some(bc.into())],
        vec![ValueType::fixed(DType::F32, &[batch, rows])],
    );
    g.outputs.push(("y".into(), y.into()));
    let xs = Tensor::from_vec(
        vec![batch, cols],
        (0..batch * cols)
            .map(|_| rng.uniform() * 4.0 - 2.0)
            .collect::<Vec<f32>>(),
    );
    let want = shrink::interp::run(&g, std::slice::from_ref(&xs), &Default::default()).unwrap();
    let mut o = g.clone();
    shrink::optimize(&mut o, &shrink::OptOptions::default()).unwrap();
    assert_eq!(o.ternary.len(), 1, "the weight is ternary per row");
    let opts = CodegenOptions {
        strategy: Strategy::Stream,
        ..Default::default()
    };
    let program = shrink::codegen::lower(&o, &opts).unwrap();
    let functions = program
        .kernels
        .iter()
        .filter(|k| k.node_name == "layer")
        .count();
    assert!(functions >= 2, "{functions} function(s)");
    #[cfg(target_arch = "x86_64")]
    {
        let asm = shrink::jit::Kernel::listing(&program, Listing::Asm).unwrap();
        assert!(
            asm.contains("addpd") && asm.contains("subpd"),
            "the terms are f64x2 adds and subtracts"
        );
    }
    let kernel = shrink::compile_jit_with(&o, &opts).unwrap();
    let got = kernel.run(&[xs]).unwrap();
    let c = shrink::compare::compare(&got[0], &want[0], shrink::compare::Tolerance::INTERP);
    assert!(c.mismatch.is_none(), "{:?}", c.mismatch);
}

#[test]
fn a_4096_square_ternary_layer_compiles_on_auto_and_agrees() {
    let m = shrink::demo::ternary_layer(4096);
    let t = std::time::Instant::now();
    let compiler = shrink::Compiler::new(Default::default());
    let g = compiler.optimized_graph(m.model.as_slice()).unwrap();
    let optimized = t.elapsed();
    assert_eq!(g.ternary.len(), 1, "the weight is ternary");
    let kernel = shrink::compile_jit(&g).unwrap();
    // Reported, not asserted: timing belongs in benches (`cargo bench --bench compile`), not in a
    // pass/fail test. This test build also runs the IR verifier after every pass.
    println!(
        "4096x4096 ternary MatMul: import + optimize {:.2} s, codegen {:.2} s, {} code bytes, {} rodata bytes",
        optimized.as_secs_f64(),
        t.elapsed().as_secs_f64() - optimized.as_secs_f64(),
        kernel.stats().code_bytes,
        kernel.stats().rodata_bytes
    );
    assert!(
        kernel.stats().rodata_bytes >= 4096 * 4096 / 4,
        "2 bits per weight"
    );
    let inputs: Vec<Tensor> = m.inputs.into_iter().map(|(_, t)| t).collect();
    let got = kernel.run(&inputs).unwrap();
    // The expected output is the generator's own f64 loop, independent of the interpreter.
    let c = shrink::compare::compare(&got[0], &m.outputs[0].1, shrink::compare::Tolerance::INTERP);
    assert!(c.mismatch.is_none(), "{:?}", c.mismatch);
}

/// `--activations int8` reaches the packed kernel end to end: its outputs are BitNet's absmax
/// quantization of the activations (each off by at most absmax/254), so they differ from the
/// faithful default, stay within that bound of the f64 product, and the default stays within
/// its own 24-bit bound.
#[test]
fn int8_activations_change_packed_layers_within_their_bound() {
    use shrink::codegen::{Activations, CodegenOptions, Strategy};
    let n = 300;
    let mut rng = shrink::demo::Rng(0xac7);
    let w: Vec<f32> = (0..n * n).map(|_| rng.trit(33) * 0.05).collect();
    let x: Vec<f32> = (0..2 * n).map(|_| rng.uniform()).collect();
    let model = shrink::demo::matmul_model("int8", 2, n, n, w.clone());
    let g = shrink::Compiler::new(Default::default())
        .optimized_graph(model.as_slice())
        .unwrap();
    let inputs = [Tensor::from_vec(vec![2, n], x.clone())];
    let run = |activations| {
        let opts = CodegenOptions {
            strategy: Strategy::Packed,
            activations,
            ..Default::default()
        };
        let k = shrink::compile_jit_with(&g, &opts).unwrap();
        k.run(&inputs).unwrap()[0].to_vec::<f32>().unwrap()
    };
    let (faithful, int8) = (run(Activations::F32), run(Activations::Int8));
    assert_ne!(faithful, int8, "the mode changes the arithmetic");
    for b in 0..2 {
        let xs = &x[b * n..(b + 1) * n];
        let a = xs.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        for c in 0..n {
            let col = |k: usize| w[k * n + c] as f64;
            let exact: f64 = (0..n).map(|k| xs[k] as f64 * col(k)).sum();
            let l1: f64 = (0..n).map(|k| col(k).abs()).sum();
            let rounding = exact.abs() * f32::EPSILON as f64;
            let (f, q) = (faithful[b * n + c] as f64, int8[b * n + c] as f64);
            assert!(
                (f - exact).abs() <= l1 * a / 16_711_422.0 + rounding,
                "f32 [{b},{c}]"
            );
            assert!(
                (q - exact).abs() <= l1 * a / 254.0 + rounding,
                "int8 [{b},{c}]"
            );
        }
    }
}

/// `threads`: large layers run as parts on the kernel's own pool. Every strategy's split gives
/// the single-thread output bit for bit (each part computes whole output columns exactly as the
/// unsplit loop does), stays inside guarded buffers, and two callers can share the pool.
#[test]
fn large_layers_split_across_threads_give_the_single_thread_bits() {
    use shrink::codegen::{CodegenOptions, Strategy};
    use shrink::demo::{BENCH_MLP_SIZES, Mlp};
    let ternary = Mlp::ternary(&BENCH_MLP_SIZES, 7);
    let dense = Mlp::pruned(&BENCH_MLP_SIZES, 0.0, 8);
    let models = [
        (ternary.demo("ternary_b1", 1, 3), Strategy::Packed),
        (ternary.demo("ternary_b1", 1, 3), Strategy::Lut),
        (ternary.demo("ternary_b8", 8, 4), Strategy::Auto),
        (dense.demo("dense_b1", 1, 5), Strategy::Auto),
        (dense.demo("dense_b4", 4, 6), Strategy::Dense),
    ];
    let compiler = shrink::Compiler::new(Default::default());
    for (m, strategy) in models {
        let g = compiler.optimized_graph(m.model.as_slice()).unwrap();
        let inputs: Vec<Tensor> = m.inputs.iter().map(|(_, t)| t.clone()).collect();
        let kernel = |threads| {
            let options = CodegenOptions {
                strategy,
                threads,
                ..Default::default()
            };
            shrink::compile_jit_with(&g, &options).unwrap()
        };
        let one = kernel(1);
        assert_eq!(one.threads(), 1);
        let want = one.run(&inputs).unwrap();
        for threads in [2, 3] {
            let k = kernel(threads);
            assert_eq!(
                k.threads(),
                threads,
                "{} {strategy}: no layer was split",
                m.name
            );
            let what = format!("{} {strategy} on {threads} threads", m.name);
            assert_eq!(k.run(&inputs).unwrap(), want, "{what}");
            let want_bytes: Vec<Vec<u8>> = want.iter().map(|t| t.bytes().to_vec()).collect();
            assert_eq!(
                run_guarded(&k, &inputs, true),
                want_bytes,
                "{what}: guarded"
            );
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..10 {
                            assert_eq!(k.run(&inputs).unwrap(), want, "{what}: shared pool");
                        }
                    });
                }
            });
        }
        let c = shrink::compare::compare(
            &want[0],
            &m.outputs[0].1,
            shrink::compare::Tolerance::INTERP,
        );
        assert!(
            c.mismatch.is_none(),
            "{} {strategy}: {:?}",
            m.name,
            c.mismatch
        );
    }
}

/// ONNX Runtime's dynamic-quantization pattern (DynamicQuantizeLinear → MatMulInteger with
/// constant int8 weights → Cast → Mul) runs the int8 dot-product kernel and gives the
/// interpreter's bits: the integer sums are exact, the float steps the same operations.
#[test]
fn a_dynamically_quantized_layer_gives_the_interpreters_bits() {
    for (batch, k, n) in [(1, 100, 50), (8, 768, 64), (3, 33, 7)] {
        let m = shrink::demo::dynamic_quant_layer("dq", batch, k, n);
        let g = shrink::Compiler::new(Default::default())
            .optimized_graph(m.model.as_slice())
            .unwrap();
        let inputs: Vec<Tensor> = m.inputs.iter().map(|(_, t)| t.clone()).collect();
        let want = shrink::interp::run(&g, &inputs, &Default::default()).unwrap();
        let got = shrink::compile_jit(&g).unwrap().run(&inputs).unwrap();
        assert_eq!(got[0].bytes(), want[0].bytes(), "{batch}x{k}x{n}");
    }
}
