//! Shapes of the reductions: Reduce* (axes from the optional constant input 1; none means every
//! axis, or the identity with `noop_with_empty_axes`) and ArgMax/ArgMin (one `axis` attribute);
//! reduced axes become 1 with `keepdims` and are dropped without it.
use super::elementwise::{norm_axes, norm_axis};
use super::{InputInfo, ShapeError, const_ints, shape_of, unknown_dims};
use crate::op::Reduce;
use crate::shape::{Dim, Shape};

/// Output shape of a reduction.
pub fn infer(
    op: &Reduce,
    inputs: &[Option<InputInfo<'_>>],
    _num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let Some(x) = shape_of(inputs, 0) else {
        return Ok(vec![None]);
    };
    let out = match op {
        Reduce::ArgMax { axis, keepdims, .. } | Reduce::ArgMin { axis, keepdims, .. } => {
            Some(reduce(x, &[norm_axis(*axis, x.rank())?], *keepdims))
        }
        reduction => {
            let (keepdims, noop_with_empty_axes) =
                reduction.axes_flags().expect("ArgMax/ArgMin handled above");
            let present = matches!(inputs.get(1), Some(Some(_)));
            // A present axes input whose length is statically 0 is the same as an absent one.
            let statically_empty = matches!(
                shape_of(inputs, 1).map(|s| s.0.as_slice()),
                Some([Dim::Fixed(0)])
            );
            match const_ints(inputs, 1) {
                Some(axes) if !axes.is_empty() => {
                    Some(reduce(x, &norm_axes(&axes, x.rank())?, keepdims))
                }
                axes if !present || axes.is_some() || statically_empty => {
                    if noop_with_empty_axes {
                        Some(x.clone())
                    } else {
                        let all: Vec<usize> = (0..x.rank()).collect();
                        Some(reduce(x, &all, keepdims))
                    }
                }
                // Axes only known at run time: with keepdims the rank survives.
                _ => keepdims.then(|| unknown_dims(x.rank())),
            }
        }
    };
    Ok(vec![out])
}

/// `x` with `axes` (normalized, distinct) set to 1 or removed.
fn reduce(x: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    let dims =
        x.0.iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(Dim::Fixed(1)),
                (true, false) => None,
            });
    Shape(dims.collect())
}
