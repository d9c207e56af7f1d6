//! The `.sir` text form round-trips: for every model of the conformance suite and the shipped
//! examples, `print(parse(print(g))) == print(g)`, the reparsed graph verifies, and it computes the
//! same outputs as the original on the interpreter.
use shrink::ir::text::{parse_graph, print_graph};
use std::path::{Path, PathBuf};

fn models() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("../shared/onnx-node"))
        .expect("../shared/onnx-node")
        .map(|e| e.unwrap().path().join("model.onnx"))
        .collect();
    v.push(root.join("examples/models/ternary_mlp/model.onnx"));
    v.sort();
    v
}

#[test]
fn every_imported_graph_round_trips_through_text() {
    let mut checked = 0;
    for m in models() {
        let Ok(imp) = shrink::onnx::load_model(&m, &Default::default()) else {
            continue;
        };
        let text = print_graph(&imp.graph);
        let back = parse_graph(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", m.display()));
        shrink::ir::verify(&back)
            .unwrap_or_else(|e| panic!("{}: reparsed graph fails to verify: {e}", m.display()));
        assert_eq!(print_graph(&back), text, "{}", m.display());
        assert_eq!(back.node_count(), imp.graph.node_count());
        checked += 1;
    }
    assert!(checked >= 940, "only {checked} models imported");
}

#[test]
fn reparsed_graph_computes_the_same_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("examples/models/ternary_mlp/model.onnx");
    let imp = shrink::onnx::load_model(&model, &Default::default()).unwrap();
    let back = parse_graph(&print_graph(&imp.graph)).unwrap();
    let data = shrink::dataset::load_dataset(
        &root.join("examples/models/ternary_mlp/test_data_set_0"),
        1 << 20,
    )
    .unwrap();
    let ins = shrink::bind_inputs(&imp.graph, &data.inputs).unwrap();
    let a = shrink::interp::run(&imp.graph, &ins, &Default::default()).unwrap();
    let b = shrink::interp::run(&back, &ins, &Default::default()).unwrap();
    assert_eq!(a, b, "bit-identical outputs");
}

#[test]
fn deleted_nodes_keep_their_ids_across_a_round_trip() {
    let text = "graph {\n  %0 = Input 0 \"x\" : f32[2]\n  %3 = Relu(%0) \"r\" : f32[2]\n  %7 = Neg(%3) \"n\" : f32[2]\n  output \"y\" = %7\n}\n";
    let g = parse_graph(text).unwrap();
    assert_eq!(print_graph(&g), text);
    shrink::ir::verify(&g).unwrap();
}
