//! Shapes of the matrix products: MatMul (numpy semantics: 1-D operands promoted and the added
//! dim dropped again, batch dims broadcast), Gemm (2-D with transpose flags), and the quantized
//! MatMulInteger / QLinearMatMul, which follow MatMul on their A and B inputs.
use super::elementwise::{broadcast, unify_dim};
use super::{InputInfo, ShapeError, shape_of};
use crate::op::Linear;
use crate::shape::{Dim, Shape};

/// Output shape of a matrix product.
pub fn infer(
    op: &Linear,
    inputs: &[Option<InputInfo<'_>>],
    _num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let out = match op {
        Linear::MatMul | Linear::MatMulInteger => matmul(shape_of(inputs, 0), shape_of(inputs, 1))?,
        Linear::QLinearMatMul => matmul(shape_of(inputs, 0), shape_of(inputs, 3))?,
        Linear::Gemm {
            trans_a, trans_b, ..
        } => gemm(inputs, *trans_a, *trans_b)?,
    };
    Ok(vec![out])
}

/// `A @ B` with numpy's rules.
fn matmul(a: Option<&Shape>, b: Option<&Shape>) -> Result<Option<Shape>, ShapeError> {
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(None);
    };
    let (ra, rb) = (a.rank(), b.rank());
    if ra == 0 || rb == 0 {
        return Err(ShapeError::new("MatMul operands must have rank >= 1"));
    }
    // A 1-D A is a row vector [1, K] whose row dim is dropped; a 1-D B a column [K, 1].
    let (a_batch, m, ka) = if ra == 1 {
        (&a.0[..0], None, &a.0[0])
    } else {
        (&a.0[..ra - 2], Some(&a.0[ra - 2]), &a.0[ra - 1])
    };
    let (b_batch, kb, n) = if rb == 1 {
        (&b.0[..0], &b.0[0], None)
    } else {
        (&b.0[..rb - 2], &b.0[rb - 2], Some(&b.0[rb - 1]))
    };
    if unify_dim(ka, kb).is_none() {
        return Err(ShapeError::new(format!(
            "MatMul inner dims differ: {a} @ {b}"
        )));
    }
    let batch = broadcast(&Shape(a_batch.to_vec()), &Shape(b_batch.to_vec()))?;
    let mut dims = batch.0;
    dims.extend(m.cloned());
    dims.extend(n.cloned());
    Ok(Some(Shape(dims)))
}

/// Gemm: `op(A)` is [M, K], `op(B)` is [K, N]; C only has to broadcast to [M, N].
fn gemm(
    inputs: &[Option<InputInfo<'_>>],
    trans_a: bool,
    trans_b: bool,
) -> Result<Option<Shape>, ShapeError> {
    let dims2 = |s: Option<&Shape>, trans: bool| -> Result<Option<(Dim, Dim)>, ShapeError> {
        match s.map(|s| s.0.as_slice()) {
            None => Ok(None),
            Some([r, c]) => Ok(Some(if trans {
                (c.clone(), r.clone())
            } else {
                (r.clone(), c.clone())
            })),
            Some(_) => Err(ShapeError::new("Gemm operands must be 2-D")),
        }
    };
    let a = dims2(shape_of(inputs, 0), trans_a)?;
    let b = dims2(shape_of(inputs, 1), trans_b)?;
    if let (Some((_, ka)), Some((kb, _))) = (&a, &b)
        && unify_dim(ka, kb).is_none()
    {
        return Err(ShapeError::new(format!(
            "Gemm inner dims differ: {ka} vs {kb}"
        )));
    }
    let m = a.map_or(Dim::Unknown, |(m, _)| m);
    let n = b.map_or(Dim::Unknown, |(_, n)| n);
    let out = Shape(vec![m, n]);
    if let Some(c) = shape_of(inputs, 2) {
        // C broadcasts unidirectionally to [M, N].
        let joint = broadcast(&out, c)?;
        if joint.rank() != 2 {
            return Err(ShapeError::new(format!(
                "Gemm C {c} does not broadcast to {out}"
            )));
        }
        // Where C has a dim > 1 it must equal the output's, so it pins an unknown one.
        let pinned = out.0.iter().zip(&joint.0).map(|(o, j)| match (o, j) {
            (Dim::Sym(_) | Dim::Unknown, Dim::Fixed(n)) if *n > 1 => j.clone(),
            _ => o.clone(),
        });
        return Ok(Some(Shape(pinned.collect())));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::super::{InputInfo, infer_shapes};
    use crate::op::Linear;
    use crate::shape::{Dim, Shape};
    use crate::{DType, Op, ValueType};

    fn run(op: Linear, shapes: &[Shape]) -> Result<Option<Shape>, super::ShapeError> {
        let tys: Vec<ValueType> = shapes
            .iter()
            .map(|s| ValueType::new(DType::F32, Some(s.clone())))
            .collect();
        let infos: Vec<_> = tys
            .iter()
            .map(|ty| Some(InputInfo { ty, value: None }))
            .collect();
        Ok(infer_shapes(&Op::Linear(op), &infos, 1)?.remove(0))
    }

    #[test]
    fn matmul_with_symbols_and_promotion() {
        let (b, s) = (Dim::Sym("B".into()), Dim::Sym("S".into()));
        let x = Shape(vec![b.clone(), s.clone(), Dim::Fixed(64)]);
        let got = run(Linear::MatMul, &[x.clone(), Shape::fixed(&[64, 128])]).unwrap();
        assert_eq!(
            got,
            Some(Shape(vec![b.clone(), s.clone(), Dim::Fixed(128)]))
        );
        let got = run(Linear::MatMul, &[x.clone(), Shape::fixed(&[64])]).unwrap();
        assert_eq!(got, Some(Shape(vec![b.clone(), s])));
        let got = run(
            Linear::MatMul,
            &[Shape::fixed(&[3]), Shape::fixed(&[2, 3, 4])],
        )
        .unwrap();
        assert_eq!(got, Some(Shape::fixed(&[2, 4])));
        assert!(run(Linear::MatMul, &[x, Shape::fixed(&[32, 8])]).is_err());
    }

    #[test]
    fn gemm_transposes() {
        let gemm = Linear::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: true,
            trans_b: true,
        };
        let got = run(
            gemm,
            &[
                Shape(vec![Dim::Fixed(5), Dim::Sym("M".into())]),
                Shape::fixed(&[7, 5]),
            ],
        )
        .unwrap();
        assert_eq!(got, Some(Shape(vec![Dim::Sym("M".into()), Dim::Fixed(7)])));
    }
}
