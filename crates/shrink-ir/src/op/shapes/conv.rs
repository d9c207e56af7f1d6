//! Shapes of the sliding-window ops: Conv / ConvInteger / QLinearConv (output channels from W,
//! kernel from W when `kernel_shape` is empty) and MaxPool / AveragePool (with the Indices output
//! of MaxPool), all sharing one per-axis window rule (explicit pads, `auto_pad`, strides,
//! dilations, `ceil_mode`); and the global pools, which collapse every spatial dim to 1.
use super::elementwise::unify_dim;
use super::{InputInfo, ShapeError, shape_of};
use crate::Op;
use crate::op::{AutoPad, Conv, Pool};
use crate::shape::{Dim, Shape};
use crate::window::{WindowAttrs, axis_params, resolve_axis};

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
            let win = WindowAttrs {
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
            let win = WindowAttrs {
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
            let win = WindowAttrs {
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

/// Conv: X is [N, C, D1..Dn], W is [M, C/group, k1..kn]; Y is [N, M, out1..outn].
fn conv(
    x: Option<&Shape>,
    w: Option<&Shape>,
    group: i64,
    win: &WindowAttrs<'_>,
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
fn pool(x: Option<&Shape>, win: &WindowAttrs<'_>) -> Result<Option<Shape>, ShapeError> {
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
/// Known input sizes and kernels are resolved by [`resolve_axis`], the rule the interpreter and
/// the code generator use too; symbolic sizes are kept where the window maps positions 1:1.
fn spatial(
    x: Option<&Shape>,
    rank: usize,
    kernel: &[Option<i64>],
    win: &WindowAttrs<'_>,
) -> Result<Vec<Dim>, ShapeError> {
    let n = rank - 2;
    if kernel.len() != n {
        return Err(ShapeError::new(format!(
            "kernel_shape has {} entries for {n} spatial dims",
            kernel.len()
        )));
    }
    let (strides, dilations, pads) = axis_params(win, n).map_err(ShapeError::new)?;
    (0..n)
        .map(|i| {
            let input = x.map_or(&Dim::Unknown, |x| &x.0[i + 2]);
            let k = match kernel[i] {
                Some(k) if k < 1 => {
                    return Err(ShapeError::new(format!("kernel size {k} must be positive")));
                }
                Some(k) => Some(usize::try_from(k).map_err(|_| super::elementwise::overflow())?),
                None => None,
            };
            let same = matches!(win.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
            let unpadded = win.auto_pad == AutoPad::Valid || pads[i] == (0, 0);
            match (input, k) {
                (Dim::Fixed(d), Some(k)) => {
                    let ax = resolve_axis(
                        *d,
                        k,
                        strides[i],
                        dilations[i],
                        pads[i],
                        win.auto_pad,
                        win.ceil_mode,
                    )
                    .map_err(ShapeError::new)?;
                    Ok(Dim::Fixed(ax.output))
                }
                // SAME keeps ceil(input / stride) whatever the kernel.
                (Dim::Fixed(d), None) if same => Ok(Dim::Fixed(d.div_ceil(strides[i]))),
                (other, _) if same && strides[i] == 1 => Ok(other.clone()),
                // A unit window with unit stride and no padding maps each position to itself.
                (other, Some(1)) if !same && strides[i] == 1 && unpadded => Ok(other.clone()),
                _ => Ok(Dim::Unknown),
            }
        })
        .collect()
}
