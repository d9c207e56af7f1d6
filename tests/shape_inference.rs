//! Shape inference against the conformance suite: with every graph input given its test-data
//! shape (and integer or scalar inputs frozen to their test values, as `--freeze` would), the
//! `shapes` pass (per-op rules plus folding of in-graph shape computations) must give every graph
//! output a fully fixed shape equal to the expected output's dims. And after specializing to the
//! test data and the default pipeline, every case is a valid lowering input
//! (`shrink::ir::prepare`: every value static, memory plan verified).
use shrink::ir::{Shape, ValueType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onnx-node");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("../shared/onnx-node")
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn check_case(dir: &Path) -> Result<(), String> {
    let Ok(imp) = shrink::onnx::load_model(&dir.join("model.onnx"), &Default::default()) else {
        return Ok(()); // import failures are the conformance test's business
    };
    let mut g = imp.graph;
    let data = shrink::dataset::load_dataset(&dir.join("test_data_set_0"), 1 << 30)?;
    let inputs = shrink::bind_inputs(&g, &data.inputs)?;
    // Freeze from the last input backwards so that earlier indices stay valid.
    for (i, t) in inputs.iter().enumerate().rev() {
        if t.dtype().is_int() || t.rank() == 0 {
            g.freeze_input(i, Arc::new(t.clone()))?;
        } else {
            let id = g.inputs[i];
            g.node_mut(id).outputs[0] = ValueType::fixed(t.dtype(), t.dims());
        }
    }
    // Forget what the file declared so that only inference speaks.
    for id in g.node_ids() {
        if !g.node(id).op.is_source() {
            g.node_mut(id)
                .outputs
                .iter_mut()
                .for_each(|t| t.shape = None);
        }
    }
    let ctx = shrink::opt::Ctx {
        verify: true,
        ..Default::default()
    };
    shrink::opt::run_passes(&mut g, &["shapes"], &ctx).map_err(|e| e.to_string())?;
    shrink::ir::verify(&g).map_err(|e| format!("verify after inference: {e}"))?;
    for (k, ((name, v), (_, want))) in g.outputs.iter().zip(&data.outputs).enumerate() {
        let got = g.value_type(*v).shape.clone();
        if got != Some(Shape::fixed(want.dims())) {
            return Err(format!(
                "output {k} '{name}': inferred {:?}, expected {:?}",
                got.map(|s| s.to_string()),
                want.dims()
            ));
        }
    }
    Ok(())
}

#[test]
fn inferred_output_shapes_match_the_suite() {
    let filter = std::env::var("SHRINK_CASES")
        .ok()
        .map(|f| regex::Regex::new(&f).unwrap());
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if filter.as_ref().is_some_and(|f| !f.is_match(&name)) {
            continue;
        }
        checked += 1;
        if let Err(e) = check_case(&dir) {
            failures.push(format!("{name}: {e}"));
        }
    }
    println!(
        "shapes: {}/{checked} cases inferred exactly",
        checked - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What the JIT needs: after specializing to the test data (`specialize_to_data`: input shapes,
/// and the values of the small integer inputs that shapes depend on) and the default pipeline,
/// every case prepares for lowering — every value static, the memory plan verified. Cases
/// specialized by value must still compute the expected outputs.
fn check_prepared(dir: &Path) -> Result<bool, String> {
    let Ok(imp) = shrink::onnx::load_model(&dir.join("model.onnx"), &Default::default()) else {
        return Ok(false);
    };
    let data = shrink::dataset::load_dataset(&dir.join("test_data_set_0"), 1 << 30)?;
    let inputs = shrink::bind_inputs(&imp.graph, &data.inputs)?;
    let mut g = imp.graph;
    let opts = shrink::OptOptions::default();
    let by_value = shrink::opt::specialize::specialize_to_data(&mut g, &inputs, &opts.ctx)?;
    shrink::optimize(&mut g, &opts).map_err(|e| format!("optimizer: {e}"))?;
    shrink::ir::prepare(&g).map_err(|e| e.to_string())?;
    if !by_value.is_empty() {
        let outs =
            shrink::interp::run(&g, &inputs, &Default::default()).map_err(|e| e.to_string())?;
        for (k, (got, (_, want))) in outs.iter().zip(&data.outputs).enumerate() {
            let c = shrink::compare::compare(got, want, shrink::compare::Tolerance::INTERP);
            if let Some(m) = c.mismatch {
                return Err(format!("specialized to {by_value:?}: output {k}: {m}"));
            }
        }
    }
    Ok(!by_value.is_empty())
}

#[test]
fn every_case_prepares_after_specializing_to_its_data() {
    let filter = std::env::var("SHRINK_CASES")
        .ok()
        .map(|f| regex::Regex::new(&f).unwrap());
    let (mut failures, mut checked, mut by_value) = (Vec::new(), 0, 0);
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if filter.as_ref().is_some_and(|f| !f.is_match(&name)) {
            continue;
        }
        checked += 1;
        match check_prepared(&dir) {
            Ok(v) => by_value += v as usize,
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "prepare: {}/{checked} cases static after specialization ({by_value} by input value)",
        checked - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
