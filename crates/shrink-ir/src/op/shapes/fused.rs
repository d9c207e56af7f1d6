//! Shapes of the optimizer's fused ops: DenseAct is a MatMul with a 2-D (optionally transposed)
//! weight; bias and activation keep the product's shape.
use super::{InputInfo, ShapeError};
use crate::ValueType;
use crate::op::{Fused, Linear};
use crate::shape::Shape;

pub fn infer(
    op: &Fused,
    inputs: &[Option<InputInfo<'_>>],
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let Fused::DenseAct { trans_b, .. } = op;
    let (Some(x), Some(w)) = (
        inputs.first().copied().flatten(),
        inputs.get(1).copied().flatten(),
    ) else {
        return Ok(vec![None]);
    };
    let Some(ws) = &w.ty.shape else {
        return Ok(vec![None]);
    };
    if ws.rank() != 2 {
        return Err(ShapeError::new(format!(
            "DenseAct needs a 2-D weight, found {ws}"
        )));
    }
    let eff = if *trans_b {
        Shape(vec![ws.0[1].clone(), ws.0[0].clone()])
    } else {
        ws.clone()
    };
    let ty = ValueType::new(w.ty.dtype, Some(eff));
    let w_eff = InputInfo {
        ty: &ty,
        value: None,
    };
    super::linear::infer(&Linear::MatMul, &[Some(x), Some(w_eff)], 1)
}
