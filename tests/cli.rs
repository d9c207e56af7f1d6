//! The `shrink` command line as users and scripts see it: exit codes, the exact output formats of
//! the CLI contract, and one-line errors (naming file, node and op) for bad input — never a panic.
use shrink::ir::{DType, Tensor};
use shrink::onnx::writer::{Attr, ModelBuilder, WDim, tensor_pb_bytes};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn shrink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shrink"))
        .args(args)
        .output()
        .expect("run shrink")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped_model() -> String {
    repo()
        .join("examples/models/ternary_mlp/model.onnx")
        .display()
        .to_string()
}

/// A fresh scratch folder per call.
fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "shrink-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: nonzero exit, exactly one stderr line containing every `needle`.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout: {}",
        stdout(o)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error must be one line, got:\n{err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

fn write_model(dir: &Path, m: &ModelBuilder) -> String {
    let p = dir.join("model.onnx");
    std::fs::write(&p, m.to_bytes()).unwrap();
    p.display().to_string()
}

#[test]
fn check_passes_on_the_shipped_model() {
    let o = shrink(&["check", &shipped_model()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("PASS test_data_set_0 max_abs_err="),
        "{out}"
    );
    // What it did goes to stderr (stdout is the scripted contract), with the pass counters.
    let err = stderr(&o);
    for part in [
        "4 nodes imported, 3 after optimization",
        "dead_units=3",
        "dense_act=1",
        "ternary_layers=2",
        "engine jit",
    ] {
        assert!(err.contains(part), "missing `{part}` in: {err}");
    }
    let quiet = Command::new(env!("CARGO_BIN_EXE_shrink"))
        .args(["check", &shipped_model()])
        .env("SHRINK_QUIET", "1")
        .output()
        .unwrap();
    assert!(quiet.status.success() && quiet.stderr.is_empty());
}

#[test]
fn check_fails_with_a_wrong_expected_output() {
    let dir = scratch();
    let set = dir.join("test_data_set_0");
    std::fs::create_dir_all(&set).unwrap();
    let demo = shrink::demo::ternary_mlp();
    std::fs::write(
        set.join("input_0.pb"),
        tensor_pb_bytes(&demo.inputs[0].1, "x"),
    )
    .unwrap();
    let mut wrong = demo.outputs[0].1.to_vec::<f32>().unwrap();
    wrong[3] += 0.5;
    std::fs::write(
        set.join("output_0.pb"),
        tensor_pb_bytes(&Tensor::from_vec(vec![4, 8], wrong), "y"),
    )
    .unwrap();
    let o = shrink(&["check", &shipped_model(), set.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.starts_with("FAIL test_data_set_0 max_abs_err=5.000e-1"),
        "{out}"
    );
}

#[test]
fn run_writes_outputs_matching_the_expected_data() {
    let dir = scratch();
    let data = repo().join("examples/models/ternary_mlp/test_data_set_0");
    let o = shrink(&[
        "run",
        &shipped_model(),
        "--input-dir",
        data.to_str().unwrap(),
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (name, got) = shrink::onnx::load_tensor_pb(&dir.join("output_0.pb"), 1 << 20).unwrap();
    let (_, want) = shrink::onnx::load_tensor_pb(&data.join("output_0.pb"), 1 << 20).unwrap();
    assert_eq!(name, "y");
    let c = shrink::compare::compare(&got, &want, shrink::compare::Tolerance::INTERP);
    assert!(c.mismatch.is_none(), "{c:?}");
}

#[test]
fn run_accepts_npy_inputs() {
    let dir = scratch();
    let demo = shrink::demo::ternary_mlp();
    let npy = dir.join("x.npy");
    std::fs::write(&npy, shrink::npy::write_npy(&demo.inputs[0].1).unwrap()).unwrap();
    let arg = format!("x={}", npy.display());
    let o = shrink(&[
        "run",
        &shipped_model(),
        "--input",
        &arg,
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, got) = shrink::onnx::load_tensor_pb(&dir.join("output_0.pb"), 1 << 20).unwrap();
    let c = shrink::compare::compare(&got, &demo.outputs[0].1, shrink::compare::Tolerance::INTERP);
    assert!(c.mismatch.is_none(), "{c:?}");
}

#[test]
fn inspect_json_reports_the_shipped_model_exactly() {
    let o = shrink(&["inspect", "--json", &shipped_model()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([4, 16]));
    assert_eq!(v["outputs"][0]["dtype"], "f32");
    assert_eq!(v["nodes_before"], 4);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    // Count zeros independently from the generator's weights.
    let demo_zeros = |name: &str| -> usize {
        let m = shrink::onnx::load_model_bytes(
            "demo",
            shrink::demo::ternary_mlp().model.into(),
            &Default::default(),
        )
        .unwrap();
        let g = m.graph;
        let id = g
            .node_ids()
            .into_iter()
            .find(|&id| g.node(id).name == name)
            .unwrap();
        let t = g.const_value(g.inputs_of(id)[1].unwrap()).unwrap().clone();
        (0..t.len()).filter(|&i| t.get_f64(i) == 0.0).count()
    };
    for (l, name, shape) in [(&layers[0], "fc1", [16, 32]), (&layers[1], "fc2", [32, 8])] {
        assert_eq!(l["name"], name);
        assert_eq!(l["weight_shape"], serde_json::json!(shape));
        assert_eq!(l["ternary"], true);
        assert_eq!(l["scale_kind"], "per_tensor");
        assert_eq!(l["zeros"], demo_zeros(name));
        assert_eq!(
            l["zeros"].as_u64().unwrap() + l["nonzeros"].as_u64().unwrap(),
            (shape[0] * shape[1]) as u64
        );
    }
    assert_eq!(v["totals"]["params"], 16 * 32 + 32 + 32 * 8 + 8);
    assert_eq!(v["totals"]["ternary_params"], 16 * 32 + 32 * 8);
}

#[test]
fn bench_json_has_the_contract_fields() {
    let o = shrink(&["bench", &shipped_model(), "--iters", "5", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["engine"], "jit");
    assert_eq!(v["iters"], 5);
    assert!(v["median_ns"].as_u64().unwrap() > 0);
    assert!(v["p99_ns"].as_u64().unwrap() >= v["median_ns"].as_u64().unwrap());
    assert!(v["compile_ms"].as_f64().unwrap() >= 0.0);
    // The interpreter's time in the same run, the baseline of the generated code.
    assert!(v["interp_median_ns"].as_u64().unwrap() > 0);
    let o = shrink(&[
        "bench",
        &shipped_model(),
        "--iters",
        "5",
        "--json",
        "--engine",
        "interp",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["engine"], "interp");
}

/// `bench --threads N` runs a large layer on N threads (the JSON says how many a call ran on:
/// a model with no layer worth splitting stays on one), per layer too; bad counts and engines
/// that cannot use them are one-line errors.
#[test]
fn bench_threads_split_large_layers() {
    let dir = scratch();
    let m = shrink::demo::ternary_layer(1024);
    shrink::demo::write(&dir, &m).unwrap();
    let model = dir.join(m.name).join("model.onnx");
    let model = model.to_str().unwrap();
    let threads_of = |args: &[&str]| {
        let o = shrink(args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["threads"].as_u64().unwrap()
    };
    let bench = ["bench", model, "--iters", "5", "--json"];
    assert_eq!(threads_of(&bench), 1);
    assert_eq!(threads_of(&[&bench[..], &["--threads", "2"]].concat()), 2);
    let small = [
        "bench",
        &shipped_model(),
        "--iters",
        "5",
        "--json",
        "--threads",
        "2",
    ];
    assert_eq!(threads_of(&small), 1);
    let o = shrink(&[&bench[..], &["--threads", "2", "--per-layer"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 1, "{v}");
    assert_one_line_error(
        &shrink(&["bench", model, "--threads", "0"]),
        &["--threads 0", "expected 1"],
    );
    assert_one_line_error(
        &shrink(&["bench", model, "--threads", "2", "--engine", "interp"]),
        &["--threads 2", "--engine jit"],
    );
}

/// `inspect --json` names the kernel a dense layer runs on: the nonzeros of the 90%-pruned MLP's
/// big layers, the SIMD tiles of a dense one, the int8 dot products of a quantized one.
#[test]
fn inspect_names_the_kernel_of_dense_layers() {
    let dir = scratch();
    let kernels = |m: &shrink::demo::DemoModel| -> Vec<String> {
        shrink::demo::write(&dir, m).unwrap();
        let model = dir.join(m.name).join("model.onnx");
        let o = shrink(&["inspect", model.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("{}/{}", l["strategy"].as_str().unwrap(), l["kernel"]))
            .collect()
    };
    let pruned = shrink::demo::bench_model("pruned90_mlp_b1").unwrap();
    assert_eq!(
        kernels(&pruned)[..2],
        ["dense/\"sparse\"", "dense/\"sparse\""]
    );
    let dense = shrink::demo::Mlp::pruned(&[64, 96, 10], 0.0, 3).demo("dense_small", 2, 4);
    assert!(kernels(&dense).iter().all(|k| k == "dense/\"tiles\""));
    let int8 = shrink::demo::dynamic_quant_layer("int8_small", 2, 40, 24);
    assert_eq!(kernels(&int8), ["dense/\"int8\""]);
}

/// `bench --per-layer` lists every layer of the model once, in order, with its strategy, a
/// measured time and (for the ternary layers) the cost model's prediction.
#[test]
fn bench_per_layer_lists_every_layer_with_its_prediction() {
    // Forced stream: the layers' predictions are then the stream's (auto may pick dense here).
    let o = shrink(&[
        "bench",
        &shipped_model(),
        "--iters",
        "20",
        "--json",
        "--per-layer",
        "--strategy",
        "stream",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["node"].as_str().unwrap()).collect();
    for layer in ["fc1", "fc2"] {
        assert_eq!(
            names.iter().filter(|n| **n == layer).count(),
            1,
            "{names:?}"
        );
    }
    for l in layers {
        assert!(l["measured_ns"].as_f64().unwrap() >= 0.0, "{l}");
        if ["fc1", "fc2"].contains(&l["node"].as_str().unwrap()) {
            assert_eq!(l["strategy"], "stream", "{l}");
            assert!(l["predicted_ns"].as_f64().unwrap() > 0.0, "{l}");
        }
    }
    assert_one_line_error(
        &shrink(&[
            "bench",
            &shipped_model(),
            "--engine",
            "interp",
            "--per-layer",
        ]),
        &["--per-layer", "--engine jit"],
    );
}

#[test]
fn jit_and_interpreter_write_the_same_outputs() {
    let dir = scratch();
    let set = Path::new(&shipped_model())
        .parent()
        .unwrap()
        .join("test_data_set_0");
    let mut outs = vec![];
    for engine in ["jit", "interp"] {
        let out = dir.join(engine);
        let o = shrink(&[
            "run",
            &shipped_model(),
            "--input-dir",
            set.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--engine",
            engine,
            // A stream sums in f64 as the interpreter does, so the bytes agree (the default
            // may pick the f32 dense tiles, within tolerance only).
            "--strategy",
            "stream",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        outs.push(std::fs::read(out.join("output_0.pb")).unwrap());
    }
    assert_eq!(
        outs[0], outs[1],
        "jit and interp outputs differ byte for byte"
    );
}

#[test]
fn input_shape_fixes_a_dim_and_a_wrong_rank_is_a_one_line_error() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/onnx-node/test_relu/model.onnx");
    let m = model.to_str().unwrap();
    let o = shrink(&[
        "compile",
        m,
        "--target",
        "host",
        "--emit",
        "clif",
        "--input-shape",
        "x=3,4,5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The symbol prefix defaults to the model's file stem.
    assert!(stdout(&o).contains("function") && stdout(&o).contains("; model_run"));
    assert_one_line_error(
        &shrink(&[
            "compile",
            m,
            "--target",
            "host",
            "--emit",
            "asm",
            "--input-shape",
            "x=3,4",
        ]),
        &["--input-shape x", "rank 3"],
    );
    assert_one_line_error(
        &shrink(&["check", m, "--strategy", "fastest"]),
        &["--strategy", "unknown strategy 'fastest'"],
    );
    assert_one_line_error(
        &shrink(&["check", m, "--activations", "int4"]),
        &["--activations int4", "expected f32 or int8"],
    );
}

/// `--activations int8` is accepted and quantizes the packed layers: `run` writes outputs
/// that differ from the faithful default's (the kernel tests bound by how much).
#[test]
fn int8_activations_change_what_run_writes() {
    let dir = scratch();
    let data = repo().join("examples/models/ternary_mlp/test_data_set_0");
    let mut outs = vec![];
    for mode in ["f32", "int8"] {
        let out = dir.join(mode);
        let o = shrink(&[
            "run",
            &shipped_model(),
            "--input-dir",
            data.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--strategy",
            "packed",
            "--activations",
            mode,
        ]);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        outs.push(std::fs::read(out.join("output_0.pb")).unwrap());
    }
    assert_ne!(outs[0], outs[1]);
}

#[test]
fn compile_writes_objects_archives_and_headers_for_named_targets() {
    let dir = scratch();
    let (a, o, h) = (dir.join("m.a"), dir.join("m.o"), dir.join("m.h"));
    let out = shrink(&[
        "compile",
        &shipped_model(),
        "--target",
        "x86_64-linux",
        "-o",
        a.to_str().unwrap(),
        "--header",
        h.to_str().unwrap(),
        "--name",
        "mlp",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&a).unwrap().starts_with(b"!<arch>\n"));
    assert!(
        std::fs::read_to_string(&h)
            .unwrap()
            .contains("int32_t mlp_run(")
    );
    let out = shrink(&[
        "compile",
        &shipped_model(),
        "--target",
        "riscv64gcv-unknown-linux-gnu",
        "-o",
        o.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&o).unwrap().starts_with(b"\x7fELF"));
    let out = shrink(&[
        "compile",
        &shipped_model(),
        "--target",
        "aarch64-unknown-linux-gnu",
        "--emit",
        "asm",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("; model_run"));
    let help = shrink(&["compile", "--target", "help"]);
    assert!(help.status.success());
    for t in [
        "x86_64-v4",
        "riscv64gcv-unknown-linux-gnu",
        "aarch64-apple-darwin",
    ] {
        assert!(stdout(&help).contains(t), "{}", stdout(&help));
    }
    assert_one_line_error(
        &shrink(&["compile", &shipped_model(), "--target", "vax", "-o", "m.a"]),
        &["unknown target 'vax'", "x86_64-v3", "aarch64-unknown-none"],
    );
    assert_one_line_error(
        &shrink(&[
            "compile",
            &shipped_model(),
            "--target",
            "host",
            "-o",
            "m.so",
        ]),
        &["-o m.so", ".o", ".a"],
    );
    assert_one_line_error(
        &shrink(&[
            "compile",
            &shipped_model(),
            "--target",
            "host",
            "-o",
            "m.a",
            "--name",
            "9lives",
        ]),
        &["--name '9lives'", "C identifier"],
    );
}

#[test]
fn check_with_the_aot_engine_links_and_runs_on_the_host() {
    let o = shrink(&[
        "check",
        &shipped_model(),
        "--engine",
        "aot",
        "--target",
        "x86_64-unknown-linux-gnu",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("PASS test_data_set_0"),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(
        &shrink(&[
            "check",
            &shipped_model(),
            "--engine",
            "aot",
            "--target",
            "x86_64-apple-darwin",
        ]),
        &["x86_64-apple-darwin", "compile-only"],
    );
    assert_one_line_error(
        &shrink(&["check", &shipped_model(), "--target", "x86_64-v3"]),
        &["--target x86_64-v3", "--engine aot"],
    );
}

#[test]
fn truncated_model_is_a_one_line_error() {
    let dir = scratch();
    let bytes = std::fs::read(shipped_model()).unwrap();
    let p = dir.join("cut.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(
        &shrink(&["inspect", p.to_str().unwrap()]),
        &["cut.onnx", "not a valid ONNX model"],
    );
    std::fs::write(&p, b"\xff\xff\xff garbage").unwrap();
    assert_one_line_error(&shrink(&["run", p.to_str().unwrap()]), &["cut.onnx"]);
    assert_one_line_error(
        &shrink(&["check", dir.join("absent.onnx").to_str().unwrap()]),
        &["absent.onnx"],
    );
}

fn relu_model(extra: impl FnOnce(&mut ModelBuilder)) -> ModelBuilder {
    let mut m = ModelBuilder::new("bad", 21);
    m.input("x", DType::F32, &[WDim::Fixed(2), WDim::Fixed(3)])
        .output("y", DType::F32, &[2.into(), 3.into()]);
    extra(&mut m);
    m
}

#[test]
fn missing_initializer_names_the_node() {
    let dir = scratch();
    let m = relu_model(|m| {
        m.node("MatMul", "proj", &["x", "w_missing"], &["y"], &[]);
    });
    assert_one_line_error(
        &shrink(&["inspect", &write_model(&dir, &m)]),
        &["model.onnx", "'proj'", "MatMul", "w_missing"],
    );
}

#[test]
fn cycle_is_reported() {
    let dir = scratch();
    let m = relu_model(|m| {
        m.node("Add", "a", &["x", "b_out"], &["a_out"], &[])
            .node("Relu", "b", &["a_out"], &["b_out"], &[])
            .node("Relu", "c", &["a_out"], &["y"], &[]);
    });
    assert_one_line_error(
        &shrink(&["inspect", &write_model(&dir, &m)]),
        &["model.onnx", "cycle", "op Add"],
    );
}

#[test]
fn unknown_ops_are_all_listed() {
    let dir = scratch();
    let m = relu_model(|m| {
        m.node("FrobnicateA", "f1", &["x"], &["t"], &[]).node(
            "FrobnicateB",
            "f2",
            &["t"],
            &["y"],
            &[],
        );
    });
    assert_one_line_error(
        &shrink(&["inspect", &write_model(&dir, &m)]),
        &[
            "model.onnx",
            "unsupported ops",
            "'f1' (FrobnicateA)",
            "'f2' (FrobnicateB)",
        ],
    );
}

#[test]
fn wrong_input_dtype_or_shape_in_run() {
    let dir = scratch();
    let bad_dtype = dir.join("x64.pb");
    std::fs::write(
        &bad_dtype,
        tensor_pb_bytes(&Tensor::from_vec(vec![4, 16], vec![0f64; 64]), "x"),
    )
    .unwrap();
    let arg = format!("x={}", bad_dtype.display());
    assert_one_line_error(
        &shrink(&["run", &shipped_model(), "--input", &arg]),
        &["input 'x'", "f64", "f32"],
    );
    let bad_shape = dir.join("x_shape.pb");
    std::fs::write(
        &bad_shape,
        tensor_pb_bytes(&Tensor::from_vec(vec![4, 15], vec![0f32; 60]), "x"),
    )
    .unwrap();
    let arg = format!("x={}", bad_shape.display());
    assert_one_line_error(
        &shrink(&["run", &shipped_model(), "--input", &arg]),
        &["input 'x'", "[4, 15]"],
    );
    assert_one_line_error(
        &shrink(&["run", &shipped_model(), "--input", "nonsense"]),
        &["NAME=FILE"],
    );
}

#[test]
fn oversized_and_overflowing_dims_are_refused() {
    let dir = scratch();
    // An initializer whose dims product overflows u64.
    let mut m = relu_model(|m| {
        m.node("Add", "add", &["x", "huge"], &["y"], &[]);
    });
    let mut model = m.model();
    let g = model.graph.as_mut().unwrap();
    g.initializer.push(shrink::onnx::proto::TensorProto {
        name: "huge".into(),
        dims: vec![1 << 40, 1 << 40],
        data_type: 1,
        ..Default::default()
    });
    let p = dir.join("overflow.onnx");
    std::fs::write(&p, prost::Message::encode_to_vec(&model)).unwrap();
    assert_one_line_error(
        &shrink(&["inspect", p.to_str().unwrap()]),
        &["overflow.onnx", "'huge'", "memory cap"],
    );
    // A real 4 KiB weight under a 1 KiB cap.
    m = relu_model(|m| {
        m.initializer("w", &Tensor::from_vec(vec![32, 32], vec![1f32; 1024]))
            .node("Add", "add", &["x", "w"], &["y"], &[]);
    });
    let p = write_model(&dir, &m);
    assert_one_line_error(
        &shrink(&["--max-memory", "1K", "inspect", &p]),
        &["model.onnx", "'w'", "memory cap"],
    );
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let dir = scratch();
    let mut model = relu_model(|m| {
        m.node("Add", "add", &["x", "w"], &["y"], &[]);
    })
    .model();
    let entry = |k: &str, v: &str| shrink::onnx::proto::StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    for (loc, why) in [
        ("../escape.bin", "inside the model's folder"),
        ("/etc/passwd", "inside the model's folder"),
    ] {
        let g = model.graph.as_mut().unwrap();
        g.initializer = vec![shrink::onnx::proto::TensorProto {
            name: "w".into(),
            dims: vec![2, 3],
            data_type: 1,
            data_location: 1,
            external_data: vec![entry("location", loc)],
            ..Default::default()
        }];
        let p = dir.join("ext.onnx");
        std::fs::write(&p, prost::Message::encode_to_vec(&model)).unwrap();
        assert_one_line_error(
            &shrink(&["inspect", p.to_str().unwrap()]),
            &["ext.onnx", why],
        );
    }
    // Inside the folder but shorter than offset + length.
    std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
    let g = model.graph.as_mut().unwrap();
    g.initializer[0].external_data = vec![
        entry("location", "w.bin"),
        entry("offset", "8"),
        entry("length", "24"),
    ];
    let p = dir.join("ext.onnx");
    std::fs::write(&p, prost::Message::encode_to_vec(&model)).unwrap();
    assert_one_line_error(
        &shrink(&["inspect", p.to_str().unwrap()]),
        &["ext.onnx", "outside 'w.bin'"],
    );
    // And a valid one loads and runs: 24 bytes = six f32 values.
    let vals: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("w.bin"), [&[0u8; 8][..], &vals].concat()).unwrap();
    let x = dir.join("x.pb");
    std::fs::write(
        &x,
        tensor_pb_bytes(&Tensor::from_vec(vec![2, 3], vec![10f32; 6]), "x"),
    )
    .unwrap();
    let arg = format!("x={}", x.display());
    let o = shrink(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        &arg,
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, y) = shrink::onnx::load_tensor_pb(&dir.join("output_0.pb"), 1 << 20).unwrap();
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![11., 12., 13., 14., 15., 16.]
    );
}

#[test]
fn gemm_conformance_case_passes_via_check() {
    let model = repo().join("../shared/onnx-node/test_gemm_all_attributes/model.onnx");
    let o = shrink(&["check", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("PASS test_data_set_0"));
}

#[test]
fn attribute_of_the_wrong_type_names_node_and_attribute() {
    let dir = scratch();
    let m = relu_model(|m| {
        m.node(
            "LeakyRelu",
            "lrelu",
            &["x"],
            &["y"],
            &[("alpha", Attr::Int(3))],
        );
    });
    assert_one_line_error(
        &shrink(&["inspect", &write_model(&dir, &m)]),
        &["model.onnx", "'lrelu'", "LeakyRelu", "alpha"],
    );
}

#[test]
fn inspect_reports_what_the_optimizer_removed() {
    let o = shrink(&[
        "inspect",
        "--json",
        "--strategy",
        "stream",
        &shipped_model(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Independent expectations from the generator's weights.
    let shrink::demo::MlpSparsity {
        w1,
        w2,
        dead,
        live,
        dead_inputs: dead_in,
    } = shrink::demo::ternary_mlp_sparsity();
    let layers = v["layers"].as_array().unwrap();
    let fc1 = layers.iter().find(|l| l["name"] == "fc1").unwrap();
    let fc2 = layers.iter().find(|l| l["name"] == "fc2").unwrap();
    assert_eq!(
        (fc1["dead_rows"].as_u64(), fc1["dead_cols"].as_u64()),
        (Some(dead.len() as u64), Some(dead_in as u64))
    );
    assert_eq!(
        (fc2["dead_rows"].as_u64(), fc2["dead_cols"].as_u64()),
        (Some(0), Some(dead.len() as u64))
    );
    // Zeros inside removed rows/cols are eliminated: count them from the original weights.
    let mut removed_zeros = 0;
    for i in 0..16 {
        for h in 0..32 {
            let gone = dead.contains(&h) || live.iter().all(|&l| w1[i * 32 + l] == 0.0);
            removed_zeros += (gone && w1[i * 32 + h] == 0.0) as usize;
        }
    }
    removed_zeros += dead
        .iter()
        .map(|&h| (0..8).filter(|&o| w2[h * 8 + o] == 0.0).count())
        .sum::<usize>();
    // Streamed, the layers compute no zero weight at all.
    for l in [fc1, fc2] {
        assert_eq!(l["strategy"], "stream", "{l}");
        assert!(l["code_bytes"].as_u64().unwrap() > 0);
    }
    let all_zeros = w1.iter().chain(&w2).filter(|&&w| w == 0.0).count();
    assert_eq!(
        v["totals"]["zeros_eliminated"].as_u64(),
        Some(all_zeros as u64)
    );
    assert!(v["totals"]["code_bytes"].as_u64().unwrap() > 0);
    assert!(v["totals"]["rodata_bytes"].as_u64().unwrap() > 0);
    // Packed kernels do multiply-select zero weights: only the removed ones are eliminated.
    let o = shrink(&[
        "inspect",
        "--json",
        "--strategy",
        "packed",
        &shipped_model(),
    ]);
    let p: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["layers"][0]["strategy"], "packed");
    assert_eq!(
        p["totals"]["zeros_eliminated"].as_u64(),
        Some(removed_zeros as u64)
    );
    assert!(v["nodes_after"].as_u64().unwrap() < v["nodes_before"].as_u64().unwrap());
    assert!(v["totals"]["scratch_bytes"].as_u64().unwrap() > 0);
    let names: Vec<&str> = v["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, shrink::opt::default_pipeline());
}

#[test]
fn pipeline_flags() {
    let o = shrink(&["inspect", "--json", "--no-opt", &shipped_model()]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["nodes_after"].is_null() && v["passes"].as_array().unwrap().is_empty());
    let o = shrink(&[
        "inspect",
        "--json",
        "--passes",
        "shapes,dce",
        &shipped_model(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = v["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shapes", "dce"]);
    assert_eq!(v["nodes_after"], 4);
    let o = shrink(&["check", "--passes", "shapes,frobnicate", &shipped_model()]);
    let out = stdout(&o);
    assert!(
        !o.status.success() && out.contains("unknown pass 'frobnicate'"),
        "{out}"
    );
    let o = shrink(&["check", "--no-opt", &shipped_model()]);
    assert!(
        o.status.success() && stdout(&o).starts_with("PASS"),
        "{}",
        stdout(&o)
    );
}

/// y = Reshape(x, shape) with a symbolic batch dim N and the shape as a graph input.
fn dynamic_model(dir: &Path) -> String {
    let mut m = ModelBuilder::new("dyn", 21);
    m.input("x", DType::F32, &[WDim::Sym("N".into()), WDim::Fixed(4)])
        .input("shape", DType::I64, &[WDim::Fixed(2)])
        .output_unshaped("y", DType::F32)
        .node("Reshape", "r", &["x", "shape"], &["y"], &[]);
    write_model(dir, &m)
}

#[test]
fn dim_and_freeze_specialize_inputs() {
    let dir = scratch();
    let model = dynamic_model(&dir);
    let x = dir.join("x.npy");
    std::fs::write(
        &x,
        shrink::npy::write_npy(&Tensor::from_vec(
            vec![3, 4],
            (0..12).map(|v| v as f32).collect(),
        ))
        .unwrap(),
    )
    .unwrap();
    let shape = dir.join("shape.npy");
    std::fs::write(
        &shape,
        shrink::npy::write_npy(&Tensor::from_vec(vec![2], vec![2i64, 6])).unwrap(),
    )
    .unwrap();
    let (xa, sa) = (
        format!("x={}", x.display()),
        format!("shape={}", shape.display()),
    );
    let out = dir.join("out");
    let o = shrink(&[
        "run",
        &model,
        "--dim",
        "N=3",
        "--freeze",
        &sa,
        "--input",
        &xa,
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, y) = shrink::onnx::load_tensor_pb(&out.join("output_0.pb"), 1 << 20).unwrap();
    assert_eq!(y.dims(), &[2, 6]);
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        (0..12).map(|v| v as f32).collect::<Vec<_>>()
    );
    // The bound dim is enforced, and an unknown dim name is an error.
    assert_one_line_error(
        &shrink(&[
            "run", &model, "--dim", "N=2", "--freeze", &sa, "--input", &xa,
        ]),
        &["input 'x'", "[3, 4]"],
    );
    assert_one_line_error(
        &shrink(&[
            "run", &model, "--dim", "M=2", "--freeze", &sa, "--input", &xa,
        ]),
        &["dimension named 'M'"],
    );
    let na = format!("nope={}", shape.display());
    assert_one_line_error(
        &shrink(&["run", &model, "--freeze", &na, "--input", &xa]),
        &["no input named 'nope'"],
    );
}

/// `--no-fma` changes the float kernels' arithmetic (and only that): the attention products of
/// the shipped BitNet block use fused multiply-adds by default on targets that have them
/// (`vfmadd231ps` in the x86-64-v4 machine code, `fmla` on AArch64) and none with the flag.
#[test]
fn no_fma_replaces_fused_multiply_adds_in_the_float_kernels() {
    let model = repo()
        .join("examples/models/bitnet_block/model.onnx")
        .display()
        .to_string();
    for (target, fused) in [
        ("x86_64-v4", "vfmadd231ps"),
        ("aarch64-unknown-linux-gnu", "fmla"),
    ] {
        let asm = |extra: &[&str]| {
            let mut args = vec!["compile", &model, "--target", target, "--emit", "asm"];
            args.extend_from_slice(extra);
            let out = shrink(&args);
            assert!(out.status.success(), "{}", stderr(&out));
            stdout(&out)
        };
        assert!(asm(&[]).contains(fused), "{target}: no {fused} by default");
        assert!(
            !asm(&["--no-fma"]).contains(fused),
            "{target}: {fused} with --no-fma"
        );
    }
}

/// A forced `lut` compiles for baseline x86-64 (no SSSE3, so no `pshufb`): its lookups take
/// the loop-language fallback there, and the library still passes the model's test data.
#[test]
fn forced_lut_runs_on_baseline_x86_64() {
    let out = shrink(&[
        "check",
        &shipped_model(),
        "--engine",
        "aot",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--strategy",
        "lut",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("PASS "), "{}", stdout(&out));
}

#[test]
fn version_lists_the_targets_and_the_jit_host() {
    let o = shrink(&["--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("shrink {}", env!("CARGO_PKG_VERSION")));
    let names: Vec<&str> = shrink::target::profiles()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(lines[1], format!("AOT targets: {}", names.join(", ")));
    assert_eq!(
        lines[2],
        format!("JIT host: {}", shrink::target::host_triple())
    );
}
