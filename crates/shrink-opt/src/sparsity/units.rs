//! Deleting dead units of one [`Chain`]: deciding which units are dead, moving constant units
//! into the consumer's bias, and narrowing every tensor and shape along the chain.
use super::chain::{Branch, Chain, Link, LinkKind, WEIGHT_SLOT};
use super::{float_scalar, rewire_const, set_dim, slice_indices, slice_is_zero};
use crate::{Ctx, Stats};
use shrink_ir::op::{Binary, Conv, Norm, Unary};
use shrink_ir::{DType, Graph, Op, Tensor, ValueType};

/// Evaluates `op` on 1-element tensors of `dtype` and `rank` (inputs in slot order).
fn eval_scalar(
    op: &Op,
    ins: &[Option<&Tensor>],
    dtype: DType,
    rank: usize,
    ctx: &Ctx,
) -> Option<f64> {
    let ty = vec![ValueType::fixed(dtype, &vec![1; rank])];
    let out = shrink_ref::eval_op(op, ins, &ty, &ctx.eval).ok()?;
    Some(out.first()?.get_f64(0))
}

/// What a link outputs for unit `u` whatever (finite) value comes in, if that is fixed: a Mul by
/// a zero parameter, a BatchNormalization with zero scale (its shift), a depthwise conv with a
/// zero kernel (its bias). Pruned networks (BN-scale "network slimming") are full of these.
fn constant_whatever_comes_in(g: &Graph, l: &Link, u: usize) -> Option<f64> {
    match (&l.kind, &g.node(l.id).op) {
        (LinkKind::Elementwise(ops), Op::Binary(Binary::Mul)) => {
            ops.iter().any(|o| o.at(u).get_f64(0) == 0.0).then_some(0.0)
        }
        (LinkKind::Elementwise(ops), Op::Norm(Norm::BatchNormalization { epsilon, .. })) => {
            let param = |slot: usize| {
                ops.iter()
                    .find(|o| o.slot == slot)
                    .map(|o| o.at(u).get_f64(0))
            };
            // (x − mean)/√(var + ε) is finite, so a zero scale leaves exactly the shift.
            let finite = param(4)? + *epsilon as f64 > 0.0;
            (finite && param(1)? == 0.0).then(|| param(2)).flatten()
        }
        (LinkKind::Depthwise(ops), _) => slice_is_zero(&ops[0].t, 0, u..u + 1)
            .then(|| ops.get(1).map_or(0.0, |b| b.at(u).get_f64(0))),
        _ => None,
    }
}

/// Pushes unit `u`'s value `x` (of `rank`; `None` when not constant) through `links`; the result
/// is the constant the unit carries after them, if it is one.
fn through(
    g: &Graph,
    links: &[Link],
    mut x: Option<f64>,
    mut rank: usize,
    u: usize,
    dtype: DType,
    ctx: &Ctx,
) -> Option<f64> {
    for l in links {
        x = match (x, constant_whatever_comes_in(g, l, u)) {
            (_, Some(c)) => Some(c),
            (None, None) => None,
            (Some(x), None) => link_value(g, l, x, rank, u, dtype, ctx),
        };
        rank = l.rank;
    }
    x.filter(|v| v.is_finite())
}

/// What link `l` outputs for unit `u` when the constant `x` comes in, if it is one.
fn link_value(
    g: &Graph,
    l: &Link,
    x: f64,
    rank: usize,
    u: usize,
    dtype: DType,
    ctx: &Ctx,
) -> Option<f64> {
    let xt = float_scalar(dtype, rank, x)?;
    match &l.kind {
        LinkKind::Merge { .. } => Some(x),
        LinkKind::Pool => (x == 0.0).then_some(0.0),
        // A zero channel leaves just the bias (padding adds zeros, so the output is the same
        // everywhere); other constants vary at padded borders.
        LinkKind::Depthwise(ops) => {
            (x == 0.0).then(|| ops.get(1).map_or(0.0, |b| b.at(u).get_f64(0)))
        }
        LinkKind::SelfGate { sigmoid: None } => eval_scalar(
            &g.node(l.id).op,
            &[Some(&xt), Some(&xt)],
            dtype,
            l.rank,
            ctx,
        ),
        LinkKind::SelfGate { sigmoid: Some(_) } => {
            let s = eval_scalar(&Op::Unary(Unary::Sigmoid), &[Some(&xt)], dtype, rank, ctx)?;
            let st = float_scalar(dtype, rank, s)?;
            let mut ins = [Some(&xt), Some(&xt)];
            ins[1 - l.slot] = Some(&st);
            eval_scalar(&g.node(l.id).op, &ins, dtype, l.rank, ctx)
        }
        LinkKind::Elementwise(ops) => {
            let vals: Vec<Tensor> = ops.iter().map(|o| o.at(u)).collect();
            let mut ins: Vec<Option<&Tensor>> = vec![None; g.inputs_of(l.id).len()];
            ins[l.slot] = Some(&xt);
            for (o, t) in ops.iter().zip(&vals) {
                ins[o.slot] = Some(t);
            }
            eval_scalar(&g.node(l.id).op, &ins, dtype, l.rank, ctx)
        }
    }
}

/// The constant a branch carries for unit `u` at its end, if it is one: the producer's bias
/// pushed through the branch's links when its incoming weights are all zero, or whatever a link
/// fixes on the way.
fn branch_value(g: &Graph, b: &Branch, u: usize, ctx: &Ctx) -> Option<f64> {
    let p = &b.producer;
    let x = slice_is_zero(&p.weight, p.row_axis, u..u + 1).then(|| match &p.bias {
        Some(bias) => p.bias_scale * bias.at(u).get_f64(0),
        None => 0.0,
    });
    let rank = g.node(p.id).outputs[0].shape.as_ref()?.rank();
    through(g, &b.links, x, rank, u, p.dtype, ctx)
}

/// The constant unit `u` carries into the consumer, if it is known exactly.
fn unit_value(g: &Graph, c: &Chain, u: usize, ctx: &Ctx) -> Option<f64> {
    let dtype = c.branches[0].producer.dtype;
    let Some(join) = &c.join else {
        return branch_value(g, &c.branches[0], u, ctx);
    };
    let vals: Vec<Option<f64>> = c
        .branches
        .iter()
        .map(|b| branch_value(g, b, u, ctx))
        .collect();
    let op = &g.node(join.id).op;
    // A zero factor zeroes the product whatever the other branch holds.
    let x = if matches!(op, Op::Binary(Binary::Mul)) && vals.contains(&Some(0.0)) {
        Some(0.0)
    } else if let [Some(a), Some(b)] = vals[..] {
        let (at, bt) = (
            float_scalar(dtype, join.rank, a)?,
            float_scalar(dtype, join.rank, b)?,
        );
        eval_scalar(op, &[Some(&at), Some(&bt)], dtype, join.rank, ctx)
    } else {
        None
    };
    through(g, &c.links, x, join.rank, u, dtype, ctx)
}

/// Consumer input features of unit `u` in outer block `o`.
fn features_at(c: &Chain, o: usize, u: usize) -> std::ops::Range<usize> {
    let start = (o * c.h + u) * c.block;
    start..start + c.block
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

/// Narrows the per-unit parameters and shapes of `links` to the kept units. Links start on the
/// unit axis (joins and branches never follow a merge) until a Flatten/Reshape merges it.
fn narrow_links(g: &mut Graph, c: &Chain, links: &[Link], keep: &[usize]) {
    let k = keep.len();
    let mut merged = false;
    for l in links {
        match &l.kind {
            LinkKind::Elementwise(ops) => {
                for o in ops {
                    if let Some(a) = o.axis {
                        rewire_const(g, l.id, o.slot, super::take_axis(&o.t, a, keep));
                    }
                }
            }
            LinkKind::SelfGate { sigmoid } => {
                if let Some(s) = sigmoid {
                    let (axis, n) = if merged {
                        (1, c.outer * k * c.block)
                    } else {
                        (c.unit_axis, k)
                    };
                    set_dim(g, *s, axis, n);
                }
            }
            LinkKind::Pool => {}
            LinkKind::Depthwise(ops) => {
                for o in ops {
                    rewire_const(g, l.id, o.slot, super::take_axis(&o.t, 0, keep));
                }
                if let Op::Conv(Conv::Conv { group, .. }) = &mut g.node_mut(l.id).op {
                    *group = k as i64;
                }
            }
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
}

/// Removes dead units of one chain; returns how many.
pub(super) fn prune(g: &mut Graph, c: &Chain, ctx: &Ctx, stats: &mut Stats) -> usize {
    let w2 = &c.consumer.weight;
    let mut keep = Vec::new();
    let mut absorbed: Vec<(usize, f64)> = Vec::new();
    for u in 0..c.h {
        if features(c, u).all(|r| slice_is_zero(w2, c.consumer.col_axis, r)) {
            continue;
        }
        match unit_value(g, c, u, ctx) {
            Some(0.0) => continue,
            Some(a) if c.consumer.target.is_some() => {
                absorbed.push((u, a));
                continue;
            }
            _ => {}
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
        let Some(nb) = crate::float_tensor(dtype, dims, &vals) else {
            return 0;
        };
        rewire_const(g, t.node, t.slot, nb);
        stats.add("units_folded_into_bias", absorbed.len());
    }
    let k = keep.len();
    let mut removed_weights = 0;
    for b in &c.branches {
        let p = &b.producer;
        let w1 = super::take_axis(&p.weight, p.row_axis, &keep);
        removed_weights += p.weight.len() - w1.len();
        rewire_const(g, p.id, WEIGHT_SLOT, w1);
        if let Some(bias) = &p.bias
            && let Some(a) = bias.axis
        {
            rewire_const(g, p.id, bias.slot, super::take_axis(&bias.t, a, &keep));
        }
        set_dim(g, p.id, c.unit_axis, k);
        narrow_links(g, c, &b.links, &keep);
    }
    if let Some(j) = &c.join {
        set_dim(g, j.id, c.unit_axis, k);
    }
    narrow_links(g, c, &c.links, &keep);
    // Consumer columns.
    let cols: Vec<usize> = (0..c.outer)
        .flat_map(|o| keep.iter().flat_map(move |&u| features_at(c, o, u)))
        .collect();
    let w2n = super::take_axis(w2, c.consumer.col_axis, &cols);
    removed_weights += w2.len() - w2n.len();
    rewire_const(g, c.consumer.id, WEIGHT_SLOT, w2n);
    let removed = c.h - k;
    stats.add("dead_units", removed);
    if c.join.is_some() {
        stats.add("dead_gated_units", removed);
    }
    stats.add("weights_removed", removed_weights);
    removed
}
