//! Unit tests of the build-script builder: the Rust wrapper generator (its API text, names that
//! are not identifiers, dtypes, and that what it writes compiles warning-free under rustc), the
//! mapping from Cargo's `TARGET` to a profile, and the one-line errors.
use super::*;
use shrink_codegen::IoSpec;

fn spec(name: &str, dtype: DType, dims: &[usize]) -> IoSpec {
    IoSpec {
        name: name.to_string(),
        dtype,
        dims: dims.to_vec(),
    }
}

fn fake(prefix: &str, inputs: Vec<IoSpec>, outputs: Vec<IoSpec>, scratch: usize) -> AotOutput {
    AotOutput {
        profile: shrink_target::find("x86_64-unknown-linux-gnu").unwrap(),
        prefix: prefix.to_string(),
        object: vec![],
        header: String::new(),
        facts: Default::default(),
        inputs,
        outputs,
        scratch_bytes: scratch,
    }
}

fn mlp() -> AotOutput {
    fake(
        "mlp",
        vec![spec("x", DType::F32, &[4, 16])],
        vec![spec("y", DType::F32, &[4, 8])],
        2240,
    )
}

/// Type-checks `source` as a library crate with every warning an error (no linking, so the
/// extern function need not exist).
fn rustc_accepts(source: &str, what: &str) {
    let dir = std::env::temp_dir().join(format!("shrink-build-{}-{what}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lib.rs");
    std::fs::write(&file, source).unwrap();
    let out = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "lib",
            "--emit",
            "metadata",
        ])
        .args(["-D", "warnings", "--crate-name", "w", "--out-dir"])
        .arg(&dir)
        .arg(&file)
        .output()
        .expect("rustc runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{what}: rustc rejects the wrapper:\n{}\n{source}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mlp_wrapper_has_the_typed_api() {
    let s = wrapper(&mlp(), "model.onnx").unwrap();
    for want in [
        "fn mlp_run(",
        "#[repr(C, align(64))]",
        "pub struct Mlp {",
        "scratch: [u8; 2240]",
        "pub const SCRATCH_BYTES: usize = 2240;",
        "pub const SCRATCH_ALIGN: usize = 64;",
        "pub const INPUT_NAMES: [&str; 1] = [\"x\"];",
        "pub const OUTPUT_NAMES: [&str; 1] = [\"y\"];",
        "pub const INPUT_0_DIMS: [usize; 2] = [4, 16];",
        "pub const INPUT_0_LEN: usize = 64;",
        "pub const OUTPUT_0_DIMS: [usize; 2] = [4, 8];",
        "pub const OUTPUT_0_LEN: usize = 32;",
        "pub const fn new() -> Mlp",
        "pub fn run(&mut self, x: &[f32; Self::INPUT_0_LEN], y: &mut [f32; Self::OUTPUT_0_LEN]) \
         -> Result<(), i32>",
        "impl Default for Mlp",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // include! rejects inner attributes and inner doc comments.
    assert!(!s.contains("#!["), "{s}");
    assert!(!s.contains("//!"), "{s}");
    rustc_accepts(&s, "mlp");
}

#[test]
fn awkward_names_become_identifiers() {
    let out = fake(
        "my_model_2",
        vec![
            spec("input:0", DType::F32, &[2]),
            spec("type", DType::I64, &[]),
            spec("input.0", DType::Bool, &[3]),
            spec("9lives", DType::F16, &[1, 2]),
        ],
        vec![
            spec("y", DType::U8, &[5]),
            spec("Y", DType::I8, &[0]),
            spec("scratch", DType::F64, &[2, 2]),
        ],
        0,
    );
    let s = wrapper(&out, "weird \"dir\"/m.onnx").unwrap();
    assert!(s.contains("pub struct MyModel2 {"), "{s}");
    assert!(s.contains("scratch: [u8; 1]"), "never zero-sized:\n{s}");
    assert!(s.contains("pub const SCRATCH_BYTES: usize = 0;"), "{s}");
    // `input:0` → `input_0` would shadow the fallback names, so it is `input_0` by index anyway;
    // the keyword, the duplicate and the leading digit fall back to their index.
    assert!(s.contains("input_0: &[f32; Self::INPUT_0_LEN]"), "{s}");
    assert!(s.contains("input_1: &[i64; Self::INPUT_1_LEN]"), "{s}");
    assert!(s.contains("input_2: &[u8; Self::INPUT_2_LEN]"), "{s}");
    assert!(s.contains("input_3: &[u16; Self::INPUT_3_LEN]"), "{s}");
    assert!(s.contains("y: &mut [u8; Self::OUTPUT_0_LEN]"), "{s}");
    assert!(s.contains("output_1: &mut [i8; Self::OUTPUT_1_LEN]"), "{s}");
    assert!(
        s.contains("output_2: &mut [f64; Self::OUTPUT_2_LEN]"),
        "{s}"
    );
    assert!(
        s.contains("pub const INPUT_1_DIMS: [usize; 0] = [];"),
        "{s}"
    );
    assert!(
        s.contains("pub const INPUT_1_LEN: usize = 1;"),
        "a scalar:\n{s}"
    );
    assert!(
        s.contains("[\"input:0\", \"type\", \"input.0\", \"9lives\"]"),
        "{s}"
    );
    rustc_accepts(&s, "awkward");
}

#[test]
fn no_inputs_or_outputs_still_compiles() {
    let out = fake("k", vec![], vec![spec("c", DType::I32, &[3])], 8);
    let s = wrapper(&out, "k.onnx").unwrap();
    assert!(
        s.contains("let inputs: [*const ::core::ffi::c_void; 0] = [];"),
        "{s}"
    );
    assert!(s.contains("pub struct K {"), "{s}");
    rustc_accepts(&s, "noinputs");
}

#[test]
fn string_tensors_are_refused_by_name() {
    let out = fake("m", vec![spec("s", DType::String, &[1])], vec![], 0);
    let e = wrapper(&out, "m.onnx").unwrap_err();
    assert!(e.contains("tensor 's'"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn type_names() {
    assert_eq!(type_name("mlp"), "Mlp");
    assert_eq!(type_name("ternary_mlp"), "TernaryMlp");
    assert_eq!(type_name("_x__y_"), "XY");
    assert_eq!(type_name("m_2d"), "M2d");
    assert_eq!(type_name("_"), "K");
}

#[test]
fn cargo_targets_map_to_profiles() {
    assert_eq!(
        profile_for("x86_64-unknown-linux-gnu").unwrap(),
        "x86_64-unknown-linux-gnu"
    );
    assert_eq!(
        profile_for("aarch64-unknown-linux-gnu").unwrap(),
        "aarch64-unknown-linux-gnu"
    );
    assert_eq!(
        profile_for("riscv64gc-unknown-none-elf").unwrap(),
        "riscv64gc-unknown-none-elf"
    );
    let e = profile_for("x86_64-pc-windows-msvc").unwrap_err();
    assert!(
        e.contains("no target profile for x86_64-pc-windows-msvc"),
        "{e}"
    );
    assert!(
        e.contains("aarch64-unknown-linux-gnu"),
        "lists the profiles: {e}"
    );
    assert!(profile_for("host").is_err());
}

#[test]
fn errors_name_the_model_on_one_line() {
    let dir = std::env::temp_dir().join(format!("shrink-build-err-{}", std::process::id()));
    let e = Build::new()
        .model("/nonexistent/net.onnx")
        .target("x86_64-unknown-linux-gnu")
        .out_dir(&dir)
        .quiet()
        .compile()
        .unwrap_err();
    assert!(e.0.starts_with("/nonexistent/net.onnx"), "{e}");
    assert!(!e.0.contains('\n'), "{e}");
    let e = Build::new()
        .model("/nonexistent/net.onnx")
        .target("sparc-sun-solaris")
        .out_dir(&dir)
        .quiet()
        .compile()
        .unwrap_err();
    assert!(
        e.0.starts_with("/nonexistent/net.onnx: shrink has no target profile"),
        "{e}"
    );
    let e = Build::new()
        .model("m.onnx")
        .name("not an identifier")
        .quiet()
        .compile()
        .unwrap_err();
    assert!(e.0.starts_with("m.onnx: "), "{e}");
    let e = Build::new().quiet().compile().unwrap_err();
    assert!(e.0.contains("no model"), "{e}");
}

#[test]
fn compiles_the_shipped_mlp_into_out_dir() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/models/ternary_mlp/model.onnx"
    );
    let dir = std::env::temp_dir().join(format!("shrink-build-mlp-{}", std::process::id()));
    let a = Build::new()
        .model(model)
        .name("mlp")
        .target("aarch64-unknown-linux-gnu")
        .out_dir(&dir)
        .quiet()
        .compile()
        .unwrap();
    assert_eq!(a.library, dir.join("libmlp.a"));
    assert!(std::fs::read(&a.library).unwrap().starts_with(b"!<arch>\n"));
    let h = std::fs::read_to_string(&a.header).unwrap();
    assert!(h.contains("int32_t mlp_run("), "{h}");
    let w = std::fs::read_to_string(&a.wrapper).unwrap();
    assert!(w.contains("for aarch64-unknown-linux-gnu"), "{w}");
    assert_eq!(a.output.profile.name, "aarch64-unknown-linux-gnu");
    let _ = std::fs::remove_dir_all(&dir);
}
