//! Regenerates the models shipped in `examples/models/` (bit-for-bit reproducible):
//! `cargo run --release --example gen_models [OUT_DIR]`.
fn main() -> std::io::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/models").into());
    for m in shrink::demo::all() {
        shrink::demo::write(std::path::Path::new(&out), &m)?;
        println!(
            "wrote {out}/{}/model.onnx ({} bytes) and test_data_set_0",
            m.name,
            m.model.len()
        );
    }
    Ok(())
}
