//! Graph → text. Nodes print in topological order (ties by node index) so that the output is
//! deterministic and readable top to bottom.
use crate::shape::{Dim, Shape};
use crate::{DType, Graph, Op, Tensor, ValueType};
use half::{bf16, f16};
use std::fmt::Write;

/// Writes a float so that parsing it back gives the same value (f32 precision if `as_f32`).
pub fn write_f64(out: &mut String, v: f64, as_f32: bool) {
    if v.is_nan() {
        out.push_str("nan");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
    } else if as_f32 {
        let _ = write!(out, "{:?}", v as f32);
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// Writes a name as a quoted literal (see [`write_bytes`]).
pub fn write_string(out: &mut String, s: &str) {
    write_bytes(out, s.as_bytes());
}

/// Writes a byte string as a quoted literal that [`crate::text::lex::Lexer::byte_string`] reads
/// back exactly: UTF-8 text as is except `"`, `\`, newlines and other control characters
/// (escaped), and bytes that are not UTF-8 as `\xHH`.
pub fn write_bytes(out: &mut String, b: &[u8]) {
    out.push('"');
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if c.is_control() => {
                    for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
}

pub fn write_type(out: &mut String, t: &ValueType) {
    let _ = write!(out, "{t}");
}

/// `dtype[dims] [e0, e1, ...]`. Narrow floats and sub-byte ints print as their stored byte,
/// strings as quoted literals ([`write_bytes`]).
pub fn write_tensor(out: &mut String, t: &Tensor) {
    write_type(
        out,
        &ValueType::new(
            t.dtype(),
            Some(Shape(t.dims().iter().map(|&d| Dim::Fixed(d)).collect())),
        ),
    );
    out.push_str(" [");
    if let Some(strings) = t.strings() {
        for (i, s) in strings.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_bytes(out, s);
        }
        out.push(']');
        return;
    }
    let b = t.bytes();
    for i in 0..t.len() {
        if i > 0 {
            out.push_str(", ");
        }
        let s = t.dtype().size();
        let e = &b[i * s..(i + 1) * s];
        match t.dtype() {
            DType::F32 => write_f64(out, f32::from_le_bytes(e.try_into().unwrap()) as f64, true),
            DType::F64 => write_f64(out, f64::from_le_bytes(e.try_into().unwrap()), false),
            DType::F16 => write_f64(
                out,
                f16::from_le_bytes(e.try_into().unwrap()).to_f64(),
                true,
            ),
            DType::BF16 => write_f64(
                out,
                bf16::from_le_bytes(e.try_into().unwrap()).to_f64(),
                true,
            ),
            DType::U64 => {
                let _ = write!(out, "{}", u64::from_le_bytes(e.try_into().unwrap()));
            }
            d if d.is_narrow_float()
                || d.size() == 1 && d.is_unsigned_int()
                || d == DType::Bool =>
            {
                let _ = write!(out, "{}", e[0]);
            }
            _ => {
                let _ = write!(out, "{}", t.get_i64(i));
            }
        }
    }
    out.push(']');
}

/// Prints the whole graph in the text form.
pub fn print_graph(g: &Graph) -> String {
    let mut out = String::from("graph {\n");
    let order = match g.topo_order() {
        Ok(o) => o,
        // A cyclic graph still prints (in index order) so that the verifier's report can show it.
        Err(_) => g.node_ids(),
    };
    for id in order {
        let n = g.node(id);
        let _ = write!(out, "  {id} = ");
        match &n.op {
            Op::Input { index } => {
                let _ = write!(out, "Input {index} ");
            }
            Op::Const(c) => {
                out.push_str("Const ");
                match g.consts.get(c.0 as usize) {
                    Some(t) => write_tensor(&mut out, t),
                    None => {
                        let _ = write!(out, "<missing c{}>", c.0);
                    }
                }
                if let Some(t) = g.ternary.get(c) {
                    let layout = match t.layout {
                        crate::WeightLayout::RowsFirst => "rows_first",
                        crate::WeightLayout::ColsFirst => "cols_first",
                    };
                    let _ = write!(out, " ternary({layout}, {})", t.scale.kind());
                }
                out.push(' ');
            }
            op => {
                out.push_str(op.name());
                op.print_attrs(&mut out);
                out.push('(');
                for (i, v) in g.inputs_of(id).iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match v {
                        Some(v) => {
                            let _ = write!(out, "{v}");
                        }
                        None => out.push('_'),
                    }
                }
                out.push_str(") ");
            }
        }
        write_string(&mut out, &n.name);
        out.push_str(" :");
        for (i, t) in n.outputs.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            write_type(&mut out, t);
        }
        out.push('\n');
    }
    for (name, v) in &g.outputs {
        out.push_str("  output ");
        write_string(&mut out, name);
        let _ = writeln!(out, " = {v}");
    }
    out.push_str("}\n");
    out
}
