//! The `Transformer` family as loop nests: RotaryEmbedding (opset 23) and SwiGLU (opset 28).
//! Both compute in f64 and round once to the output dtype, like the interpreter
//! (`shrink-ref/src/ops/transformer.rs`), and check their inputs with the rules it shares
//! ([`shrink_ir::rules::transformer`]).
use super::norm::{float, ld, st};
use super::{LowerResult, NodeCtx};
use crate::loops::{Builder, Expr, TensorRef, Ty, math, status};
use shrink_ir::op::Transformer;
use shrink_ir::rules::transformer::{RopeLayout, check_swiglu};

pub fn lower(b: &mut Builder, op: &Transformer, cx: &NodeCtx) -> LowerResult {
    let x = float(cx.input(0), "X")?;
    let y = cx.output(0);
    if y.dims != x.dims {
        return Err(format!(
            "output shape {:?} differs from input shape {:?}",
            y.dims, x.dims
        ));
    }
    match op {
        Transformer::SwiGLU { alpha } => {
            let g = float(cx.input(1), "B")?;
            check_swiglu(&x.dims, &g.dims)?;
            let alpha = f64::from(*alpha);
            b.for_(x.numel(), |b, i| {
                let a = ld(b, x, i.clone());
                let a = b.let_(a);
                // A / (1 + e^(-alpha·A)) · B, the interpreter's formula: an overflowing exp
                // gives A / inf = ±0 rather than a NaN.
                let e = math::exp(b, a.clone().mul(Expr::f64(-alpha)));
                let g = ld(b, g, i.clone());
                st(b, y, i, a.div(Expr::f64(1.0).add(e)).mul(g));
            });
            Ok(())
        }
        Transformer::RotaryEmbedding {
            interleaved,
            num_heads,
            rotary_embedding_dim,
        } => rotary_embedding(b, cx, x, y, *interleaved, *num_heads, *rotary_embedding_dim),
    }
}

/// Flat offset of the first element of the vector at (b, s, h).
fn offset(lay: &RopeLayout, b: Expr, s: Expr, h: Expr) -> Expr {
    let (seq, heads, hs) = (lay.seq as i64, lay.heads as i64, lay.head_size as i64);
    if lay.packed_heads {
        b.mul_k(seq).add(s).mul_k(heads).add(h).mul_k(hs)
    } else {
        b.mul_k(heads).add(h).mul_k(seq).add(s).mul_k(hs)
    }
}

fn rotary_embedding(
    b: &mut Builder,
    cx: &NodeCtx,
    x: &TensorRef,
    y: &TensorRef,
    interleaved: bool,
    num_heads: Option<i64>,
    rotary_dim: i64,
) -> LowerResult {
    let lay = RopeLayout::of(&x.dims, num_heads)?;
    let rot = lay.rotated(rotary_dim)?;
    let half = rot / 2;
    let cos = float(cx.input(1), "cos_cache")?;
    let sin = float(cx.input(2), "sin_cache")?;
    // position_ids gathers rows of a [max_position, half] cache; without it the cache is
    // [batch, seq, half], one row per (batch, position).
    let ids = cx.opt_input(3);
    lay.check_caches(&cos.dims, &sin.dims, ids.map(|t| &t.dims[..]), half)?;
    if let Some(ids) = ids
        && !ids.compute_ty().is_int()
    {
        return Err(format!("position_ids has dtype {}", ids.dtype));
    }
    // Every id is checked before anything is written, as the interpreter refuses the whole op.
    let max_pos = cos.dims[0] as i64;
    if let Some(ids) = ids {
        b.for_(ids.numel(), |b, i| {
            let p = b.load(ids, i).cast(Ty::I64);
            let p = b.let_(p);
            let bad = p.clone().lt(Expr::idx(0)).or(p.ge(Expr::idx(max_pos)));
            b.fail_if(bad, status::BAD_INDEX);
        });
    }
    let hs = lay.head_size;
    b.for_(lay.batch, |b, bn| {
        b.for_(lay.seq, |b, s| {
            let pos = bn.clone().mul_k(lay.seq as i64).add(s.clone());
            let row = match ids {
                Some(ids) => b.load(ids, pos).cast(Ty::I64),
                None => pos,
            };
            let row = b.let_(row.mul_k(half as i64));
            b.for_(lay.heads, |b, h| {
                let base = b.let_(offset(&lay, bn.clone(), s.clone(), h));
                b.for_(half, |b, i| {
                    // Interleaved pairs are (2i, 2i+1); otherwise (i, i + half) across the halves.
                    let (p, q) = if interleaved {
                        let p = base.clone().add(i.clone().mul_k(2));
                        (p.clone(), p.add_k(1))
                    } else {
                        let p = base.clone().add(i.clone());
                        (p.clone(), p.add_k(half as i64))
                    };
                    let (p, q) = (b.let_(p), b.let_(q));
                    let c = ld(b, cos, row.clone().add(i.clone()));
                    let sn = ld(b, sin, row.clone().add(i));
                    let (c, sn) = (b.let_(c), b.let_(sn));
                    let x1 = ld(b, x, p.clone());
                    let x2 = ld(b, x, q.clone());
                    let (x1, x2) = (b.let_(x1), b.let_(x2));
                    // Both halves of the pair are read before either is written (Y may be X).
                    let yp = c.clone().mul(x1.clone()).sub(sn.clone().mul(x2.clone()));
                    let yq = sn.mul(x1).add(c.mul(x2));
                    let (yp, yq) = (b.let_(yp), b.let_(yq));
                    st(b, y, p, yp);
                    st(b, y, q, yq);
                });
                // The unrotated tail of the head passes through.
                b.for_(hs - rot, |b, j| {
                    let i = b.let_(base.clone().add_k(rot as i64).add(j));
                    let v = ld(b, x, i.clone());
                    st(b, y, i, v);
                });
            });
        });
    });
    Ok(())
}
