//! Transpose, Slice and Pad rules: Transpose's permutation, how constant starts/ends/axes/steps resolve to a per-axis slice, and how
//! pads (with optional axes) resolve to per-axis extents and source coordinates. The interpreter
//! and the code generator read their inputs their own way and then ask these.
use super::{RuleError, norm_axes};
use crate::op::PadMode;

/// Transpose's permutation of a rank-`rank` input: `perm` when given (each axis exactly once),
/// else the axes reversed.
pub fn transpose_perm(perm: Option<&[i64]>, rank: usize) -> Result<Vec<usize>, RuleError> {
    let Some(p) = perm else {
        return Ok((0..rank).rev().collect());
    };
    let p: Vec<usize> = p
        .iter()
        .map(|&a| usize::try_from(a).unwrap_or(usize::MAX))
        .collect();
    let not_a_permutation =
        || RuleError::invalid(format!("perm {p:?} is not a permutation of 0..{rank}"));
    let mut seen = vec![false; rank];
    for &a in &p {
        match seen.get_mut(a) {
            Some(s) if !*s => *s = true,
            _ => return Err(not_a_permutation()),
        }
    }
    if p.len() != rank {
        return Err(not_a_permutation());
    }
    Ok(p)
}

/// One axis of a slice: the first source coordinate, the step and the element count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisSlice {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

impl AxisSlice {
    /// An axis of `dim` taken whole.
    pub fn whole(dim: usize) -> AxisSlice {
        AxisSlice {
            start: 0,
            step: 1,
            count: dim,
        }
    }
}

/// The spec's clamping: negative starts/ends count from the end, then clamp to `[0, dim]` for
/// positive steps or `[-1, dim - 1]` for negative ones (so INT64_MAX/MIN act as "to the end").
pub fn axis_slice(dim: usize, start: i64, end: i64, step: i64) -> Result<AxisSlice, RuleError> {
    if step == 0 {
        return Err(RuleError::invalid("Slice step is zero"));
    }
    // i128 keeps start/end near i64::MIN/MAX from overflowing.
    let d = dim as i128;
    let (mut s, mut e, step) = (start as i128, end as i128, step as i128);
    if s < 0 {
        s += d;
    }
    if e < 0 {
        e += d;
    }
    let (s, span) = if step > 0 {
        s = s.clamp(0, d);
        e = e.clamp(0, d);
        (s, e - s)
    } else {
        s = s.max(0).min(d - 1);
        e = e.max(-1).min(d - 1);
        (s, s - e)
    };
    let mag = step.abs();
    let count = if span <= 0 { 0 } else { (span + mag - 1) / mag };
    // `s` is in `-1..=dim` and `count` in `0..=dim`, so both narrow losslessly.
    Ok(AxisSlice {
        start: s as i64,
        step: step as i64,
        count: count as usize,
    })
}

/// Slice of an input of `dims` with constant `starts`/`ends` and optional `axes` (default
/// `0..k`) and `steps` (default 1): one [`AxisSlice`] per input axis, unlisted axes whole.
pub fn slice_axes(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<AxisSlice>, RuleError> {
    let k = starts.len();
    let default_axes: Vec<i64>;
    let axes = match axes {
        Some(a) => a,
        None => {
            default_axes = (0..k as i64).collect();
            &default_axes
        }
    };
    let default_steps: Vec<i64>;
    let steps = match steps {
        Some(s) => s,
        None => {
            default_steps = vec![1; k];
            &default_steps
        }
    };
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err(RuleError::invalid(format!(
            "Slice starts/ends/axes/steps lengths differ: {k}, {}, {}, {}",
            ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    let axes = norm_axes(axes, dims.len())?;
    let mut sl: Vec<AxisSlice> = dims.iter().map(|&d| AxisSlice::whole(d)).collect();
    for (i, &a) in axes.iter().enumerate() {
        sl[a] = axis_slice(dims[a], starts[i], ends[i], steps[i])?;
    }
    Ok(sl)
}

/// Pad's per-axis extents: what is added before (`begin`) and after (`end`) each axis of the
/// input (negative = cropped), and the output dims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PadExtents {
    pub begin: Vec<i128>,
    pub end: Vec<i128>,
    pub dims: Vec<usize>,
}

/// The extents of padding an input of `dims` by `pads` (all begins, then all ends) over `axes`
/// (default: every axis).
pub fn pad_extents(
    dims: &[usize],
    pads: &[i64],
    axes: Option<&[i64]>,
) -> Result<PadExtents, RuleError> {
    let rank = dims.len();
    let axes = match axes {
        Some(a) => norm_axes(a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(RuleError::invalid(format!(
            "{} pads for {} axes",
            pads.len(),
            axes.len()
        )));
    }
    let mut begin = vec![0i128; rank];
    let mut end = vec![0i128; rank];
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = pads[i] as i128;
        end[a] = pads[axes.len() + i] as i128;
    }
    let mut out = Vec::with_capacity(rank);
    for a in 0..rank {
        let d = dims[a] as i128 + begin[a] + end[a];
        let d = usize::try_from(d).map_err(|_| {
            RuleError::invalid(format!(
                "pads {pads:?} crop axis {a} of size {} below zero",
                dims[a]
            ))
        })?;
        out.push(d);
    }
    Ok(PadExtents {
        begin,
        end,
        dims: out,
    })
}

/// Negative pads crop first; positive pads are then filled relative to the cropped tensor (ONNX
/// Runtime's reading, since the spec's numpy reference rejects negative pads). For each of the
/// `out_dim` output coordinates of one axis, the source coordinate in `0..dim`, or `None` where
/// the constant is written.
pub fn pad_axis_map(
    dim: usize,
    begin: i128,
    end: i128,
    out_dim: usize,
    mode: PadMode,
) -> Result<Vec<Option<usize>>, RuleError> {
    // The cropped window of the source is `lo .. lo + kept`.
    let lo = (-begin).max(0);
    let kept = dim as i128 - lo - (-end).max(0);
    let pad_lo = begin.max(0);
    if kept <= 0 && out_dim > 0 && mode != PadMode::Constant {
        return Err(RuleError::invalid(format!(
            "cannot pad an empty axis in {} mode",
            mode.as_str()
        )));
    }
    let map = (0..out_dim as i128)
        .map(|o| {
            let j = o - pad_lo;
            let j = if (0..kept).contains(&j) {
                j
            } else {
                match mode {
                    PadMode::Constant => return None,
                    PadMode::Edge => j.clamp(0, kept - 1),
                    PadMode::Wrap => j.rem_euclid(kept),
                    PadMode::Reflect if kept == 1 => 0,
                    PadMode::Reflect => {
                        // Reflection without repeating the edge is periodic with period 2(kept-1).
                        let p = 2 * (kept - 1);
                        let m = j.rem_euclid(p);
                        if m >= kept { p - m } else { m }
                    }
                }
            };
            usize::try_from(lo + j).ok()
        })
        .collect();
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations() {
        assert_eq!(transpose_perm(None, 3), Ok(vec![2, 1, 0]));
        assert_eq!(transpose_perm(Some(&[1, 0, 2]), 3), Ok(vec![1, 0, 2]));
        assert!(transpose_perm(Some(&[0, 0, 1]), 3).is_err());
        assert!(transpose_perm(Some(&[0, 1]), 3).is_err());
        assert!(transpose_perm(Some(&[0, -1, 2]), 3).is_err());
    }

    #[test]
    fn slices_clamp_and_step_backwards() {
        let s = axis_slice(5, -1, i64::MIN, -2).unwrap();
        assert_eq!((s.start, s.step, s.count), (4, -2, 3));
        assert_eq!(axis_slice(5, 1, i64::MAX, 1).unwrap().count, 4);
        assert_eq!(axis_slice(0, 0, -1, -1).unwrap().count, 0);
        assert!(axis_slice(5, 0, 1, 0).is_err());
        let sl = slice_axes(&[4, 6], &[1], &[3], Some(&[-1]), None).unwrap();
        assert_eq!(sl[0], AxisSlice::whole(4));
        assert_eq!(sl[1].count, 2);
        assert!(slice_axes(&[4], &[0], &[1, 2], None, None).is_err());
    }

    #[test]
    fn pads_crop_then_fill() {
        let e = pad_extents(&[3, 2], &[1, -1, 0, 2], None).unwrap();
        assert_eq!(e.dims, [4, 3]);
        assert!(pad_extents(&[3], &[-2, -2], None).is_err());
        assert!(pad_extents(&[3], &[1], None).is_err());
        let m = pad_axis_map(3, 2, -1, 3, PadMode::Reflect).unwrap();
        assert_eq!(m, [Some(0), Some(1), Some(0)]);
        let m = pad_axis_map(2, 1, 0, 3, PadMode::Constant).unwrap();
        assert_eq!(m, [None, Some(0), Some(1)]);
        assert!(pad_axis_map(1, 0, -1, 1, PadMode::Edge).is_err());
    }
}
