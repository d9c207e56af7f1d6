//! Interpreter for the `Reduce` family: ReduceSum, ReduceMean, ReduceMax, ReduceMin,
//! ReduceSumSquare, ReduceL2 (axes from optional input 1) and ArgMax / ArgMin.
//!
//! Float sums accumulate in f64 and round once. Integer sums wrap in the element type, as numpy
//! and ONNX Runtime do; integer means divide the exact sum and truncate toward zero. Reducing an
//! empty set gives the reduction's identity: 0 for sums, -inf / +inf (or the integer type's
//! min / max) for Max / Min, NaN for a float mean.
use super::binary::BroadcastIter;
use super::{int_list, optional, required};
use crate::broadcast::strides;
use crate::num::Num;
use crate::{EvalCtx, EvalError};
use shrink_ir::op::Reduce;
use shrink_ir::rules::reduce::{
    ReduceKind, arg_axis, check_output_dtype, reduced_axes, reduced_dims,
};
use shrink_ir::{DType, Tensor, ValueType};

pub fn eval(
    op: &Reduce,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let x = required(ins, 0)?;
    let (kind, keepdims, noop) = match op {
        Reduce::ArgMax {
            axis,
            keepdims,
            select_last_index,
        } => {
            return Ok(vec![arg_extreme(
                x,
                outs,
                *axis,
                *keepdims,
                *select_last_index,
                true,
            )?]);
        }
        Reduce::ArgMin {
            axis,
            keepdims,
            select_last_index,
        } => {
            return Ok(vec![arg_extreme(
                x,
                outs,
                *axis,
                *keepdims,
                *select_last_index,
                false,
            )?]);
        }
        _ => {
            let kind =
                ReduceKind::of(op).ok_or_else(|| EvalError::invalid("not an axes reduction"))?;
            let (keepdims, noop) = op
                .axes_flags()
                .ok_or_else(|| EvalError::invalid("not an axes reduction"))?;
            (kind, keepdims, noop)
        }
    };
    if let Some(o) = outs.first() {
        check_output_dtype(x.dtype(), o.dtype)?;
    }
    let axes = optional(ins, 1)
        .map(int_list)
        .transpose()?
        .unwrap_or_default();
    let reduced = reduced_axes(x.rank(), &axes, noop)?;
    Ok(vec![reduce(x, kind, &reduced, keepdims, ctx)?])
}

fn reduce(
    x: &Tensor,
    kind: ReduceKind,
    reduced: &[bool],
    keepdims: bool,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let dims = x.dims();
    let kept: Vec<usize> = dims
        .iter()
        .zip(reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    // An empty reduced axis makes the output larger than the input, so the cap applies.
    let n_out = ctx.check_alloc(x.dtype(), &kept)?;
    let count: usize = dims
        .iter()
        .zip(reduced)
        .filter(|(_, r)| **r)
        .map(|(d, _)| *d)
        .product();
    // For each input element, the flat index of the output element it folds into (computed
    // lazily: an index vector would be as large as the input).
    let target = || BroadcastIter::new(&kept, dims);
    let odims = reduced_dims(dims, reduced, keepdims);
    if x.dtype() == DType::Bool && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        return Ok(reduce_bool(x, kind, &target, n_out, odims));
    }
    crate::dispatch_num!(x.dtype(), T => {
        let xs = x.to_vec::<T>().ok_or_else(|| EvalError::invalid("input bytes do not match its dtype"))?;
        let ys = if T::IS_FLOAT {
            reduce_float(&xs, kind, &target, n_out, count)
        } else {
            reduce_int(&xs, kind, &target, n_out, count)?
        };
        Ok(Tensor::from_vec(odims, ys))
    }, else Err(EvalError::unsupported(format!("{kind:?} reduction of {} tensors", x.dtype()))))
}

/// Max / Min on booleans with `false < true`: any / all (false / true for an empty set).
fn reduce_bool(
    x: &Tensor,
    kind: ReduceKind,
    target: &impl Fn() -> BroadcastIter,
    n_out: usize,
    odims: Vec<usize>,
) -> Tensor {
    let is_max = kind == ReduceKind::Max;
    let mut acc = vec![!is_max; n_out];
    for (b, t) in x.bytes().iter().zip(target()) {
        let v = *b != 0;
        acc[t] = if is_max { acc[t] || v } else { acc[t] && v };
    }
    Tensor::from_vec(odims, acc)
}

/// Max / Min fold step; a NaN anywhere in the group wins, as in numpy.
fn extreme<T: Num>(acc: T, v: T, is_max: bool) -> T {
    if acc.is_nan() {
        acc
    } else if v.is_nan() || (is_max && v > acc) || (!is_max && v < acc) {
        v
    } else {
        acc
    }
}

fn reduce_float<T: Num>(
    xs: &[T],
    kind: ReduceKind,
    target: &impl Fn() -> BroadcastIter,
    n_out: usize,
    count: usize,
) -> Vec<T> {
    if let ReduceKind::Max | ReduceKind::Min = kind {
        let is_max = kind == ReduceKind::Max;
        let mut acc = vec![
            if is_max {
                T::min_value()
            } else {
                T::max_value()
            };
            n_out
        ];
        for (&v, t) in xs.iter().zip(target()) {
            acc[t] = extreme(acc[t], v, is_max);
        }
        return acc;
    }
    let mut acc = vec![0.0f64; n_out];
    for (&v, t) in xs.iter().zip(target()) {
        let v = v.to_f64();
        acc[t] += if let ReduceKind::SumSquare | ReduceKind::L2 = kind {
            v * v
        } else {
            v
        };
    }
    acc.into_iter()
        .map(|s| match kind {
            ReduceKind::Mean => T::from_f64(s / count as f64),
            ReduceKind::L2 => T::from_f64(s.sqrt()),
            // Max and Min returned above; listed so a new kind has to say what it finishes with.
            ReduceKind::Sum | ReduceKind::SumSquare | ReduceKind::Max | ReduceKind::Min => {
                T::from_f64(s)
            }
        })
        .collect()
}

/// An integer element's exact value (u64 above 2^63 included).
fn exact<T: Num>(v: T) -> i128 {
    let i = v.to_i64();
    if !T::IS_SIGNED && i < 0 {
        i128::from(i as u64)
    } else {
        i128::from(i)
    }
}

fn reduce_int<T: Num>(
    xs: &[T],
    kind: ReduceKind,
    target: &impl Fn() -> BroadcastIter,
    n_out: usize,
    count: usize,
) -> Result<Vec<T>, EvalError> {
    Ok(match kind {
        ReduceKind::Max | ReduceKind::Min => {
            let is_max = kind == ReduceKind::Max;
            let mut acc = vec![
                if is_max {
                    T::min_value()
                } else {
                    T::max_value()
                };
                n_out
            ];
            for (&v, t) in xs.iter().zip(target()) {
                acc[t] = extreme(acc[t], v, is_max);
            }
            acc
        }
        ReduceKind::Sum | ReduceKind::SumSquare | ReduceKind::L2 => {
            let mut acc = vec![T::zero(); n_out];
            for (&v, t) in xs.iter().zip(target()) {
                acc[t] = acc[t].add(if kind == ReduceKind::Sum { v } else { v.mul(v) });
            }
            if kind == ReduceKind::L2 {
                // Like the spec's reference: the (wrapped) integer sum of squares, then sqrt
                // truncated back to the integer type.
                for s in &mut acc {
                    *s = T::from_f64((exact(*s) as f64).sqrt());
                }
            }
            acc
        }
        ReduceKind::Mean => {
            if count == 0 && n_out > 0 {
                return Err(EvalError::invalid(
                    "ReduceMean of an empty set has no integer value",
                ));
            }
            // Sum exactly (i128 cannot overflow for any tensor that fits in memory), so the
            // mean is within the type's range and exact up to truncation.
            let mut acc = vec![0i128; n_out];
            for (&v, t) in xs.iter().zip(target()) {
                acc[t] += exact(v);
            }
            acc.into_iter()
                .map(|s| T::from_i64((s / count as i128) as i64))
                .collect()
        }
    })
}

/// ArgMax / ArgMin along `axis` -> i64 indices. Ties pick the first index (the last with
/// `select_last_index`); a NaN counts as the extreme, as in numpy.
fn arg_extreme(
    x: &Tensor,
    outs: &[ValueType],
    axis: i64,
    keepdims: bool,
    last: bool,
    is_max: bool,
) -> Result<Tensor, EvalError> {
    let dims = x.dims();
    let axis = arg_axis(
        dims.len(),
        axis,
        outs.first().map_or(DType::I64, |o| o.dtype),
    )?;
    let len = dims[axis];
    if len == 0 {
        return Err(EvalError::invalid(format!(
            "cannot take ArgMax/ArgMin over the empty axis {axis}"
        )));
    }
    let reduced: Vec<bool> = (0..dims.len()).map(|d| d == axis).collect();
    let kept: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(d, &n)| if d == axis { 1 } else { n })
        .collect();
    let n_out: usize = kept.iter().product();
    let target = BroadcastIter::new(&kept, dims);
    let stride = strides(dims)[axis];
    crate::dispatch_num!(x.dtype(), T => {
        let xs = x.to_vec::<T>().ok_or_else(|| EvalError::invalid("input bytes do not match its dtype"))?;
        // Row-major order visits each group's elements in increasing axis index.
        let mut best: Vec<Option<(T, i64)>> = vec![None; n_out];
        for (i, (&v, t)) in xs.iter().zip(target).enumerate() {
            let k = ((i / stride) % len) as i64;
            let better = match best[t] {
                None => true,
                Some((b, _)) if b.is_nan() => last && v.is_nan(),
                Some(_) if v.is_nan() => true,
                Some((b, _)) => {
                    let strictly = if is_max { v > b } else { v < b };
                    strictly || (last && v == b)
                }
            };
            if better {
                best[t] = Some((v, k));
            }
        }
        let idx: Vec<i64> = best.into_iter().map(|b| b.map_or(0, |(_, k)| k)).collect();
        Ok(Tensor::from_vec(reduced_dims(dims, &reduced, keepdims), idx))
    }, else Err(EvalError::unsupported(format!("ArgMax/ArgMin of {} tensors", x.dtype()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Reduce, x: &Tensor, axes: Option<&[i64]>) -> Result<Tensor, EvalError> {
        let axes = axes.map(|a| Tensor::from_vec(vec![a.len()], a.to_vec()));
        let dt = if matches!(op, Reduce::ArgMax { .. } | Reduce::ArgMin { .. }) {
            DType::I64
        } else {
            x.dtype()
        };
        let outs = [ValueType::new(dt, None)];
        Ok(eval(&op, &[Some(x), axes.as_ref()], &outs, &EvalCtx::default())?.remove(0))
    }

    fn sum(keepdims: bool, noop: bool) -> Reduce {
        Reduce::ReduceSum {
            keepdims,
            noop_with_empty_axes: noop,
        }
    }

    #[test]
    fn sum_axes_and_keepdims() {
        let x = Tensor::from_vec(vec![2, 3], vec![1f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = run(sum(true, false), &x, Some(&[1])).unwrap();
        assert_eq!(
            (y.dims(), y.to_vec::<f32>().unwrap()),
            (&[2, 1][..], vec![6.0, 15.0])
        );
        let y = run(sum(false, false), &x, Some(&[-2])).unwrap();
        assert_eq!(
            (y.dims(), y.to_vec::<f32>().unwrap()),
            (&[3][..], vec![5.0, 7.0, 9.0])
        );
        let y = run(sum(false, false), &x, None).unwrap();
        assert_eq!(
            (y.dims(), y.to_vec::<f32>().unwrap()),
            (&[][..], vec![21.0])
        );
        let y = run(sum(true, true), &x, Some(&[])).unwrap();
        assert_eq!(y, x);
        assert!(run(sum(true, false), &x, Some(&[1, -1])).is_err());
        assert!(run(sum(true, false), &x, Some(&[2])).is_err());
    }

    #[test]
    fn noop_applies_the_element_transform() {
        let x = Tensor::from_vec(vec![2], vec![-3f32, 2.0]);
        let op = Reduce::ReduceSumSquare {
            keepdims: true,
            noop_with_empty_axes: true,
        };
        assert_eq!(
            run(op, &x, None).unwrap().to_vec::<f32>().unwrap(),
            vec![9.0, 4.0]
        );
    }

    #[test]
    fn empty_set_identities() {
        let x = Tensor::from_vec(vec![2, 0], Vec::<f32>::new());
        let max = Reduce::ReduceMax {
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let y = run(max, &x, Some(&[1])).unwrap();
        assert_eq!(
            (y.dims(), y.to_vec::<f32>().unwrap()),
            (&[2, 1][..], vec![f32::NEG_INFINITY; 2])
        );
        let y = run(sum(true, false), &x, Some(&[1])).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.0; 2]);
        let xi = Tensor::from_vec(vec![2, 0], Vec::<i32>::new());
        let min = Reduce::ReduceMin {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert_eq!(
            run(min, &xi, Some(&[1])).unwrap().to_vec::<i32>().unwrap(),
            vec![i32::MAX; 2]
        );
        let xb = Tensor::from_vec(vec![0], Vec::<bool>::new());
        let min = Reduce::ReduceMin {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert_eq!(
            run(min, &xb, None).unwrap().to_vec::<bool>().unwrap(),
            vec![true]
        );
    }

    #[test]
    fn integer_semantics() {
        let x = Tensor::from_vec(vec![3], vec![100i8, 100, -7]);
        assert_eq!(
            run(sum(false, false), &x, None)
                .unwrap()
                .to_vec::<i8>()
                .unwrap(),
            vec![-63]
        );
        let mean = Reduce::ReduceMean {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert_eq!(
            run(mean.clone(), &x, None).unwrap().to_vec::<i8>().unwrap(),
            vec![64]
        );
        let x = Tensor::from_vec(vec![2], vec![u64::MAX, u64::MAX - 2]);
        assert_eq!(
            run(mean, &x, None).unwrap().to_vec::<u64>().unwrap(),
            vec![u64::MAX - 1]
        );
    }

    #[test]
    fn max_propagates_nan_and_bool() {
        let x = Tensor::from_vec(vec![3], vec![1f32, f32::NAN, 3.0]);
        let max = Reduce::ReduceMax {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert!(run(max.clone(), &x, None).unwrap().to_vec::<f32>().unwrap()[0].is_nan());
        let b = Tensor::from_vec(vec![2, 2], vec![false, true, false, false]);
        assert_eq!(
            run(max, &b, Some(&[1])).unwrap().to_vec::<bool>().unwrap(),
            vec![true, false]
        );
    }

    #[test]
    fn mean_and_l2() {
        let x = Tensor::from_vec(vec![2, 2], vec![3f64, 4.0, 1.0, 1.0]);
        let l2 = Reduce::ReduceL2 {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert_eq!(
            run(l2, &x, Some(&[1])).unwrap().to_vec::<f64>().unwrap(),
            vec![5.0, 2f64.sqrt()]
        );
        let mean = Reduce::ReduceMean {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert_eq!(
            run(mean, &x, Some(&[0])).unwrap().to_vec::<f64>().unwrap(),
            vec![2.0, 2.5]
        );
    }

    #[test]
    fn argmax_argmin_ties() {
        let x = Tensor::from_vec(vec![2, 3], vec![1f32, 5.0, 5.0, 2.0, 0.0, 2.0]);
        let op = |last| Reduce::ArgMax {
            axis: 1,
            keepdims: false,
            select_last_index: last,
        };
        assert_eq!(
            run(op(false), &x, None).unwrap().to_vec::<i64>().unwrap(),
            vec![1, 0]
        );
        assert_eq!(
            run(op(true), &x, None).unwrap().to_vec::<i64>().unwrap(),
            vec![2, 2]
        );
        let op = Reduce::ArgMin {
            axis: 0,
            keepdims: true,
            select_last_index: false,
        };
        let y = run(op, &x, None).unwrap();
        assert_eq!(
            (y.dims(), y.to_vec::<i64>().unwrap()),
            (&[1, 3][..], vec![0, 1, 1])
        );
        let e = Tensor::from_vec(vec![0, 2], Vec::<f32>::new());
        assert!(
            run(
                Reduce::ArgMax {
                    axis: 0,
                    keepdims: true,
                    select_last_index: false
                },
                &e,
                None
            )
            .is_err()
        );
    }
}
