//! A Rust host that JIT-compiles a model at start-up and calls it in a hot loop.
//!
//! `cargo run --release --example jit_host -- [MODEL.onnx] [ITERATIONS]` (default: the shipped
//! ternary MLP, 10000 iterations). Inputs are the stored test data next to the model when there
//! is some, else zeros. Prints the outputs, the compile time and the latency per call.
use shrink::{CompileOptions, Compiler};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/models/ternary_mlp/model.onnx")
    });
    let iterations: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;

    let t = Instant::now();
    let kernel = Compiler::new(CompileOptions::default()).compile_jit(model.as_path())?;
    let compile = t.elapsed();
    println!(
        "compiled {} in {:.2} ms: {} bytes of machine code, {} bytes of read-only data, {} bytes of scratch",
        model.display(),
        compile.as_secs_f64() * 1e3,
        kernel.stats().code_bytes,
        kernel.stats().rodata_bytes,
        kernel.scratch_bytes()
    );

    // Inputs: the stored test data set when the model has one, else zeros.
    let stored = shrink::dataset::datasets_next_to(&model)
        .first()
        .and_then(|d| shrink::dataset::load_dataset(d, 1 << 30).ok());
    let inputs: Vec<Vec<u8>> = kernel
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, spec)| match &stored {
            Some(set) if set.inputs.len() == kernel.inputs().len() => {
                set.inputs[i].1.bytes().to_vec()
            }
            _ => vec![0u8; spec.bytes()],
        })
        .collect();

    // The hot loop: caller-owned buffers, allocated once, no allocation per call.
    let ins: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = kernel
        .outputs()
        .iter()
        .map(|s| vec![0; s.bytes()])
        .collect();
    let mut scratch = vec![0u8; kernel.scratch_bytes()];
    let t = Instant::now();
    for _ in 0..iterations {
        let mut views: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        kernel.run_into(&ins, &mut views, &mut scratch)?;
    }
    let per_call = t.elapsed().as_secs_f64() / iterations.max(1) as f64;

    for (spec, bytes) in kernel.outputs().iter().zip(&outs) {
        let t =
            shrink::ir::Tensor::from_bytes(spec.dtype, spec.dims.clone(), bytes.clone().into())?;
        let shown: Vec<String> = (0..t.len().min(8))
            .map(|i| format!("{:.5}", t.get_f64(i)))
            .collect();
        println!(
            "output '{}': {}{:?} [{}{}]",
            spec.name,
            spec.dtype,
            spec.dims,
            shown.join(", "),
            if t.len() > 8 { ", ..." } else { "" }
        );
    }
    println!("{iterations} calls: {:.3} µs per call", per_call * 1e6);
    Ok(())
}
