//! The sliding window of Conv / ConvInteger / QLinearConv and MaxPool / AveragePool (and the
//! global pools, one window over the whole input), resolved once from the op's attributes and
//! the input's spatial dims: kernel, strides, dilations, the begin/end padding after `auto_pad`
//! and the output extent after `ceil_mode`.
//!
//! Shape inference, the reference interpreter and the code generator all place windows with
//! this one type, so they cannot disagree about an output size or a padding split.
use crate::op::{AutoPad, Conv, Pool};

/// The window attributes of a node, before they are resolved against an input. Empty
/// `strides`/`dilations`/`pads` are the ONNX defaults (1, 1, 0).
#[derive(Clone, Copy, Debug)]
pub struct WindowAttrs<'a> {
    pub auto_pad: AutoPad,
    /// One positive entry per spatial axis (already taken from W for convolutions).
    pub kernel: &'a [i64],
    pub strides: &'a [i64],
    pub dilations: &'a [i64],
    pub pads: &'a [i64],
    pub ceil_mode: bool,
}

/// A window resolved over the spatial axes. Output position `o` along axis `a` reads input
/// coordinates `o * strides[a] - pad_begin[a] + j * dilations[a]` for `j` in `0..kernel[a]`;
/// coordinates outside `0..input[a]` are padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pad_begin: Vec<usize>,
    pub pad_end: Vec<usize>,
}

/// One axis of a resolved window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisWindow {
    pub output: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
}

/// `attr` as `n` values of at least `min`, `default` each when empty.
fn list(attr: &[i64], n: usize, default: i64, min: i64, what: &str) -> Result<Vec<i64>, String> {
    if attr.is_empty() {
        return Ok(vec![default; n]);
    }
    if attr.len() != n {
        return Err(format!("{what} {attr:?} should have {n} entries"));
    }
    if attr.iter().any(|&v| v < min) {
        return Err(if min > 0 {
            format!("{what} {attr:?} must be positive")
        } else {
            format!("{what} {attr:?} must be non-negative")
        });
    }
    Ok(attr.to_vec())
}

fn to_usize(v: i128, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
}

/// The window rule along one axis: output size and the padding actually applied (explicit pads
/// are ignored unless `auto_pad` is NOTSET, as the spec says). All arguments are validated
/// (kernel, stride, dilation >= 1) by the caller.
pub fn resolve_axis(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<AxisWindow, String> {
    let (inp, s) = (input as i128, stride as i128);
    let span = (kernel as i128 - 1) * dilation as i128 + 1;
    let (out, pb, pe) = match auto_pad {
        AutoPad::NotSet => {
            let (pb, pe) = (pads.0 as i128, pads.1 as i128);
            let room = inp + pb + pe - span;
            if room < 0 {
                return Err(format!(
                    "window of extent {span} exceeds padded input {}",
                    inp + pb + pe
                ));
            }
            let mut out = if ceil_mode {
                (room + s - 1) / s + 1
            } else {
                room / s + 1
            };
            // A ceil-mode window must start inside the input or the begin padding.
            if ceil_mode && (out - 1) * s >= inp + pb {
                out -= 1;
            }
            (out, pb, pe)
        }
        AutoPad::Valid => {
            if inp < span {
                return Err(format!(
                    "window of extent {span} exceeds input {inp} (auto_pad VALID)"
                ));
            }
            ((inp - span) / s + 1, 0, 0)
        }
        // SAME pads so that the output is ceil(input / stride), whatever the kernel; the odd
        // element of padding goes at the end (UPPER) or the beginning (LOWER).
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = (inp + s - 1) / s;
            let total = ((out - 1) * s + span - inp).max(0);
            let small = total / 2;
            if auto_pad == AutoPad::SameUpper {
                (out, small, total - small)
            } else {
                (out, total - small, small)
            }
        }
    };
    Ok(AxisWindow {
        output: to_usize(out, "output size")?,
        pad_begin: to_usize(pb, "padding")?,
        pad_end: to_usize(pe, "padding")?,
    })
}

/// Strides, dilations and explicit pads of `attrs` for `n` spatial axes, validated.
#[allow(clippy::type_complexity)]
pub fn axis_params(
    attrs: &WindowAttrs<'_>,
    n: usize,
) -> Result<(Vec<usize>, Vec<usize>, Vec<(usize, usize)>), String> {
    let strides = list(attrs.strides, n, 1, 1, "strides")?;
    let dilations = list(attrs.dilations, n, 1, 1, "dilations")?;
    let pads = list(attrs.pads, 2 * n, 0, 0, "pads")?;
    let u = |v: i64| v as usize;
    Ok((
        strides.into_iter().map(u).collect(),
        dilations.into_iter().map(u).collect(),
        (0..n).map(|a| (u(pads[a]), u(pads[a + n]))).collect(),
    ))
}

impl Window {
    /// Resolves `attrs` against the spatial dims `input`.
    pub fn new(input: &[usize], attrs: &WindowAttrs<'_>) -> Result<Window, String> {
        let n = input.len();
        if attrs.kernel.len() != n {
            return Err(format!(
                "kernel_shape {:?} does not match {n} spatial axes",
                attrs.kernel
            ));
        }
        let kernel: Vec<usize> = list(attrs.kernel, n, 1, 1, "kernel_shape")?
            .into_iter()
            .map(|k| k as usize)
            .collect();
        let (strides, dilations, pads) = axis_params(attrs, n)?;
        let mut w = Window {
            input: input.to_vec(),
            output: vec![],
            kernel,
            strides,
            dilations,
            pad_begin: vec![],
            pad_end: vec![],
        };
        for a in 0..n {
            let ax = resolve_axis(
                input[a],
                w.kernel[a],
                w.strides[a],
                w.dilations[a],
                pads[a],
                attrs.auto_pad,
                attrs.ceil_mode,
            )?;
            w.output.push(ax.output);
            w.pad_begin.push(ax.pad_begin);
            w.pad_end.push(ax.pad_end);
        }
        Ok(w)
    }

    /// The window of a convolution with input dims `x` `[N, C, D..]` and weight dims `w`
    /// `[M, C/group, k..]` (the kernel is W's spatial dims; `kernel_shape`, when given, must
    /// agree).
    pub fn conv(op: &Conv, x: &[usize], w: &[usize]) -> Result<Window, String> {
        let (Conv::Conv {
            auto_pad,
            dilations,
            kernel_shape,
            pads,
            strides,
            ..
        }
        | Conv::ConvInteger {
            auto_pad,
            dilations,
            kernel_shape,
            pads,
            strides,
            ..
        }
        | Conv::QLinearConv {
            auto_pad,
            dilations,
            kernel_shape,
            pads,
            strides,
            ..
        }) = op;
        if x.len() < 3 || w.len() != x.len() {
            return Err(format!(
                "conv input {x:?} and weight {w:?} must share a rank >= 3"
            ));
        }
        let kernel: Vec<i64> = w[2..].iter().map(|&k| k as i64).collect();
        if !kernel_shape.is_empty() && *kernel_shape != kernel {
            return Err(format!(
                "kernel_shape {kernel_shape:?} disagrees with weight {w:?}"
            ));
        }
        let attrs = WindowAttrs {
            auto_pad: *auto_pad,
            kernel: &kernel,
            strides,
            dilations,
            pads,
            ceil_mode: false,
        };
        Window::new(&x[2..], &attrs)
    }

    /// The window of a pool over input dims `x` `[N, C, D..]`; the global pools get one window
    /// covering every spatial axis.
    pub fn pool(op: &Pool, x: &[usize]) -> Result<Window, String> {
        if x.len() < 2 {
            return Err(format!("pool input {x:?} needs rank >= 2"));
        }
        let spatial = &x[2..];
        let (auto_pad, ceil_mode, dilations, kernel_shape, pads, strides) = match op {
            Pool::MaxPool {
                auto_pad,
                ceil_mode,
                dilations,
                kernel_shape,
                pads,
                strides,
                ..
            }
            | Pool::AveragePool {
                auto_pad,
                ceil_mode,
                dilations,
                kernel_shape,
                pads,
                strides,
                ..
            } => (
                *auto_pad,
                *ceil_mode,
                dilations,
                kernel_shape,
                pads,
                strides,
            ),
            Pool::GlobalAveragePool | Pool::GlobalMaxPool => {
                let kernel: Vec<i64> = spatial.iter().map(|&d| d.max(1) as i64).collect();
                // An empty axis gets a one-wide kernel over one element of padding: no data.
                let pads: Vec<i64> = spatial
                    .iter()
                    .map(|&d| i64::from(d == 0))
                    .chain(spatial.iter().map(|_| 0))
                    .collect();
                let attrs = WindowAttrs {
                    auto_pad: AutoPad::NotSet,
                    kernel: &kernel,
                    strides: &[],
                    dilations: &[],
                    pads: &pads,
                    ceil_mode: false,
                };
                return Window::new(spatial, &attrs);
            }
        };
        if kernel_shape.is_empty() || kernel_shape.len() != spatial.len() {
            return Err(format!(
                "kernel_shape {kernel_shape:?} does not fit an input of shape {x:?}"
            ));
        }
        let attrs = WindowAttrs {
            auto_pad,
            kernel: kernel_shape,
            strides,
            dilations,
            pads,
            ceil_mode,
        };
        Window::new(spatial, &attrs)
    }

    /// Number of spatial axes.
    pub fn rank(&self) -> usize {
        self.input.len()
    }

    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    pub fn kernel_len(&self) -> usize {
        self.kernel.iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(
        auto_pad: AutoPad,
        kernel: &'a [i64],
        strides: &'a [i64],
        pads: &'a [i64],
        ceil: bool,
    ) -> WindowAttrs<'a> {
        WindowAttrs {
            auto_pad,
            kernel,
            strides,
            dilations: &[],
            pads,
            ceil_mode: ceil,
        }
    }

    #[test]
    fn same_pads_split_and_ceil_mode_drops_windows_in_end_padding() {
        let w = Window::new(&[5], &attrs(AutoPad::SameUpper, &[4], &[2], &[], false)).unwrap();
        // out = 3, total pad = (3-1)*2 + 4 - 5 = 3: 1 before, 2 after.
        assert_eq!((w.output[0], w.pad_begin[0], w.pad_end[0]), (3, 1, 2));
        let w = Window::new(&[5], &attrs(AutoPad::SameLower, &[4], &[2], &[], false)).unwrap();
        assert_eq!((w.pad_begin[0], w.pad_end[0]), (2, 1));
        let w = Window::new(&[2], &attrs(AutoPad::NotSet, &[1], &[2], &[0, 1], true)).unwrap();
        // Ceil would give 2 windows; the second starts in the end padding.
        assert_eq!(w.output, vec![1]);
        // VALID ignores ceil_mode and pads.
        let w = Window::new(&[5], &attrs(AutoPad::Valid, &[2], &[2], &[3, 3], true)).unwrap();
        assert_eq!((w.output[0], w.pad_begin[0]), (2, 0));
    }

    #[test]
    fn rejects_bad_attributes() {
        assert!(Window::new(&[3], &attrs(AutoPad::NotSet, &[4], &[], &[], false)).is_err());
        assert!(Window::new(&[3], &attrs(AutoPad::NotSet, &[0], &[], &[], false)).is_err());
        assert!(Window::new(&[3], &attrs(AutoPad::NotSet, &[2], &[0], &[], false)).is_err());
        assert!(Window::new(&[3], &attrs(AutoPad::NotSet, &[2], &[], &[-1, 0], false)).is_err());
        assert!(Window::new(&[3], &attrs(AutoPad::NotSet, &[2, 2], &[], &[], false)).is_err());
    }
}
