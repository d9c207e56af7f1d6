//! Output dtype rules for every op: the part of type inference that never depends on shapes.
use super::*;

/// Why output dtypes could not be derived.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DTypeError {
    #[error("missing required input {0}")]
    MissingInput(usize),
    #[error("input {index} is {found}, expected {expected}")]
    Mismatch {
        index: usize,
        found: DType,
        expected: String,
    },
    /// A string input or output on an op that only works on numbers.
    #[error("{op} does not support string tensors (only Equal and Identity do)")]
    Strings { op: &'static str },
}

fn req(inputs: &[Option<DType>], i: usize) -> Result<DType, DTypeError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or(DTypeError::MissingInput(i))
}

/// The dtype of each output of `op` given its input dtypes (`None` = absent optional input).
/// `num_outputs` is how many outputs the node declares (for multi-output ops). Strings are
/// rejected, as input or output (e.g. a Cast `to` or a ConstantOfShape value of type string),
/// except by the ops of [`Op::takes_strings`].
pub fn infer_dtypes(
    op: &Op,
    inputs: &[Option<DType>],
    num_outputs: usize,
) -> Result<Vec<DType>, DTypeError> {
    let strings = DTypeError::Strings { op: op.name() };
    if !op.takes_strings() && inputs.contains(&Some(DType::String)) {
        return Err(strings);
    }
    let out = numeric_dtypes(op, inputs, num_outputs)?;
    if !op.takes_strings() && out.contains(&DType::String) {
        return Err(strings);
    }
    Ok(out)
}

/// [`infer_dtypes`] before the string check.
fn numeric_dtypes(
    op: &Op,
    inputs: &[Option<DType>],
    num_outputs: usize,
) -> Result<Vec<DType>, DTypeError> {
    let one = |d: DType| Ok(vec![d]);
    for &i in required_inputs(op) {
        req(inputs, i)?;
    }
    match op {
        Op::Input { .. } | Op::Const(_) => unreachable!("sources carry their own type"),
        Op::Unary(u) => {
            let x = req(inputs, 0)?;
            if matches!(u, Unary::Not) && x != DType::Bool {
                return Err(DTypeError::Mismatch {
                    index: 0,
                    found: x,
                    expected: "bool".into(),
                });
            }
            one(x)
        }
        Op::Binary(b) => {
            let (a, c) = (req(inputs, 0)?, req(inputs, 1)?);
            match b {
                Binary::And | Binary::Or => {
                    for (i, d) in [(0, a), (1, c)] {
                        if d != DType::Bool {
                            return Err(DTypeError::Mismatch {
                                index: i,
                                found: d,
                                expected: "bool".into(),
                            });
                        }
                    }
                    one(DType::Bool)
                }
                Binary::Equal
                | Binary::Less
                | Binary::Greater
                | Binary::LessOrEqual
                | Binary::GreaterOrEqual => {
                    same(1, c, a)?;
                    one(DType::Bool)
                }
                // Pow's exponent may have its own type.
                Binary::Pow => one(a),
                _ => {
                    same(1, c, a)?;
                    one(a)
                }
            }
        }
        Op::Variadic(_) => {
            let a = req(inputs, 0)?;
            for i in 1..inputs.len() {
                same(i, req(inputs, i)?, a)?;
            }
            one(a)
        }
        Op::Ternary(Ternary::Clip) => one(req(inputs, 0)?),
        Op::Ternary(Ternary::Where) => {
            let c = req(inputs, 0)?;
            if c != DType::Bool {
                return Err(DTypeError::Mismatch {
                    index: 0,
                    found: c,
                    expected: "bool".into(),
                });
            }
            let x = req(inputs, 1)?;
            same(2, req(inputs, 2)?, x)?;
            one(x)
        }
        Op::Linear(Linear::MatMul)
        | Op::Linear(Linear::Gemm { .. })
        | Op::Fused(Fused::DenseAct { .. }) => {
            let a = req(inputs, 0)?;
            same(1, req(inputs, 1)?, a)?;
            one(a)
        }
        Op::Linear(Linear::MatMulInteger) | Op::Conv(Conv::ConvInteger { .. }) => one(DType::I32),
        Op::Linear(Linear::QLinearMatMul) | Op::Conv(Conv::QLinearConv { .. }) => {
            one(req(inputs, 7)?)
        }
        Op::Quant(Quant::QuantizeLinear { output_dtype, .. }) => one(output_dtype
            .or(inputs.get(2).copied().flatten())
            .unwrap_or(DType::U8)),
        Op::Quant(Quant::DequantizeLinear { output_dtype, .. }) => {
            one(output_dtype.unwrap_or(req(inputs, 1)?))
        }
        Op::Quant(Quant::DynamicQuantizeLinear) => Ok(vec![DType::U8, DType::F32, DType::U8]),
        Op::Conv(Conv::Conv { .. }) => one(req(inputs, 0)?),
        Op::Pool(Pool::MaxPool { .. }) => {
            Ok([req(inputs, 0)?, DType::I64][..num_outputs.clamp(1, 2)].to_vec())
        }
        Op::Pool(_) => one(req(inputs, 0)?),
        Op::Norm(Norm::BatchNormalization { .. }) => {
            let x = req(inputs, 0)?;
            let mut out = vec![x];
            if num_outputs > 1 {
                out.push(req(inputs, 3)?);
            }
            if num_outputs > 2 {
                out.push(req(inputs, 4)?);
            }
            Ok(out)
        }
        Op::Norm(Norm::LayerNormalization { stash_type, .. }) => {
            let x = req(inputs, 0)?;
            let stash = DType::from_onnx(*stash_type as i32).unwrap_or(DType::F32);
            Ok([x, stash, stash][..num_outputs.clamp(1, 3)].to_vec())
        }
        Op::Norm(_) => one(req(inputs, 0)?),
        Op::Reduce(Reduce::ArgMax { .. } | Reduce::ArgMin { .. }) => {
            req(inputs, 0)?;
            one(DType::I64)
        }
        Op::Reduce(_) => one(req(inputs, 0)?),
        Op::Layout(Layout::Shape { .. }) => one(DType::I64),
        Op::Layout(Layout::ConstantOfShape { value }) => {
            one(value.as_ref().map_or(DType::F32, |t| t.dtype()))
        }
        Op::Layout(Layout::Split { .. }) => Ok(vec![req(inputs, 0)?; num_outputs.max(1)]),
        Op::Layout(Layout::Concat { .. }) => {
            let a = req(inputs, 0)?;
            for i in 1..inputs.len() {
                same(i, req(inputs, i)?, a)?;
            }
            one(a)
        }
        Op::Layout(_) => one(req(inputs, 0)?),
        Op::Convert(Convert::Cast { to, .. }) => {
            req(inputs, 0)?;
            one(*to)
        }
        Op::Convert(Convert::Dropout { .. }) => {
            Ok([req(inputs, 0)?, DType::Bool][..num_outputs.clamp(1, 2)].to_vec())
        }
        Op::Transformer(_) => one(req(inputs, 0)?),
    }
}

/// Input slots an op cannot run without (ONNX marks them required; the importer has already
/// turned older opsets' attributes into these inputs). Checked before any dtype rule, so every
/// later stage can rely on them being present.
pub fn required_inputs(op: &Op) -> &'static [usize] {
    const X: &[usize] = &[0];
    const XY: &[usize] = &[0, 1];
    const XYZ: &[usize] = &[0, 1, 2];
    const QLINEAR: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7];
    match op {
        Op::Input { .. } | Op::Const(_) => &[],
        Op::Unary(_) | Op::Variadic(_) | Op::Pool(_) | Op::Reduce(_) | Op::Convert(_) => X,
        Op::Binary(_) => XY,
        Op::Ternary(Ternary::Clip) => X,
        Op::Ternary(Ternary::Where) => XYZ,
        Op::Linear(Linear::QLinearMatMul) | Op::Conv(Conv::QLinearConv { .. }) => QLINEAR,
        Op::Linear(_) | Op::Fused(_) | Op::Conv(_) => XY,
        Op::Quant(Quant::DynamicQuantizeLinear) => X,
        Op::Quant(_) => XY,
        Op::Norm(Norm::BatchNormalization { .. }) => &[0, 1, 2, 3, 4],
        Op::Norm(Norm::LayerNormalization { .. } | Norm::RMSNormalization { .. }) => XY,
        Op::Norm(Norm::InstanceNormalization { .. }) => XYZ,
        Op::Norm(_) => X,
        Op::Layout(l) => match l {
            Layout::Reshape { .. }
            | Layout::Unsqueeze
            | Layout::Gather { .. }
            | Layout::Expand
            | Layout::Tile
            | Layout::Pad { .. } => XY,
            Layout::Slice | Layout::Range => XYZ,
            _ => X,
        },
        Op::Transformer(Transformer::RotaryEmbedding { .. }) => XYZ,
        Op::Transformer(_) => X,
    }
}

fn same(index: usize, found: DType, expected: DType) -> Result<(), DTypeError> {
    if found == expected {
        Ok(())
    } else {
        Err(DTypeError::Mismatch {
            index,
            found,
            expected: expected.name().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_only_reach_equal_and_identity() {
        let s = Some(DType::String);
        let eq = Op::Binary(Binary::Equal);
        assert_eq!(infer_dtypes(&eq, &[s, s], 1), Ok(vec![DType::Bool]));
        let id = Op::Unary(Unary::Identity);
        assert_eq!(infer_dtypes(&id, &[s], 1), Ok(vec![DType::String]));
        let strings = |op: &'static str| Err(DTypeError::Strings { op });
        let less = Op::Binary(Binary::Less);
        assert_eq!(infer_dtypes(&less, &[s, s], 1), strings("Less"));
        // A string output is refused too (Cast to string, a string ConstantOfShape value).
        let cast = Op::Convert(Convert::Cast {
            to: DType::String,
            saturate: true,
            round_mode: RoundMode::Up,
        });
        assert_eq!(infer_dtypes(&cast, &[Some(DType::F32)], 1), strings("Cast"));
    }
}
