//! Shapes of the normalizations and softmaxes (Norm family) and the transformer blocks
//! (RotaryEmbedding, SwiGLU): Y always has X's shape; the extra outputs are LayerNormalization's
//! Mean/InvStdDev (X's shape with the normalized axes reduced to 1) and BatchNormalization's
//! running mean/var in training mode ([C]).
use super::elementwise::{broadcast_inputs, norm_axis};
use super::{InputInfo, ShapeError, shape_of};
use crate::Op;
use crate::op::{Norm, Transformer};
use crate::shape::{Dim, Shape};

/// Output shapes of a normalization or transformer op (any other op gets unknown shapes).
pub fn infer(
    op: &Op,
    inputs: &[Option<InputInfo<'_>>],
    num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let x = shape_of(inputs, 0);
    let rank = x.map(Shape::rank);
    Ok(match op {
        Op::Norm(Norm::BatchNormalization { .. }) => {
            // The running statistics are per channel: X's dim 1, or the shape of the given mean.
            let stats = match x {
                Some(x) if x.rank() >= 2 => Some(Shape(vec![x.0[1].clone()])),
                Some(x) => {
                    return Err(ShapeError::new(format!(
                        "BatchNormalization input {x} has no channel dim"
                    )));
                }
                None => shape_of(inputs, 3).cloned(),
            };
            vec![x.cloned(), stats.clone(), stats]
        }
        Op::Norm(Norm::LayerNormalization { axis, .. }) => {
            let stats = match x {
                Some(x) => {
                    let a = norm_axis(*axis, x.rank())?;
                    let mut dims = x.0.clone();
                    dims[a..].fill(Dim::Fixed(1));
                    Some(Shape(dims))
                }
                None => None,
            };
            vec![x.cloned(), stats.clone(), stats]
        }
        Op::Norm(
            Norm::RMSNormalization { axis, .. }
            | Norm::Softmax {
                axis,
                coerce_2d: false,
            }
            | Norm::LogSoftmax {
                axis,
                coerce_2d: false,
            },
        ) => {
            if let Some(r) = rank {
                norm_axis(*axis, r)?;
            }
            vec![x.cloned()]
        }
        // The pre-13 forms flatten at `axis` (which may equal the rank) and restore the shape.
        Op::Norm(Norm::Softmax { .. } | Norm::LogSoftmax { .. }) => vec![x.cloned()],
        Op::Norm(Norm::InstanceNormalization { .. }) => vec![x.cloned()],
        Op::Transformer(Transformer::RotaryEmbedding { .. }) => vec![x.cloned()],
        // Swish(A) * B: B normally has A's shape; broadcasting covers both.
        Op::Transformer(Transformer::SwiGLU { .. }) => {
            vec![broadcast_inputs(inputs, 0..2)?.or_else(|| x.cloned())]
        }
        _ => vec![None; num_outputs],
    })
}
