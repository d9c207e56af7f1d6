//! Interpreter for the `Pool` family: MaxPool (with the optional Indices output), AveragePool,
//! GlobalAveragePool and GlobalMaxPool, over any number of spatial axes. Window placement comes
//! from the conv module's [`Window`], so padding, dilation and ceil_mode agree with Conv.
//!
//! Max pooling skips NaN (as ONNX Runtime and the ONNX reference do) unless every value in the
//! window is NaN; averages accumulate in f64 and round once.
use super::conv::{Taps, WindowExt};
use super::required;
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_float, dispatch_num};
use shrink_ir::op::Pool;
use shrink_ir::window::Window;
use shrink_ir::{DType, Tensor, ValueType};

pub fn eval(
    op: &Pool,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let x = required(ins, 0)?;
    let window = Window::pool(op, x.dims()).map_err(EvalError::invalid)?;
    match op {
        Pool::MaxPool { storage_order, .. } => {
            let column_major = shrink_ir::rules::pool::column_major(*storage_order)?;
            max_pool(x, &window, outs.len() > 1, column_major, ctx)
        }
        Pool::AveragePool {
            count_include_pad, ..
        } => average_pool(x, &window, *count_include_pad, ctx).map(|t| vec![t]),
        Pool::GlobalMaxPool => max_pool(x, &window, false, false, ctx),
        Pool::GlobalAveragePool => average_pool(x, &window, false, ctx).map(|t| vec![t]),
    }
}

/// Output dims `[N, C, window output...]` for input `x`, checked against the memory cap.
fn out_dims(
    x: &Tensor,
    window: &Window,
    dtype: DType,
    ctx: &EvalCtx,
) -> Result<Vec<usize>, EvalError> {
    let dims: Vec<usize> = x.dims()[..2]
        .iter()
        .chain(&window.output)
        .copied()
        .collect();
    ctx.check_alloc(dtype, &dims)?;
    Ok(dims)
}

/// Flat spatial index `xf` (row-major over `dims`) re-expressed column-major.
fn column_major(xf: usize, dims: &[usize]) -> usize {
    let (mut rest, mut col, mut stride) = (xf, 0, 1);
    let mut coords = vec![0; dims.len()];
    for a in (0..dims.len()).rev() {
        coords[a] = rest % dims[a].max(1);
        rest /= dims[a].max(1);
    }
    for (a, &c) in coords.iter().enumerate() {
        col += c * stride;
        stride *= dims[a];
    }
    col
}

fn max_pool(
    x: &Tensor,
    window: &Window,
    with_indices: bool,
    col_major: bool,
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let dt = x.dtype();
    let dims = out_dims(x, window, dt, ctx)?;
    let planes = x.dims()[0] * x.dims()[1];
    let (in_len, out_len) = (window.input_len(), window.output_len());
    dispatch_num!(dt, T => {
        let xv = x.to_vec::<T>().ok_or_else(|| EvalError::invalid("MaxPool input does not match its dtype"))?;
        let mut y = vec![<T as Num>::min_value(); planes * out_len];
        // A window with no data yields the lowest value and index -1 (ONNX Runtime's convention).
        let mut idx = vec![-1i64; if with_indices { planes * out_len } else { 0 }];
        let mut taps = Taps::default();
        for o in 0..out_len {
            window.taps(o, &mut taps);
            for p in 0..planes {
                let mut best: Option<(T, usize)> = None;
                for &(_, xf) in &taps.inside {
                    let v = xv[p * in_len + xf];
                    let better = match best {
                        None => true,
                        Some((b, _)) => (b.is_nan() && !v.is_nan()) || v > b,
                    };
                    if better {
                        best = Some((v, xf));
                    }
                }
                if let Some((v, xf)) = best {
                    y[p * out_len + o] = v;
                    if with_indices {
                        let spatial = if col_major { column_major(xf, &window.input) } else { xf };
                        idx[p * out_len + o] = (p * in_len + spatial) as i64;
                    }
                }
            }
        }
        let mut outs = vec![Tensor::from_vec(dims.clone(), y)];
        if with_indices {
            outs.push(Tensor::from_vec(dims, idx));
        }
        Ok(outs)
    }, else Err(EvalError::unsupported(format!("MaxPool on {dt}"))))
}

fn average_pool(
    x: &Tensor,
    window: &Window,
    count_include_pad: bool,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let dt = x.dtype();
    let dims = out_dims(x, window, dt, ctx)?;
    let planes = x.dims()[0] * x.dims()[1];
    let (in_len, out_len) = (window.input_len(), window.output_len());
    dispatch_float!(dt, T => {
        let xv = x.to_f64_vec();
        let mut y = vec![T::zero(); planes * out_len];
        let mut taps = Taps::default();
        for o in 0..out_len {
            window.taps(o, &mut taps);
            let count = if count_include_pad { taps.in_padded } else { taps.inside.len() as f64 };
            for p in 0..planes {
                let sum: f64 = taps.inside.iter().map(|&(_, xf)| xv[p * in_len + xf]).sum();
                y[p * out_len + o] = T::from_f64(sum / count);
            }
        }
        Ok(Tensor::from_vec(dims, y))
    }, else Err(EvalError::unsupported(format!("AveragePool on {dt}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shrink_ir::op::AutoPad;

    fn run(op: &Pool, x: &Tensor, outs: usize) -> Result<Vec<Tensor>, EvalError> {
        let tys: Vec<ValueType> = [x.dtype(), DType::I64]
            .into_iter()
            .take(outs)
            .map(|d| ValueType::new(d, None))
            .collect();
        eval(op, &[Some(x)], &tys, &EvalCtx::default())
    }

    fn iota(dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::from_vec(dims.to_vec(), (0..n).map(|i| i as f32).collect())
    }

    fn max_pool(
        kernel: &[i64],
        pads: &[i64],
        strides: &[i64],
        ceil_mode: bool,
        storage_order: i64,
    ) -> Pool {
        Pool::MaxPool {
            auto_pad: AutoPad::NotSet,
            ceil_mode,
            dilations: vec![],
            kernel_shape: kernel.to_vec(),
            pads: pads.to_vec(),
            storage_order,
            strides: strides.to_vec(),
        }
    }

    fn avg_pool(
        kernel: &[i64],
        pads: &[i64],
        strides: &[i64],
        ceil_mode: bool,
        include: bool,
    ) -> Pool {
        Pool::AveragePool {
            auto_pad: AutoPad::NotSet,
            ceil_mode,
            count_include_pad: include,
            dilations: vec![],
            kernel_shape: kernel.to_vec(),
            pads: pads.to_vec(),
            strides: strides.to_vec(),
        }
    }

    #[test]
    fn max_pool_with_indices_in_both_storage_orders() {
        let x = iota(&[1, 1, 3, 3]);
        let y = run(&max_pool(&[2, 2], &[], &[1, 1], false, 0), &x, 2).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![4.0, 5.0, 7.0, 8.0]);
        assert_eq!(y[1].to_vec::<i64>().unwrap(), vec![4, 5, 7, 8]);
        let y = run(&max_pool(&[2, 2], &[], &[1, 1], false, 1), &x, 2).unwrap();
        // Column-major: (h, w) -> w * 3 + h.
        assert_eq!(y[1].to_vec::<i64>().unwrap(), vec![4, 7, 5, 8]);
    }

    #[test]
    fn max_pool_ceil_mode_drops_windows_starting_in_end_padding() {
        let x = iota(&[1, 1, 2, 2]);
        let y = run(&max_pool(&[1, 1], &[], &[2, 2], true, 0), &x, 1).unwrap();
        assert_eq!(y[0].dims(), &[1, 1, 1, 1]);
        let x = iota(&[1, 1, 5]);
        let y = run(&max_pool(&[2], &[], &[2], true, 0), &x, 1).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![1.0, 3.0, 4.0]);
    }

    #[test]
    fn max_pool_skips_nan_and_handles_int8() {
        let x = Tensor::from_vec(vec![1, 1, 3], vec![f32::NAN, 1.0, f32::NAN]);
        let y = run(&max_pool(&[2], &[], &[], false, 0), &x, 1).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
        let x = Tensor::from_vec(vec![1, 1, 3], vec![-5i8, -7, -1]);
        let y = run(&max_pool(&[2], &[1, 0], &[], false, 0), &x, 1).unwrap();
        assert_eq!(
            y[0].to_vec::<u8>()
                .unwrap()
                .iter()
                .map(|&b| b as i8)
                .collect::<Vec<_>>(),
            vec![-5, -5, -1]
        );
    }

    #[test]
    fn max_pool_window_entirely_in_padding() {
        let x = Tensor::from_vec(vec![1, 1, 1], vec![3.0f32]);
        let y = run(&max_pool(&[2], &[2, 0], &[], false, 0), &x, 2).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![f32::NEG_INFINITY, 3.0]);
        assert_eq!(y[1].to_vec::<i64>().unwrap(), vec![-1, 0]);
    }

    #[test]
    fn average_pool_padding_counts() {
        // 1-D [0, 1, 2] with pads [1, 1] and kernel 2.
        let x = iota(&[1, 1, 3]);
        let y = run(&avg_pool(&[2], &[1, 1], &[], false, false), &x, 1).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![0.0, 0.5, 1.5, 2.0]);
        let y = run(&avg_pool(&[2], &[1, 1], &[], false, true), &x, 1).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![0.0, 0.5, 1.5, 1.0]);
        // Ceil mode: [0..4] kernel 3 stride 2 -> windows [0,1,2], [2,3,(past end)]; the part
        // past the padding is never counted, even with count_include_pad.
        let x = iota(&[1, 1, 4]);
        let y = run(&avg_pool(&[3], &[], &[2], true, true), &x, 1).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![1.0, 2.5]);
    }

    #[test]
    fn global_pools_reduce_all_spatial_axes() {
        let x = iota(&[1, 2, 2, 2]);
        let y = run(&Pool::GlobalAveragePool, &x, 1).unwrap();
        assert_eq!(y[0].dims(), &[1, 2, 1, 1]);
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![1.5, 5.5]);
        let y = run(&Pool::GlobalMaxPool, &x, 1).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![3.0, 7.0]);
    }

    #[test]
    fn pools_reject_bad_attributes() {
        let x = iota(&[1, 1, 3]);
        assert!(run(&max_pool(&[], &[], &[], false, 0), &x, 1).is_err());
        assert!(run(&max_pool(&[4], &[], &[], false, 0), &x, 1).is_err());
        assert!(run(&max_pool(&[2], &[], &[0], false, 0), &x, 1).is_err());
        assert!(run(&max_pool(&[2], &[], &[], false, 2), &x, 1).is_err());
        assert!(run(&avg_pool(&[2, 2], &[], &[], false, false), &x, 1).is_err());
    }
}
