//! Interpreter for the `Norm` family: BatchNormalization, LayerNormalization, RMSNormalization,
//! InstanceNormalization, Softmax and LogSoftmax.
//!
//! Every op reads its inputs widened to f64, computes in f64 and rounds once to the declared
//! output dtype. `stash_type` only asks for *at least* a given compute precision, so f64 satisfies
//! every value of it; the oracle stays one code path instead of one per precision. The dtype,
//! parameter-shape and grouping rules are shared with the code generator
//! ([`shrink_ir::rules::norm`]).
use super::{optional, required};
use crate::broadcast::{broadcast_indices, norm_axis};
use crate::num::Num;
use crate::{EvalCtx, EvalError};
use shrink_ir::op::Norm;
use shrink_ir::rules::norm::{
    check_channel_param, check_float, check_param_broadcast, check_stash_type, softmax_groups,
    split_nc,
};
use shrink_ir::{DType, Tensor, ValueType};

pub fn eval(
    op: &Norm,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    _ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let x = float_input(ins, 0)?;
    let res = match op {
        Norm::BatchNormalization {
            epsilon,
            momentum,
            training_mode,
        } => batch_norm(
            x,
            ins,
            outs,
            f64::from(*epsilon),
            f64::from(*momentum),
            *training_mode,
        )?,
        Norm::InstanceNormalization { epsilon } => {
            vec![instance_norm(x, ins, outs, f64::from(*epsilon))?]
        }
        Norm::LayerNormalization {
            axis,
            epsilon,
            stash_type,
        } => {
            check_stash_type(*stash_type)?;
            layer_norm(x, ins, outs, *axis, f64::from(*epsilon))?
        }
        Norm::RMSNormalization {
            axis,
            epsilon,
            stash_type,
        } => {
            check_stash_type(*stash_type)?;
            vec![rms_norm(x, ins, outs, *axis, f64::from(*epsilon))?]
        }
        Norm::Softmax { axis, coerce_2d } => vec![softmax(x, outs, *axis, *coerce_2d, false)?],
        Norm::LogSoftmax { axis, coerce_2d } => vec![softmax(x, outs, *axis, *coerce_2d, true)?],
    };
    // Optional outputs the node does not declare are dropped; Y is always produced.
    Ok(res.into_iter().take(outs.len().max(1)).collect())
}

/// Builds a tensor of float `dtype` from f64 values, rounding each once (to nearest).
pub(super) fn floats_to_tensor(
    dtype: DType,
    dims: Vec<usize>,
    vals: &[f64],
) -> Result<Tensor, EvalError> {
    crate::dispatch_float!(dtype, T => {
        Ok(Tensor::from_vec(dims, vals.iter().map(|&v| <T as Num>::from_f64(v)).collect::<Vec<T>>()))
    }, else Err(EvalError::unsupported(format!("output dtype {dtype} is not a float type"))))
}

/// Required input `i`, which must have a float dtype (f16, bf16, f32, f64).
pub(super) fn float_input<'a>(
    ins: &[Option<&'a Tensor>],
    i: usize,
) -> Result<&'a Tensor, EvalError> {
    let t = required(ins, i)?;
    check_float(t.dtype(), &format!("input {i}"))?;
    Ok(t)
}

/// The declared dtype of output `k`, or `default` when the node declares fewer outputs.
fn out_dtype(outs: &[ValueType], k: usize, default: DType) -> DType {
    outs.get(k).map_or(default, |v| v.dtype)
}

/// A per-channel parameter (scale, bias, mean, var): exactly `c` float values.
fn channel_param(
    ins: &[Option<&Tensor>],
    i: usize,
    c: usize,
    what: &str,
) -> Result<Vec<f64>, EvalError> {
    let t = float_input(ins, i)?;
    check_channel_param(t.dims(), c, what)?;
    Ok(t.to_f64_vec())
}

/// `t` broadcast (unidirectionally) to `dims`, widened to f64.
fn broadcast_param(t: &Tensor, dims: &[usize], what: &str) -> Result<Vec<f64>, EvalError> {
    check_param_broadcast(t.dims(), dims, what)?;
    let vals = t.to_f64_vec();
    Ok(broadcast_indices(t.dims(), dims)
        .into_iter()
        .map(|i| vals[i])
        .collect())
}

fn batch_norm(
    x: &Tensor,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    eps: f64,
    momentum: f64,
    training: bool,
) -> Result<Vec<Tensor>, EvalError> {
    let (n, c, spatial) = split_nc(x.dims(), "BatchNormalization")?;
    let scale = channel_param(ins, 1, c, "scale")?;
    let bias = channel_param(ins, 2, c, "B")?;
    let in_mean = channel_param(ins, 3, c, "input_mean")?;
    let in_var = channel_param(ins, 4, c, "input_var")?;
    let xs = x.to_f64_vec();
    let at = |b: usize, ch: usize, s: usize| (b * c + ch) * spatial + s;

    // Training mode normalizes with the batch's own statistics (biased variance, as the spec's
    // reference does) and blends them into the running statistics.
    let (mean, var) = if training {
        let count = (n * spatial) as f64;
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        for ch in 0..c {
            let vals = || (0..n).flat_map(move |b| (0..spatial).map(move |s| at(b, ch, s)));
            let m = vals().map(|i| xs[i]).sum::<f64>() / count;
            mean[ch] = m;
            var[ch] = vals().map(|i| (xs[i] - m) * (xs[i] - m)).sum::<f64>() / count;
        }
        (mean, var)
    } else {
        (in_mean.clone(), in_var.clone())
    };

    let mut y = vec![0.0; xs.len()];
    for b in 0..n {
        for ch in 0..c {
            let k = scale[ch] / (var[ch] + eps).sqrt();
            for s in 0..spatial {
                let i = at(b, ch, s);
                y[i] = (xs[i] - mean[ch]) * k + bias[ch];
            }
        }
    }
    let mut res = vec![floats_to_tensor(
        out_dtype(outs, 0, x.dtype()),
        x.dims().to_vec(),
        &y,
    )?];
    if training {
        let blend = |run: &[f64], cur: &[f64]| -> Vec<f64> {
            run.iter()
                .zip(cur)
                .map(|(r, c)| r * momentum + c * (1.0 - momentum))
                .collect()
        };
        let stat_dtype = required(ins, 3)?.dtype();
        res.push(floats_to_tensor(
            out_dtype(outs, 1, stat_dtype),
            vec![c],
            &blend(&in_mean, &mean),
        )?);
        res.push(floats_to_tensor(
            out_dtype(outs, 2, stat_dtype),
            vec![c],
            &blend(&in_var, &var),
        )?);
    }
    Ok(res)
}

fn instance_norm(
    x: &Tensor,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    eps: f64,
) -> Result<Tensor, EvalError> {
    let (n, c, spatial) = split_nc(x.dims(), "InstanceNormalization")?;
    let scale = channel_param(ins, 1, c, "scale")?;
    let bias = channel_param(ins, 2, c, "B")?;
    let xs = x.to_f64_vec();
    let mut y = vec![0.0; xs.len()];
    for b in 0..n {
        for ch in 0..c {
            let start = (b * c + ch) * spatial;
            let (mean, var) = mean_var(&xs[start..start + spatial]);
            let k = scale[ch] / (var + eps).sqrt();
            for i in start..start + spatial {
                y[i] = (xs[i] - mean) * k + bias[ch];
            }
        }
    }
    floats_to_tensor(out_dtype(outs, 0, x.dtype()), x.dims().to_vec(), &y)
}

/// Mean and biased (population) variance of `v`; NaN for an empty slice.
fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var)
}

/// (rows, row length) of `dims` flattened to 2-D at `axis`.
fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize) {
    (dims[..axis].iter().product(), dims[axis..].iter().product())
}

fn layer_norm(
    x: &Tensor,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    axis: i64,
    eps: f64,
) -> Result<Vec<Tensor>, EvalError> {
    let dims = x.dims();
    let axis = norm_axis(axis, dims.len())?;
    let (rows, len) = split_at_axis(dims, axis);
    let scale = broadcast_param(float_input(ins, 1)?, dims, "Scale")?;
    let bias = match optional(ins, 2) {
        Some(_) => Some(broadcast_param(float_input(ins, 2)?, dims, "B")?),
        None => None,
    };
    let xs = x.to_f64_vec();
    let mut y = vec![0.0; xs.len()];
    let mut means = vec![0.0; rows];
    let mut inv_stds = vec![0.0; rows];
    for r in 0..rows {
        let row = r * len..(r + 1) * len;
        let (mean, var) = mean_var(&xs[row.clone()]);
        let inv_std = 1.0 / (var + eps).sqrt();
        for i in row {
            let b = bias.as_ref().map_or(0.0, |b| b[i]);
            y[i] = (xs[i] - mean) * inv_std * scale[i] + b;
        }
        means[r] = mean;
        inv_stds[r] = inv_std;
    }
    // Mean and InvStdDev keep X's rank with the normalized dims set to 1.
    let stat_dims: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(d, &n)| if d < axis { n } else { 1 })
        .collect();
    Ok(vec![
        floats_to_tensor(out_dtype(outs, 0, x.dtype()), dims.to_vec(), &y)?,
        floats_to_tensor(out_dtype(outs, 1, DType::F32), stat_dims.clone(), &means)?,
        floats_to_tensor(out_dtype(outs, 2, DType::F32), stat_dims, &inv_stds)?,
    ])
}

fn rms_norm(
    x: &Tensor,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    axis: i64,
    eps: f64,
) -> Result<Tensor, EvalError> {
    let dims = x.dims();
    let axis = norm_axis(axis, dims.len())?;
    let (rows, len) = split_at_axis(dims, axis);
    let scale = broadcast_param(float_input(ins, 1)?, dims, "scale")?;
    let xs = x.to_f64_vec();
    let mut y = vec![0.0; xs.len()];
    for r in 0..rows {
        let row = r * len..(r + 1) * len;
        let mean_sq = xs[row.clone()].iter().map(|v| v * v).sum::<f64>() / len as f64;
        let inv_rms = 1.0 / (mean_sq + eps).sqrt();
        for i in row {
            y[i] = xs[i] * inv_rms * scale[i];
        }
    }
    floats_to_tensor(out_dtype(outs, 0, x.dtype()), dims.to_vec(), &y)
}

/// Softmax or LogSoftmax. Opset >= 13 normalizes along `axis` alone; `coerce_2d` (older opsets)
/// normalizes over the whole block of dims from `axis` on.
fn softmax(
    x: &Tensor,
    outs: &[ValueType],
    axis: i64,
    coerce_2d: bool,
    log: bool,
) -> Result<Tensor, EvalError> {
    let dims = x.dims();
    // The group (o, i) has its members k at (o * n + k) * inner + i.
    let (outer, n, inner) = softmax_groups(x.dims(), axis, coerce_2d)?;
    let xs = x.to_f64_vec();
    let mut y = vec![0.0; xs.len()];
    for o in 0..outer {
        for i in 0..inner {
            let idx = |k: usize| (o * n + k) * inner + i;
            // Subtracting the max keeps exp() from overflowing; NaN inputs propagate through it.
            let max = (0..n).map(|k| xs[idx(k)]).fold(f64::NEG_INFINITY, |m, v| {
                if v > m || v.is_nan() { v } else { m }
            });
            let sum: f64 = (0..n).map(|k| (xs[idx(k)] - max).exp()).sum();
            for k in 0..n {
                let shifted = xs[idx(k)] - max;
                y[idx(k)] = if log {
                    shifted - sum.ln()
                } else {
                    shifted.exp() / sum
                };
            }
        }
    }
    floats_to_tensor(out_dtype(outs, 0, x.dtype()), dims.to_vec(), &y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims.to_vec(), v.to_vec())
    }

    fn run(op: Norm, ins: &[&Tensor], nouts: usize) -> Vec<Vec<f32>> {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
        let outs = vec![ValueType::new(DType::F32, None); nouts];
        eval(&op, &ins, &outs, &EvalCtx::default())
            .unwrap()
            .iter()
            .map(|t| t.to_vec::<f32>().unwrap())
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn softmax_last_axis_and_log() {
        let x = f32s(&[2, 2], &[0.0, 0.0, 1000.0, 1000.0 + 2f32.ln()]);
        let y = run(
            Norm::Softmax {
                axis: -1,
                coerce_2d: false,
            },
            &[&x],
            1,
        );
        close(&y[0], &[0.5, 0.5, 1.0 / 3.0, 2.0 / 3.0]);
        let y = run(
            Norm::LogSoftmax {
                axis: 1,
                coerce_2d: false,
            },
            &[&x],
            1,
        );
        close(
            &y[0],
            &[-(2f32.ln()), -(2f32.ln()), -(3f32.ln()), (2f32 / 3.0).ln()],
        );
    }

    #[test]
    fn softmax_axis0_vs_coerce_2d() {
        let x = f32s(&[2, 2], &[0.0, 0.0, 0.0, 0.0]);
        let y = run(
            Norm::Softmax {
                axis: 0,
                coerce_2d: false,
            },
            &[&x],
            1,
        );
        close(&y[0], &[0.5; 4]);
        // Flattened to [1, 4]: the whole tensor is one group.
        let y = run(
            Norm::Softmax {
                axis: 0,
                coerce_2d: true,
            },
            &[&x],
            1,
        );
        close(&y[0], &[0.25; 4]);
    }

    #[test]
    fn layer_norm_with_stats() {
        let x = f32s(&[2, 2], &[1.0, 3.0, 2.0, 4.0]);
        let s = f32s(&[2], &[1.0, 2.0]);
        let b = f32s(&[2], &[0.0, 1.0]);
        let op = Norm::LayerNormalization {
            axis: -1,
            epsilon: 0.0,
            stash_type: 1,
        };
        let y = run(op.clone(), &[&x, &s, &b], 3);
        close(&y[0], &[-1.0, 3.0, -1.0, 3.0]);
        close(&y[1], &[2.0, 3.0]);
        close(&y[2], &[1.0, 1.0]);
        assert_eq!(run(op, &[&x, &s], 1).len(), 1);
    }

    #[test]
    fn rms_norm_row() {
        let x = f32s(&[1, 2], &[3.0, 4.0]);
        let s = f32s(&[2], &[1.0, 2.0]);
        let y = run(
            Norm::RMSNormalization {
                axis: -1,
                epsilon: 0.0,
                stash_type: 1,
            },
            &[&x, &s],
            1,
        );
        let rms = 12.5f32.sqrt();
        close(&y[0], &[3.0 / rms, 8.0 / rms]);
    }

    #[test]
    fn batch_norm_inference_and_training() {
        let x = f32s(&[2, 1, 1], &[1.0, 3.0]);
        let one = f32s(&[1], &[1.0]);
        let zero = f32s(&[1], &[0.0]);
        let op = Norm::BatchNormalization {
            epsilon: 0.0,
            momentum: 0.5,
            training_mode: false,
        };
        close(&run(op, &[&x, &one, &zero, &zero, &one], 1)[0], &[1.0, 3.0]);
        let op = Norm::BatchNormalization {
            epsilon: 0.0,
            momentum: 0.5,
            training_mode: true,
        };
        let y = run(op, &[&x, &one, &zero, &zero, &one], 3);
        close(&y[0], &[-1.0, 1.0]);
        close(&y[1], &[1.0]);
        close(&y[2], &[1.0]);
    }

    #[test]
    fn instance_norm_per_channel() {
        let x = f32s(&[1, 2, 2], &[1.0, 3.0, 5.0, 5.0]);
        let s = f32s(&[2], &[2.0, 1.0]);
        let b = f32s(&[2], &[0.0, 7.0]);
        let y = run(
            Norm::InstanceNormalization { epsilon: 0.0 },
            &[&x, &s, &b],
            1,
        );
        close(&y[0][..2], &[-2.0, 2.0]);
        assert!(y[0][2].is_nan());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = f32s(&[2], &[1.0, 2.0]);
        let outs = [ValueType::new(DType::F32, None)];
        let op = Norm::InstanceNormalization { epsilon: 0.0 };
        assert!(eval(&op, &[Some(&x)], &outs, &EvalCtx::default()).is_err());
        let op = Norm::Softmax {
            axis: 3,
            coerce_2d: false,
        };
        assert!(eval(&op, &[Some(&x)], &outs, &EvalCtx::default()).is_err());
        let i = Tensor::from_vec(vec![2], vec![1i32, 2]);
        assert!(eval(&op, &[Some(&i)], &outs, &EvalCtx::default()).is_err());
    }
}
