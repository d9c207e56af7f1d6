//! Elementwise ops: Unary (with parameterized activations), Binary, Variadic, Clip and Where.
use super::{Built, NodeIn, lookup_table, scalar_const};
use shrink_ir::Op;
use shrink_ir::op::{Binary, GeluApprox, Ternary, Unary, Variadic};

fn unary(n: &NodeIn<'_>) -> Result<Built, String> {
    let name = n.proto.op_type.as_str();
    let mut op = Unary::with_defaults(name).ok_or_else(|| format!("no unary op {name}"))?;
    let a = &n.attrs;
    match &mut op {
        Unary::LeakyRelu { alpha } => *alpha = a.float("alpha", 0.01)?,
        Unary::HardSigmoid { alpha, beta } => {
            *alpha = a.float("alpha", 0.2)?;
            *beta = a.float("beta", 0.5)?;
        }
        Unary::Elu { alpha }
        | Unary::Celu { alpha }
        | Unary::ThresholdedRelu { alpha }
        | Unary::Swish { alpha } => *alpha = a.float("alpha", 1.0)?,
        Unary::Selu { alpha, gamma } => {
            *alpha = a.float("alpha", *alpha)?;
            *gamma = a.float("gamma", *gamma)?;
        }
        Unary::Gelu { approximate } => {
            let s = a.string("approximate")?.unwrap_or_else(|| "none".into());
            *approximate = GeluApprox::from_str_opt(&s)
                .ok_or_else(|| format!("unknown Gelu approximate '{s}'"))?;
        }
        // Listed rather than `_` so that a new parameterized op cannot silently keep its defaults.
        Unary::Abs
        | Unary::Neg
        | Unary::Sqrt
        | Unary::Reciprocal
        | Unary::Exp
        | Unary::Log
        | Unary::Erf
        | Unary::Sign
        | Unary::Round
        | Unary::Floor
        | Unary::Ceil
        | Unary::Relu
        | Unary::Sigmoid
        | Unary::Tanh
        | Unary::Softplus
        | Unary::Softsign
        | Unary::Mish
        | Unary::HardSwish
        | Unary::Not
        | Unary::Identity => {}
    }
    n.keep(Op::Unary(op))
}

fn binary(n: &NodeIn<'_>) -> Result<Built, String> {
    if n.opset < 7 && n.attrs.int("broadcast", 0)? == 1 && n.attrs.get("axis").is_some() {
        return Err("legacy (opset < 7) axis broadcasting is not supported".into());
    }
    let op = Binary::with_defaults(&n.proto.op_type).ok_or("no binary op")?;
    n.keep(Op::Binary(op))
}

fn variadic(n: &NodeIn<'_>) -> Result<Built, String> {
    let op = Variadic::with_defaults(&n.proto.op_type).ok_or("no variadic op")?;
    if n.inputs.iter().any(|i| i.is_none()) || n.inputs.is_empty() {
        return Err("every input must be present".into());
    }
    n.keep(Op::Variadic(op))
}

fn clip(n: &NodeIn<'_>) -> Result<Built, String> {
    if n.opset < 11 {
        let d = n.input_dtype(0)?;
        let lo = n.attrs.float("min", f32::NEG_INFINITY)? as f64;
        let hi = n.attrs.float("max", f32::INFINITY)? as f64;
        let ins = vec![
            super::Input::Value(n.inputs[0].ok_or("input 0 missing")?),
            scalar_const(d, lo)?,
            scalar_const(d, hi)?,
        ];
        return Ok(Built {
            op: Op::Ternary(Ternary::Clip),
            inputs: ins,
        });
    }
    n.keep(Op::Ternary(Ternary::Clip))
}

fn where_(n: &NodeIn<'_>) -> Result<Built, String> {
    n.keep(Op::Ternary(Ternary::Where))
}

pub fn lookup(op_type: &str) -> Option<super::Builder> {
    lookup_table(
        op_type,
        &[
            (Unary::NAMES, unary),
            (Binary::NAMES, binary),
            (Variadic::NAMES, variadic),
            (&["Clip"], clip),
            (&["Where"], where_),
        ],
    )
}
