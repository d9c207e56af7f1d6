//! Ternary detection: a layer weight whose values are exactly {−s, 0, +s} per tensor or per
//! output row (f32, f16, bf16, f64, or integers {−q, 0, q}) is annotated with its packed
//! [`TernaryWeights`]. Values within one ulp of ±s (round-off from exporters) are accepted and the
//! constant is replaced by its exact ternary value. Weights in other forms (int8 × scale via
//! DequantizeLinear or Cast·Mul, in-graph absmean quantizers, transposes) arrive here already
//! folded to plain constants by `const-fold`.
use crate::layers::const_weight_layers;
use crate::{Ctx, OptError, Stats};
use shrink_ir::op::{Conv, Linear};
use shrink_ir::{Graph, Op, TernaryScale, TernaryWeights};
use std::sync::Arc;

pub fn detect_ternary(g: &mut Graph, _ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new("ternary");
    for (id, ws, c) in const_weight_layers(g) {
        stats.add("layers", 1);
        // Integer kernels read weights relative to a zero point; only a zero (or absent) zero
        // point makes the stored integers themselves the ternary digits × q.
        let zp_slot = match g.node(id).op {
            Op::Linear(Linear::MatMulInteger) | Op::Conv(Conv::ConvInteger { .. }) => Some(3),
            Op::Linear(Linear::QLinearMatMul) | Op::Conv(Conv::QLinearConv { .. }) => Some(5),
            _ => None,
        };
        if let Some(s) = zp_slot
            && let Some(zp) = g.inputs_of(id).get(s).copied().flatten()
            && !g
                .const_value(zp)
                .is_some_and(|t| (0..t.len()).all(|i| t.get_f64(i) == 0.0))
        {
            stats.add("nonzero_zero_point", 1);
            continue;
        }
        let dense = g.consts[c.0 as usize].clone();
        let Some(w) = TernaryWeights::detect(&dense, ws.layout, 1) else {
            continue;
        };
        if !w.matches(&dense) {
            let exact = w.to_tensor();
            // Bytes differ either by round-off (near-ternary) or only by the sign of zeros
            // (-0.0 from Round/Clip of small negatives), which is not worth a counter.
            if !exact.try_for_each_f64(|i, v| v == dense.get_f64(i)) {
                stats.add("near_ternary_rounded", 1);
            }
            g.consts[c.0 as usize] = Arc::new(exact);
        }
        stats.add("ternary_layers", 1);
        stats.add(
            if matches!(w.scale, TernaryScale::PerTensor(_)) {
                "per_tensor"
            } else {
                "per_row"
            },
            1,
        );
        stats.add("ternary_params", w.rows * w.cols);
        stats.add("zeros", w.rows * w.cols - w.nonzeros());
        g.ternary.insert(c, Arc::new(w));
    }
    Ok(stats)
}
