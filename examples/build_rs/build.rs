//! Compiles the shipped ternary MLP for the target being built: `libmlp.a` and the wrapper
//! `mlp.rs` land in `OUT_DIR`, and the `cargo:` lines that link the library are printed by the
//! builder.
fn main() {
    // The builder registers the model; this file itself must be named too, since any
    // rerun-if-changed line replaces Cargo's default of watching the whole package.
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(e) = shrink::build::Build::new()
        .model("../models/ternary_mlp/model.onnx")
        .name("mlp")
        .compile()
    {
        // One line, naming the model; a build script fails by exiting nonzero.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
