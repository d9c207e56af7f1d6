//! What `cargo package` and `cargo install` make of the workspace: every publishable crate's
//! package holds its sources and no test data or build output, and `cargo install --path
//! crates/shrink` gives a `shrink` that runs with no files beside it.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The crates published to a registry (benches and fuzz are `publish = false`).
const PUBLISHABLE: &[&str] = &[
    "shrink-ir",
    "shrink-onnx",
    "shrink-ref",
    "shrink-opt",
    "shrink-codegen",
    "shrink-jit",
    "shrink-target",
    "shrink-aot",
    "shrink",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo());
    c
}

#[test]
fn packages_hold_sources_and_no_test_data() {
    for krate in PUBLISHABLE {
        let o = cargo()
            .args(["package", "--list", "--allow-dirty", "-p", krate])
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "{krate}: {err}");
        assert!(!err.contains("warning"), "{krate}: {err}");
        let files: Vec<&str> = out.lines().collect();
        assert!(files.contains(&"Cargo.toml"), "{krate}: {files:?}");
        assert!(files.contains(&"README.md"), "{krate}: {files:?}");
        assert!(files.iter().any(|f| f.starts_with("src/")), "{krate}");
        for f in &files {
            let data = [".onnx", ".pb", ".npy", ".a", ".o", ".bin"]
                .iter()
                .any(|ext| f.ends_with(ext));
            assert!(!data && !f.starts_with("target/"), "{krate} packages {f}");
        }
    }
}

/// `cargo install` into a scratch root, reusing the workspace's release artifacts, then the
/// installed binary's `--version` and `check` of the shipped model.
#[test]
fn cargo_install_gives_a_working_shrink() {
    let root = std::env::temp_dir().join(format!("shrink-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let start = Instant::now();
    let o = cargo()
        .args([
            "install",
            "--path",
            "crates/shrink",
            "--locked",
            "--offline",
            "--root",
        ])
        .arg(&root)
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!("cargo install: {:.1} s", start.elapsed().as_secs_f64());
    let bin = root.join("bin").join("shrink");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(
        v.starts_with(&format!(
            "shrink {}\nAOT targets: ",
            env!("CARGO_PKG_VERSION")
        )),
        "{v}"
    );
    let model = repo().join("examples/models/ternary_mlp/model.onnx");
    let o = Command::new(&bin)
        .arg("check")
        .arg(&model)
        .env("SHRINK_QUIET", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.lines().all(|l| l.starts_with("PASS ")) && !out.is_empty(),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
