//! The embedding examples, built and run the way a user would, on the stored input of the
//! ternary MLP, their printed outputs checked against its stored outputs (within 1e-5):
//! - `examples/c_static_lib`: `make` (x86-64, native) and `make cross` (AArch64 under qemu), with
//!   the `shrink` binary of this build passed as `SHRINK=` so that make never starts a cargo that
//!   would wait on this test's own build lock;
//! - `examples/build_rs`: `cargo run --release` of the standalone crate, in its own target folder
//!   under `target/` (kept between runs: only the first build of shrink there is slow).
//!
//! gcc, the AArch64 cross gcc, qemu and make are required: when missing the tests fail naming
//! the Debian packages, they never skip.
use shrink::dataset::load_dataset;
use shrink::ir::DType;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/toolchain.rs"]
mod toolchain;
use toolchain::ensure_toolchain;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The stored input of the ternary MLP written raw (as both examples read it), and the stored
/// output as (name, dims, values).
fn stored(dir: &Path) -> (PathBuf, (String, Vec<usize>, Vec<f32>)) {
    let set = repo().join("examples/models/ternary_mlp/test_data_set_0");
    let ds = load_dataset(&set, 1 << 20).unwrap();
    assert_eq!(
        (ds.inputs.len(), ds.outputs.len()),
        (1, 1),
        "{}",
        set.display()
    );
    let input = dir.join("input_0.bin");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&input, ds.inputs[0].1.bytes().as_ref()).unwrap();
    let (name, t) = &ds.outputs[0];
    assert_eq!(t.dtype(), DType::F32);
    let values = t
        .bytes()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (input, (name.clone(), t.dims().to_vec(), values))
}

/// The output block both examples print: `output 'NAME' [D0, D1]:` then rows of numbers.
fn parse_output(stdout: &str) -> (String, Vec<usize>, Vec<f32>) {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("output '"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no output line in:\n{stdout}"));
    let rest = &head["output '".len()..];
    let (name, dims) = rest
        .split_once("' [")
        .unwrap_or_else(|| panic!("bad output line {head:?}"));
    let dims = dims
        .strip_suffix("]:")
        .unwrap_or_else(|| panic!("bad output line {head:?}"));
    let dims: Vec<usize> = dims.split(", ").map(|d| d.parse().unwrap()).collect();
    // Rows are indented; anything after them (make's "Leaving directory") is not data.
    let values = lines
        .take_while(|l| l.starts_with("  "))
        .flat_map(str::split_whitespace)
        .map(|v| {
            v.parse::<f32>()
                .unwrap_or_else(|e| panic!("{v:?}: {e} in\n{stdout}"))
        })
        .collect();
    (name.to_string(), dims, values)
}

fn assert_matches(stdout: &str, want: &(String, Vec<usize>, Vec<f32>), what: &str) {
    let (name, dims, values) = parse_output(stdout);
    assert_eq!((&name, &dims), (&want.0, &want.1), "{what}:\n{stdout}");
    assert_eq!(values.len(), want.2.len(), "{what}:\n{stdout}");
    for (i, (g, w)) in values.iter().zip(&want.2).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5,
            "{what}: element {i} is {g}, the stored output is {w}\n{stdout}"
        );
    }
    assert!(
        stdout.contains("input 'x' [4, 16] from "),
        "{what} read the stored input:\n{stdout}"
    );
}

/// Runs `cmd`, failing with its output when it does not succeed; returns stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn require_make() {
    let ok = Command::new("make")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "make is not installed (Debian package: make)");
}

/// `make TARGET` in examples/c_static_lib, building into `target/examples-c/NAME`.
fn c_static_lib(make_target: &str, profile: &str, name: &str) {
    require_make();
    ensure_toolchain(&shrink::target::find(profile).unwrap());
    let build = repo().join("target/examples-c").join(name);
    let (input, want) = stored(&build);
    let stdout = run(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples/c_static_lib"))
            .arg(make_target)
            .arg(format!("SHRINK={}", env!("CARGO_BIN_EXE_shrink")))
            .arg(format!("BUILD={}", build.display()))
            .arg(format!("INPUT={}", input.display()))
            // Recursive-make variables of an outer make must not change this one.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS"),
        &format!("make {make_target}"),
    );
    assert_matches(&stdout, &want, &format!("c_static_lib {make_target}"));
}

#[test]
fn c_static_lib_native_matches_stored_outputs() {
    c_static_lib("run", "x86_64-unknown-linux-gnu", "native");
}

#[test]
fn c_static_lib_cross_aarch64_matches_stored_outputs() {
    c_static_lib("cross", "aarch64-unknown-linux-gnu", "aarch64");
}

#[test]
fn build_rs_example_matches_stored_outputs() {
    let target_dir = repo().join("target/examples-build-rs");
    let (input, want) = stored(&target_dir.join("data"));
    let stdout = run(
        Command::new(env!("CARGO"))
            .args(["run", "--release", "--quiet", "--manifest-path"])
            .arg(repo().join("examples/build_rs/Cargo.toml"))
            .arg("--")
            .arg(&input)
            .env("CARGO_TARGET_DIR", &target_dir)
            // The outer cargo's settings for this test binary are not the example's.
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        "cargo run examples/build_rs",
    );
    assert_matches(&stdout, &want, "build_rs");
}
