//! Interpreter for the `Variadic` family: Max Min Sum Mean over any number of inputs with numpy
//! broadcasting.
//!
//! The inputs are folded left to right, one broadcast binary step at a time, exactly as the ONNX
//! reference does, so f16/bf16 results round after every step the same way. Max and Min
//! propagate NaN (numpy `maximum`/`minimum`). Sum wraps on integers; Mean is float-only (the
//! spec allows only floats, and an integer mean would need a rounding rule the spec does not give).
use super::binary::{check_declared, map2, same_dtype};
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_num};
use shrink_ir::op::Variadic;
use shrink_ir::{Tensor, ValueType};

pub fn eval(
    op: &Variadic,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let ins: Vec<&Tensor> = ins
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.ok_or_else(|| EvalError::invalid(format!("{}: input {i} is missing", op.name())))
        })
        .collect::<Result<_, _>>()?;
    let Some(first) = ins.first() else {
        return Err(EvalError::invalid(format!(
            "{} needs at least one input",
            op.name()
        )));
    };
    for t in &ins[1..] {
        same_dtype(op.name(), first, t)?;
    }
    let dt = first.dtype();
    if matches!(op, Variadic::Mean) && !dt.is_float() {
        return Err(EvalError::unsupported(format!("Mean on {dt} tensors")));
    }
    let y = dispatch_num!(dt, T => fold::<T>(op, &ins, ctx)?,
        else return Err(EvalError::unsupported(format!("{} on {dt} tensors", op.name()))));
    check_declared(outs, &y)?;
    Ok(vec![y])
}

fn fold<T: Num>(op: &Variadic, ins: &[&Tensor], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let step = |a: T, b: T| -> T {
        match op {
            Variadic::Sum | Variadic::Mean => a.add(b),
            // NaN propagates (numpy maximum/minimum).
            Variadic::Max | Variadic::Min if a.is_nan() => a,
            Variadic::Max | Variadic::Min if b.is_nan() => b,
            Variadic::Max => {
                if b > a {
                    b
                } else {
                    a
                }
            }
            Variadic::Min => {
                if b < a {
                    b
                } else {
                    a
                }
            }
        }
    };
    let mut acc = ins[0].clone();
    for t in &ins[1..] {
        acc = map2(&acc, t, T::DTYPE, ctx, |a: T, b: T| Ok(step(a, b)))?;
    }
    if matches!(op, Variadic::Mean) {
        let n = T::from_f64(ins.len() as f64);
        let v = super::binary::elems::<T>(&acc)?;
        let mean = v.into_iter().map(|s| s.div(n).unwrap_or(s)).collect();
        acc = Tensor::from_vec(acc.dims().to_vec(), mean);
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Variadic, ins: &[Tensor]) -> Result<Tensor, EvalError> {
        let refs: Vec<Option<&Tensor>> = ins.iter().map(Some).collect();
        eval(&op, &refs, &[], &EvalCtx::default()).map(|mut v| v.remove(0))
    }

    #[test]
    fn max_min_broadcast_and_keep_nan() {
        let a = Tensor::from_vec(vec![3], vec![1f32, f32::NAN, 5.]);
        let b = Tensor::from_vec(vec![2, 1], vec![2f32, 4.]);
        let c = Tensor::scalar(3f32);
        let y = run(Variadic::Max, &[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(y.dims(), &[2, 3]);
        let v = y.to_vec::<f32>().unwrap();
        assert_eq!((v[0], v[2], v[3], v[5]), (3., 5., 4., 5.));
        assert!(v[1].is_nan() && v[4].is_nan());
        let v = run(Variadic::Min, &[a, b, c])
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!((v[0], v[2], v[3], v[5]), (1., 2., 1., 3.));
        let u = run(
            Variadic::Min,
            &[
                Tensor::from_vec(vec![2], vec![200u8, 3]),
                Tensor::scalar(100u8),
            ],
        )
        .unwrap();
        assert_eq!(u.to_vec::<u8>().unwrap(), vec![100, 3]);
    }

    #[test]
    fn sum_and_mean() {
        let a = Tensor::from_vec(vec![2], vec![1f32, 2.]);
        let b = Tensor::from_vec(vec![2], vec![3f32, 4.]);
        let c = Tensor::from_vec(vec![2], vec![5f32, 9.]);
        assert_eq!(
            run(Variadic::Sum, &[a.clone(), b.clone(), c.clone()])
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![9., 15.]
        );
        assert_eq!(
            run(Variadic::Mean, &[a.clone(), b, c])
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![3., 5.]
        );
        assert_eq!(run(Variadic::Mean, std::slice::from_ref(&a)).unwrap(), a);
        assert!(run(Variadic::Mean, &[Tensor::scalar(1i32)]).is_err());
        assert!(run(Variadic::Sum, &[]).is_err());
        assert!(run(Variadic::Sum, &[a, Tensor::scalar(1f64)]).is_err());
    }
}
