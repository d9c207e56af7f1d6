//! Interpreter for the optimizer's fused ops, defined as the composition of the ops they replace
//! (evaluated by those ops' own code), so fusing never changes a single bit of the result.
use crate::{EvalCtx, EvalError};
use shrink_ir::op::{Binary, Fused, Layout, Linear};
use shrink_ir::{Tensor, ValueType};

pub fn eval(
    op: &Fused,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let Fused::DenseAct {
        trans_b,
        activation,
    } = op;
    let x = super::required(ins, 0)?;
    let w = super::required(ins, 1)?;
    let any = |t: &Tensor| vec![ValueType::unknown_shape(t.dtype())];
    let wt;
    let w = if *trans_b {
        let perm = Layout::Transpose {
            perm: Some(vec![1, 0]),
        };
        wt = super::layout::eval(&perm, &[Some(w)], &any(w), ctx)?.remove(0);
        &wt
    } else {
        w
    };
    let mut y = super::linear::eval(&Linear::MatMul, &[Some(x), Some(w)], outs, ctx)?.remove(0);
    if let Some(b) = super::optional(ins, 2) {
        y = super::binary::eval(&Binary::Add, &[Some(&y), Some(b)], outs, ctx)?.remove(0);
    }
    if let Some(a) = activation {
        y = super::unary::eval(a, &[Some(&y)], outs, ctx)?.remove(0);
    }
    Ok(vec![y])
}
