//! ONNX backend node conformance, one allowlist per engine:
//! - `interp` (`tests/conformance/interp.txt`): the reference interpreter, on the graph as
//!   imported and on the optimized graph;
//! - `jit` (`tests/conformance/jit.txt`): the optimized graph compiled to native code for the
//!   host and run in process (no interpreter involved);
//! - `aot-x86_64`, `aot-aarch64`, `aot-riscv64`, `aot-riscv64v` (`tests/conformance/aot-*.txt`):
//!   the optimized graph compiled ahead of time for that target profile into a static library,
//!   linked with a generated C harness by the profile's C compiler (many cases per program) and
//!   run natively or under qemu-user; the cross toolchains are installed when missing.
//!
//! Runs every case in `../shared/onnx-node` (import → engine → compare with the stored
//! outputs) and checks it against the engine's allowlist:
//! - `case` lines must pass with the default tolerance (rtol 1e-4, atol 1e-5, ints exact);
//! - `case rtol=R atol=A  # reason` lines must pass with the looser tolerance given;
//! - `!case  # reason` lines are known exclusions, each with its reason.
//!
//! Every case in the suite must appear in the file, so a new case cannot be silently skipped.
//! `SHRINK_STRATEGY=S` runs the JIT with kernel strategy S forced on every layer it applies to.
//! `SHRINK_CASES=<regex>` restricts the run to matching cases (for development; then the
//! completeness check is off) and prints every result. `SHRINK_BLESS=1` rewrites the allowlist
//! from the results: passing cases are listed (keeping their tolerance lines), failing ones become
//! `!case # FIXME: <error>` exclusions whose reasons must then be written by hand.
use shrink::compare::{Tolerance, compare};
use shrink::dataset::load_dataset;
use shrink::onnx::{ImportOptions, load_model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onnx-node")
}

fn allowlist_path(engine: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/conformance/{engine}.txt"))
}

enum Entry {
    Pass(Tolerance),
    Excluded(String),
}

fn parse_allowlist(text: &str) -> BTreeMap<String, Entry> {
    let mut m = BTreeMap::new();
    for (ln, raw) in text.lines().enumerate() {
        let (body, reason) = raw
            .split_once('#')
            .map_or((raw, ""), |(b, r)| (b, r.trim()));
        let mut words = body.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some(case) = first.strip_prefix('!') {
            assert!(
                !reason.is_empty(),
                "allowlist line {}: exclusion of {case} needs a # reason",
                ln + 1
            );
            m.insert(case.to_string(), Entry::Excluded(reason.to_string()));
            continue;
        }
        let mut tol = Tolerance::INTERP;
        for w in words {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("allowlist line {}: bad option {w}", ln + 1));
            let v: f64 = v
                .parse()
                .unwrap_or_else(|_| panic!("allowlist line {}: bad number {v}", ln + 1));
            match k {
                "rtol" => tol.rtol = v,
                "atol" => tol.atol = v,
                _ => panic!("allowlist line {}: unknown option {k}", ln + 1),
            }
        }
        if tol != Tolerance::INTERP {
            assert!(
                !reason.is_empty(),
                "allowlist line {}: a looser tolerance for {first} needs a # reason",
                ln + 1
            );
        }
        m.insert(first.to_string(), Entry::Pass(tol));
    }
    m
}

/// Runs one case as imported and again after the default optimization pipeline (verifier on
/// after every pass); `Ok(max_abs_err)` over both, or the reason it failed.
fn run_case(dir: &Path, tol: Tolerance) -> Result<f64, String> {
    let opts = ImportOptions::default();
    let model = load_model(&dir.join("model.onnx"), &opts).map_err(|e| e.to_string())?;
    let data = load_dataset(&dir.join("test_data_set_0"), opts.max_memory)?;
    let inputs = shrink::bind_inputs(&model.graph, &data.inputs)?;
    let raw = check_outputs(&model.graph, &inputs, &data, tol)
        .map_err(|e| format!("unoptimized: {e}"))?;
    let mut g = model.graph.clone();
    shrink::specialize_to(&mut g, &inputs);
    let mut o = shrink::OptOptions::default();
    o.ctx.verify = true;
    shrink::optimize(&mut g, &o).map_err(|e| format!("optimizer: {e}"))?;
    let opt = check_outputs(&g, &inputs, &data, tol).map_err(|e| format!("optimized: {e}"))?;
    Ok(raw.max(opt))
}

fn check_outputs(
    g: &shrink::ir::Graph,
    inputs: &[shrink::ir::Tensor],
    data: &shrink::dataset::DataSet,
    tol: Tolerance,
) -> Result<f64, String> {
    let outs = shrink::interp::run(g, inputs, &Default::default()).map_err(|e| e.to_string())?;
    compare_all(&outs, data, tol)
}

fn compare_all(
    outs: &[shrink::ir::Tensor],
    data: &shrink::dataset::DataSet,
    tol: Tolerance,
) -> Result<f64, String> {
    if outs.len() != data.outputs.len() {
        return Err(format!(
            "{} outputs, expected {}",
            outs.len(),
            data.outputs.len()
        ));
    }
    let mut worst = 0f64;
    for (k, (got, (_, want))) in outs.iter().zip(&data.outputs).enumerate() {
        let c = compare(got, want, tol);
        if let Some(m) = c.mismatch {
            return Err(format!("output {k}: {m}"));
        }
        worst = worst.max(c.max_abs_err);
    }
    Ok(worst)
}

/// What the JIT and AOT engines compile for one case: the graph imported, specialized to the
/// stored inputs (shapes that depend on input values — runtime axes, pads — become static and
/// the kernel guards those values) and optimized with the verifier on; the bound inputs, the
/// stored data, and the codegen options (guards, `SHRINK_STRATEGY`).
fn compiled_case(dir: &Path) -> Result<CompiledCase, String> {
    let opts = ImportOptions::default();
    let model = load_model(&dir.join("model.onnx"), &opts).map_err(|e| e.to_string())?;
    let data = load_dataset(&dir.join("test_data_set_0"), opts.max_memory)?;
    let inputs = shrink::bind_inputs(&model.graph, &data.inputs)?;
    let mut g = model.graph.clone();
    let guards = shrink::specialize_to_values(&mut g, &inputs)?;
    let mut o = shrink::OptOptions::default();
    o.ctx.verify = true;
    shrink::optimize(&mut g, &o).map_err(|e| format!("optimizer: {e}"))?;
    let options = shrink::codegen::CodegenOptions {
        value_guards: guards,
        strategy: strategy_from_env(),
        ..Default::default()
    };
    Ok((g, inputs, data, options))
}

type CompiledCase = (
    shrink::ir::Graph,
    Vec<shrink::ir::Tensor>,
    shrink::dataset::DataSet,
    shrink::codegen::CodegenOptions,
);

/// Runs one case on the JIT: import, specialize to the stored inputs, optimize (verifier on),
/// compile for the host, run, compare.
fn run_case_jit(dir: &Path, tol: Tolerance) -> Result<f64, String> {
    let (g, inputs, data, options) = compiled_case(dir)?;
    let kernel = shrink::compile_jit_with(&g, &options).map_err(|e| e.to_string())?;
    let outs = kernel.run(&inputs).map_err(|e| e.to_string())?;
    compare_all(&outs, &data, tol)
}

/// `SHRINK_STRATEGY=stream|packed|dense|auto` forces a kernel strategy on every layer it
/// applies to (default `auto`), to count the suite per strategy against the same allowlist.
fn strategy_from_env() -> shrink::codegen::Strategy {
    std::env::var("SHRINK_STRATEGY").map_or(shrink::codegen::Strategy::Auto, |s| {
        s.parse().unwrap_or_else(|e| panic!("SHRINK_STRATEGY: {e}"))
    })
}

/// Rewrites the engine's allowlist from a full run (see the module doc).
fn bless_allowlist(
    engine: &str,
    allow: &BTreeMap<String, Entry>,
    results: &[(String, Result<f64, String>)],
) {
    let old = std::fs::read_to_string(allowlist_path(engine)).unwrap_or_default();
    let mut out: String = old
        .lines()
        .take_while(|l| l.starts_with('#') || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    for (name, res) in results {
        let kept = old.lines().find(|l| {
            l.split_whitespace()
                .next()
                .map(|w| w.trim_start_matches('!'))
                == Some(name.as_str())
        });
        let line = match (res, allow.get(name)) {
            (Ok(_), Some(Entry::Pass(_))) => {
                kept.map(str::to_string).unwrap_or_else(|| name.clone())
            }
            (Ok(_), _) => name.clone(),
            // Hand-written reasons stay; FIXME placeholders follow the current error.
            (Err(e), Some(Entry::Excluded(why))) if why.starts_with("FIXME") => {
                format!("!{name} # FIXME: {}", e.replace('\n', " "))
            }
            (Err(_), Some(Entry::Excluded(_))) => kept.map(str::to_string).unwrap_or_default(),
            (Err(e), _) => format!("!{name} # FIXME: {}", e.replace('\n', " ")),
        };
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(allowlist_path(engine), out).expect("write the allowlist");
}

#[test]
fn onnx_node_suite_on_interpreter() {
    run_suite("interp", run_case);
}

#[test]
fn onnx_node_suite_on_jit() {
    run_suite("jit", run_case_jit);
}

fn run_suite(engine: &str, run_case: fn(&Path, Tolerance) -> Result<f64, String>) {
    run_suite_batched(engine, &|cases: &[(PathBuf, Tolerance)]| {
        cases
            .iter()
            .map(|(dir, tol)| {
                std::panic::catch_unwind(|| run_case(dir, *tol))
                    .unwrap_or_else(|_| Err("PANIC".into()))
            })
            .collect()
    });
}

/// Runs a batch of cases (folder, tolerance), one result (max abs error or why not) per case.
type BatchRunner<'a> = dyn Fn(&[(PathBuf, Tolerance)]) -> Vec<Result<f64, String>> + 'a;

/// Runs the suite with `run_cases`, which gets every selected case (folder, tolerance) at once
/// and returns one result per case, in order, then checks the results against the allowlist.
fn run_suite_batched(engine: &str, run_cases: &BatchRunner<'_>) {
    let filter = std::env::var("SHRINK_CASES")
        .ok()
        .map(|f| regex::Regex::new(&f).expect("SHRINK_CASES is a regex"));
    let allow = parse_allowlist(
        &std::fs::read_to_string(allowlist_path(engine)).expect("the engine's allowlist"),
    );
    let mut cases: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("../shared/onnx-node must be next to the repository")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 900,
        "expected the full suite, found {} cases",
        cases.len()
    );
    let total = cases.len();
    let mut passed = 0;
    let mut regressions = Vec::new();
    let mut newly_passing = Vec::new();
    let mut unlisted = Vec::new();
    let mut results: Vec<(String, Result<f64, String>)> = Vec::new();
    let selected: Vec<(PathBuf, Tolerance)> = cases
        .iter()
        .filter(|dir| {
            let name = dir.file_name().unwrap().to_str().unwrap();
            filter.as_ref().is_none_or(|f| f.is_match(name))
        })
        .map(|dir| {
            let name = dir.file_name().unwrap().to_str().unwrap();
            let tol = match allow.get(name) {
                Some(Entry::Pass(t)) => *t,
                _ => Tolerance::INTERP,
            };
            (dir.clone(), tol)
        })
        .collect();
    let outcomes = run_cases(&selected);
    assert_eq!(outcomes.len(), selected.len(), "one result per case");
    for ((dir, _), res) in selected.iter().zip(outcomes) {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let entry = allow.get(&name);
        results.push((name.clone(), res.clone()));
        if filter.is_some() {
            if let Some(Entry::Excluded(why)) = entry {
                println!("EXCLUDED {name}: {why}");
            }
            match &res {
                Ok(e) => println!("PASS {name} (max abs err {e:.3e})"),
                Err(m) => println!("FAIL {name}: {m}"),
            }
        }
        match (&res, entry) {
            (Ok(_), Some(Entry::Pass(_))) => passed += 1,
            (Ok(_), _) => {
                passed += 1;
                newly_passing.push(name.clone());
            }
            (Err(m), Some(Entry::Pass(_))) => regressions.push(format!("{name}: {m}")),
            (Err(_), Some(Entry::Excluded(_))) => {}
            (Err(m), None) => unlisted.push(format!("{name}: {m}")),
        }
        assert!(
            !res.as_ref().is_err_and(|m| m == "PANIC"),
            "{name}: {engine} panicked"
        );
    }
    println!("{engine}: {passed}/{total} passed");
    if std::env::var("SHRINK_BLESS").as_deref() == Ok("1") && filter.is_none() {
        bless_allowlist(engine, &allow, &results);
        return;
    }
    for n in &newly_passing {
        println!("newly passing (add to {engine}.txt): {n}");
    }
    assert!(
        regressions.is_empty(),
        "allowlisted cases failed:\n{}",
        regressions.join("\n")
    );
    if filter.is_none() {
        assert!(
            unlisted.is_empty() && newly_passing.is_empty(),
            "every case must be listed in {engine}.txt (as passing or as an exclusion with a reason); unlisted:\n{}\n{}",
            unlisted.join("\n"),
            newly_passing.join("\n")
        );
    }
}

#[path = "support/toolchain.rs"]
mod toolchain;

/// Cases linked into one C program: one compiler and one (qemu) process per batch instead of
/// per case keeps three ISAs inside CI's time.
const AOT_BATCH: usize = 64;

/// One case ready to link: its static library (prefix `c<i>`), inputs and expected outputs.
struct AotCase {
    out: shrink::AotOutput,
    inputs: Vec<shrink::ir::Tensor>,
    data: shrink::dataset::DataSet,
}

/// Import, specialize to the stored inputs, optimize (verifier on), compile for `profile`.
fn build_aot(
    dir: &Path,
    profile: &shrink::target::TargetProfile,
    prefix: &str,
) -> Result<AotCase, String> {
    let (g, inputs, data, options) = compiled_case(dir)?;
    let program = shrink::lower_with(&g, &options).map_err(|e| e.to_string())?;
    let out =
        shrink::AotOutput::new(&program, profile.clone(), prefix).map_err(|e| e.to_string())?;
    Ok(AotCase { out, inputs, data })
}

/// The outputs a harness wrote for `case`, compared with its stored outputs.
fn judge_aot(case: &AotCase, bytes: Vec<Vec<u8>>, tol: Tolerance) -> Result<f64, String> {
    let outs: Vec<shrink::ir::Tensor> = case
        .out
        .outputs
        .iter()
        .zip(bytes)
        .map(|(spec, b)| {
            shrink::ir::Tensor::from_bytes(spec.dtype, spec.dims.clone(), b.into())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    compare_all(&outs, &case.data, tol)
}

/// The AOT engine on target profile `profile`: every case compiled to a static library, linked
/// [`AOT_BATCH`] at a time into one C program with the profile's compiler, run natively or
/// under its runner (qemu-user for foreign ISAs). A batch whose program fails (a kernel
/// returned nonzero, a crash) is rerun one case at a time to say which.
fn run_cases_aot(profile: &str, cases: &[(PathBuf, Tolerance)]) -> Vec<Result<f64, String>> {
    let profile = shrink::target::find(profile).expect("a known target profile");
    toolchain::ensure_toolchain(&profile);
    let built: Vec<Result<AotCase, String>> = cases
        .iter()
        .enumerate()
        .map(|(i, (dir, _))| {
            std::panic::catch_unwind(|| build_aot(dir, &profile, &format!("c{i}")))
                .unwrap_or_else(|_| Err("PANIC".into()))
        })
        .collect();
    let work = std::env::temp_dir().join(format!(
        "shrink-conformance-{}-{}",
        profile.name,
        std::process::id()
    ));
    let mut results: Vec<Option<Result<f64, String>>> = built
        .iter()
        .map(|b| b.as_ref().err().map(|e| Err(e.clone())))
        .collect();
    let ready: Vec<usize> = (0..cases.len()).filter(|&i| built[i].is_ok()).collect();
    let case = |i: usize| built[i].as_ref().expect("built");
    let link = |idx: &[usize], dir: &Path| {
        let outs: Vec<&shrink::AotOutput> = idx.iter().map(|&i| &case(i).out).collect();
        let ins: Vec<Vec<shrink::ir::Tensor>> =
            idx.iter().map(|&i| case(i).inputs.clone()).collect();
        shrink::harness::link_and_run(&profile, &outs, &ins, dir)
    };
    for (b, chunk) in ready.chunks(AOT_BATCH).enumerate() {
        match link(chunk, &work.join(format!("batch{b}"))) {
            Ok(per_model) => {
                for (&i, bytes) in chunk.iter().zip(per_model) {
                    results[i] = Some(judge_aot(case(i), bytes, cases[i].1));
                }
            }
            Err(_) => {
                for &i in chunk {
                    let alone = link(&[i], &work.join(format!("case{i}")));
                    results[i] = Some(alone.and_then(|mut per_model| {
                        judge_aot(case(i), per_model.remove(0), cases[i].1)
                    }));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    results
        .into_iter()
        .map(|r| r.expect("every case has a result"))
        .collect()
}

#[test]
fn onnx_node_suite_on_aot_x86_64() {
    run_suite_batched("aot-x86_64", &|cases| {
        run_cases_aot("x86_64-unknown-linux-gnu", cases)
    });
}

#[test]
fn onnx_node_suite_on_aot_aarch64_under_qemu() {
    run_suite_batched("aot-aarch64", &|cases| {
        run_cases_aot("aarch64-unknown-linux-gnu", cases)
    });
}

#[test]
fn onnx_node_suite_on_aot_riscv64_under_qemu() {
    run_suite_batched("aot-riscv64", &|cases| {
        run_cases_aot("riscv64gc-unknown-linux-gnu", cases)
    });
}

/// RISC-V with the V extension (128-bit vectors): the vectorized loops and native kernels.
#[test]
fn onnx_node_suite_on_aot_riscv64v_under_qemu() {
    run_suite_batched("aot-riscv64v", &|cases| {
        run_cases_aot("riscv64gcv-unknown-linux-gnu", cases)
    });
}
