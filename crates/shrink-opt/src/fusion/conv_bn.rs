//! Conv + inference BatchNormalization → one Conv. With constant W, B?, γ, β, mean, var and
//! k[m] = γ[m] / sqrt(var[m] + ε): W'[m] = W[m]·k[m], B'[m] = (B[m] − mean[m])·k[m] + β[m],
//! computed in f64 and rounded once to the weight dtype. BN's per-channel affine map applied
//! after the convolution equals scaling output channel m's filter and shifting its bias.
use super::{confined, float_tensor, input, is_plain_float, producer, replace_and_remove};
use shrink_ir::op::{Conv, Norm};
use shrink_ir::{Graph, NodeId, Op, Value};
use std::sync::Arc;

/// Anchored at the BatchNormalization node.
pub(super) fn fuse_at(g: &mut Graph, bn: NodeId) -> Option<&'static str> {
    let Op::Norm(Norm::BatchNormalization {
        epsilon,
        training_mode: false,
        ..
    }) = g.node(bn).op
    else {
        return None;
    };
    // Inference BN has one output; extra (running statistics) outputs must be unused.
    if (1..g.node(bn).outputs.len()).any(|k| g.is_used(Value::new(bn, k as u32))) {
        return None;
    }
    let conv = producer(g, input(g, bn, 0)?)?;
    let Op::Conv(conv_op @ Conv::Conv { .. }) = g.node(conv).op.clone() else {
        return None;
    };
    if !confined(g, &[conv], bn) {
        return None;
    }
    let ins = g.inputs_of(conv);
    let x = ins.first().copied().flatten()?;
    let w = g.const_value(ins.get(1).copied().flatten()?)?.clone();
    let dtype = w.dtype();
    if !is_plain_float(dtype) || w.rank() < 1 || g.node(bn).outputs[0].dtype != dtype {
        return None;
    }
    let m = w.dims()[0];
    let bias = match ins.get(2).copied().flatten() {
        Some(b) => Some(g.const_value(b)?.clone()),
        None => None,
    };
    // Each BN parameter (and the conv bias) must be a constant of exactly M floats; anything else
    // is a malformed graph whose run-time error the unfused form keeps.
    let param = |slot: usize| -> Option<Vec<f64>> {
        let t = g.const_value(input(g, bn, slot)?)?;
        (t.dtype().is_float() && t.rank() <= 1 && t.len() == m).then(|| t.to_f64_vec())
    };
    let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let b: Vec<f64> = match &bias {
        Some(t) if t.dtype() == dtype && t.rank() == 1 && t.len() == m => t.to_f64_vec(),
        Some(_) => return None,
        None => vec![0.0; m],
    };
    let eps = f64::from(epsilon);
    let k: Vec<f64> = (0..m).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    // A non-finite factor (var + ε ≤ 0, infinities) would fold NaNs into the weights; leave it.
    if k.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Elements per output channel (W is [M, C/group, k...]); M = 0 is a degenerate Conv.
    let per_m = w.len().checked_div(m)?.max(1);
    let wv = w.to_f64_vec();
    let w_new: Vec<f64> = wv
        .iter()
        .enumerate()
        .map(|(i, &v)| v * k[i / per_m])
        .collect();
    let b_new: Vec<f64> = (0..m).map(|i| (b[i] - mean[i]) * k[i] + beta[i]).collect();
    let name = g.node(conv).name.clone();
    let (w_t, b_t) = (
        float_tensor(dtype, w.dims().to_vec(), &w_new)?,
        float_tensor(dtype, vec![m], &b_new)?,
    );
    let w_id = g.add_const(&format!("{name}.bn_weight"), Arc::new(w_t));
    let b_id = g.add_const(&format!("{name}.bn_bias"), Arc::new(b_t));
    let out_ty = g.node(bn).outputs[0].clone();
    let fused = g.add_node(
        Op::Conv(conv_op),
        &name,
        &[Some(x), Some(w_id.into()), Some(b_id.into())],
        vec![out_ty],
    );
    replace_and_remove(g, bn, fused.into(), &[conv]);
    Some("conv_bn")
}
