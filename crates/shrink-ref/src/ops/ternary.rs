//! Interpreter for the `Ternary` family: `Clip(x, min?, max?)` and `Where(cond, x, y)`.
//!
//! Clip is `Min(max, Max(x, min))` as the spec defines it, so min > max yields max everywhere and
//! NaN propagates; an absent bound is no bound. Where selects with three-way numpy broadcasting
//! and moves elements of any dtype bit-for-bit.
use super::binary::{BroadcastIter, broadcast_out, check_declared, elems, same_dtype};
use super::{optional, required};
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_any, dispatch_num};
use shrink_ir::op::Ternary;
use shrink_ir::{DType, Element, Tensor, ValueType};

pub fn eval(
    op: &Ternary,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let y = match op {
        Ternary::Clip => clip(required(ins, 0)?, optional(ins, 1), optional(ins, 2))?,
        Ternary::Where => select(required(ins, 0)?, required(ins, 1)?, required(ins, 2)?, ctx)?,
    };
    check_declared(outs, &y)?;
    Ok(vec![y])
}

fn clip(x: &Tensor, min: Option<&Tensor>, max: Option<&Tensor>) -> Result<Tensor, EvalError> {
    fn bound<T: Num>(x: &Tensor, b: Option<&Tensor>, which: &str) -> Result<Option<T>, EvalError> {
        let Some(b) = b else { return Ok(None) };
        same_dtype("Clip", x, b)?;
        // The spec makes the bounds scalars; a one-element tensor of any rank is accepted too.
        match elems::<T>(b)?[..] {
            [v] => Ok(Some(v)),
            _ => Err(EvalError::invalid(format!(
                "Clip: {which} must be a scalar, got shape {:?}",
                b.dims()
            ))),
        }
    }
    fn run<T: Num>(
        x: &Tensor,
        min: Option<&Tensor>,
        max: Option<&Tensor>,
    ) -> Result<Tensor, EvalError> {
        let (lo, hi) = (bound::<T>(x, min, "min")?, bound::<T>(x, max, "max")?);
        let f = |v: T| -> T {
            let v = match lo {
                Some(l) if !v.is_nan() && (l.is_nan() || v < l) => l,
                _ => v,
            };
            match hi {
                Some(h) if !v.is_nan() && (h.is_nan() || v > h) => h,
                _ => v,
            }
        };
        let items = super::binary::elements::<T>(x)?.map(f);
        Tensor::from_elements(T::DTYPE, x.dims().to_vec(), items)
            .ok_or_else(|| EvalError::invalid("Clip: the element count does not match the shape"))
    }
    let dt = x.dtype();
    dispatch_num!(dt, T => run::<T>(x, min, max), else Err(EvalError::unsupported(format!("Clip on {dt} tensors"))))
}

fn select(cond: &Tensor, x: &Tensor, y: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    if cond.dtype() != DType::Bool {
        return Err(EvalError::invalid(format!(
            "Where: the condition must be bool, got {}",
            cond.dtype()
        )));
    }
    same_dtype("Where", x, y)?;
    fn run<T: Element>(
        cond: &Tensor,
        x: &Tensor,
        y: &Tensor,
        ctx: &EvalCtx,
    ) -> Result<Tensor, EvalError> {
        let dims = broadcast_out(&[cond.dims(), x.dims(), y.dims()], x.dtype(), ctx)?;
        let (cv, xv, yv) = (elems::<bool>(cond)?, elems::<T>(x)?, elems::<T>(y)?);
        let out: Vec<T> = BroadcastIter::new(cond.dims(), &dims)
            .zip(BroadcastIter::new(x.dims(), &dims))
            .zip(BroadcastIter::new(y.dims(), &dims))
            .map(|((c, i), j)| if cv[c] { xv[i] } else { yv[j] })
            .collect();
        Ok(Tensor::from_vec_as(x.dtype(), dims, out))
    }
    dispatch_any!(x.dtype(), T => run::<T>(cond, x, y, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Ternary, ins: &[Option<Tensor>]) -> Result<Tensor, EvalError> {
        let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_ref()).collect();
        eval(&op, &refs, &[], &EvalCtx::default()).map(|mut v| v.remove(0))
    }

    #[test]
    fn clip_bounds() {
        let x = Tensor::from_vec(vec![4], vec![-3f32, 0.5, 7., f32::NAN]);
        let y = run(
            Ternary::Clip,
            &[
                Some(x.clone()),
                Some(Tensor::scalar(-1f32)),
                Some(Tensor::scalar(1f32)),
            ],
        )
        .unwrap();
        let v = y.to_vec::<f32>().unwrap();
        assert_eq!(&v[..3], &[-1., 0.5, 1.]);
        assert!(v[3].is_nan());
        let only_max = run(
            Ternary::Clip,
            &[
                Some(x.clone()),
                None,
                Some(Tensor::from_vec(vec![1], vec![0f32])),
            ],
        )
        .unwrap();
        assert_eq!(&only_max.to_vec::<f32>().unwrap()[..3], &[-3., 0., 0.]);
        let crossed = run(
            Ternary::Clip,
            &[
                Some(x.clone()),
                Some(Tensor::scalar(2f32)),
                Some(Tensor::scalar(1f32)),
            ],
        )
        .unwrap();
        assert_eq!(&crossed.to_vec::<f32>().unwrap()[..3], &[1., 1., 1.]);
        assert_eq!(
            run(Ternary::Clip, &[Some(x.clone())])
                .unwrap()
                .to_vec::<f32>()
                .unwrap()[..3],
            [-3., 0.5, 7.]
        );
        let i = Tensor::from_vec(vec![3], vec![-100i8, 5, 100]);
        let y = run(Ternary::Clip, &[Some(i), Some(Tensor::scalar(-10i8)), None]).unwrap();
        assert_eq!(y.to_vec::<i8>().unwrap(), vec![-10, 5, 100]);
        assert!(
            run(
                Ternary::Clip,
                &[
                    Some(x.clone()),
                    Some(Tensor::from_vec(vec![2], vec![0f32, 1.]))
                ]
            )
            .is_err()
        );
        assert!(run(Ternary::Clip, &[Some(x), Some(Tensor::scalar(0f64))]).is_err());
    }

    #[test]
    fn where_broadcasts_three_ways() {
        let c = Tensor::from_vec(vec![2, 1], vec![true, false]);
        let x = Tensor::from_vec(vec![3], vec![1i8, 2, 3]);
        let y = Tensor::scalar(-1i8);
        let out = run(Ternary::Where, &[Some(c), Some(x), Some(y)]).unwrap();
        assert_eq!(out.dtype(), DType::I8);
        assert_eq!(out.dims(), &[2, 3]);
        assert_eq!(out.to_vec::<i8>().unwrap(), vec![1, 2, 3, -1, -1, -1]);
        let bad = Tensor::from_vec(vec![2], vec![1u8, 0]);
        assert!(
            run(
                Ternary::Where,
                &[
                    Some(bad),
                    Some(Tensor::scalar(1f32)),
                    Some(Tensor::scalar(2f32))
                ]
            )
            .is_err()
        );
    }
}
