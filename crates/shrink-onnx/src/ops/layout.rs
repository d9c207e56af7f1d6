//! Data movement, shape computation and conversion: Reshape … Range, Cast/CastLike, Dropout.
//! Older opsets' attribute forms (Reshape shape, Squeeze/Unsqueeze axes, Slice starts/ends, Split
//! sizes, Pad pads/value, Dropout ratio) become constant inputs here.
use super::{Built, Input, NodeIn, ints_const, lookup_table, scalar_const};
use shrink_ir::op::{Convert, Layout, PadMode, RoundMode};
use shrink_ir::{DType, Op};

fn layout(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let v = n.opset;
    let keep = |op: Layout| n.keep(Op::Layout(op));
    // Matching on the variant (not the name) keeps this exhaustive: a new Layout op does not
    // compile until it has an arm here.
    let name = n.proto.op_type.as_str();
    match Layout::with_defaults(name).ok_or_else(|| super::no_builder(name))? {
        Layout::Reshape { .. } => {
            let op = Layout::Reshape {
                allowzero: a.flag("allowzero", false)?,
            };
            if v < 5 {
                let shape = a
                    .ints("shape")?
                    .ok_or("attribute 'shape' is required before opset 5")?;
                return Ok(Built {
                    op: Op::Layout(op),
                    inputs: n.with_input_at(1, ints_const(&shape)),
                });
            }
            keep(op)
        }
        Layout::Flatten { .. } => keep(Layout::Flatten {
            axis: a.int("axis", 1)?,
        }),
        Layout::Transpose { .. } => keep(Layout::Transpose {
            perm: a.ints("perm")?,
        }),
        Layout::Concat { .. } => keep(Layout::Concat {
            axis: a.opt_int("axis")?.ok_or("attribute 'axis' is required")?,
        }),
        lop @ (Layout::Squeeze | Layout::Unsqueeze) => {
            if v < 13 {
                let inputs = match a.ints("axes")? {
                    Some(axes) => n.with_input_at(1, ints_const(&axes)),
                    None if lop == Layout::Unsqueeze => {
                        return Err("attribute 'axes' is required".into());
                    }
                    None => n.with_input_at(1, Input::Absent),
                };
                return Ok(Built {
                    op: Op::Layout(lop),
                    inputs,
                });
            }
            keep(lop)
        }
        Layout::Shape { .. } => keep(Layout::Shape {
            start: a.int("start", 0)?,
            end: a.opt_int("end")?,
        }),
        Layout::Gather { .. } => keep(Layout::Gather {
            axis: a.int("axis", 0)?,
        }),
        Layout::Slice => {
            if v < 10 {
                let data = n
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .ok_or("input 0 missing")?;
                let starts = a.ints("starts")?.ok_or("attribute 'starts' is required")?;
                let ends = a.ints("ends")?.ok_or("attribute 'ends' is required")?;
                let axes = match a.ints("axes")? {
                    Some(ax) => ints_const(&ax),
                    None => Input::Absent,
                };
                let inputs = vec![
                    Input::Value(data),
                    ints_const(&starts),
                    ints_const(&ends),
                    axes,
                ];
                return Ok(Built {
                    op: Op::Layout(Layout::Slice),
                    inputs,
                });
            }
            keep(Layout::Slice)
        }
        Layout::Split { .. } => {
            let op = Layout::Split {
                axis: a.int("axis", 0)?,
                num_outputs: a.opt_int("num_outputs")?,
            };
            if v < 13 {
                let inputs = match a.ints("split")? {
                    Some(s) => n.with_input_at(1, ints_const(&s)),
                    None => n.same_inputs(),
                };
                return Ok(Built {
                    op: Op::Layout(op),
                    inputs,
                });
            }
            keep(op)
        }
        Layout::Expand => keep(Layout::Expand),
        Layout::Tile => keep(Layout::Tile),
        Layout::Pad { .. } => {
            let s = a.string("mode")?.unwrap_or_else(|| "constant".into());
            let mode =
                PadMode::from_str_opt(&s).ok_or_else(|| format!("unknown pad mode '{s}'"))?;
            if v < 11 {
                let pads = a
                    .ints("pads")?
                    .or(a.ints("paddings")?)
                    .ok_or("attribute 'pads' is required")?;
                let d = n.input_dtype(0)?;
                let value = scalar_const(d, a.float("value", 0.0)? as f64)?;
                let data = n
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .ok_or("input 0 missing")?;
                let inputs = vec![Input::Value(data), ints_const(&pads), value];
                return Ok(Built {
                    op: Op::Layout(Layout::Pad { mode }),
                    inputs,
                });
            }
            keep(Layout::Pad { mode })
        }
        Layout::ConstantOfShape { .. } => {
            let value = a.tensor("value", n.cap)?;
            if let Some(t) = &value
                && t.len() != 1
            {
                return Err(format!(
                    "attribute 'value' must hold one element, found {}",
                    t.len()
                ));
            }
            keep(Layout::ConstantOfShape { value })
        }
        Layout::Range => keep(Layout::Range),
    }
}

fn cast_attrs(n: &NodeIn<'_>) -> Result<(bool, RoundMode), String> {
    let s = n.attrs.string("round_mode")?.unwrap_or_else(|| "up".into());
    let rm = RoundMode::from_str_opt(&s).ok_or_else(|| format!("unknown round_mode '{s}'"))?;
    Ok((n.attrs.flag("saturate", true)?, rm))
}

fn convert(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    match n.proto.op_type.as_str() {
        "Cast" => {
            let code = match a.get("to") {
                // Opset 1–5 spelled the target type as a string.
                Some(t) if !t.s.is_empty() => legacy_type_name(&String::from_utf8_lossy(&t.s))?,
                _ => a.opt_int("to")?.ok_or("attribute 'to' is required")? as i32,
            };
            let to = to_dtype(code)?;
            let (saturate, round_mode) = cast_attrs(n)?;
            n.keep(Op::Convert(Convert::Cast {
                to,
                saturate,
                round_mode,
            }))
        }
        "CastLike" => {
            let to = n.input_dtype(1)?;
            let (saturate, round_mode) = cast_attrs(n)?;
            let x = n
                .inputs
                .first()
                .copied()
                .flatten()
                .ok_or("input 0 missing")?;
            Ok(Built {
                op: Op::Convert(Convert::Cast {
                    to,
                    saturate,
                    round_mode,
                }),
                inputs: vec![Input::Value(x)],
            })
        }
        "Dropout" => {
            let op = Convert::Dropout {
                seed: a.opt_int("seed")?,
            };
            if n.opset < 12 {
                let ratio = a.float("ratio", 0.5)?;
                let x = n
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .ok_or("input 0 missing")?;
                let inputs = vec![
                    Input::Value(x),
                    Input::Const(shrink_ir::Tensor::scalar(ratio)),
                ];
                return Ok(Built {
                    op: Op::Convert(op),
                    inputs,
                });
            }
            n.keep(Op::Convert(op))
        }
        other => Err(super::no_builder(other)),
    }
}

fn to_dtype(code: i32) -> Result<DType, String> {
    match code {
        8 => Err("casting to string is not supported".into()),
        c => DType::from_onnx(c).ok_or_else(|| format!("unsupported target data type {c}")),
    }
}

fn legacy_type_name(s: &str) -> Result<i32, String> {
    let d = match s.to_ascii_uppercase().as_str() {
        "FLOAT" => DType::F32,
        "UINT8" => DType::U8,
        "INT8" => DType::I8,
        "UINT16" => DType::U16,
        "INT16" => DType::I16,
        "INT32" => DType::I32,
        "INT64" => DType::I64,
        "BOOL" => DType::Bool,
        "FLOAT16" => DType::F16,
        "DOUBLE" => DType::F64,
        "UINT32" => DType::U32,
        "UINT64" => DType::U64,
        other => return Err(format!("unsupported target type '{other}'")),
    };
    Ok(d.onnx_code())
}

pub fn lookup(op_type: &str) -> Option<super::Builder> {
    lookup_table(
        op_type,
        &[
            (Layout::NAMES, layout),
            (&["Cast", "CastLike", "Dropout"], convert),
        ],
    )
}
