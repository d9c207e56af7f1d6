//! Generates the prost types for `proto/onnx.proto` with protox (pure Rust), so building shrink
//! never needs a system `protoc`. Bytes fields become `bytes::Bytes` so that tensor data decoded
//! from a memory-mapped model stays a zero-copy slice of the file.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
