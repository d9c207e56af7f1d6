//! Elementwise families as loop nests: Unary and Binary (numpy broadcasting). Every op here is a
//! scalar function handed to [`map_broadcast`], which writes the one loop nest they all share.
use super::{LowerResult, NodeCtx};
use crate::loops::{Builder, Expr, TensorRef, Ty, broadcast_strides, linear, status};
use shrink_ir::op::{Binary, Ternary, Unary, Variadic};

/// `out[i] = f(a_0[i'], a_1[i''], …)` over `out`'s index space, each input read with numpy
/// broadcasting (in its compute type). Same-shape and single-element inputs share one flat loop.
pub fn map_broadcast(
    b: &mut Builder,
    ins: &[&TensorRef],
    out: &TensorRef,
    f: impl FnOnce(&mut Builder, &[Expr]) -> Expr,
) {
    let flat = ins
        .iter()
        .all(|t| t.dims == out.dims || t.numel() == 1 && out.numel() >= 1);
    if flat {
        b.for_(out.numel(), |b, i| {
            let xs: Vec<Expr> = ins
                .iter()
                .map(|t| {
                    let at = if t.dims == out.dims {
                        i.clone()
                    } else {
                        Expr::idx(0)
                    };
                    b.load(t, at)
                })
                .collect();
            let y = f(b, &xs);
            b.store(out, i, y);
        });
        return;
    }
    let strides: Vec<Vec<usize>> = ins
        .iter()
        .map(|t| broadcast_strides(&t.dims, &out.dims))
        .collect();
    let out_strides = broadcast_strides(&out.dims, &out.dims);
    b.nest(&out.dims, |b, idx| {
        let xs: Vec<Expr> = ins
            .iter()
            .zip(&strides)
            .map(|(t, s)| b.load(t, linear(idx, s)))
            .collect();
        let y = f(b, &xs);
        b.store(out, linear(idx, &out_strides), y);
    });
}

pub fn lower_unary(b: &mut Builder, op: &Unary, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let ty = x.compute_ty();
    if !unary_supported(op) {
        return Err(format!("{} has no native lowering yet", op.name()));
    }
    map_broadcast(b, &[x], y, |b, v| unary_scalar(b, op, v[0].clone()));
    let _ = ty;
    Ok(())
}

/// Whether [`unary_scalar`] implements `op`.
pub fn unary_supported(op: &Unary) -> bool {
    matches!(
        op,
        Unary::Abs
            | Unary::Neg
            | Unary::Sqrt
            | Unary::Reciprocal
            | Unary::Floor
            | Unary::Ceil
            | Unary::Round
            | Unary::Relu
            | Unary::Not
            | Unary::Identity
            | Unary::Sign
            | Unary::LeakyRelu { .. }
    )
}

/// The scalar function of a Unary op applied to `v` (in its compute type). Also used by fused
/// ops that carry an activation (DenseAct). Callers check [`unary_supported`] first.
pub fn unary_scalar(b: &mut Builder, op: &Unary, v: Expr) -> Expr {
    let ty = v.ty;
    let zero = Expr::lit(ty, 0.0);
    let v = b.let_(v);
    match op {
        Unary::Abs => v.abs(),
        Unary::Neg => v.neg(),
        Unary::Sqrt => v.sqrt(),
        Unary::Reciprocal => Expr::lit(ty, 1.0).div(v),
        Unary::Floor => v.floor(),
        Unary::Ceil => v.ceil(),
        Unary::Round => v.nearest(),
        // max(x, 0) with NaN kept: x < 0 ? 0 : x.
        Unary::Relu => Expr::select(v.clone().lt(zero.clone()), zero, v),
        Unary::Not => v.not(),
        Unary::Identity => v,
        Unary::Sign => {
            let one = Expr::lit(ty, 1.0);
            let pos = Expr::select(v.clone().gt(zero.clone()), one.clone(), zero.clone());
            if ty.is_signed() {
                let neg = Expr::lit(ty, -1.0);
                // NaN fails both comparisons and stays NaN.
                let base = if ty.is_float() {
                    Expr::select(v.clone().eq(zero.clone()), zero.clone(), v.clone())
                } else {
                    zero.clone()
                };
                Expr::select(
                    v.clone().lt(zero.clone()),
                    neg,
                    Expr::select(v.gt(zero), one, base),
                )
            } else {
                pos
            }
        }
        Unary::LeakyRelu { alpha } => {
            let a = Expr::lit(ty, *alpha as f64);
            Expr::select(v.clone().lt(zero), v.clone().mul(a), v)
        }
        _ => {
            b.unsupported(format!("{} has no native lowering yet", op.name()));
            v
        }
    }
}

pub fn lower_binary(b: &mut Builder, op: &Binary, cx: &NodeCtx) -> LowerResult {
    let (x, z, y) = (cx.input(0), cx.input(1), cx.output(0));
    let ty = x.compute_ty();
    if matches!(op, Binary::Pow | Binary::PRelu) {
        return Err(format!("{} has no native lowering yet", op.name()));
    }
    if *op == Binary::Div && ty.is_int() {
        // The interpreter refuses a zero divisor; the kernel returns a status instead.
        let zero = Expr::lit(ty, 0.0);
        b.for_(z.numel(), |b, i| {
            let d = b.load(z, i);
            b.fail_if(d.eq(zero), status::DIV_BY_ZERO);
        });
    }
    let op = op.clone();
    map_broadcast(b, &[x, z], y, |_, v| {
        let (p, q) = (v[0].clone(), v[1].clone());
        match op {
            Binary::Add => p.add(q),
            Binary::Sub => p.sub(q),
            Binary::Mul => p.mul(q),
            Binary::Div => p.div(q),
            Binary::And => p.and(q),
            Binary::Or => p.or(q),
            Binary::Equal => p.eq(q),
            Binary::Less => p.lt(q),
            Binary::Greater => p.gt(q),
            Binary::LessOrEqual => p.le(q),
            Binary::GreaterOrEqual => p.ge(q),
            Binary::Pow | Binary::PRelu => unreachable!("checked above"),
        }
    });
    let _ = Ty::Bool;
    Ok(())
}

pub fn lower_variadic(b: &mut Builder, op: &Variadic, cx: &NodeCtx) -> LowerResult {
    let _ = (b, cx);
    Err(format!("{} has no native lowering yet", op.name()))
}

pub fn lower_ternary(b: &mut Builder, op: &Ternary, cx: &NodeCtx) -> LowerResult {
    let _ = (b, cx);
    Err(format!("{} has no native lowering yet", op.name()))
}
