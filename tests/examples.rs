//! The models shipped in `examples/models/` are exactly what `cargo run --example gen_models`
//! writes (so they can be trusted and regenerated), and each one's stored expected output is
//! reproduced by the interpreter on the graph as imported and after the full optimizer pipeline.
use shrink::compare::{Tolerance, compare};
use std::path::Path;

#[test]
fn shipped_models_match_their_generator_and_their_data() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    for m in shrink::demo::all() {
        let dir = root.join(m.name);
        let on_disk = std::fs::read(dir.join("model.onnx")).unwrap();
        assert!(
            on_disk == m.model,
            "{}: model.onnx differs from the generator (run gen_models)",
            m.name
        );
        let data = shrink::dataset::load_dataset(&dir.join("test_data_set_0"), 1 << 30).unwrap();
        assert_eq!(data.inputs.len(), m.inputs.len());
        assert_eq!(data.outputs.len(), m.outputs.len());
        for ((_, a), (_, b)) in data
            .inputs
            .iter()
            .chain(&data.outputs)
            .zip(m.inputs.iter().chain(&m.outputs))
        {
            assert_eq!(
                a, b,
                "{}: stored test data differs from the generator",
                m.name
            );
        }
        let imp = shrink::onnx::load_model(&dir.join("model.onnx"), &Default::default()).unwrap();
        let mut opt = imp.graph.clone();
        shrink::optimize(&mut opt, &Default::default()).unwrap();
        let ins: Vec<_> = data.inputs.iter().map(|(_, t)| t.clone()).collect();
        for (what, g) in [("imported", &imp.graph), ("optimized", &opt)] {
            let got = shrink::interp::run(g, &ins, &Default::default()).unwrap();
            for ((_, want), got) in data.outputs.iter().zip(&got) {
                let c = compare(got, want, Tolerance::INTERP);
                assert!(c.mismatch.is_none(), "{} {what}: {:?}", m.name, c.mismatch);
            }
        }
    }
}
