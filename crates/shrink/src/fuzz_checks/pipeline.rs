//! The `pipeline` check: import → optimize → compile with the JIT → run, against the interpreter.
//!
//! A model the interpreter runs (on small inputs derived from the bytes, see [`inputs_for`]) is
//! specialized to those inputs like `shrink check` does, optimized, compiled under small caps
//! (stream code, folds, memory) and run; its outputs must be the interpreter's: integers, bools
//! and strings exactly, floats within [`Tolerance::INTERP`] with NaN equal to NaN. Every stage
//! may refuse the model in one line; a panic, a multi-line error or a different output is a
//! defect. The JIT builds with fused multiply-adds (the default); a float difference that the
//! same build without them does not show is their rounding under cancellation, not a defect.
//! One that both builds show is a defect only if some node differs when compiled alone on the
//! interpreter's values of its inputs ([`super::node_by_node`]); otherwise the graph amplified
//! rounding that is within tolerance at every node.
use super::CAP;
use crate::compare::{Tolerance, compare};
use shrink_ir::{DType, Graph, Tensor};

/// Most add/subtract terms a stream layer may emit (about 160 KiB of code): `--max-code`.
const MAX_STREAM_TERMS: usize = 1 << 14;

/// How the JIT's outputs stood to the interpreter's on an input that passed the check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Agreement {
    /// Some stage refused the model in one line, or its inputs are not static: nothing run.
    #[default]
    NotRun,
    /// Every output within tolerance.
    Agrees,
    /// Only the fused build differed; without fused multiply-adds it agrees.
    FusedRounding,
    /// Both builds differed, but every node compiled alone agrees on its own inputs: the graph
    /// amplifies rounding (see [`super::node_by_node`]).
    Amplified,
}

/// Checks `data` as an ONNX model; `Err` is a defect.
pub fn pipeline(data: &[u8]) -> Result<(), String> {
    pipeline_agreement(data).map(|_| ())
}

/// [`pipeline`], saying how the outputs agreed (the regression tests pin it per finding).
pub fn pipeline_agreement(data: &[u8]) -> Result<Agreement, String> {
    let opts = shrink_onnx::ImportOptions { max_memory: CAP };
    let imp = refuse!(
        "import",
        shrink_onnx::load_model_bytes("fuzz", data.to_vec().into(), &opts)
    );
    let imported = imp.graph.clone();
    let mut g = imp.graph;
    refuse!(
        "optimize",
        crate::optimize(&mut g, &crate::OptOptions::verified_within(CAP))
    );
    let Some(ins) = inputs_for(&g, data) else {
        return Ok(Agreement::NotRun);
    };
    let want = refuse!(
        "interpret",
        shrink_ref::run(&g, &ins, &shrink_ref::EvalCtx { max_bytes: CAP })
    );
    let mut j = imported;
    let value_guards = refuse!("specialize", crate::specialize_to_values(&mut j, &ins));
    refuse!(
        "optimize for jit",
        crate::optimize(&mut j, &crate::OptOptions::verified_within(CAP))
    );
    let options = shrink_codegen::CodegenOptions {
        value_guards,
        max_stream_terms: MAX_STREAM_TERMS,
        auto_stream_terms: MAX_STREAM_TERMS,
        ..Default::default()
    };
    let Some(defect) = jit_defect(&j, &options, &ins, &want)? else {
        return Ok(Agreement::Agrees);
    };
    // Fused multiply-adds round each product into its sum once instead of twice. Where a sum
    // cancels (terms of 1e29 adding to 0), that last-bit difference is the whole result, so a
    // fused build may legitimately differ from the interpreter's separate roundings by far more
    // than any relative tolerance of the result. The same program without fusion has the same
    // loops, addresses and order of sums; if it agrees, the difference is rounding, not code.
    let unfused = shrink_codegen::CodegenOptions {
        fma: false,
        ..options.clone()
    };
    let Some(again) = jit_defect(&j, &unfused, &ins, &want)? else {
        return Ok(Agreement::FusedRounding);
    };
    match super::node_by_node::unexplained(&j, &options, &ins) {
        None => Ok(Agreement::Amplified),
        Some(why) => Err(format!(
            "{defect} (and without fused multiply-adds: {again}; node by node: {why})"
        )),
    }
}

/// Compiles `g` with `options` and runs it on `ins`: the first output that differs from the
/// interpreter's `want`, `None` when all agree (or a stage refused in one line).
fn jit_defect(
    g: &Graph,
    options: &shrink_codegen::CodegenOptions,
    ins: &[Tensor],
    want: &[Tensor],
) -> Result<Option<String>, String> {
    let kernel = match crate::compile_jit_with(g, options) {
        Ok(k) => k,
        Err(e) => return super::one_line("jit compile", e).map(|()| None),
    };
    let got = match kernel.run(ins) {
        Ok(v) => v,
        Err(e) => return super::one_line("jit run", e).map(|()| None),
    };
    if got.len() != want.len() {
        return Err(format!(
            "the JIT gave {} outputs, the interpreter {}",
            got.len(),
            want.len()
        ));
    }
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        if let Some(m) = compare(a, b, Tolerance::INTERP).mismatch {
            return Ok(Some(format!(
                "jit output {k} differs from the interpreter: {m}"
            )));
        }
    }
    Ok(None)
}

/// Inputs of every graph input's declared static shape, with small values chosen by a hash of
/// `data` (so a saved input replays the same run): floats from {0, ±1, 0.5, 2, -0.25}, integers
/// and bools 0 or 1 (valid indices and in range of every integer type). `None` when a shape is
/// not static or a tensor would exceed [`CAP`].
pub(super) fn inputs_for(g: &Graph, data: &[u8]) -> Option<Vec<Tensor>> {
    let mut seed = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (seed ^ (seed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (z ^ (z >> 27)) as usize
    };
    let mut out = Vec::with_capacity(g.inputs.len());
    for &id in &g.inputs {
        let ty = &g.node(id).outputs[0];
        let dims = ty.shape.as_ref()?.as_fixed()?;
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        if n.checked_mul(ty.dtype.size().max(1))? > CAP {
            return None;
        }
        if ty.dtype == DType::String {
            out.push(Tensor::from_strings(dims, vec![bytes::Bytes::new(); n]).ok()?);
            continue;
        }
        const FLOATS: [f64; 6] = [0.0, 1.0, -1.0, 0.5, 2.0, -0.25];
        let mut b = Vec::with_capacity(n * ty.dtype.size());
        for _ in 0..n {
            let r = next();
            match ty.dtype {
                DType::F32 => b.extend((FLOATS[r % 6] as f32).to_le_bytes()),
                DType::F64 => b.extend(FLOATS[r % 6].to_le_bytes()),
                DType::F16 => b.extend(half::f16::from_f64(FLOATS[r % 6]).to_le_bytes()),
                DType::BF16 => b.extend(half::bf16::from_f64(FLOATS[r % 6]).to_le_bytes()),
                // Narrow floats: zero bits (a valid value in every one of them).
                d if d.is_narrow_float() => b.push(0),
                d => {
                    let mut v = vec![0u8; d.size()];
                    v[0] = (r & 1) as u8;
                    b.extend(v);
                }
            }
        }
        out.push(Tensor::from_bytes(ty.dtype, dims, b.into()).ok()?);
    }
    Some(out)
}
