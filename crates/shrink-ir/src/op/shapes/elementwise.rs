//! Shapes of the elementwise families (Unary, Binary, Variadic, Ternary, Convert, Quant), plus the
//! dim arithmetic the other families share: multidirectional broadcasting, unification of dims
//! that must be equal, axis normalization and products of dims.
use super::{InputInfo, ShapeError, shape_of};
use crate::Op;
use crate::op::{Convert, Quant, Ternary};
use crate::shape::{Dim, Shape};

/// Output shapes of an elementwise op (any other op gets unknown shapes).
pub fn infer(
    op: &Op,
    inputs: &[Option<InputInfo<'_>>],
    num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let same = || shape_of(inputs, 0).cloned();
    Ok(match op {
        Op::Unary(_) | Op::Ternary(Ternary::Clip) | Op::Convert(Convert::Cast { .. }) => {
            vec![same()]
        }
        Op::Binary(_) | Op::Variadic(_) => vec![broadcast_inputs(inputs, 0..inputs.len())?],
        Op::Ternary(Ternary::Where) => vec![broadcast_inputs(inputs, 0..3)?],
        // The mask has the data's shape.
        Op::Convert(Convert::Dropout { .. }) => vec![same(), same()],
        // y has x's shape; scale and zero point are per-tensor scalars.
        Op::Quant(Quant::DynamicQuantizeLinear) => {
            vec![same(), Some(Shape(vec![])), Some(Shape(vec![]))]
        }
        Op::Quant(_) => vec![same()],
        _ => vec![None; num_outputs],
    })
}

/// The broadcast of the present inputs among `range`; `None` if any of them has unknown rank.
pub(super) fn broadcast_inputs(
    inputs: &[Option<InputInfo<'_>>],
    range: std::ops::Range<usize>,
) -> Result<Option<Shape>, ShapeError> {
    let mut acc: Option<Shape> = None;
    for i in range {
        let Some(Some(info)) = inputs.get(i) else {
            continue;
        };
        let Some(s) = info.ty.shape.as_ref() else {
            return Ok(None);
        };
        acc = Some(match acc {
            None => s.clone(),
            Some(a) => broadcast(&a, s)?,
        });
    }
    Ok(acc)
}

/// Multidirectional (numpy) broadcasting of two shapes.
pub(super) fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    let rank = a.rank().max(b.rank());
    let one = Dim::Fixed(1);
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        // Align from the right; missing leading dims act as 1.
        let da = if i + a.rank() >= rank {
            &a.0[i + a.rank() - rank]
        } else {
            &one
        };
        let db = if i + b.rank() >= rank {
            &b.0[i + b.rank() - rank]
        } else {
            &one
        };
        dims.push(
            broadcast_dim(da, db)
                .ok_or_else(|| ShapeError::new(format!("cannot broadcast {a} with {b}")))?,
        );
    }
    Ok(Shape(dims))
}

/// One broadcast dimension; `None` when two fixed sizes conflict.
pub(super) fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Fixed(1), x) | (x, Dim::Fixed(1)) => Some(x.clone()),
        (Dim::Fixed(x), Dim::Fixed(y)) => (x == y).then_some(Dim::Fixed(*x)),
        // The other side is 1 or equal to n: either way the result is n.
        (Dim::Fixed(n), _) | (_, Dim::Fixed(n)) => Some(Dim::Fixed(*n)),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Some(Dim::Sym(x.clone())),
        // Two different symbols (or an unknown) may each be 1.
        _ => Some(Dim::Unknown),
    }
}

/// Two dims that the op requires to be equal (Concat's other axes, MatMul's K): the most
/// specific of them, `None` when two fixed sizes conflict.
pub(super) fn unify_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => (x == y).then_some(Dim::Fixed(*x)),
        (Dim::Fixed(n), _) | (_, Dim::Fixed(n)) => Some(Dim::Fixed(*n)),
        (Dim::Sym(x), Dim::Sym(y)) if x != y => Some(Dim::Unknown),
        (Dim::Sym(x), _) | (_, Dim::Sym(x)) => Some(Dim::Sym(x.clone())),
        _ => Some(Dim::Unknown),
    }
}

/// Normalizes an axis in `[-rank, rank)` to `[0, rank)`.
pub(super) fn norm_axis(axis: i64, rank: usize) -> Result<usize, ShapeError> {
    let r = i64::try_from(rank).map_err(|_| ShapeError::new("rank too large"))?;
    let a = if axis < 0 {
        axis.checked_add(r)
    } else {
        Some(axis)
    };
    match a {
        Some(a) if (0..r).contains(&a) => Ok(a as usize),
        _ => Err(ShapeError::new(format!(
            "axis {axis} is out of range for rank {rank}"
        ))),
    }
}

/// Normalizes a list of axes, rejecting duplicates.
pub(super) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, ShapeError> {
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank)?;
        if std::mem::replace(&mut seen[n], true) {
            return Err(ShapeError::new(format!("axis {a} is repeated")));
        }
        out.push(n);
    }
    Ok(out)
}

/// The product of some dims: fixed when all are fixed (or one is 0), a symbol when a single
/// symbol is multiplied by ones, unknown otherwise.
pub(super) fn dim_product(dims: &[Dim]) -> Result<Dim, ShapeError> {
    if dims.contains(&Dim::Fixed(0)) {
        return Ok(Dim::Fixed(0));
    }
    let mut fixed: usize = 1;
    let mut other: Vec<&Dim> = Vec::new();
    for d in dims {
        match d {
            Dim::Fixed(n) => fixed = fixed.checked_mul(*n).ok_or_else(overflow)?,
            d => other.push(d),
        }
    }
    Ok(match other.as_slice() {
        [] => Dim::Fixed(fixed),
        [Dim::Sym(s)] if fixed == 1 => Dim::Sym(s.clone()),
        _ => Dim::Unknown,
    })
}

/// The error for a dim computation that overflows.
pub(super) fn overflow() -> ShapeError {
    ShapeError::new("dimension arithmetic overflows")
}

/// A non-negative i64 as a fixed dim.
pub(super) fn to_dim(v: i64) -> Result<Dim, ShapeError> {
    usize::try_from(v)
        .map(Dim::Fixed)
        .map_err(|_| ShapeError::new(format!("negative dimension {v}")))
}

#[cfg(test)]
mod tests {
    use super::super::{InputInfo, infer_shapes};
    use crate::op::{Binary, Ternary};
    use crate::shape::{Dim, Shape};
    use crate::{DType, Op, ValueType};

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    fn run(op: Op, shapes: &[Shape]) -> Result<Option<Shape>, super::ShapeError> {
        let tys: Vec<ValueType> = shapes
            .iter()
            .map(|s| ValueType::new(DType::F32, Some(s.clone())))
            .collect();
        let infos: Vec<_> = tys
            .iter()
            .map(|ty| Some(InputInfo { ty, value: None }))
            .collect();
        Ok(infer_shapes(&op, &infos, 1)?.remove(0))
    }

    #[test]
    fn broadcasting_keeps_symbols() {
        let a = Shape(vec![sym("N"), Dim::Fixed(3)]);
        let b = Shape::fixed(&[1, 3]);
        assert_eq!(
            run(Op::Binary(Binary::Add), &[a.clone(), b]).unwrap(),
            Some(a.clone())
        );
        // A fixed size > 1 decides the dim whatever the symbol is bound to.
        let c = Shape(vec![Dim::Fixed(4), sym("M")]);
        let got = run(Op::Binary(Binary::Mul), &[a.clone(), c]).unwrap();
        assert_eq!(got, Some(Shape(vec![Dim::Fixed(4), Dim::Fixed(3)])));
        // Different symbols could each be 1.
        let d = Shape(vec![sym("K"), Dim::Fixed(3)]);
        assert_eq!(
            run(Op::Binary(Binary::Sub), &[a, d]).unwrap(),
            Some(Shape(vec![Dim::Unknown, Dim::Fixed(3)]))
        );
    }

    #[test]
    fn broadcasting_rejects_conflicts_and_pads_rank() {
        assert!(
            run(
                Op::Binary(Binary::Add),
                &[Shape::fixed(&[2, 3]), Shape::fixed(&[4])]
            )
            .is_err()
        );
        let got = run(
            Op::Ternary(Ternary::Where),
            &[
                Shape::fixed(&[3]),
                Shape(vec![sym("B"), Dim::Fixed(1), Dim::Fixed(1)]),
                Shape::fixed(&[5, 1]),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            Some(Shape(vec![sym("B"), Dim::Fixed(5), Dim::Fixed(3)]))
        );
    }
}
