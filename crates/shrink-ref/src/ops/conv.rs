//! Interpreter for the `Conv` family (Conv, ConvInteger, QLinearConv, all N-D with groups), and
//! the taps of a sliding window (which input elements each output position reads) that pooling
//! shares. The window itself — auto_pad, pads, strides, dilations, ceil_mode — is shrink-ir's
//! [`Window`], the one shape inference and the code generator use.
//!
//! Float convolutions accumulate in f64 and round once; the integer ones accumulate in wrapping
//! i32 (the spec lets only 32-bit accumulation overflow) and QLinearConv requantizes like
//! QLinearMatMul.
use super::linear::{int_range, int_tensor, requantize, round_to_scale, scale_values};
use super::{optional, required};
use crate::broadcast::strides;
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_float};
use shrink_ir::op::Conv;
use shrink_ir::window::Window;
use shrink_ir::{DType, Tensor, ValueType};

/// The window of one output position.
#[derive(Default)]
pub(crate) struct Taps {
    /// `(kernel flat index, input flat spatial index)` of every tap that lands inside the input,
    /// row-major over the kernel.
    pub inside: Vec<(usize, usize)>,
    /// How many taps land inside the input or its explicit padding (taps that a ceil-mode
    /// window pushes past the end padding are not counted).
    pub in_padded: f64,
}

/// Window geometry the interpreter needs beyond the shared [`Window`].
pub(crate) trait WindowExt {
    fn taps(&self, out_flat: usize, taps: &mut Taps);
}

impl WindowExt for Window {
    /// Fills `taps` with the window of output position `out_flat` (row-major over `output`).
    /// Works per axis in closed form, so huge kernels or pads cost only the taps that land on data.
    fn taps(&self, out_flat: usize, taps: &mut Taps) {
        let r = self.input.len();
        let (kstr, istr) = (strides(&self.kernel), strides(&self.input));
        // Per axis: first kernel index and input coordinate inside the input, and the run length.
        let mut runs = Vec::with_capacity(r);
        let mut in_padded = 1.0f64;
        let mut rest = out_flat;
        let mut pos = vec![0usize; r];
        for a in (0..r).rev() {
            pos[a] = rest % self.output[a].max(1);
            rest /= self.output[a].max(1);
        }
        for (a, &o) in pos.iter().enumerate() {
            let (d, k, inp) = (
                self.dilations[a] as i128,
                self.kernel[a] as i128,
                self.input[a] as i128,
            );
            let base = o as i128 * self.strides[a] as i128 - self.pad_begin[a] as i128;
            // Kernel indices j with lo <= base + j*d <= hi, clamped to 0..k.
            let first = |lo: i128| (lo - base + d - 1).div_euclid(d).max(0);
            let last = |hi: i128| (hi - base).div_euclid(d).min(k - 1);
            let (j0, j1) = (first(0), last(inp - 1));
            let count = (j1 - j0 + 1).max(0);
            let padded =
                (last(inp + self.pad_end[a] as i128 - 1) - first(-(self.pad_begin[a] as i128)) + 1)
                    .max(0);
            in_padded *= padded as f64;
            // Inside runs are bounded by the input extent, so they fit usize.
            runs.push((j0 as usize, (base + j0 * d).max(0) as usize, count as usize));
        }
        taps.in_padded = in_padded;
        taps.inside.clear();
        if runs.iter().any(|&(_, _, c)| c == 0) {
            return;
        }
        let mut idx = vec![0usize; r];
        loop {
            let (mut kf, mut xf) = (0, 0);
            for a in 0..r {
                let (j0, c0, _) = runs[a];
                kf += (j0 + idx[a]) * kstr[a];
                xf += (c0 + idx[a] * self.dilations[a]) * istr[a];
            }
            taps.inside.push((kf, xf));
            let mut a = r;
            loop {
                if a == 0 {
                    return;
                }
                a -= 1;
                idx[a] += 1;
                if idx[a] < runs[a].2 {
                    break;
                }
                idx[a] = 0;
            }
        }
    }
}

pub fn eval(
    op: &Conv,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let (Conv::Conv { group, .. }
    | Conv::ConvInteger { group, .. }
    | Conv::QLinearConv { group, .. }) = op;
    let attrs = ConvAttrs { op, group: *group };
    let out = match op {
        Conv::Conv { .. } => conv_float(
            &attrs,
            required(ins, 0)?,
            required(ins, 1)?,
            optional(ins, 2),
            ctx,
        )?,
        Conv::ConvInteger { .. } => conv_integer(&attrs, ins, ctx)?,
        Conv::QLinearConv { .. } => qlinear_conv(&attrs, ins, outs, ctx)?,
    };
    Ok(vec![out])
}

struct ConvAttrs<'a> {
    op: &'a Conv,
    group: i64,
}

/// A convolution resolved against its input and weight shapes.
struct ConvShape {
    batch: usize,
    channels: usize,
    filters: usize,
    /// Input channels per group (W's second dim).
    group_channels: usize,
    /// Filters per group.
    group_filters: usize,
    window: Window,
}

impl ConvShape {
    fn new(
        a: &ConvAttrs<'_>,
        x: &[usize],
        w: &[usize],
        out_dtype: DType,
        ctx: &EvalCtx,
    ) -> Result<ConvShape, EvalError> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(EvalError::invalid(format!(
                "conv input {x:?} and weight {w:?} must share a rank >= 3"
            )));
        }
        let (batch, channels, filters, group_channels) = (x[0], x[1], w[0], w[1]);
        let group = usize::try_from(a.group).ok().filter(|&g| g >= 1);
        let Some(group) =
            group.filter(|&g| filters % g == 0 && group_channels.checked_mul(g) == Some(channels))
        else {
            return Err(EvalError::invalid(format!(
                "group {} does not fit input {x:?} and weight {w:?}",
                a.group
            )));
        };
        let window = Window::conv(a.op, x, w).map_err(EvalError::invalid)?;
        let shape = ConvShape {
            batch,
            channels,
            filters,
            group_channels,
            group_filters: filters / group,
            window,
        };
        ctx.check_alloc(out_dtype, &shape.out_dims())?;
        Ok(shape)
    }

    fn out_dims(&self) -> Vec<usize> {
        [self.batch, self.filters]
            .into_iter()
            .chain(self.window.output.iter().copied())
            .collect()
    }

    /// The convolution in `A`'s arithmetic; `bias(m)` starts filter m's sums.
    fn accumulate<A: Num>(&self, x: &[A], w: &[A], bias: impl Fn(usize) -> A) -> Vec<A> {
        let (in_len, out_len) = (self.window.input_len(), self.window.output_len());
        let k_len: usize = self.window.kernel.iter().product();
        let mut out = vec![A::zero(); self.batch * self.filters * out_len];
        let mut taps = Taps::default();
        for o in 0..out_len {
            self.window.taps(o, &mut taps);
            for n in 0..self.batch {
                for m in 0..self.filters {
                    let g = m / self.group_filters;
                    let mut acc = bias(m);
                    for c in 0..self.group_channels {
                        let xb = (n * self.channels + g * self.group_channels + c) * in_len;
                        let wb = (m * self.group_channels + c) * k_len;
                        for &(kf, xf) in &taps.inside {
                            acc = acc.add(x[xb + xf].mul(w[wb + kf]));
                        }
                    }
                    out[(n * self.filters + m) * out_len + o] = acc;
                }
            }
        }
        out
    }
}

/// A bias / per-channel tensor of `m` values, or a single value repeated.
fn per_channel<V: Copy>(vals: Vec<V>, m: usize, what: &str) -> Result<Vec<V>, EvalError> {
    match vals.len() {
        1 => Ok(vec![vals[0]; m]),
        n if n == m => Ok(vals),
        n => Err(EvalError::invalid(format!(
            "{what} has {n} values, expected 1 or {m}"
        ))),
    }
}

fn conv_float(
    a: &ConvAttrs<'_>,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let dt = x.dtype();
    if w.dtype() != dt || b.is_some_and(|b| b.dtype() != dt) {
        return Err(EvalError::invalid("Conv inputs must share one dtype"));
    }
    let shape = ConvShape::new(a, x.dims(), w.dims(), dt, ctx)?;
    let bias = match b {
        Some(b) if b.rank() != 1 || b.len() != shape.filters => {
            return Err(EvalError::invalid(format!(
                "Conv bias {:?} must have {} values",
                b.dims(),
                shape.filters
            )));
        }
        Some(b) => b.to_f64_vec(),
        None => vec![0.0; shape.filters],
    };
    dispatch_float!(dt, T => {
        let out = shape.accumulate(&x.to_f64_vec(), &w.to_f64_vec(), |m| bias[m]);
        Ok(Tensor::from_vec(shape.out_dims(), out.into_iter().map(T::from_f64).collect::<Vec<T>>()))
    }, else Err(EvalError::unsupported(format!("Conv on {dt}"))))
}

/// The elements of a u8/i8 tensor as i32.
fn quantized(t: &Tensor, what: &str) -> Result<Vec<i32>, EvalError> {
    if !matches!(t.dtype(), DType::U8 | DType::I8) {
        return Err(EvalError::unsupported(format!(
            "{what} of type {}",
            t.dtype()
        )));
    }
    Ok((0..t.len()).map(|i| t.get_i64(i) as i32).collect())
}

/// A zero point of `x` (scalar, or one per filter when `per_filter` > 1), defaulting to 0.
fn zero_points(
    zp: Option<&Tensor>,
    of: &Tensor,
    per_filter: usize,
    what: &str,
) -> Result<Vec<i32>, EvalError> {
    let Some(zp) = zp else {
        return Ok(vec![0; per_filter]);
    };
    if zp.dtype() != of.dtype() {
        return Err(EvalError::invalid(format!(
            "{what} of type {} for a {} tensor",
            zp.dtype(),
            of.dtype()
        )));
    }
    per_channel(quantized(zp, what)?, per_filter, what)
}

/// `x - x_zp` and `w - w_zp[m]` as i32, for the integer convolutions.
fn centered_operands(
    x: &Tensor,
    w: &Tensor,
    x_zp: Option<&Tensor>,
    w_zp: Option<&Tensor>,
    filters: usize,
) -> Result<(Vec<i32>, Vec<i32>), EvalError> {
    let xz = zero_points(x_zp, x, 1, "x_zero_point")?[0];
    let wz = zero_points(w_zp, w, filters, "w_zero_point")?;
    let xv: Vec<i32> = quantized(x, "conv input")?
        .into_iter()
        .map(|v| v - xz)
        .collect();
    let per_filter = w.len() / filters.max(1);
    let wv: Vec<i32> = quantized(w, "conv weight")?
        .into_iter()
        .enumerate()
        .map(|(i, v)| v - wz[i / per_filter])
        .collect();
    Ok((xv, wv))
}

fn conv_integer(
    a: &ConvAttrs<'_>,
    ins: &[Option<&Tensor>],
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let (x, w) = (required(ins, 0)?, required(ins, 1)?);
    let shape = ConvShape::new(a, x.dims(), w.dims(), DType::I32, ctx)?;
    let (xv, wv) = centered_operands(x, w, optional(ins, 2), optional(ins, 3), shape.filters)?;
    Ok(Tensor::from_vec(
        shape.out_dims(),
        shape.accumulate(&xv, &wv, |_| 0i32),
    ))
}

fn qlinear_conv(
    a: &ConvAttrs<'_>,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let (x, x_scale, x_zp) = (required(ins, 0)?, required(ins, 1)?, optional(ins, 2));
    let (w, w_scale, w_zp) = (required(ins, 3)?, required(ins, 4)?, optional(ins, 5));
    let (y_scale, y_zp, b) = (required(ins, 6)?, optional(ins, 7), optional(ins, 8));
    let out_dt = outs
        .first()
        .map(|o| o.dtype)
        .or(y_zp.map(|z| z.dtype()))
        .unwrap_or(x.dtype());
    let (lo, hi) = int_range(out_dt)?;
    let shape = ConvShape::new(a, x.dims(), w.dims(), out_dt, ctx)?;
    let filters = shape.filters;
    let (xv, wv) = centered_operands(x, w, x_zp, w_zp, filters)?;
    let bias = match b {
        None => vec![0; filters],
        Some(b) if b.dtype() == DType::I32 && b.rank() == 1 && b.len() == filters => {
            b.to_vec::<i32>().unwrap_or_default()
        }
        Some(b) => {
            return Err(EvalError::invalid(format!(
                "QLinearConv bias {} {:?} must be i32 of {filters} values",
                b.dtype(),
                b.dims()
            )));
        }
    };
    let acc = shape.accumulate(&xv, &wv, |m| bias[m]);

    let sdt = x_scale.dtype();
    if w_scale.dtype() != sdt || y_scale.dtype() != sdt {
        return Err(EvalError::invalid(
            "QLinearConv scales must share one dtype",
        ));
    }
    let single = |t: &Tensor, what: &str| -> Result<f64, EvalError> {
        match scale_values(t, what)?.as_slice() {
            &[v] => Ok(v),
            _ => Err(EvalError::invalid(format!("{what} must be a single value"))),
        }
    };
    let (xs, ys) = (single(x_scale, "x_scale")?, single(y_scale, "y_scale")?);
    let ws = per_channel(scale_values(w_scale, "w_scale")?, filters, "w_scale")?;
    let mult: Vec<f64> = ws
        .iter()
        .map(|&ws| round_to_scale(sdt, round_to_scale(sdt, xs * ws) / ys))
        .collect();
    let yz = match y_zp {
        None => 0,
        Some(z) if z.len() == 1 && z.dtype() == out_dt => z.get_i64(0),
        Some(z) => {
            return Err(EvalError::invalid(format!(
                "y_zero_point {} {:?} must be one {out_dt} value",
                z.dtype(),
                z.dims()
            )));
        }
    };
    let out_len = shape.window.output_len().max(1);
    let out = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| requantize(v, mult[i / out_len % filters], yz, lo, hi))
        .collect();
    int_tensor(out_dt, shape.out_dims(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shrink_ir::op::AutoPad;

    fn conv(
        auto_pad: AutoPad,
        pads: &[i64],
        strides: &[i64],
        dilations: &[i64],
        group: i64,
    ) -> Conv {
        Conv::Conv {
            auto_pad,
            dilations: dilations.to_vec(),
            group,
            kernel_shape: vec![],
            pads: pads.to_vec(),
            strides: strides.to_vec(),
        }
    }

    fn run(op: &Conv, ins: &[Option<&Tensor>], out: DType) -> Result<Tensor, EvalError> {
        eval(op, ins, &[ValueType::new(out, None)], &EvalCtx::default()).map(|mut v| v.remove(0))
    }

    fn iota(dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::from_vec(dims.to_vec(), (0..n).map(|i| i as f32).collect())
    }

    #[test]
    fn conv_2d_padding_strides_and_bias() {
        // 3x3 input 0..9, 2x2 ones kernel, pad 1 each side, stride 2: windows at (-1,-1), (-1,1),
        // (1,-1), (1,1).
        let x = iota(&[1, 1, 3, 3]);
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32; 4]);
        let b = Tensor::from_vec(vec![1], vec![0.5f32]);
        let y = run(
            &conv(AutoPad::NotSet, &[1, 1, 1, 1], &[2, 2], &[], 1),
            &[Some(&x), Some(&w), Some(&b)],
            DType::F32,
        )
        .unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.5, 3.5, 9.5, 24.5]);
    }

    #[test]
    fn conv_groups_dilations_and_same_lower() {
        // Two groups of one channel; 1-D, kernel [1, 1] dilated by 2.
        let x = iota(&[1, 2, 4]);
        let w = Tensor::from_vec(vec![2, 1, 2], vec![1.0f32, 1.0, 1.0, -1.0]);
        let y = run(
            &conv(AutoPad::NotSet, &[], &[], &[2], 2),
            &[Some(&x), Some(&w)],
            DType::F32,
        )
        .unwrap();
        assert_eq!(y.dims(), &[1, 2, 2]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![2.0, 4.0, -2.0, -2.0]);
        // SAME_LOWER with a 2-tap kernel pads one element at the start.
        let x = iota(&[1, 1, 3]);
        let w = Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 10.0]);
        let y = run(
            &conv(AutoPad::SameLower, &[], &[], &[], 1),
            &[Some(&x), Some(&w)],
            DType::F32,
        )
        .unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.0, 10.0, 21.0]);
    }

    #[test]
    fn conv_rejects_bad_shapes() {
        let x = iota(&[1, 2, 4]);
        let w = Tensor::from_vec(vec![2, 1, 2], vec![1.0f32; 4]);
        assert!(
            run(
                &conv(AutoPad::NotSet, &[], &[], &[], 1),
                &[Some(&x), Some(&w)],
                DType::F32
            )
            .is_err()
        );
        assert!(
            run(
                &conv(AutoPad::NotSet, &[], &[], &[], 0),
                &[Some(&x), Some(&w)],
                DType::F32
            )
            .is_err()
        );
        assert!(
            run(
                &conv(AutoPad::NotSet, &[-1, 0], &[], &[], 2),
                &[Some(&x), Some(&w)],
                DType::F32
            )
            .is_err()
        );
        let big = Tensor::from_vec(vec![2, 1, 9], vec![1.0f32; 18]);
        assert!(
            run(
                &conv(AutoPad::NotSet, &[], &[], &[], 2),
                &[Some(&x), Some(&big)],
                DType::F32
            )
            .is_err()
        );
    }

    #[test]
    fn conv_integer_per_filter_zero_points() {
        let x = Tensor::from_vec(vec![1, 1, 2], vec![3u8, 5]);
        let w = Tensor::from_vec(vec![2, 1, 1], vec![2u8, 7]);
        let xz = Tensor::scalar(1u8);
        let wz = Tensor::from_vec(vec![2], vec![1u8, 9]);
        let op = Conv::ConvInteger {
            auto_pad: AutoPad::NotSet,
            dilations: vec![],
            group: 1,
            kernel_shape: vec![],
            pads: vec![],
            strides: vec![],
        };
        let y = run(&op, &[Some(&x), Some(&w), Some(&xz), Some(&wz)], DType::I32).unwrap();
        assert_eq!(y.to_vec::<i32>().unwrap(), vec![2, 4, -4, -8]);
    }

    #[test]
    fn qlinear_conv_requantizes_per_channel() {
        let x = Tensor::from_vec(vec![1, 1, 2], vec![1i8, 3]);
        let w = Tensor::from_vec(vec![2, 1, 1], vec![1i8, 1]);
        let zp = Tensor::scalar(0i8);
        let one = Tensor::scalar(1.0f32);
        let ws = Tensor::from_vec(vec![2], vec![0.5f32, 100.0]);
        let op = Conv::QLinearConv {
            auto_pad: AutoPad::NotSet,
            dilations: vec![],
            group: 1,
            kernel_shape: vec![],
            pads: vec![],
            strides: vec![],
        };
        let ins = [
            Some(&x),
            Some(&one),
            Some(&zp),
            Some(&w),
            Some(&ws),
            Some(&zp),
            Some(&one),
            Some(&zp),
        ];
        let y = run(&op, &ins, DType::I8).unwrap();
        // 0.5 -> 0, 1.5 -> 2 (ties to even); 100, 300 -> saturate at 127.
        assert_eq!(
            y.to_vec::<u8>()
                .unwrap()
                .iter()
                .map(|&b| b as i8)
                .collect::<Vec<_>>(),
            vec![0, 2, 100, 127]
        );
    }
}
