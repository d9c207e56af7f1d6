//! Shapes of the data-movement and shape-computation ops (Layout family). Many of them read a
//! shape-like constant input (Reshape's shape, Slice's starts/ends, Pad's pads, Range's bounds,
//! ...); when that input is not a constant the rule still gives the rank where it is implied
//! (by the op or by the length of the shape-like input) with unknown dims.
use super::elementwise::{
    broadcast, dim_product, norm_axes, norm_axis, overflow, to_dim, unify_dim,
};
use super::{InputInfo, ShapeError, const_ints, shape_of, unknown_dims};
use crate::op::Layout;
use crate::shape::{Dim, Shape};

type Out = Result<Option<Shape>, ShapeError>;

/// Output shapes of a layout op.
pub fn infer(
    op: &Layout,
    inputs: &[Option<InputInfo<'_>>],
    num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let one = |s: Out| s.map(|s| vec![s]);
    match op {
        Layout::Reshape { allowzero } => one(reshape(inputs, *allowzero)),
        Layout::Flatten { axis } => one(flatten(inputs, *axis)),
        Layout::Transpose { perm } => one(transpose(inputs, perm.as_deref())),
        Layout::Concat { axis } => one(concat(inputs, *axis)),
        Layout::Squeeze => one(squeeze(inputs)),
        Layout::Unsqueeze => one(unsqueeze(inputs)),
        Layout::Shape { start, end } => one(Ok(Some(shape_op(shape_of(inputs, 0), *start, *end)))),
        Layout::Gather { axis } => one(gather(inputs, *axis)),
        Layout::Slice => one(slice(inputs)),
        Layout::Split {
            axis,
            num_outputs: n,
        } => split(inputs, *axis, *n, num_outputs),
        Layout::Expand => one(expand(inputs)),
        Layout::Tile => one(tile(inputs)),
        Layout::Pad { .. } => one(pad(inputs)),
        Layout::ConstantOfShape { .. } => one(Ok(shape_input(inputs, 0)?)),
        Layout::Range => one(range(inputs)),
    }
}

/// The statically known length of a 1-D shape-like input (`None` if not known).
fn len_of(inputs: &[Option<InputInfo<'_>>], i: usize) -> Option<usize> {
    match shape_of(inputs, i).map(|s| s.0.as_slice()) {
        // A declared length beyond any real rank says nothing usable (and must not be
        // allocated as a rank).
        Some([Dim::Fixed(n)]) => (*n <= crate::shape::MAX_RANK).then_some(*n),
        Some([]) => Some(1),
        _ => None,
    }
}

/// A shape given by input `i` as i64 values: fixed when constant, else rank-only when its length
/// is known.
fn shape_input(inputs: &[Option<InputInfo<'_>>], i: usize) -> Out {
    match const_ints(inputs, i) {
        Some(v) => Ok(Some(Shape(
            v.into_iter().map(to_dim).collect::<Result<_, _>>()?,
        ))),
        None => Ok(len_of(inputs, i).map(unknown_dims)),
    }
}

/// Reshape: 0 copies the input dim (unless `allowzero`), -1 takes what is left.
fn reshape(inputs: &[Option<InputInfo<'_>>], allowzero: bool) -> Out {
    let x = shape_of(inputs, 0);
    let Some(target) = const_ints(inputs, 1) else {
        return Ok(len_of(inputs, 1).map(unknown_dims));
    };
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    let mut copied = vec![false; x.map_or(0, Shape::rank)];
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer_at.is_some() => {
                return Err(ShapeError::new("Reshape shape has more than one -1"));
            }
            -1 => {
                infer_at = Some(i);
                out.push(Dim::Unknown);
            }
            0 if !allowzero => match x {
                None => out.push(Dim::Unknown),
                Some(x) => {
                    let d = x
                        .0
                        .get(i)
                        .ok_or_else(|| ShapeError::new(format!("Reshape copies dim {i} of {x}")))?;
                    copied[i] = true;
                    out.push(d.clone());
                }
            },
            t => out.push(to_dim(t)?),
        }
    }
    if allowzero && infer_at.is_some() && target.contains(&0) {
        return Err(ShapeError::new(
            "Reshape with allowzero cannot have both 0 and -1",
        ));
    }
    let Some(x) = x else {
        return Ok(Some(Shape(out)));
    };
    // Copied dims cancel out; what remains of the input must equal what remains of the output.
    let rest_in: Vec<Dim> =
        x.0.iter()
            .zip(&copied)
            .filter(|(_, c)| !**c)
            .map(|(d, _)| d.clone())
            .collect();
    let mut rest_out: usize = 1;
    for (i, &t) in target.iter().enumerate() {
        if Some(i) != infer_at && !copied.get(i).copied().unwrap_or(false) {
            rest_out = rest_out
                .checked_mul(usize::try_from(t).map_err(|_| overflow())?)
                .ok_or_else(overflow)?;
        }
    }
    let mut fixed_in: usize = 1;
    for d in &rest_in {
        if let Dim::Fixed(n) = d {
            fixed_in = fixed_in.checked_mul(*n).ok_or_else(overflow)?;
        }
    }
    let free_in: Vec<Dim> = rest_in
        .into_iter()
        .filter(|d| !matches!(d, Dim::Fixed(_)))
        .collect();
    match infer_at {
        Some(at) => {
            if free_in.is_empty() || fixed_in == 0 {
                if rest_out == 0 || !fixed_in.is_multiple_of(rest_out) {
                    return Err(ShapeError::new(format!("cannot reshape {x} to {target:?}")));
                }
                out[at] = Dim::Fixed(fixed_in / rest_out);
            } else if rest_out != 0 && fixed_in.is_multiple_of(rest_out) {
                // [N, 3, 4] -> [-1, 12]: the fixed parts cancel, leaving N.
                let mut rest = free_in;
                rest.push(Dim::Fixed(fixed_in / rest_out));
                out[at] = dim_product(&rest)?;
            }
        }
        None if free_in.is_empty() && fixed_in != rest_out => {
            return Err(ShapeError::new(format!("cannot reshape {x} to {target:?}")));
        }
        None => {}
    }
    Ok(Some(Shape(out)))
}

/// Flatten: [prod(d[..axis]), prod(d[axis..])], axis in [-r, r].
fn flatten(inputs: &[Option<InputInfo<'_>>], axis: i64) -> Out {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(Some(unknown_dims(2)));
    };
    // Unlike other axes, Flatten's may equal the rank; a negative one counts from the rank.
    let r = i64::try_from(x.rank()).map_err(|_| overflow())?;
    let a = if axis < 0 {
        axis.saturating_add(r)
    } else {
        axis
    };
    let a = usize::try_from(a)
        .ok()
        .filter(|&a| a <= x.rank())
        .ok_or_else(|| ShapeError::new(format!("Flatten axis {axis} is out of range for {x}")))?;
    Ok(Some(Shape(vec![
        dim_product(&x.0[..a])?,
        dim_product(&x.0[a..])?,
    ])))
}

fn transpose(inputs: &[Option<InputInfo<'_>>], perm: Option<&[i64]>) -> Out {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(perm.map(|p| unknown_dims(p.len())));
    };
    let r = x.rank();
    let perm: Vec<usize> = match perm {
        None => (0..r).rev().collect(),
        Some(p) if p.len() == r => norm_axes(p, r)?,
        Some(p) => {
            return Err(ShapeError::new(format!(
                "Transpose perm {p:?} does not fit {x}"
            )));
        }
    };
    Ok(Some(Shape(perm.iter().map(|&i| x.0[i].clone()).collect())))
}

/// Concat: dims off the axis must agree, the axis dims add up.
fn concat(inputs: &[Option<InputInfo<'_>>], axis: i64) -> Out {
    let present: Vec<Option<&Shape>> = inputs
        .iter()
        .flatten()
        .map(|i| i.ty.shape.as_ref())
        .collect();
    let Some(rank) = present.iter().flatten().map(|s| s.rank()).next() else {
        return Ok(None);
    };
    let a = norm_axis(axis, rank)?;
    let mut dims = vec![Dim::Unknown; rank];
    dims[a] = Dim::Fixed(0);
    for s in &present {
        let Some(s) = s else {
            dims[a] = Dim::Unknown;
            continue;
        };
        if s.rank() != rank {
            return Err(ShapeError::new(format!(
                "Concat inputs differ in rank: {s} vs rank {rank}"
            )));
        }
        for (i, (acc, d)) in dims.iter_mut().zip(&s.0).enumerate() {
            *acc = if i == a {
                match (&*acc, d) {
                    (Dim::Fixed(x), Dim::Fixed(y)) => {
                        Dim::Fixed(x.checked_add(*y).ok_or_else(overflow)?)
                    }
                    (Dim::Fixed(0), d) => d.clone(),
                    _ => Dim::Unknown,
                }
            } else {
                unify_dim(acc, d).ok_or_else(|| {
                    ShapeError::new(format!("Concat input {s} differs off axis {a}"))
                })?
            };
        }
    }
    Ok(Some(Shape(dims)))
}

fn squeeze(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let x = shape_of(inputs, 0);
    let axes_given = matches!(inputs.get(1), Some(Some(_))) && len_of(inputs, 1) != Some(0);
    let axes = const_ints(inputs, 1).filter(|a| !a.is_empty());
    let Some(x) = x else { return Ok(None) };
    match axes {
        Some(axes) => {
            let axes = norm_axes(&axes, x.rank())?;
            let mut dims = Vec::with_capacity(x.rank());
            for (i, d) in x.0.iter().enumerate() {
                if !axes.contains(&i) {
                    dims.push(d.clone());
                } else if matches!(d, Dim::Fixed(n) if *n != 1) {
                    return Err(ShapeError::new(format!("Squeeze axis {i} of {x} is not 1")));
                }
            }
            Ok(Some(Shape(dims)))
        }
        None if axes_given => Ok(len_of(inputs, 1)
            .and_then(|k| x.rank().checked_sub(k))
            .map(unknown_dims)),
        // Without axes every 1 goes; a dim that is not fixed may or may not be 1.
        None if x.as_fixed().is_some() => Ok(Some(Shape(
            x.0.iter()
                .filter(|d| **d != Dim::Fixed(1))
                .cloned()
                .collect(),
        ))),
        None => Ok(None),
    }
}

fn unsqueeze(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(None);
    };
    let Some(axes) = const_ints(inputs, 1) else {
        return Ok(len_of(inputs, 1)
            .and_then(|k| x.rank().checked_add(k))
            .map(unknown_dims));
    };
    let rank = x.rank().checked_add(axes.len()).ok_or_else(overflow)?;
    let axes = norm_axes(&axes, rank)?;
    let mut rest = x.0.iter();
    let dims = (0..rank).map(|i| {
        if axes.contains(&i) {
            Dim::Fixed(1)
        } else {
            rest.next().cloned().unwrap_or(Dim::Unknown)
        }
    });
    Ok(Some(Shape(dims.collect())))
}

/// Shape: a 1-D tensor of the dims in [start, end) (both clamped to the rank).
fn shape_op(x: Option<&Shape>, start: i64, end: Option<i64>) -> Shape {
    let Some(x) = x else { return unknown_dims(1) };
    let r = x.rank() as i64;
    let clamp = |v: i64| {
        if v < 0 {
            v.saturating_add(r).max(0)
        } else {
            v.min(r)
        }
    };
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    Shape::fixed(&[(e - s).max(0) as usize])
}

/// Gather: data's axis is replaced by the indices' dims.
fn gather(inputs: &[Option<InputInfo<'_>>], axis: i64) -> Out {
    let (Some(x), Some(ind)) = (shape_of(inputs, 0), shape_of(inputs, 1)) else {
        return Ok(None);
    };
    let a = norm_axis(axis, x.rank())?;
    let mut dims = x.0[..a].to_vec();
    dims.extend(ind.0.iter().cloned());
    dims.extend(x.0[a + 1..].iter().cloned());
    Ok(Some(Shape(dims)))
}

/// Slice with constant starts/ends (and optional axes/steps); bounds are clamped as ONNX says.
fn slice(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(None);
    };
    let r = x.rank();
    let given = |i: usize| matches!(inputs.get(i), Some(Some(_)));
    let axes = if given(3) {
        const_ints(inputs, 3)
    } else {
        Some((0..r as i64).collect())
    };
    let (Some(starts), Some(ends), Some(axes)) =
        (const_ints(inputs, 1), const_ints(inputs, 2), axes)
    else {
        // Which axes change (or by how much) is not known.
        return Ok(Some(unknown_dims(r)));
    };
    let steps = if given(4) {
        const_ints(inputs, 4)
    } else {
        Some(vec![1; starts.len()])
    };
    let n = starts.len();
    let axes = if given(3) {
        axes
    } else {
        axes.into_iter().take(n).collect()
    };
    if ends.len() != n || axes.len() != n || steps.as_ref().is_some_and(|s| s.len() != n) {
        return Err(ShapeError::new(
            "Slice starts, ends, axes and steps differ in length",
        ));
    }
    let axes = norm_axes(&axes, r)?;
    let mut dims = x.0.clone();
    for (k, &a) in axes.iter().enumerate() {
        let step = match &steps {
            Some(s) => s[k],
            None => {
                dims[a] = Dim::Unknown;
                continue;
            }
        };
        dims[a] = slice_dim(&x.0[a], starts[k], ends[k], step)?;
    }
    Ok(Some(Shape(dims)))
}

/// The length of one sliced axis.
fn slice_dim(d: &Dim, start: i64, end: i64, step: i64) -> Result<Dim, ShapeError> {
    if step == 0 {
        return Err(ShapeError::new("Slice step is 0"));
    }
    let Dim::Fixed(n) = d else {
        // The whole axis, forwards.
        return Ok(if step == 1 && start == 0 && end >= i32::MAX as i64 {
            d.clone()
        } else {
            Dim::Unknown
        });
    };
    Ok(Dim::Fixed(slice_range(*n, start, end, step).1))
}

/// The first index and the length of `start..end` by `step` (not 0) over an axis of `n`, with
/// ONNX's clamping.
pub(super) fn slice_range(n: usize, start: i64, end: i64, step: i64) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    // i128 keeps start/end near i64::MIN/MAX from overflowing.
    let (n, start, end, step) = (n as i128, start as i128, end as i128, step as i128);
    let wrap = |v: i128| if v < 0 { v + n } else { v };
    let (first, len) = if step > 0 {
        let (s, e) = (wrap(start).clamp(0, n), wrap(end).clamp(0, n));
        (s, if e > s { (e - s + step - 1) / step } else { 0 })
    } else {
        let (s, e) = (wrap(start).clamp(0, n - 1), wrap(end).clamp(-1, n - 1));
        (s, if s > e { (s - e - step - 1) / -step } else { 0 })
    };
    // Both are within 0..=n.
    (first as usize, len as usize)
}

/// Split by constant sizes, into `num_outputs` ceil-sized chunks, or into equal parts.
fn split(
    inputs: &[Option<InputInfo<'_>>],
    axis: i64,
    num_outputs_attr: Option<i64>,
    num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(vec![None; num_outputs]);
    };
    let a = norm_axis(axis, x.rank())?;
    let with = |d: Dim| {
        let mut s = x.clone();
        s.0[a] = d;
        Some(s)
    };
    let sizes_given = matches!(inputs.get(1), Some(Some(_)));
    let sizes: Option<Vec<i64>> = if sizes_given {
        match const_ints(inputs, 1) {
            Some(s) => Some(s),
            None => return Ok(vec![with(Dim::Unknown); num_outputs]),
        }
    } else {
        None
    };
    let count = match num_outputs_attr {
        Some(n) if !sizes_given => usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| ShapeError::new("Split num_outputs must be positive"))?,
        _ => sizes.as_ref().map_or(num_outputs, Vec::len),
    };
    if count != num_outputs {
        return Err(ShapeError::new(format!(
            "Split makes {count} parts but the node has {num_outputs} outputs"
        )));
    }
    let sizes: Vec<usize> = match (sizes, &x.0[a]) {
        (Some(s), d) => {
            let s: Vec<usize> = s
                .into_iter()
                .map(|v| usize::try_from(v).map_err(|_| ShapeError::new("negative Split size")))
                .collect::<Result<_, _>>()?;
            let total = s
                .iter()
                .try_fold(0usize, |acc, &v| acc.checked_add(v))
                .ok_or_else(overflow)?;
            if matches!(d, Dim::Fixed(n) if *n != total) {
                return Err(ShapeError::new(format!(
                    "Split sizes {s:?} do not add up to dim {d} of {x}"
                )));
            }
            s
        }
        (None, Dim::Fixed(n)) if count == 0 => {
            return Err(ShapeError::new(format!("Split of dim {n} into no outputs")));
        }
        (None, Dim::Fixed(n)) => {
            let uneven = num_outputs_attr.is_some() && !sizes_given;
            if !n.is_multiple_of(count) && !uneven {
                return Err(ShapeError::new(format!(
                    "dim {n} does not split evenly into {count}"
                )));
            }
            // Chunks of ceil(n / count); the last one takes what is left.
            let chunk = n.div_ceil(count);
            let before = chunk.checked_mul(count - 1).ok_or_else(overflow)?;
            let last = n.checked_sub(before).ok_or_else(|| {
                ShapeError::new(format!(
                    "dim {n} cannot split into {count} chunks of {chunk}"
                ))
            })?;
            let mut s = vec![chunk; count - 1];
            s.push(last);
            s
        }
        (None, d) => {
            let d = if count == 1 { d.clone() } else { Dim::Unknown };
            return Ok(vec![with(d); num_outputs]);
        }
    };
    Ok(sizes.into_iter().map(|s| with(Dim::Fixed(s))).collect())
}

/// Expand: bidirectional broadcast of the input with the target shape.
fn expand(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let x = shape_of(inputs, 0);
    let target = shape_input(inputs, 1)?;
    Ok(match (x, target) {
        (Some(x), Some(t)) if const_ints(inputs, 1).is_some() => Some(broadcast(x, &t)?),
        (Some(x), Some(t)) => Some(unknown_dims(x.rank().max(t.rank()))),
        _ => None,
    })
}

/// Tile: each dim times its repeat count.
fn tile(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(None);
    };
    let Some(reps) = const_ints(inputs, 1) else {
        return Ok(Some(unknown_dims(x.rank())));
    };
    if reps.len() != x.rank() {
        return Err(ShapeError::new(format!(
            "Tile repeats {reps:?} do not fit {x}"
        )));
    }
    let dims = x.0.iter().zip(&reps).map(|(d, &r)| {
        let r = usize::try_from(r).map_err(|_| ShapeError::new("negative Tile repeat"))?;
        Ok(match d {
            Dim::Fixed(n) => Dim::Fixed(n.checked_mul(r).ok_or_else(overflow)?),
            _ if r == 0 => Dim::Fixed(0),
            d if r == 1 => d.clone(),
            _ => Dim::Unknown,
        })
    });
    Ok(Some(Shape(dims.collect::<Result<_, ShapeError>>()?)))
}

/// Pad: [begin..., end...] over `axes` (all by default); pads may be negative (cropping).
fn pad(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(None);
    };
    let r = x.rank();
    let axes = if matches!(inputs.get(3), Some(Some(_))) {
        const_ints(inputs, 3)
    } else {
        Some((0..r as i64).collect())
    };
    let (Some(pads), Some(axes)) = (const_ints(inputs, 1), axes) else {
        return Ok(Some(unknown_dims(r)));
    };
    let axes = norm_axes(&axes, r)?;
    if pads.len() != 2 * axes.len() {
        return Err(ShapeError::new(format!(
            "Pad has {} pads for {} axes",
            pads.len(),
            axes.len()
        )));
    }
    let mut dims = x.0.clone();
    for (k, &a) in axes.iter().enumerate() {
        let total = pads[k]
            .checked_add(pads[k + axes.len()])
            .ok_or_else(overflow)?;
        dims[a] = match &x.0[a] {
            Dim::Fixed(n) => {
                let n = i64::try_from(*n).map_err(|_| overflow())?;
                let v = n.checked_add(total).ok_or_else(overflow)?;
                to_dim(v)
                    .map_err(|_| ShapeError::new(format!("Pad crops axis {a} of {x} below 0")))?
            }
            d if total == 0 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    Ok(Some(Shape(dims)))
}

/// Range: max(ceil((limit - start) / delta), 0) elements, from constant scalars.
fn range(inputs: &[Option<InputInfo<'_>>]) -> Out {
    let scalar = |i: usize| {
        inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|x| x.value)
            .filter(|t| t.len() == 1)
    };
    let (Some(start), Some(limit), Some(delta)) = (scalar(0), scalar(1), scalar(2)) else {
        return Ok(Some(unknown_dims(1)));
    };
    let n: i128 = if start.dtype().is_int() {
        // Exact integer arithmetic: i128 holds any difference of i64s.
        let (s, l, d) = (
            start.get_i64(0) as i128,
            limit.get_i64(0) as i128,
            delta.get_i64(0) as i128,
        );
        if d == 0 {
            return Err(ShapeError::new("Range delta is 0"));
        }
        let diff = l - s;
        // ceil(diff / d) for either sign of d.
        let q = diff / d;
        if diff % d != 0 && (diff < 0) == (d < 0) {
            q + 1
        } else {
            q
        }
    } else {
        let (s, l, d) = (start.get_f64(0), limit.get_f64(0), delta.get_f64(0));
        let n = ((l - s) / d).ceil();
        if !n.is_finite() {
            return Err(ShapeError::new(format!(
                "Range({s}, {l}, {d}) has no finite length"
            )));
        }
        if n > i64::MAX as f64 {
            return Err(overflow());
        }
        n as i128
    };
    let n = usize::try_from(n.max(0)).map_err(|_| overflow())?;
    Ok(Some(Shape::fixed(&[n])))
}

#[cfg(test)]
mod tests {
    use super::super::{InputInfo, infer_shapes};
    use crate::op::Layout;
    use crate::shape::{Dim, Shape};
    use crate::{DType, Op, Tensor, ValueType};

    /// Runs `op` on a data input of shape `x` followed by constant i64 inputs.
    fn run(
        op: Layout,
        x: Shape,
        consts: &[Vec<i64>],
        n: usize,
    ) -> Result<Vec<Option<Shape>>, super::ShapeError> {
        let ts: Vec<Tensor> = consts
            .iter()
            .map(|c| Tensor::from_vec(vec![c.len()], c.clone()))
            .collect();
        let mut tys = vec![ValueType::new(DType::F32, Some(x))];
        tys.extend(ts.iter().map(|t| ValueType::fixed(DType::I64, t.dims())));
        let infos: Vec<_> = tys
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                Some(InputInfo {
                    ty,
                    value: i.checked_sub(1).map(|k| &ts[k]),
                })
            })
            .collect();
        infer_shapes(&Op::Layout(op), &infos, n)
    }

    #[test]
    fn reshape_cancels_fixed_dims_around_a_symbol() {
        let x = Shape(vec![Dim::Sym("N".into()), Dim::Fixed(3), Dim::Fixed(4)]);
        let got = run(
            Layout::Reshape { allowzero: false },
            x.clone(),
            &[vec![-1, 12]],
            1,
        )
        .unwrap();
        assert_eq!(
            got[0],
            Some(Shape(vec![Dim::Sym("N".into()), Dim::Fixed(12)]))
        );
        let got = run(
            Layout::Reshape { allowzero: false },
            x,
            &[vec![0, 2, -1]],
            1,
        )
        .unwrap();
        assert_eq!(
            got[0],
            Some(Shape(vec![
                Dim::Sym("N".into()),
                Dim::Fixed(2),
                Dim::Fixed(6)
            ]))
        );
        assert!(
            run(
                Layout::Reshape { allowzero: false },
                Shape::fixed(&[2, 3]),
                &[vec![4, -1]],
                1
            )
            .is_err()
        );
    }

    #[test]
    fn slice_clamps_and_steps_backwards() {
        let got = run(
            Layout::Slice,
            Shape::fixed(&[10, 5]),
            &[vec![-1], vec![i64::MIN], vec![0], vec![-3]],
            1,
        )
        .unwrap();
        assert_eq!(got[0], Some(Shape::fixed(&[4, 5])));
    }

    #[test]
    fn split_into_ceil_sized_chunks() {
        let got = run(
            Layout::Split {
                axis: 1,
                num_outputs: Some(3),
            },
            Shape::fixed(&[2, 7]),
            &[],
            3,
        )
        .unwrap();
        let want: Vec<_> = [3, 3, 1]
            .iter()
            .map(|&n| Some(Shape::fixed(&[2, n])))
            .collect();
        assert_eq!(got, want);
    }
}
