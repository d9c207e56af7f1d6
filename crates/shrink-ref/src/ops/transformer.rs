//! Interpreter for the `Transformer` family: RotaryEmbedding (opset 23) and SwiGLU (opset 28).
//! Both compute in f64 and round once to the output dtype. The layout and shape checks are the
//! rules the code generator shares ([`shrink_ir::rules::transformer`]).
use super::norm::{float_input, floats_to_tensor};
use super::optional;
use crate::{EvalCtx, EvalError};
use shrink_ir::op::Transformer;
use shrink_ir::rules::transformer::{RopeLayout, check_swiglu};
use shrink_ir::{Tensor, ValueType};

pub fn eval(
    op: &Transformer,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    _ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let x = float_input(ins, 0)?;
    let dtype = outs.first().map_or(x.dtype(), |o| o.dtype);
    let y = match op {
        Transformer::SwiGLU { alpha } => swiglu(x, float_input(ins, 1)?, f64::from(*alpha))?,
        Transformer::RotaryEmbedding {
            interleaved,
            num_heads,
            rotary_embedding_dim,
        } => rotary_embedding(x, ins, *interleaved, *num_heads, *rotary_embedding_dim)?,
    };
    Ok(vec![floats_to_tensor(dtype, x.dims().to_vec(), &y)?])
}

/// A * sigmoid(alpha * A) * B, elementwise over tensors of one shape.
fn swiglu(a: &Tensor, b: &Tensor, alpha: f64) -> Result<Vec<f64>, EvalError> {
    check_swiglu(a.dims(), b.dims())?;
    let bs = b.to_f64_vec();
    Ok(a.to_f64_vec()
        .into_iter()
        .zip(bs)
        .map(|(a, b)| a / (1.0 + (-alpha * a).exp()) * b)
        .collect())
}

/// Flat offset of the first element of the vector at (b, s, h).
fn offset(lay: &RopeLayout, b: usize, s: usize, h: usize) -> usize {
    if lay.packed_heads {
        ((b * lay.seq + s) * lay.heads + h) * lay.head_size
    } else {
        ((b * lay.heads + h) * lay.seq + s) * lay.head_size
    }
}

fn rotary_embedding(
    x: &Tensor,
    ins: &[Option<&Tensor>],
    interleaved: bool,
    num_heads: Option<i64>,
    rotary_dim: i64,
) -> Result<Vec<f64>, EvalError> {
    let lay = RopeLayout::of(x.dims(), num_heads)?;
    let rot = lay.rotated(rotary_dim)?;
    let half = rot / 2;
    let cos = float_input(ins, 1)?;
    let sin = float_input(ins, 2)?;
    let ids = optional(ins, 3);
    lay.check_caches(cos.dims(), sin.dims(), ids.map(|t| t.dims()), half)?;
    // Cache row (of `half` values) for each (batch, position).
    let rows = cache_rows(&lay, cos.dims(), ids)?;
    let (cos, sin) = (cos.to_f64_vec(), sin.to_f64_vec());
    let mut y = x.to_f64_vec();
    // Nothing rotates; returning here also keeps a huge num_heads over an empty hidden size
    // from spinning through empty loops.
    if half == 0 {
        return Ok(y);
    }
    for b in 0..lay.batch {
        for s in 0..lay.seq {
            let row = rows[b * lay.seq + s] * half;
            for h in 0..lay.heads {
                let base = offset(&lay, b, s, h);
                for i in 0..half {
                    // Interleaved pairs are (2i, 2i+1); otherwise (i, i + half) across the halves.
                    let (p, q) = if interleaved {
                        (base + 2 * i, base + 2 * i + 1)
                    } else {
                        (base + i, base + i + half)
                    };
                    let (c, sn) = (cos[row + i], sin[row + i]);
                    let (x1, x2) = (y[p], y[q]);
                    y[p] = c * x1 - sn * x2;
                    y[q] = sn * x1 + c * x2;
                }
            }
        }
    }
    Ok(y)
}

/// For each (batch, position) the row index into the caches (whose shapes
/// [`RopeLayout::check_caches`] checked): `position_ids` into a [max_position, half] cache, or
/// the (batch, position) row of a [batch, seq, half] cache.
fn cache_rows(
    lay: &RopeLayout,
    cache: &[usize],
    ids: Option<&Tensor>,
) -> Result<Vec<usize>, EvalError> {
    let Some(ids) = ids else {
        return Ok((0..lay.batch * lay.seq).collect());
    };
    let max_pos = cache.first().copied().unwrap_or(0);
    super::int_list(ids)?
        .into_iter()
        .map(|p| {
            usize::try_from(p)
                .ok()
                .filter(|&p| p < max_pos)
                .ok_or_else(|| {
                    EvalError::invalid(format!(
                        "position id {p} is outside the cache of {max_pos} positions"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shrink_ir::DType;

    fn run(op: Transformer, ins: &[Option<&Tensor>]) -> Result<Vec<f32>, EvalError> {
        let outs = [ValueType::new(DType::F32, None)];
        Ok(eval(&op, ins, &outs, &EvalCtx::default())?[0]
            .to_vec::<f32>()
            .unwrap())
    }

    #[test]
    fn swiglu_values() {
        let a = Tensor::from_vec(vec![2], vec![0f32, 2.0]);
        let b = Tensor::from_vec(vec![2], vec![3f32, 0.5]);
        let y = run(Transformer::SwiGLU { alpha: 1.0 }, &[Some(&a), Some(&b)]).unwrap();
        let want = 2.0 / (1.0 + (-2f32).exp()) * 0.5;
        assert_eq!(y[0], 0.0);
        assert!((y[1] - want).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_halves_or_pairs() {
        // One batch, one head, one position, head size 4; rotate by 90 degrees (cos 0, sin 1).
        let x = Tensor::from_vec(vec![1, 1, 1, 4], vec![1f32, 2.0, 3.0, 4.0]);
        let cos = Tensor::from_vec(vec![1, 1, 2], vec![0f32, 1.0]);
        let sin = Tensor::from_vec(vec![1, 1, 2], vec![1f32, 0.0]);
        let ins = [Some(&x), Some(&cos), Some(&sin)];
        let op = |interleaved| Transformer::RotaryEmbedding {
            interleaved,
            num_heads: None,
            rotary_embedding_dim: 0,
        };
        // Pairs (x0, x2) rotated by 90°, (x1, x3) unchanged.
        assert_eq!(run(op(false), &ins).unwrap(), vec![-3.0, 2.0, 1.0, 4.0]);
        // Pairs (x0, x1) rotated, (x2, x3) unchanged.
        assert_eq!(run(op(true), &ins).unwrap(), vec![-2.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn rope_position_ids_partial_and_3d() {
        // [batch 1, seq 1, hidden 4] with 2 heads of size 2; position 1 of the cache rotates by 90°.
        let x = Tensor::from_vec(vec![1, 1, 4], vec![1f32, 2.0, 3.0, 4.0]);
        let cos = Tensor::from_vec(vec![2, 1], vec![1f32, 0.0]);
        let sin = Tensor::from_vec(vec![2, 1], vec![0f32, 1.0]);
        let ids = Tensor::from_vec(vec![1, 1], vec![1i64]);
        let op = Transformer::RotaryEmbedding {
            interleaved: false,
            num_heads: Some(2),
            rotary_embedding_dim: 0,
        };
        let y = run(op.clone(), &[Some(&x), Some(&cos), Some(&sin), Some(&ids)]).unwrap();
        assert_eq!(y, vec![-2.0, 1.0, -4.0, 3.0]);
        let bad = Tensor::from_vec(vec![1, 1], vec![2i64]);
        assert!(run(op, &[Some(&x), Some(&cos), Some(&sin), Some(&bad)]).is_err());
        // Partial rotation: only the first 2 of 4 elements turn.
        let x = Tensor::from_vec(vec![1, 1, 1, 4], vec![1f32, 2.0, 3.0, 4.0]);
        let op = Transformer::RotaryEmbedding {
            interleaved: false,
            num_heads: None,
            rotary_embedding_dim: 2,
        };
        let y = run(op, &[Some(&x), Some(&cos), Some(&sin), Some(&ids)]).unwrap();
        assert_eq!(y, vec![-2.0, 1.0, 3.0, 4.0]);
    }
}
