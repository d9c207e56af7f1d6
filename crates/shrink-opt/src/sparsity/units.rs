//! Deleting dead units of one [`Chain`]: deciding which units are dead, moving constant units
//! into the consumer's bias, and narrowing every tensor and shape along the chain.
use super::chain::{Chain, LinkKind};
use super::{float_scalar, float_tensor, rewire_const, set_dim, slice_indices, slice_is_zero};
use crate::{Ctx, Stats};
use shrink_ir::{Graph, Tensor, ValueType};

/// The constant a unit with all-zero incoming weights carries at the end of the chain, if it is
/// known exactly: the producer's bias pushed through the links by the interpreter.
fn unit_value(g: &Graph, c: &Chain, u: usize, ctx: &Ctx) -> Option<f64> {
    let p = &c.producer;
    let mut x = match &p.bias {
        Some(b) => p.bias_scale * b.at(u).get_f64(0),
        None => 0.0,
    };
    let mut rank = g.node(p.id).outputs[0].shape.as_ref()?.rank();
    for l in &c.links {
        match &l.kind {
            LinkKind::Merge { .. } => {}
            LinkKind::Pool if x == 0.0 => {}
            LinkKind::Pool => return None,
            LinkKind::Elementwise(ops) => {
                let node = g.node(l.id);
                let n_in = g.inputs_of(l.id).len();
                let xt = float_scalar(p.dtype, rank, x)?;
                let vals: Vec<Tensor> = ops.iter().map(|o| o.at(u)).collect();
                let mut ins: Vec<Option<&Tensor>> = vec![None; n_in];
                ins[l.slot] = Some(&xt);
                for (o, t) in ops.iter().zip(&vals) {
                    ins[o.slot] = Some(t);
                }
                let ty = vec![ValueType::fixed(p.dtype, &vec![1; l.rank])];
                let out = shrink_ref::eval_op(&node.op, &ins, &ty, &ctx.eval).ok()?;
                x = out.first()?.get_f64(0);
            }
        }
        rank = l.rank;
    }
    x.is_finite().then_some(x)
}

/// Consumer input features of unit `u`, in increasing order.
fn features(c: &Chain, u: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    (0..c.outer).map(move |o| features_at(c, o, u))
}

/// `delta[j] = factor · Σ_(u, a) a · Σ W2[j, features(u), …]`: what constant units add to each
/// consumer output.
fn bias_delta(c: &Chain, absorbed: &[(usize, f64)], factor: f64) -> Vec<f64> {
    let w = &c.consumer.weight;
    let dims = w.dims();
    let ra = c.consumer.row_axis;
    let stride: usize = dims[ra + 1..].iter().product();
    let mut delta = vec![0.0; dims[ra]];
    for &(u, a) in absorbed {
        for r in features(c, u) {
            for i in slice_indices(dims, c.consumer.col_axis, r) {
                delta[(i / stride) % dims[ra]] += factor * a * w.get_f64(i);
            }
        }
    }
    delta
}

/// Removes dead units of one chain; returns how many.
pub(super) fn prune(g: &mut Graph, c: &Chain, ctx: &Ctx, stats: &mut Stats) -> usize {
    let p = &c.producer;
    let w2 = &c.consumer.weight;
    let mut keep = Vec::new();
    let mut absorbed: Vec<(usize, f64)> = Vec::new();
    for u in 0..c.h {
        if features(c, u).all(|r| slice_is_zero(w2, c.consumer.col_axis, r)) {
            continue;
        }
        if slice_is_zero(&p.weight, p.row_axis, u..u + 1) {
            match unit_value(g, c, u, ctx) {
                Some(0.0) => continue,
                Some(a) if c.consumer.target.is_some() => {
                    absorbed.push((u, a));
                    continue;
                }
                _ => {}
            }
        }
        keep.push(u);
    }
    if keep.len() == c.h || keep.is_empty() {
        return 0;
    }
    if let Some(t) = &c.consumer.target
        && !absorbed.is_empty()
    {
        let delta = bias_delta(c, &absorbed, t.factor);
        let n = delta.len();
        let (dtype, dims, base) = match &t.existing {
            // A per-output bias keeps its shape; a uniform one becomes per output.
            Some(b) if b.len() == n => (b.dtype(), b.dims().to_vec(), b.to_f64_vec()),
            Some(b) => (b.dtype(), vec![n], vec![b.get_f64(0); n]),
            None => (w2.dtype(), vec![n], vec![0.0; n]),
        };
        let vals: Vec<f64> = base.iter().zip(&delta).map(|(b, d)| b + d).collect();
        let Some(nb) = float_tensor(dtype, dims, &vals) else {
            return 0;
        };
        rewire_const(g, t.node, t.slot, nb);
        stats.add("units_folded_into_bias", absorbed.len());
    }
    let k = keep.len();
    // Producer rows and bias entries.
    let w1 = super::take_axis(&p.weight, p.row_axis, &keep);
    let removed_w1 = p.weight.len() - w1.len();
    rewire_const(g, p.id, p.weight_slot, w1);
    if let Some(b) = &p.bias
        && let Some(a) = b.axis
    {
        rewire_const(g, p.id, b.slot, super::take_axis(&b.t, a, &keep));
    }
    set_dim(g, p.id, c.unit_axis, k);
    // Per-unit link parameters and shapes.
    let mut merged = false;
    for l in &c.links {
        match &l.kind {
            LinkKind::Elementwise(ops) => {
                for o in ops {
                    if let Some(a) = o.axis {
                        rewire_const(g, l.id, o.slot, super::take_axis(&o.t, a, &keep));
                    }
                }
            }
            LinkKind::Pool => {}
            LinkKind::Merge { reshape } => {
                merged = true;
                let out = g.node(l.id).outputs[0]
                    .shape
                    .as_ref()
                    .and_then(|s| s.as_fixed());
                if let (true, Some(mut dims)) = (*reshape, out) {
                    dims[1] = c.outer * k * c.block;
                    let shape = dims.iter().map(|&d| d as i64).collect();
                    rewire_const(g, l.id, 1, Tensor::from_vec(vec![2], shape));
                }
            }
        }
        if merged {
            set_dim(g, l.id, 1, c.outer * k * c.block);
        } else {
            set_dim(g, l.id, c.unit_axis, k);
        }
    }
    // Consumer columns.
    let cols: Vec<usize> = (0..c.outer)
        .flat_map(|o| keep.iter().flat_map(move |&u| features_at(c, o, u)))
        .collect();
    let w2n = super::take_axis(w2, c.consumer.col_axis, &cols);
    let removed_w2 = w2.len() - w2n.len();
    rewire_const(g, c.consumer.id, c.consumer.weight_slot, w2n);
    let removed = c.h - k;
    stats.add("dead_units", removed);
    stats.add("weights_removed", removed_w1 + removed_w2);
    removed
}

/// Consumer input features of unit `u` in outer block `o`.
fn features_at(c: &Chain, o: usize, u: usize) -> std::ops::Range<usize> {
    let start = (o * c.h + u) * c.block;
    start..start + c.block
}
