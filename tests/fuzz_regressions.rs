//! Replays every saved fuzz input (`tests/fuzz-regressions/<target>/`) through the check of the
//! target that found it (`shrink::fuzz_checks`, the code the fuzz targets run): each input once
//! crashed shrink or broke a check, or reaches deep into it; all must now pass. Each directory
//! holds at least one input, so no target's replay passes vacuously.
use std::path::{Path, PathBuf};

type Check = fn(&[u8]) -> Result<(), String>;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz-regressions")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}: no saved inputs", dir.display());
    v
}

fn replay(target: &str, check: Check) {
    let mut failures = Vec::new();
    for f in inputs(target) {
        let data = std::fs::read(&f).unwrap();
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(Ok(())) => {}
            Ok(Err(defect)) => failures.push(format!("{}: {defect}", f.display())),
            Err(_) => failures.push(format!("{}: panicked", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn import_findings_pass() {
    replay("import", shrink::fuzz_checks::import);
}

#[test]
fn pipeline_findings_pass() {
    replay("pipeline", shrink::fuzz_checks::pipeline);
}

/// The two float findings pass for the reason they were judged false alarms, not because the
/// JIT happens to agree now: one differs only with fused multiply-adds, the other in both builds
/// while every node agrees alone. A JIT that agreed outright would need their names revisited.
#[test]
fn float_findings_are_the_rounding_they_were_judged() {
    use shrink::fuzz_checks::{Agreement, pipeline_agreement};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz-regressions/pipeline");
    for (file, want) in [
        (
            "pipeline_fma_cancellation_1e29.onnx",
            Agreement::FusedRounding,
        ),
        (
            "pipeline_bitnet_mutant_amplified_1e25.onnx",
            Agreement::Amplified,
        ),
    ] {
        let data = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(pipeline_agreement(&data), Ok(want), "{file}");
    }
}

#[test]
fn text_findings_pass() {
    replay("text", shrink::fuzz_checks::text);
}

/// The checks accept every conformance model (no false alarm of the importer comparison), so a
/// fuzzer that starts from them reports only real defects.
#[test]
fn every_suite_model_passes_the_import_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onnx-node");
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in std::fs::read_dir(&dir).expect("../shared/onnx-node") {
        let model = case.unwrap().path().join("model.onnx");
        let data = std::fs::read(&model).unwrap();
        if let Err(e) = shrink::fuzz_checks::import(&data) {
            failures.push(format!("{}: {e}", model.display()));
        }
        checked += 1;
    }
    assert!(checked >= 900, "suite incomplete: {checked} models");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes the text target's seed corpus: every suite and example model's graph printed as
/// imported and as optimized, and the IR golden files (run by scripts/fuzz.sh).
#[test]
#[ignore]
fn write_text_seeds() {
    let out = PathBuf::from(std::env::var("SHRINK_TEXT_SEEDS").expect("SHRINK_TEXT_SEEDS=DIR"));
    std::fs::create_dir_all(&out).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    for dir in [
        root.join("../shared/onnx-node"),
        root.join("examples/models"),
    ] {
        for case in std::fs::read_dir(&dir).unwrap() {
            let case = case.unwrap().path();
            let name = case.file_name().unwrap().to_string_lossy().to_string();
            models.push((name, case.join("model.onnx")));
        }
    }
    let mut written = 0;
    for (name, model) in models {
        let Ok(data) = std::fs::read(&model) else {
            continue;
        };
        for (k, text) in shrink::fuzz_checks::text_seeds(&data).iter().enumerate() {
            std::fs::write(out.join(format!("{name}.{k}.sir")), text).unwrap();
            written += 1;
        }
    }
    for sub in ["roundtrip", "opt", "verify"] {
        for f in std::fs::read_dir(root.join("ir").join(sub)).unwrap() {
            let f = f.unwrap().path();
            let name = format!("golden_{sub}_{}", f.file_name().unwrap().to_string_lossy());
            std::fs::copy(&f, out.join(name)).unwrap();
            written += 1;
        }
    }
    println!("{written} text seeds in {}", out.display());
}

/// Findings not fixed yet (`tests/fuzz-regressions/open/`, each named after its target): run
/// with `--ignored` to reproduce; a fixed one moves to its target's directory. None is open
/// when the directory is absent (git keeps no empty directory).
#[test]
#[ignore]
fn open_findings_pass() {
    let open = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz-regressions/open");
    if !open.is_dir() {
        return;
    }
    let mut failures = Vec::new();
    for f in inputs("open") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let check: Check = match name.split('_').next() {
            Some("import") => shrink::fuzz_checks::import,
            Some("pipeline") => shrink::fuzz_checks::pipeline,
            _ => shrink::fuzz_checks::text,
        };
        let data = std::fs::read(&f).unwrap();
        if let Err(defect) = check(&data) {
            failures.push(format!("{name}: {defect}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
