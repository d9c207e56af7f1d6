//! Typed attribute values: how each attribute field type prints itself in the text form and parses
//! back, and the `op_family!` macro that declares an op family once (variants, typed attributes
//! with defaults, names, text print/parse).
use crate::text::lex::{Lexer, ParseError};
use crate::{DType, Tensor};
use std::fmt::Write;

/// A value that can be an op attribute: printable in the text form and parseable back.
pub trait AttrField: Sized {
    fn print(&self, out: &mut String);
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError>;
}

impl AttrField for i64 {
    fn print(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        lx.int()
    }
}

impl AttrField for f32 {
    fn print(&self, out: &mut String) {
        crate::text::print::write_f64(out, *self as f64, true);
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        Ok(lx.float()? as f32)
    }
}

impl AttrField for bool {
    fn print(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        match lx.ident()?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(lx.error(format!("expected true or false, found `{other}`"))),
        }
    }
}

impl AttrField for DType {
    fn print(&self, out: &mut String) {
        out.push_str(self.name());
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        let name = lx.ident()?;
        DType::from_name(&name).ok_or_else(|| lx.error(format!("unknown dtype `{name}`")))
    }
}

impl<T: AttrField> AttrField for Vec<T> {
    fn print(&self, out: &mut String) {
        out.push('[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            v.print(out);
        }
        out.push(']');
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        lx.expect('[')?;
        let mut v = Vec::new();
        if lx.eat(']') {
            return Ok(v);
        }
        loop {
            v.push(T::parse(lx)?);
            if lx.eat(']') {
                return Ok(v);
            }
            lx.expect(',')?;
        }
    }
}

/// `none` or the value.
impl<T: AttrField> AttrField for Option<T> {
    fn print(&self, out: &mut String) {
        match self {
            Some(v) => v.print(out),
            None => out.push_str("none"),
        }
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        if lx.eat_word("none") {
            Ok(None)
        } else {
            Ok(Some(T::parse(lx)?))
        }
    }
}

impl AttrField for Tensor {
    fn print(&self, out: &mut String) {
        crate::text::print::write_tensor(out, self);
    }
    fn parse(lx: &mut Lexer<'_>) -> Result<Self, ParseError> {
        crate::text::parse::parse_tensor(lx)
    }
}

/// Declares a string-valued attribute as a closed enum (`auto_pad`, `mode`, ...).
#[macro_export]
macro_rules! str_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),* }
        impl $name {
            /// The attribute string as ONNX spells it.
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),* } }
            /// Parses the ONNX spelling.
            pub fn from_str_opt(s: &str) -> Option<Self> { match s { $($s => Some($name::$var),)* _ => None } }
        }
        impl $crate::op::attr::AttrField for $name {
            fn print(&self, out: &mut String) { out.push_str(self.as_str()); }
            fn parse(lx: &mut $crate::text::lex::Lexer<'_>) -> Result<Self, $crate::text::lex::ParseError> {
                let w = lx.ident()?;
                Self::from_str_opt(&w).ok_or_else(|| lx.error(format!("unknown {} `{}`", stringify!($name), w)))
            }
        }
    };
}

/// Declares an op family: a closed enum whose variants are ops, each with typed attributes and
/// their ONNX defaults. Generates `name()`, `print_attrs()` and `parse(name, lexer)`.
#[macro_export]
macro_rules! op_family {
    ($(#[$m:meta])* pub enum $fam:ident {
        $($(#[$vm:meta])* $var:ident $({ $($field:ident : $fty:ty = $def:expr),* $(,)? })?),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $fam { $($(#[$vm])* $var $({ $($field: $fty),* })?),* }

        impl $fam {
            /// The op's name (the ONNX op_type).
            pub fn name(&self) -> &'static str {
                match self { $($fam::$var { .. } => stringify!($var)),* }
            }

            /// Every op name in this family.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($var)),*];

            /// The op `name` with every attribute at its ONNX default.
            #[allow(unused_mut, unused_variables, clippy::redundant_field_names)]
            pub fn with_defaults(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($var) => Some($fam::$var $({ $($field: $def),* })?),)*
                    _ => None,
                }
            }

            /// Prints `{a=1, b=[2,3]}`; nothing for an op without attributes.
            #[allow(unused_variables, unused_mut)]
            pub fn print_attrs(&self, out: &mut String) {
                match self {
                    $($fam::$var $({ $($field),* })? => {
                        let mut first = true;
                        $($(
                            out.push_str(if first { "{" } else { ", " });
                            first = false;
                            out.push_str(stringify!($field));
                            out.push('=');
                            $crate::op::attr::AttrField::print($field, out);
                        )*)?
                        if !first { out.push('}'); }
                    })*
                }
            }

            /// Parses the attribute block (if any) of op `name`; unknown names give `Ok(None)`.
            #[allow(unused_mut, unused_variables, unreachable_code)]
            pub fn parse(name: &str, lx: &mut $crate::text::lex::Lexer<'_>)
                -> Result<Option<Self>, $crate::text::lex::ParseError> {
                let Some(mut op) = Self::with_defaults(name) else { return Ok(None) };
                if !lx.eat('{') { return Ok(Some(op)); }
                if lx.eat('}') { return Ok(Some(op)); }
                loop {
                    let key = lx.ident()?;
                    lx.expect('=')?;
                    let mut matched = false;
                    match &mut op {
                        $($fam::$var $({ $($field),* })? => {
                            $($(
                                if !matched && key == stringify!($field) {
                                    *$field = $crate::op::attr::AttrField::parse(lx)?;
                                    matched = true;
                                }
                            )*)?
                        })*
                    }
                    if !matched {
                        return Err(lx.error(format!("op {name} has no attribute `{key}`")));
                    }
                    if lx.eat('}') { return Ok(Some(op)); }
                    lx.expect(',')?;
                }
            }
        }
    };
}
