//! Runs the ternary MLP compiled by `build.rs` through its generated wrapper: `Mlp` owns the
//! aligned scratch, `run` takes fixed-size arrays, so nothing is allocated per call.
//!
//! usage: shrink-build-rs-example [INPUT]  — INPUT is the raw input tensor (little-endian f32);
//! without it a built-in deterministic input is used (the same one as examples/c_static_lib).

include!(concat!(env!("OUT_DIR"), "/mlp.rs"));

fn main() {
    let mut x = [0f32; Mlp::INPUT_0_LEN];
    let source = match std::env::args().nth(1) {
        Some(path) => {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
            if bytes.len() != x.len() * 4 {
                fail(&format!(
                    "{path} must hold exactly {} bytes (input '{}')",
                    x.len() * 4,
                    Mlp::INPUT_NAMES[0]
                ));
            }
            for (v, b) in x.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            format!("from {path}")
        }
        None => {
            for (i, v) in x.iter_mut().enumerate() {
                *v = ((i * 7 % 23) as f32 - 11.0) / 11.0;
            }
            "built in".to_string()
        }
    };
    println!(
        "input '{}' {:?} {source}",
        Mlp::INPUT_NAMES[0],
        Mlp::INPUT_0_DIMS
    );

    let mut mlp = Mlp::new();
    let mut y = [0f32; Mlp::OUTPUT_0_LEN];
    if let Err(status) = mlp.run(&x, &mut y) {
        fail(&format!("mlp_run returned {status}"));
    }

    // The same layout as the C example: one line per row, shortest exact float text.
    println!(
        "output '{}' {:?}:",
        Mlp::OUTPUT_NAMES[0],
        Mlp::OUTPUT_0_DIMS
    );
    let row = Mlp::OUTPUT_0_DIMS.last().copied().unwrap_or(1).max(1);
    for r in y.chunks(row) {
        let cells: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
        println!("  {}", cells.join(" "));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
