//! Shapes of the sliding-window ops: Conv / ConvInteger / QLinearConv (output channels from W,
//! kernel from W when `kernel_shape` is empty) and MaxPool / AveragePool (with the Indices output
//! of MaxPool), all sharing one per-axis window rule (explicit pads, `auto_pad`, strides,
//! dilations, `ceil_mode`); and the global pools, which collapse every spatial dim to 1.
use super::elementwise::unify_dim;
use super::{InputInfo, ShapeError, shape_of};
use crate::Op;
use crate::op::{AutoPad, Conv, Pool};
use crate::shape::{Dim, Shape};

/// Output shapes of a convolution or pooling op (any other op gets unknown shapes).
pub fn infer(
    op: &Op,
    inputs: &[Option<InputInfo<'_>>],
    num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    Ok(match op {
        Op::Conv(c) => {
            let (w_index, attrs) = match c {
                Conv::Conv {
                    auto_pad,
                    dilations,
                    group,
                    kernel_shape,
                    pads,
                    strides,
                }
                | Conv::ConvInteger {
                    auto_pad,
                    dilations,
                    group,
                    kernel_shape,
                    pads,
                    strides,
                } => (1, (auto_pad, dilations, group, kernel_shape, pads, strides)),
                Conv::QLinearConv {
                    auto_pad,
                    dilations,
                    group,
                    kernel_shape,
                    pads,
                    strides,
                } => (3, (auto_pad, dilations, group, kernel_shape, pads, strides)),
            };
            let (auto_pad, dilations, group, kernel_shape, pads, strides) = attrs;
            let win = Window {
                auto_pad: *auto_pad,
                kernel: kernel_shape,
                pads,
                strides,
                dilations,
                ceil_mode: false,
            };
            vec![conv(
                shape_of(inputs, 0),
                shape_of(inputs, w_index),
                *group,
                &win,
            )?]
        }
        Op::Pool(Pool::MaxPool {
            auto_pad,
            ceil_mode,
            dilations,
            kernel_shape,
            pads,
            strides,
            ..
        }) => {
            let win = Window {
                auto_pad: *auto_pad,
                kernel: kernel_shape,
                pads,
                strides,
                dilations,
                ceil_mode: *ceil_mode,
            };
            let y = pool(shape_of(inputs, 0), &win)?;
            // Indices has Y's shape.
            vec![y.clone(), y]
        }
        Op::Pool(Pool::AveragePool {
            auto_pad,
            ceil_mode,
            dilations,
            kernel_shape,
            pads,
            strides,
            ..
        }) => {
            let win = Window {
                auto_pad: *auto_pad,
                kernel: kernel_shape,
                pads,
                strides,
                dilations,
                ceil_mode: *ceil_mode,
            };
            vec![pool(shape_of(inputs, 0), &win)?]
        }
        Op::Pool(Pool::GlobalAveragePool | Pool::GlobalMaxPool) => {
            let y = match shape_of(inputs, 0) {
                None => None,
                Some(x) if x.rank() < 2 => {
                    return Err(ShapeError::new(format!(
                        "global pool input {x} has rank < 2"
                    )));
                }
                Some(x) => {
                    let mut dims = x.0[..2].to_vec();
                    dims.resize(x.rank(), Dim::Fixed(1));
                    Some(Shape(dims))
                }
            };
            vec![y]
        }
        _ => vec![None; num_outputs],
    })
}

/// The window attributes shared by convolutions and pools (empty lists = ONNX defaults).
struct Window<'a> {
    auto_pad: AutoPad,
    kernel: &'a [i64],
    pads: &'a [i64],
    strides: &'a [i64],
    dilations: &'a [i64],
    ceil_mode: bool,
}

/// Conv: X is [N, C, D1..Dn], W is [M, C/group, k1..kn]; Y is [N, M, out1..outn].
fn conv(
    x: Option<&Shape>,
    w: Option<&Shape>,
    group: i64,
    win: &Window<'_>,
) -> Result<Option<Shape>, ShapeError> {
    let rank = match (x, w) {
        (Some(x), Some(w)) if x.rank() != w.rank() => {
            return Err(ShapeError::new(format!(
                "Conv input {x} and weight {w} differ in rank"
            )));
        }
        (Some(s), _) | (None, Some(s)) => s.rank(),
        (None, None) => return Ok(None),
    };
    if rank < 3 {
        return Err(ShapeError::new(
            "Conv needs a batch, a channel and at least one spatial dim",
        ));
    }
    if group < 1 {
        return Err(ShapeError::new(format!(
            "Conv group {group} must be positive"
        )));
    }
    if let (Some(x), Some(w)) = (x, w)
        && let Dim::Fixed(wc) = w.0[1]
    {
        let want = wc
            .checked_mul(group as usize)
            .ok_or_else(super::elementwise::overflow)?;
        if unify_dim(&x.0[1], &Dim::Fixed(want)).is_none() {
            return Err(ShapeError::new(format!(
                "Conv input {x} has not {want} channels for weight {w} with group {group}"
            )));
        }
    }
    // Without kernel_shape the kernel is W's spatial dims.
    let kernel: Vec<Option<i64>> = if win.kernel.is_empty() {
        (2..rank)
            .map(|i| match w.map(|w| &w.0[i]) {
                Some(Dim::Fixed(k)) => i64::try_from(*k).ok(),
                _ => None,
            })
            .collect()
    } else {
        win.kernel.iter().map(|&k| Some(k)).collect()
    };
    let mut dims = vec![
        x.map_or(Dim::Unknown, |x| x.0[0].clone()),
        w.map_or(Dim::Unknown, |w| w.0[0].clone()),
    ];
    dims.extend(spatial(x, rank, &kernel, win)?);
    Ok(Some(Shape(dims)))
}

/// MaxPool / AveragePool: Y is [N, C, out1..outn].
fn pool(x: Option<&Shape>, win: &Window<'_>) -> Result<Option<Shape>, ShapeError> {
    let Some(x) = x else { return Ok(None) };
    if x.rank() < 3 {
        return Err(ShapeError::new(format!(
            "pool input {x} needs at least one spatial dim"
        )));
    }
    if win.kernel.len() != x.rank() - 2 {
        return Err(ShapeError::new(format!(
            "pool kernel_shape {:?} does not match input {x}",
            win.kernel
        )));
    }
    let kernel: Vec<Option<i64>> = win.kernel.iter().map(|&k| Some(k)).collect();
    let mut dims = x.0[..2].to_vec();
    dims.extend(spatial(Some(x), x.rank(), &kernel, win)?);
    Ok(Some(Shape(dims)))
}

/// The output spatial dims, checking the attribute lengths against the `rank - 2` spatial axes.
fn spatial(
    x: Option<&Shape>,
    rank: usize,
    kernel: &[Option<i64>],
    win: &Window<'_>,
) -> Result<Vec<Dim>, ShapeError> {
    let n = rank - 2;
    let check = |name: &str, v: &[i64], len: usize| {
        if v.is_empty() || v.len() == len {
            Ok(())
        } else {
            Err(ShapeError::new(format!(
                "{name} {v:?} should have {len} entries"
            )))
        }
    };
    if kernel.len() != n {
        return Err(ShapeError::new(format!(
            "kernel_shape has {} entries for {n} spatial dims",
            kernel.len()
        )));
    }
    check("pads", win.pads, 2 * n)?;
    check("strides", win.strides, n)?;
    check("dilations", win.dilations, n)?;
    let attr = |v: &[i64], i: usize, default: i64| v.get(i).copied().unwrap_or(default);
    (0..n)
        .map(|i| {
            let input = x.map_or(&Dim::Unknown, |x| &x.0[i + 2]);
            let axis = Axis {
                kernel: kernel[i],
                pad_begin: attr(win.pads, i, 0),
                pad_end: attr(win.pads, i + n, 0),
                stride: attr(win.strides, i, 1),
                dilation: attr(win.dilations, i, 1),
            };
            out_dim(input, &axis, win.auto_pad, win.ceil_mode)
        })
        .collect()
}

/// One spatial axis of a window (kernel `None` = not known statically).
struct Axis {
    kernel: Option<i64>,
    pad_begin: i64,
    pad_end: i64,
    stride: i64,
    dilation: i64,
}

/// The output size along one axis.
fn out_dim(input: &Dim, a: &Axis, auto_pad: AutoPad, ceil_mode: bool) -> Result<Dim, ShapeError> {
    if a.stride < 1 || a.dilation < 1 || a.kernel.is_some_and(|k| k < 1) {
        return Err(ShapeError::new(
            "kernel, strides and dilations must be positive",
        ));
    }
    if a.pad_begin < 0 || a.pad_end < 0 {
        return Err(ShapeError::new("pads must be non-negative"));
    }
    // SAME pads so that the output is ceil(input / stride), whatever the kernel.
    if matches!(auto_pad, AutoPad::SameUpper | AutoPad::SameLower) {
        return Ok(match input {
            Dim::Fixed(d) => Dim::Fixed(d.div_ceil(a.stride as usize)),
            other if a.stride == 1 => other.clone(),
            _ => Dim::Unknown,
        });
    }
    let (pb, pe) = if auto_pad == AutoPad::Valid {
        (0, 0)
    } else {
        (a.pad_begin, a.pad_end)
    };
    let Some(k) = a.kernel else {
        return Ok(Dim::Unknown);
    };
    let err = super::elementwise::overflow;
    // The window's extent with dilation: (k - 1) * d + 1.
    let extent = (k - 1)
        .checked_mul(a.dilation)
        .and_then(|e| e.checked_add(1))
        .ok_or_else(err)?;
    let d = match input {
        Dim::Fixed(d) => i64::try_from(*d).map_err(|_| err())?,
        // A unit window with unit stride and no padding maps each position to itself.
        other if extent == 1 && a.stride == 1 && pb == 0 && pe == 0 => return Ok(other.clone()),
        _ => return Ok(Dim::Unknown),
    };
    let padded = d
        .checked_add(pb)
        .and_then(|v| v.checked_add(pe))
        .ok_or_else(err)?;
    let span = padded - extent;
    if span < 0 {
        return Err(ShapeError::new(format!(
            "window of extent {extent} exceeds padded input {padded}"
        )));
    }
    // span >= 0 and stride >= 1 here.
    let steps = if ceil_mode {
        (span as u64).div_ceil(a.stride as u64) as i64
    } else {
        span / a.stride
    };
    let mut out = steps + 1;
    // In ceil mode the last window must still start inside the input or its left padding.
    if ceil_mode && (out - 1).checked_mul(a.stride).ok_or_else(err)? >= d + pb {
        out -= 1;
    }
    super::elementwise::to_dim(out)
}
