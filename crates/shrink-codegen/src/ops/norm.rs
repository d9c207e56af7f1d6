//! The `Norm` family as loop nests: BatchNormalization (inference and training), Layer-, RMS- and
//! InstanceNormalization, Softmax and LogSoftmax.
//!
//! Like the interpreter (`shrink-ref/src/ops/norm.rs`), every op widens its inputs to f64,
//! accumulates and normalizes in f64 and rounds once to the output dtype; statistics are two-pass
//! (mean first, then the mean of squared deviations) exactly as there. All of them share one
//! shape: a group of elements is reduced to a few scalars kept in variables, then every element
//! of the group is rewritten from its own input value. Each element is read before the same
//! index of the output is written, so the lowerings stay correct when the memory plan lets an
//! output reuse its input's block.
use super::{LowerResult, NodeCtx};
use crate::loops::math;
use crate::loops::{Builder, Expr, TensorRef, Ty, broadcast_strides, linear, strides_of};
use shrink_ir::DType;
use shrink_ir::op::Norm;
use shrink_ir::rules::norm::{
    check_channel_param, check_float, check_param_broadcast, check_stash_type, softmax_groups,
    split_nc,
};
use shrink_ir::rules::norm_axis;

pub fn lower(b: &mut Builder, op: &Norm, cx: &NodeCtx) -> LowerResult {
    let x = float(cx.input(0), "X")?;
    match op {
        Norm::BatchNormalization {
            epsilon,
            momentum,
            training_mode,
        } => batch_norm(
            b,
            cx,
            x,
            f64::from(*epsilon),
            f64::from(*momentum),
            *training_mode,
        ),
        Norm::InstanceNormalization { epsilon } => instance_norm(b, cx, x, f64::from(*epsilon)),
        Norm::LayerNormalization {
            axis,
            epsilon,
            stash_type,
        } => {
            check_stash_type(*stash_type)?;
            layer_norm(b, cx, x, *axis, f64::from(*epsilon), false)
        }
        Norm::RMSNormalization {
            axis,
            epsilon,
            stash_type,
        } => {
            check_stash_type(*stash_type)?;
            layer_norm(b, cx, x, *axis, f64::from(*epsilon), true)
        }
        Norm::Softmax { axis, coerce_2d } => softmax(b, cx, x, *axis, *coerce_2d, false),
        Norm::LogSoftmax { axis, coerce_2d } => softmax(b, cx, x, *axis, *coerce_2d, true),
    }
}

/// `t` if its dtype is one the interpreter normalizes (f16, bf16, f32, f64).
pub(super) fn float<'a>(t: &'a TensorRef, what: &str) -> Result<&'a TensorRef, String> {
    check_float(t.dtype, what)?;
    Ok(t)
}

/// Element `i` of `t` widened to f64.
pub(super) fn ld(b: &mut Builder, t: &TensorRef, i: Expr) -> Expr {
    b.load(t, i).cast(Ty::F64)
}

/// Stores the f64 value `v` at `i` of `t`, rounded once to its dtype (f16/bf16 via f32, whose
/// double rounding stays far inside the conformance tolerance).
pub(super) fn st(b: &mut Builder, t: &TensorRef, i: Expr, v: Expr) {
    let v = v.cast(t.compute_ty());
    b.store(t, i, v);
}

fn f64k(v: f64) -> Expr {
    Expr::f64(v)
}

/// Input `i` as a per-channel parameter: exactly `c` float values.
fn channel_param<'a>(
    cx: &'a NodeCtx,
    i: usize,
    c: usize,
    what: &str,
) -> Result<&'a TensorRef, String> {
    let t = float(cx.input(i), what)?;
    check_channel_param(&t.dims, c, what)?;
    Ok(t)
}

/// Σ f(element) over `n` elements, in an f64 accumulator.
fn sum_f64(b: &mut Builder, n: usize, f: impl FnOnce(&mut Builder, Expr) -> Expr) -> Expr {
    sum_nest(b, &[n], |b, i| f(b, i[0].clone()))
}

/// Σ f(index) over the index space `dims`, in an f64 accumulator.
fn sum_nest(
    b: &mut Builder,
    dims: &[usize],
    f: impl FnOnce(&mut Builder, &[Expr]) -> Expr,
) -> Expr {
    let acc = b.mutable(f64k(0.0));
    b.nest(dims, |b, i| {
        let v = f(b, i);
        let s = b.get(acc).add(v);
        b.set(acc, s);
    });
    b.get(acc)
}

/// Mean and biased variance of the elements `at(index)` of `x` over the index space `dims`,
/// two-pass as the interpreter (NaN for an empty group). Both are bound to variables.
fn mean_var(
    b: &mut Builder,
    x: &TensorRef,
    dims: &[usize],
    at: impl Fn(&[Expr]) -> Expr,
) -> (Expr, Expr) {
    let count = f64k(dims.iter().product::<usize>() as f64);
    let sum = sum_nest(b, dims, |b, i| ld(b, x, at(i)));
    let mean = b.let_(sum.div(count.clone()));
    let sq = sum_nest(b, dims, |b, i| {
        let d = ld(b, x, at(i)).sub(mean.clone());
        let d = b.let_(d);
        d.clone().mul(d)
    });
    let var = b.let_(sq.div(count));
    (mean, var)
}

fn batch_norm(
    b: &mut Builder,
    cx: &NodeCtx,
    x: &TensorRef,
    eps: f64,
    momentum: f64,
    training: bool,
) -> LowerResult {
    let (n, c, spatial) = split_nc(&x.dims, "BatchNormalization")?;
    let scale = channel_param(cx, 1, c, "scale")?;
    let bias = channel_param(cx, 2, c, "B")?;
    let in_mean = channel_param(cx, 3, c, "input_mean")?;
    let in_var = channel_param(cx, 4, c, "input_var")?;
    let nout = cx.outputs.len();
    if nout > if training { 3 } else { 1 } {
        return Err(format!(
            "BatchNormalization declares {nout} outputs; training_mode={training} produces {}",
            if training { 3 } else { 1 }
        ));
    }
    let y = cx.output(0);
    // Element s of the (batch bn, channel ch) plane.
    let at =
        move |bn: Expr, ch: Expr, s: Expr| bn.mul_k(c as i64).add(ch).mul_k(spatial as i64).add(s);
    b.for_(c, |b, ch| {
        let (mean, var) = if training {
            // The batch's own statistics over every (bn, s) of the channel.
            mean_var(b, x, &[n, spatial], |j| {
                at(j[0].clone(), ch.clone(), j[1].clone())
            })
        } else {
            let m = ld(b, in_mean, ch.clone());
            let v = ld(b, in_var, ch.clone());
            (b.let_(m), b.let_(v))
        };
        let sc = ld(b, scale, ch.clone());
        let k = b.let_(sc.div(var.clone().add(f64k(eps)).sqrt()));
        let bi = ld(b, bias, ch.clone());
        let bi = b.let_(bi);
        b.for_(n, |b, bn| {
            b.for_(spatial, |b, s| {
                let i = b.let_(at(bn, ch.clone(), s));
                let v = ld(b, x, i.clone())
                    .sub(mean.clone())
                    .mul(k.clone())
                    .add(bi.clone());
                st(b, y, i, v);
            });
        });
        if training {
            // Running statistics blend the inputs with the batch's: r·momentum + cur·(1 − momentum).
            for (k, (run, cur)) in [(in_mean, mean), (in_var, var)].into_iter().enumerate() {
                if let Some(out) = cx.outputs.get(k + 1) {
                    let r = ld(b, run, ch.clone());
                    let v = r.mul(f64k(momentum)).add(cur.mul(f64k(1.0 - momentum)));
                    st(b, out, ch.clone(), v);
                }
            }
        }
    });
    Ok(())
}

fn instance_norm(b: &mut Builder, cx: &NodeCtx, x: &TensorRef, eps: f64) -> LowerResult {
    let (n, c, spatial) = split_nc(&x.dims, "InstanceNormalization")?;
    let scale = channel_param(cx, 1, c, "scale")?;
    let bias = channel_param(cx, 2, c, "B")?;
    let y = cx.output(0);
    b.for_(n, |b, bn| {
        b.for_(c, |b, ch| {
            let base = b.let_(bn.mul_k(c as i64).add(ch.clone()).mul_k(spatial as i64));
            let (mean, var) = mean_var(b, x, &[spatial], |s| base.clone().add(s[0].clone()));
            let sc = ld(b, scale, ch.clone());
            let k = b.let_(sc.div(var.add(f64k(eps)).sqrt()));
            let bi = ld(b, bias, ch);
            let bi = b.let_(bi);
            b.for_(spatial, |b, s| {
                let i = b.let_(base.clone().add(s));
                let v = ld(b, x, i.clone())
                    .sub(mean.clone())
                    .mul(k.clone())
                    .add(bi.clone());
                st(b, y, i, v);
            });
        });
    });
    Ok(())
}

/// `t` (Scale or B) read broadcast (unidirectionally) to `dims`: its strides over `dims`.
fn param_strides(t: &TensorRef, dims: &[usize], what: &str) -> Result<Vec<usize>, String> {
    check_param_broadcast(&t.dims, dims, what)?;
    Ok(broadcast_strides(&t.dims, dims))
}

/// LayerNormalization (`rms` false) or RMSNormalization (`rms` true) over the dims from `axis`
/// on. LayerNorm's optional outputs Mean and InvStdDev keep X's rank with those dims set to 1,
/// so their flat index is the row number.
fn layer_norm(
    b: &mut Builder,
    cx: &NodeCtx,
    x: &TensorRef,
    axis: i64,
    eps: f64,
    rms: bool,
) -> LowerResult {
    let dims = x.dims.clone();
    let axis = norm_axis(axis, dims.len())?;
    let (outer, inner) = dims.split_at(axis);
    let len: usize = inner.iter().product();
    let scale = float(cx.input(1), "Scale")?;
    let scale_s = param_strides(scale, &dims, "Scale")?;
    let bias = match cx.opt_input(2).filter(|_| !rms) {
        Some(t) => Some((float(t, "B")?, param_strides(t, &dims, "B")?)),
        None => None,
    };
    if cx.outputs.len() > if rms { 1 } else { 3 } {
        return Err(format!("{} outputs declared", cx.outputs.len()));
    }
    let y = cx.output(0);
    let (stat_mean, stat_inv) = (cx.outputs.get(1), cx.outputs.get(2));
    let row_strides = strides_of(outer);
    let inner_strides = strides_of(inner);
    b.nest(outer, |b, oidx| {
        let row = b.let_(linear(oidx, &row_strides));
        let base = b.let_(row.clone().mul_k(len as i64));
        // Flat row-relative index j back to X's full index, for the broadcast parameters.
        let full = |j: &[Expr]| -> Vec<Expr> { oidx.iter().chain(j).cloned().collect() };
        let (center, inv) = if rms {
            let sq = sum_f64(b, len, |b, j| {
                let v = ld(b, x, base.clone().add(j));
                let v = b.let_(v);
                v.clone().mul(v)
            });
            let ms = sq.div(f64k(len as f64));
            (None, b.let_(f64k(1.0).div(ms.add(f64k(eps)).sqrt())))
        } else {
            let (mean, var) = mean_var(b, x, &[len], |j| base.clone().add(j[0].clone()));
            let inv = b.let_(f64k(1.0).div(var.add(f64k(eps)).sqrt()));
            (Some(mean), inv)
        };
        b.nest(inner, |b, jidx| {
            let idx = full(jidx);
            let i = b.let_(base.clone().add(linear(jidx, &inner_strides)));
            let mut v = ld(b, x, i.clone());
            if let Some(m) = &center {
                v = v.sub(m.clone());
            }
            let s = ld(b, scale, linear(&idx, &scale_s));
            v = v.mul(inv.clone()).mul(s);
            if let Some((bt, bs)) = &bias {
                v = v.add(ld(b, bt, linear(&idx, bs)));
            }
            st(b, y, i, v);
        });
        if let (Some(out), Some(m)) = (stat_mean, &center) {
            st(b, out, row.clone(), m.clone());
        }
        if let Some(out) = stat_inv {
            st(b, out, row, inv);
        }
    });
    Ok(())
}

/// Softmax or LogSoftmax. Opset >= 13 normalizes along `axis` alone; `coerce_2d` (older opsets)
/// over the whole block of dims from `axis` on. Each group subtracts its max first so exp never
/// overflows; a NaN in the group becomes the max and so propagates to the whole group.
fn softmax(
    b: &mut Builder,
    cx: &NodeCtx,
    x: &TensorRef,
    axis: i64,
    coerce_2d: bool,
    log: bool,
) -> LowerResult {
    // The group (o, i) has its members k at (o * n + k) * inner + i.
    let (outer, n, inner) = softmax_groups(&x.dims, axis, coerce_2d)?;
    let y = cx.output(0);
    // Softmax keeps exp(x - max) in Y between the sum and the division when Y holds it at
    // least as f32 (one exp per element instead of two; the intermediate f32 rounding is ~1 ulp).
    let reuse_y = !log && matches!(y.dtype, DType::F32 | DType::F64);
    b.for_(outer, |b, o| {
        b.for_(inner, |b, i| {
            let base = b.let_(o.mul_k((n * inner) as i64).add(i));
            let at = |k: Expr| base.clone().add(k.mul_k(inner as i64));
            let max = b.mutable(f64k(f64::NEG_INFINITY));
            b.for_(n, |b, k| {
                let v = ld(b, x, at(k));
                let v = b.let_(v);
                let m = b.get(max);
                // v > m || v is NaN (NaN != NaN): NaN sticks once seen.
                let take = v.clone().gt(m.clone()).or(v.clone().ne(v.clone()));
                b.set(max, Expr::select(take, v, m));
            });
            let max = b.get(max);
            let sum = sum_f64(b, n, |b, k| {
                let idx = b.let_(at(k));
                let e = ld(b, x, idx.clone()).sub(max.clone());
                let e = math::exp(b, e);
                if reuse_y {
                    let e = b.let_(e);
                    st(b, y, idx, e.clone());
                    e
                } else {
                    e
                }
            });
            if log {
                let ls = math::log(b, sum);
                let ls = b.let_(ls);
                b.for_(n, |b, k| {
                    let idx = b.let_(at(k));
                    let v = ld(b, x, idx.clone()).sub(max.clone()).sub(ls.clone());
                    st(b, y, idx, v);
                });
            } else {
                let sum = b.let_(sum);
                b.for_(n, |b, k| {
                    let idx = b.let_(at(k));
                    let e = if reuse_y {
                        ld(b, y, idx.clone())
                    } else {
                        let d = ld(b, x, idx.clone()).sub(max.clone());
                        math::exp(b, d)
                    };
                    st(b, y, idx, e.div(sum.clone()));
                });
            }
        });
    });
    Ok(())
}

#[cfg(test)]
#[path = "norm_tests.rs"]
mod tests;
