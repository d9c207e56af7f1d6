//! The `Reduce` family as loop nests: ReduceSum, ReduceMean, ReduceMax, ReduceMin,
//! ReduceSumSquare, ReduceL2 (axes from constant input 1) and ArgMax / ArgMin.
//!
//! All of them are one [`fold`]: the kept index space outside, the reduced index space inside,
//! accumulators with an init, a combine step and a finish. Precision and order are the
//! interpreter's (`shrink-ref/src/ops/reduce.rs`), so results agree bit for bit where it matters:
//! float sums accumulate in f64 in row-major order and round once; integer sums wrap in the
//! element type; integer means divide the exact sum (i64 for ≤ 32-bit types, 128 bits for 64-bit
//! ones) and truncate; empty reductions give the identity (0, ∓inf or the integer type's
//! min/max, NaN for a float mean) and an integer mean of nothing is refused at run time.
use super::{LowerResult, NodeCtx};
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, status, strides_of};
use shrink_ir::DType;
use shrink_ir::op::Reduce;
use shrink_ir::rules::reduce::{
    ReduceKind, arg_axis, check_output_dtype, reduced_axes, reduced_dims,
};

pub fn lower(b: &mut Builder, op: &Reduce, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let kind = match op {
        Reduce::ArgMax {
            axis,
            keepdims,
            select_last_index,
        } => return arg_extreme(b, x, y, *axis, *keepdims, *select_last_index, true),
        Reduce::ArgMin {
            axis,
            keepdims,
            select_last_index,
        } => return arg_extreme(b, x, y, *axis, *keepdims, *select_last_index, false),
        _ => ReduceKind::of(op).ok_or("not an axes reduction")?,
    };
    let (keepdims, noop) = op.axes_flags().expect("axes reductions have flags");
    check_output_dtype(x.dtype, y.dtype)?;
    match cx.opt_input(1) {
        Some(axes) if cx.const_input(1).is_none() && axes.numel() > 0 => {
            runtime_axes(b, x, y, axes, keepdims, |b, reduced| {
                reduce(b, x, y, kind, reduced)
            })
        }
        _ => {
            let reduced = const_reduced_axes(cx, x.rank(), noop)?;
            check_out_dims(x, y, &reduced, keepdims)?;
            reduce(b, x, y, kind, &reduced)
        }
    }
}

/// Reduction axes that arrive at run time (a graph input, as in the ONNX node tests). The
/// static input and output dims leave only a few axis sets possible: the kernel computes the
/// set it was given (refusing out-of-range or repeated axes with [`status::BAD_VALUE`], as the
/// interpreter refuses them), and runs the code generated for that set. Sets that differ only
/// in size-1 axes produce the same elements in the same order and share one copy of the code.
fn runtime_axes(
    b: &mut Builder,
    x: &TensorRef,
    y: &TensorRef,
    axes: &TensorRef,
    keepdims: bool,
    mut body: impl FnMut(&mut Builder, &[bool]) -> LowerResult,
) -> LowerResult {
    let rank = x.rank();
    let n = axes.numel();
    if rank > 16 || !axes.compute_ty().is_int() {
        return Err("the reduction axes (input 1) must be a constant for code generation".into());
    }
    let sets: Vec<u32> = (0u32..1 << rank)
        .filter(|m| m.count_ones() as usize == n)
        .filter(|&m| {
            let reduced: Vec<bool> = (0..rank).map(|d| m >> d & 1 == 1).collect();
            check_out_dims(x, y, &reduced, keepdims).is_ok()
        })
        .collect();
    if sets.is_empty() {
        return Err(format!(
            "no {n} reduction axes take {:?} to {:?}",
            x.dims, y.dims
        ));
    }
    let mask = b.mutable(Expr::idx(0));
    for i in 0..n {
        let a = b.load(axes, Expr::idx(i as i64));
        let a = b.let_(a.cast(Ty::I64));
        let a = b.let_(Expr::select(
            a.clone().lt(Expr::idx(0)),
            a.clone().add_k(rank as i64),
            a,
        ));
        let bad = a
            .clone()
            .lt(Expr::idx(0))
            .or(a.clone().ge(Expr::idx(rank as i64)));
        b.fail_if(bad, status::BAD_VALUE);
        let bit = b.let_(Expr::idx(1).shl(a));
        let m = b.get(mask);
        b.fail_if(
            m.clone().and(bit.clone()).ne(Expr::idx(0)),
            status::BAD_VALUE,
        );
        b.set(mask, m.or(bit));
    }
    let m = b.let_(b.get(mask));
    let known = sets
        .iter()
        .map(|&s| m.clone().eq(Expr::idx(s as i64)))
        .reduce(|p, q| p.or(q))
        .expect("nonempty");
    b.fail_if(known.not(), status::BAD_VALUE);
    let wide: u32 = (0..rank).filter(|&d| x.dims[d] != 1).map(|d| 1 << d).sum();
    let wide_m = b.let_(m.and(Expr::idx(wide as i64)));
    let mut done = vec![];
    for &s in &sets {
        if done.contains(&(s & wide)) {
            continue;
        }
        done.push(s & wide);
        let reduced: Vec<bool> = (0..rank).map(|d| s >> d & 1 == 1).collect();
        let mut res = Ok(());
        b.if_(wide_m.clone().eq(Expr::idx((s & wide) as i64)), |b| {
            res = body(b, &reduced)
        });
        res?;
    }
    Ok(())
}

/// Which axes are reduced: those of constant input 1; empty or absent means all of them, unless
/// `noop_with_empty_axes` — then none.
fn const_reduced_axes(cx: &NodeCtx, rank: usize, noop: bool) -> Result<Vec<bool>, String> {
    let axes = match cx.opt_input(1) {
        // An empty axes tensor needs no value, constant or not.
        None => vec![],
        Some(t) if t.numel() == 0 => vec![],
        Some(_) => {
            let t = cx
                .const_input(1)
                .ok_or("the reduction axes (input 1) must be a constant for code generation")?;
            if !t.dtype().is_int() {
                return Err("the reduction axes must be integers".into());
            }
            t.to_i64_vec()
        }
    };
    Ok(reduced_axes(rank, &axes, noop)?)
}

fn check_out_dims(x: &TensorRef, y: &TensorRef, reduced: &[bool], keepdims: bool) -> LowerResult {
    let dims = reduced_dims(&x.dims, reduced, keepdims);
    if y.dims != dims {
        return Err(format!(
            "output dims {:?} differ from the computed {dims:?}",
            y.dims
        ));
    }
    Ok(())
}

/// The general reduction. For every position of the kept (non-reduced) axes of `x`, in
/// row-major order, accumulators start at `init`; for every element of the reduced axes (in
/// row-major order) `step(b, accs, value, reduced_index)` gives their next values; `finish`
/// turns the final accumulators into the value stored at that position of `y` (its flat
/// index: keepdims does not change the order). Values are loaded in `x`'s compute type and
/// `finish` yields `y`'s compute type.
pub(crate) fn fold(
    b: &mut Builder,
    x: &TensorRef,
    reduced: &[bool],
    y: &TensorRef,
    init: &[Expr],
    step: impl FnOnce(&mut Builder, &[Expr], Expr, &[Expr]) -> Vec<Expr>,
    finish: impl FnOnce(&mut Builder, &[Expr]) -> Expr,
) {
    if y.numel() == 0 {
        return;
    }
    let kept: Vec<usize> = (0..x.rank()).filter(|&d| !reduced[d]).collect();
    let red: Vec<usize> = (0..x.rank()).filter(|&d| reduced[d]).collect();
    let kdims: Vec<usize> = kept.iter().map(|&d| x.dims[d]).collect();
    let rdims: Vec<usize> = red.iter().map(|&d| x.dims[d]).collect();
    let st = strides_of(&x.dims);
    let kst: Vec<usize> = kept.iter().map(|&d| st[d]).collect();
    let rst: Vec<usize> = red.iter().map(|&d| st[d]).collect();
    let ost = strides_of(&kdims);
    b.nest(&kdims, |b, kidx| {
        let accs: Vec<_> = init.iter().map(|e| b.mutable(e.clone())).collect();
        let base = b.let_(linear(kidx, &kst));
        b.nest(&rdims, |b, ridx| {
            let v = b.load(x, base.add(linear(ridx, &rst)));
            let v = b.let_(v);
            let cur: Vec<Expr> = accs.iter().map(|&a| b.get(a)).collect();
            let next = step(b, &cur, v, ridx);
            // Every new value is computed from the old ones before any is assigned.
            let next: Vec<Expr> = next.into_iter().map(|e| b.let_(e)).collect();
            for (&a, e) in accs.iter().zip(next) {
                b.set(a, e);
            }
        });
        let cur: Vec<Expr> = accs.iter().map(|&a| b.get(a)).collect();
        let out = finish(b, &cur);
        b.store(y, linear(kidx, &ost), out);
    });
}

fn reduce(
    b: &mut Builder,
    x: &TensorRef,
    y: &TensorRef,
    kind: ReduceKind,
    reduced: &[bool],
) -> LowerResult {
    let ct = x.compute_ty();
    let count: usize = (0..x.rank())
        .filter(|&d| reduced[d])
        .map(|d| x.dims[d])
        .product();
    let numeric = matches!(
        x.dtype,
        DType::F32
            | DType::F64
            | DType::F16
            | DType::BF16
            | DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I32
            | DType::U32
            | DType::I64
            | DType::U64
    );
    let is_max = kind == ReduceKind::Max;
    if x.dtype == DType::Bool && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        // false < true: Max is any, Min is all.
        fold(
            b,
            x,
            reduced,
            y,
            &[Expr::bool(!is_max)],
            |_, a, v, _| {
                vec![if is_max {
                    a[0].clone().or(v)
                } else {
                    a[0].clone().and(v)
                }]
            },
            |_, a| a[0].clone(),
        );
        return Ok(());
    }
    if !numeric {
        return Err(format!("{kind:?} reduction of {} tensors", x.dtype));
    }
    match kind {
        ReduceKind::Max | ReduceKind::Min => {
            let init = if ct.is_float() {
                Expr::lit(
                    ct,
                    if is_max {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    },
                )
            } else {
                let (lo, hi) = int_limits(ct);
                Expr::int(ct, if is_max { lo } else { hi })
            };
            fold(
                b,
                x,
                reduced,
                y,
                &[init],
                |_, a, v, _| {
                    let acc = a[0].clone();
                    vec![if ct.is_float() {
                        // A NaN already held wins; a new NaN replaces a number (as numpy);
                        // otherwise only a strictly greater (smaller) value replaces it.
                        let better = if is_max {
                            v.clone().gt(acc.clone())
                        } else {
                            v.clone().lt(acc.clone())
                        };
                        let take =
                            better.or(v.clone().ne(v.clone()).and(acc.clone().eq(acc.clone())));
                        Expr::select(take, v, acc)
                    } else if is_max {
                        acc.max(v)
                    } else {
                        acc.min(v)
                    }]
                },
                |_, a| a[0].clone(),
            );
        }
        _ if ct.is_float() => {
            let square = matches!(kind, ReduceKind::SumSquare | ReduceKind::L2);
            fold(
                b,
                x,
                reduced,
                y,
                &[Expr::f64(0.0)],
                |_, a, v, _| {
                    let v = v.cast(Ty::F64);
                    let t = if square { v.clone().mul(v) } else { v };
                    vec![a[0].clone().add(t)]
                },
                |_, a| {
                    let s = a[0].clone();
                    match kind {
                        ReduceKind::Mean => s.div(Expr::f64(count as f64)),
                        ReduceKind::L2 => s.sqrt(),
                        _ => s,
                    }
                    .cast(ct)
                },
            );
        }
        ReduceKind::Sum | ReduceKind::SumSquare | ReduceKind::L2 => {
            fold(
                b,
                x,
                reduced,
                y,
                &[Expr::int(ct, 0)],
                |_, a, v, _| {
                    let t = if kind == ReduceKind::Sum {
                        v
                    } else {
                        v.clone().mul(v)
                    };
                    vec![a[0].clone().add(t)]
                },
                |_, a| {
                    let s = a[0].clone();
                    if kind == ReduceKind::L2 {
                        // The wrapped integer sum of squares, its root truncated back (as the
                        // spec's reference and the interpreter do).
                        s.cast(Ty::F64).sqrt().cast(ct)
                    } else {
                        s
                    }
                },
            );
        }
        ReduceKind::Mean => {
            if count == 0 {
                // The interpreter refuses an integer mean of nothing; shapes are static, so the
                // kernel always refuses.
                b.fail_if(Expr::bool(true), status::BAD_VALUE);
                return Ok(());
            }
            if ct.bytes() < 8 {
                fold(
                    b,
                    x,
                    reduced,
                    y,
                    &[Expr::idx(0)],
                    |_, a, v, _| vec![a[0].clone().add(v.cast(Ty::I64))],
                    |_, a| a[0].clone().div(Expr::idx(count as i64)).cast(ct),
                );
            } else {
                wide_mean(b, x, y, reduced, count);
            }
        }
    }
    Ok(())
}

/// (min, max) of an integer type, as the i64 `Expr::int` takes (bit patterns for u64).
fn int_limits(t: Ty) -> (i64, i64) {
    match t {
        Ty::I8 => (i8::MIN as i64, i8::MAX as i64),
        Ty::I16 => (i16::MIN as i64, i16::MAX as i64),
        Ty::I32 => (i32::MIN as i64, i32::MAX as i64),
        Ty::I64 => (i64::MIN, i64::MAX),
        Ty::U8 => (0, u8::MAX as i64),
        Ty::U16 => (0, u16::MAX as i64),
        Ty::U32 => (0, u32::MAX as i64),
        Ty::U64 => (0, -1),
        Ty::Bool => (0, 1),
        Ty::F32 | Ty::F64 => unreachable!("integer types only"),
    }
}

/// The mean of i64 / u64 elements: the exact sum in 128 bits (low word u64, high word i64),
/// divided by `count` with a 64-step long division and truncated toward zero.
fn wide_mean(b: &mut Builder, x: &TensorRef, y: &TensorRef, reduced: &[bool], count: usize) {
    let ct = x.compute_ty();
    let u = |v: i64| Expr::int(Ty::U64, v);
    fold(
        b,
        x,
        reduced,
        y,
        &[u(0), Expr::idx(0)],
        |b, a, v, _| {
            let (lo, hi) = (a[0].clone(), a[1].clone());
            let vu = b.let_(v.clone().bitcast(Ty::U64));
            let lo2 = b.let_(lo.add(vu.clone()));
            let carry = lo2.clone().lt(vu).cast(Ty::I64);
            // The high word of the sign-extended element: -1 for a negative i64, else 0.
            let ext = if ct == Ty::I64 {
                v.shr(Expr::idx(63))
            } else {
                Expr::idx(0)
            };
            vec![lo2, hi.add(ext).add(carry)]
        },
        |b, a| {
            let (lo, hi) = (a[0].clone(), a[1].clone());
            let neg = b.let_(hi.clone().lt(Expr::idx(0)));
            // |sum| as (mhi, mlo): two's complement negation of the 128-bit value when negative.
            let nlo = b.let_(lo.clone().xor(u(-1)).add(u(1)));
            let nhi = hi
                .clone()
                .xor(Expr::idx(-1))
                .add(nlo.clone().eq(u(0)).cast(Ty::I64));
            let mlo = b.let_(Expr::select(neg.clone(), nlo, lo));
            let mhi = Expr::select(neg.clone(), nhi, hi).bitcast(Ty::U64);
            // |sum| < count · 2^64, so the high word is below count and the quotient fits in
            // 64 bits; the remainder stays below 2·count < 2^64.
            let c = u(count as i64);
            let r = b.mutable(mhi);
            let q = b.mutable(u(0));
            b.for_(64, |b, i| {
                let bit = mlo
                    .clone()
                    .shr(Expr::idx(63).sub(i).cast(Ty::U64))
                    .and(u(1));
                let r2 = b.let_(b.get(r).shl(u(1)).or(bit));
                let ge = b.let_(r2.clone().ge(c.clone()));
                let q2 = b.get(q).shl(u(1)).or(ge.clone().cast(Ty::U64));
                b.set(q, q2);
                b.set(r, Expr::select(ge, r2.clone().sub(c.clone()), r2));
            });
            let q = b.get(q);
            let signed = Expr::select(neg, u(0).sub(q.clone()), q);
            signed.bitcast(ct)
        },
    );
}

/// ArgMax / ArgMin along `axis` as i64 indices. Ties keep the first index (the last with
/// `select_last_index`); a NaN counts as the extreme, the first NaN (last with
/// `select_last_index`) winning, as the interpreter does.
fn arg_extreme(
    b: &mut Builder,
    x: &TensorRef,
    y: &TensorRef,
    axis: i64,
    keepdims: bool,
    last: bool,
    is_max: bool,
) -> LowerResult {
    let a = arg_axis(x.rank(), axis, y.dtype)?;
    let reduced: Vec<bool> = (0..x.rank()).map(|d| d == a).collect();
    check_out_dims(x, y, &reduced, keepdims)?;
    if x.dtype == DType::Bool || Ty::compute(x.dtype).is_none() || x.dtype.is_narrow_float() {
        return Err(format!("ArgMax/ArgMin of {} tensors", x.dtype));
    }
    if x.dims[a] == 0 {
        b.fail_if(Expr::bool(true), status::BAD_VALUE);
        return Ok(());
    }
    let ct = x.compute_ty();
    let last = Expr::bool(last);
    fold(
        b,
        x,
        &reduced,
        y,
        &[Expr::lit(ct, 0.0), Expr::idx(0)],
        |b, acc, v, ridx| {
            let (best, k) = (acc[0].clone(), ridx[0].clone());
            let strictly = if is_max {
                v.clone().gt(best.clone())
            } else {
                v.clone().lt(best.clone())
            };
            let plain = strictly.or(last.clone().and(v.clone().eq(best.clone())));
            let better = if ct.is_float() {
                let vnan = b.let_(v.clone().ne(v.clone()));
                let bnan = best.clone().ne(best.clone());
                Expr::select(bnan, last.and(vnan.clone()), vnan.or(plain))
            } else {
                plain
            };
            // The first element of the axis always starts the search.
            let better = b.let_(k.clone().eq(Expr::idx(0)).or(better));
            vec![
                Expr::select(better.clone(), v, best),
                Expr::select(better, k, acc[1].clone()),
            ]
        },
        |_, acc| acc[1].clone(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::layout::tests::{In, f32s, i64s, run_node};
    use shrink_ir::Tensor;

    fn run(
        op: Reduce,
        x: Tensor,
        axes: Option<(Vec<i64>, bool)>,
        out: (DType, &[usize]),
    ) -> (i32, Vec<u8>) {
        let mut ins = vec![In(x, false)];
        if let Some((a, c)) = axes {
            ins.push(In(Tensor::from_vec(vec![a.len()], a), c));
        }
        let (code, mut outs) = run_node(|b, cx| lower(b, &op, cx), &ins, &[out]).unwrap();
        (code, outs.remove(0))
    }

    fn sum(keepdims: bool) -> Reduce {
        Reduce::ReduceSum {
            keepdims,
            noop_with_empty_axes: false,
        }
    }

    #[test]
    fn sums_with_constant_and_runtime_axes() {
        let x = || Tensor::from_vec(vec![2, 3], vec![1f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for c in [true, false] {
            let (code, y) = run(sum(false), x(), Some((vec![-2], c)), (DType::F32, &[3]));
            assert_eq!((code, f32s(&y)), (0, vec![5.0, 7.0, 9.0]));
            let (code, y) = run(sum(true), x(), Some((vec![1], c)), (DType::F32, &[2, 1]));
            assert_eq!((code, f32s(&y)), (0, vec![6.0, 15.0]));
        }
        // [3, 3] -> [3] could drop either axis: the run-time value decides.
        let sq = || Tensor::from_vec(vec![3, 3], (0..9).map(|v| v as f32).collect::<Vec<_>>());
        let (_, y) = run(sum(false), sq(), Some((vec![0], false)), (DType::F32, &[3]));
        assert_eq!(f32s(&y), vec![9.0, 12.0, 15.0]);
        let (_, y) = run(
            sum(false),
            sq(),
            Some((vec![-1], false)),
            (DType::F32, &[3]),
        );
        assert_eq!(f32s(&y), vec![3.0, 12.0, 21.0]);
        let (code, _) = run(sum(false), sq(), Some((vec![2], false)), (DType::F32, &[3]));
        assert_eq!(code, status::BAD_VALUE);
        // A repeated run-time axis is refused.
        let (code, _) = run(
            sum(false),
            x(),
            Some((vec![0, -2], false)),
            (DType::F32, &[]),
        );
        assert_eq!(code, status::BAD_VALUE);
    }

    #[test]
    fn empty_sets_give_identities() {
        let x = Tensor::from_vec(vec![2, 0], Vec::<f32>::new());
        let max = Reduce::ReduceMax {
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let (_, y) = run(max, x.clone(), Some((vec![1], true)), (DType::F32, &[2, 1]));
        assert_eq!(f32s(&y), vec![f32::NEG_INFINITY; 2]);
        let mean = Reduce::ReduceMean {
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let (_, y) = run(
            mean.clone(),
            x,
            Some((vec![1], true)),
            (DType::F32, &[2, 1]),
        );
        assert!(f32s(&y).iter().all(|v| v.is_nan()));
        let xi = Tensor::from_vec(vec![2, 0], Vec::<i32>::new());
        let (code, _) = run(mean, xi, Some((vec![1], true)), (DType::I32, &[2, 1]));
        assert_eq!(code, status::BAD_VALUE);
    }

    #[test]
    fn integer_sums_wrap_and_means_are_exact() {
        let x = Tensor::from_vec(vec![3], vec![100i8, 100, -7]);
        let (_, y) = run(sum(false), x.clone(), None, (DType::I8, &[]));
        assert_eq!(y, vec![(-63i8) as u8]);
        let mean = Reduce::ReduceMean {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let (_, y) = run(mean.clone(), x, None, (DType::I8, &[]));
        assert_eq!(y, vec![64]);
        let x = Tensor::from_vec(vec![2], vec![u64::MAX, u64::MAX - 2]);
        let (_, y) = run(mean.clone(), x, None, (DType::U64, &[]));
        assert_eq!(y, (u64::MAX - 1).to_le_bytes().to_vec());
        let x = Tensor::from_vec(vec![3], vec![i64::MIN, i64::MIN, 5]);
        let (_, y) = run(mean, x, None, (DType::I64, &[]));
        let want = ((i64::MIN as i128 * 2 + 5) / 3) as i64;
        assert_eq!(i64s(&y), vec![want]);
    }

    #[test]
    fn max_nan_and_argmax_ties() {
        let x = Tensor::from_vec(vec![3], vec![1f32, f32::NAN, 3.0]);
        let max = Reduce::ReduceMax {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let (_, y) = run(max, x, None, (DType::F32, &[]));
        assert!(f32s(&y)[0].is_nan());
        let x = || Tensor::from_vec(vec![2, 3], vec![1f32, 5.0, 5.0, 2.0, f32::NAN, f32::NAN]);
        let op = |last| Reduce::ArgMax {
            axis: 1,
            keepdims: false,
            select_last_index: last,
        };
        assert_eq!(
            i64s(&run(op(false), x(), None, (DType::I64, &[2])).1),
            vec![1, 1]
        );
        assert_eq!(
            i64s(&run(op(true), x(), None, (DType::I64, &[2])).1),
            vec![2, 2]
        );
    }
}
