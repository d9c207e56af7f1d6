//! The C header of a compiled model: the kernel ABI of DESIGN.md spelled out for one program —
//! counts, byte sizes, names, dtypes and dims of every input and output, the scratch size, and the
//! prototype of `PREFIX_run` — plus the rules for `PREFIX` itself (a C identifier).
use crate::AotError;
use shrink_codegen::loops::status;
use shrink_codegen::{IoSpec, Program};
use std::fmt::Write;

/// Alignment the scratch buffer should have (a cache line; also enough for any vector load).
pub const SCRATCH_ALIGN: usize = 64;

/// C keywords (C23 and C++ ones a C++ includer would trip on): not usable as a prefix, since the
/// header also `#define`s `PREFIX_…` names and the prefix alone is a symbol fragment.
const RESERVED: &[&str] = &[
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "bool",
    "true",
    "false",
    "nullptr",
    "alignas",
    "alignof",
    "constexpr",
    "static_assert",
    "thread_local",
    "typeof",
    "class",
    "namespace",
    "new",
    "delete",
    "operator",
    "template",
    "this",
    "throw",
    "try",
    "catch",
    "private",
    "public",
    "protected",
    "virtual",
    "friend",
    "using",
];

/// Checks that `prefix` names symbols and macros safely: `[A-Za-z_][A-Za-z0-9_]*`, not a
/// keyword, and not an identifier C reserves for the implementation (`__x`, `_X`).
pub fn check_prefix(prefix: &str) -> Result<(), AotError> {
    let bad = |why: &str| Err(AotError::Prefix(format!("--name '{prefix}': {why}")));
    let mut chars = prefix.chars();
    match chars.next() {
        None => return bad("empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return bad("a C identifier starts with a letter or '_'");
        }
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad("a C identifier has only letters, digits and '_'");
    }
    if prefix.starts_with("__")
        || (prefix.starts_with('_') && prefix[1..].starts_with(|c: char| c.is_ascii_uppercase()))
    {
        return bad("identifiers starting with '__' or '_' and a capital are reserved in C");
    }
    if RESERVED.contains(&prefix) {
        return bad("a C keyword");
    }
    if prefix.len() > 200 {
        return bad("longer than 200 characters");
    }
    Ok(())
}

/// A valid prefix made from `stem` (a file stem): every other character becomes `_`, a leading
/// digit or a keyword gets `m_` in front.
pub fn c_identifier_from(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s = s.trim_start_matches('_').to_string();
    s.truncate(200);
    if s.is_empty() {
        return "model".into();
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) || check_prefix(&s).is_err() {
        s = format!("m_{s}");
    }
    s
}

/// `text` as a C string literal: printable ASCII as is, everything else as octal escapes (so
/// no trigraph, no `\x` run-on, no non-ASCII byte in the header).
fn c_string(text: &str) -> String {
    let mut out = String::from("\"");
    for b in text.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b'?' => out.push_str("\\?"),
            0x20..=0x7e => out.push(b as char),
            _ => write!(out, "\\{b:03o}").unwrap(),
        }
    }
    out.push('"');
    out
}

/// `text` safe inside a `/* */` comment, on one line.
fn c_comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace("*/", "*\\/")
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// The per-tensor macros and arrays of one side (`INPUT` or `OUTPUT`).
fn tensors(h: &mut String, prefix: &str, side: &str, specs: &[IoSpec]) {
    let n = specs.len();
    for (i, s) in specs.iter().enumerate() {
        let dims = list(s.dims.iter().map(|d| d.to_string()));
        writeln!(
            h,
            "/* {} {i} '{}': {}[{dims}], {} bytes */",
            side.to_lowercase(),
            c_comment(&s.name),
            s.dtype,
            s.bytes()
        )
        .unwrap();
        writeln!(
            h,
            "#define {prefix}_{side}_{i}_DTYPE {}",
            s.dtype.onnx_code()
        )
        .unwrap();
        writeln!(h, "#define {prefix}_{side}_{i}_RANK {}", s.dims.len()).unwrap();
        // A constant expression (the arrays below are not one in C), so static buffers can be
        // sized with it.
        writeln!(h, "#define {prefix}_{side}_{i}_BYTES {}", s.bytes()).unwrap();
        // C has no empty arrays: a scalar's dims array holds one unused 0.
        let body = if s.dims.is_empty() {
            "0".to_string()
        } else {
            dims
        };
        writeln!(
            h,
            "static const size_t {prefix}_{side}_{i}_DIMS[{}] = {{{body}}};",
            s.dims.len().max(1)
        )
        .unwrap();
    }
    // Likewise a model without inputs gets one-entry arrays (NULL name, 0 bytes).
    let (names, bytes) = if n == 0 {
        ("0".to_string(), "0".to_string())
    } else {
        (
            list(specs.iter().map(|s| c_string(&s.name))),
            list(specs.iter().map(|s| s.bytes().to_string())),
        )
    };
    let dim = if n == 0 {
        "1".to_string()
    } else {
        format!("{prefix}_NUM_{side}S")
    };
    writeln!(
        h,
        "static const char *const {prefix}_{side}_NAMES[{dim}] = {{{names}}};"
    )
    .unwrap();
    writeln!(
        h,
        "static const size_t {prefix}_{side}_BYTES[{dim}] = {{{bytes}}};"
    )
    .unwrap();
    h.push('\n');
}

/// The header for `p` compiled with symbol prefix `prefix`.
pub fn header(p: &Program, prefix: &str) -> Result<String, AotError> {
    check_prefix(prefix)?;
    // Case kept: prefixes differing only in case are distinct symbols, so distinct headers.
    let guard = format!("SHRINK_{prefix}_H");
    let mut h = String::new();
    writeln!(
        h,
        "/* {prefix}.h: generated by shrink {}; do not edit.",
        env!("CARGO_PKG_VERSION")
    )
    .unwrap();
    h.push_str(
        " *
 * The kernel ABI: dense row-major little-endian tensors in caller-owned buffers, in graph order.
 * No heap, no libc, no global state written: threads with separate scratch buffers may call
 * the kernel at once. Buffers need no particular alignment; SCRATCH_ALIGN is what scratch
 * should have for speed. Dtypes are ONNX TensorProto codes (1 = float32, 7 = int64, ...).
 */
",
    );
    writeln!(h, "#ifndef {guard}\n#define {guard}\n").unwrap();
    h.push_str("#include <stddef.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    writeln!(h, "#define {prefix}_NUM_INPUTS {}", p.inputs.len()).unwrap();
    writeln!(h, "#define {prefix}_NUM_OUTPUTS {}", p.outputs.len()).unwrap();
    writeln!(h, "#define {prefix}_SCRATCH_BYTES {}", p.scratch_bytes).unwrap();
    writeln!(h, "#define {prefix}_SCRATCH_ALIGN {SCRATCH_ALIGN}\n").unwrap();
    tensors(&mut h, prefix, "INPUT", &p.inputs);
    tensors(&mut h, prefix, "OUTPUT", &p.outputs);
    h.push_str(
        "/* Runs the model: inputs[i] points at input i, outputs[k] at output k,
 * scratch at SCRATCH_BYTES bytes (may be NULL when that is 0). Returns:\n",
    );
    for code in [
        status::OK,
        status::BAD_INDEX,
        status::OUT_OF_BOUNDS,
        status::DIV_BY_ZERO,
        status::BAD_VALUE,
    ] {
        writeln!(h, " *   {code}  {}", status::describe(code)).unwrap();
    }
    h.push_str(" * On a nonzero return the outputs are unspecified; nothing outside the buffers is touched. */\n");
    writeln!(
        h,
        "int32_t {prefix}_run(const void *const *inputs, void *const *outputs, void *scratch);\n"
    )
    .unwrap();
    writeln!(h, "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */").unwrap();
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("ternary_mlp").is_ok());
        assert!(check_prefix("_m").is_ok());
        for bad in ["", "1x", "a-b", "int", "__x", "_X", "é"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(c_identifier_from("ternary-mlp.v2"), "ternary_mlp_v2");
        assert_eq!(c_identifier_from("3d"), "m_3d");
        assert_eq!(c_identifier_from("int"), "m_int");
        assert_eq!(c_identifier_from("--"), "model");
        for s in ["a b", "9", "__init__", "ünï", "if"] {
            assert!(check_prefix(&c_identifier_from(s)).is_ok(), "{s}");
        }
    }

    #[test]
    fn strings_and_comments_are_escaped() {
        assert_eq!(c_string("a\"b\\c?\n"), "\"a\\\"b\\\\c\\?\\012\"");
        assert_eq!(c_string("é"), "\"\\303\\251\"");
        assert_eq!(c_comment("x*/y\n"), "x*\\/y?");
    }
}
