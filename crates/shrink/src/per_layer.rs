//! Per-layer timing of a JIT-compiled program (`shrink bench --per-layer`): the program's
//! kernels run in a fixed order, so the time of kernel `i` is the difference between the
//! medians of two programs that run the first `i` and the first `i + 1` kernels. Each prefix is
//! a real program (same buffers, same memory plan), so what is timed is the generated code as it
//! runs in the whole model, caches warmed by the layers before it, with nothing instrumented.
//! It costs one JIT compile per kernel (per split layer, with threads).
use shrink_codegen::Program;
use std::time::Instant;

/// One layer's measured time beside the cost model's prediction.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerTime {
    pub node: String,
    pub op: &'static str,
    pub strategy: &'static str,
    pub predicted_ns: Option<f64>,
    pub measured_ns: f64,
}

/// Median nanoseconds of `iters` calls of `k` on `inputs` (after one warm-up call).
fn median_ns(k: &shrink_jit::Kernel, inputs: &[&[u8]], iters: usize) -> Result<f64, String> {
    let mut outs: Vec<Vec<u8>> = k.outputs().iter().map(|s| vec![0; s.bytes()]).collect();
    let mut scratch = vec![0u8; k.scratch_bytes()];
    let mut call = || {
        let mut views: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        k.run_into(inputs, &mut views, &mut scratch)
            .map_err(|e| e.to_string())
    };
    call()?;
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        call()?;
        times.push(t.elapsed().as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The measured time of every node of `program` (consecutive kernels of one node summed; a
/// difference below zero, which is noise, counts as zero), in program order.
pub fn per_layer(
    program: &Program,
    inputs: &[&[u8]],
    iters: usize,
) -> Result<Vec<LayerTime>, String> {
    let mut layers: Vec<LayerTime> = vec![];
    let mut before = {
        let empty = Program {
            kernels: vec![],
            ..program.clone()
        };
        let k = shrink_jit::Kernel::compile(&empty).map_err(|e| e.to_string())?;
        median_ns(&k, inputs, iters)?
    };
    // A layer split across threads is timed as a whole: prefixes end between steps.
    for step in program.steps() {
        let prefix = Program {
            kernels: program.kernels[..step.end].to_vec(),
            ..program.clone()
        };
        let k = shrink_jit::Kernel::compile(&prefix).map_err(|e| e.to_string())?;
        let now = median_ns(&k, inputs, iters)?;
        let nk = &program.kernels[step.start];
        let spent = (now - before).max(0.0);
        before = now;
        match layers.last_mut() {
            Some(l) if l.node == nk.node_name => {
                l.measured_ns += spent;
                l.predicted_ns = l.predicted_ns.or(nk.predicted_ns);
            }
            _ => layers.push(LayerTime {
                node: nk.node_name.clone(),
                op: nk.op,
                strategy: nk.strategy,
                predicted_ns: nk.predicted_ns,
                measured_ns: spent,
            }),
        }
    }
    Ok(layers)
}
