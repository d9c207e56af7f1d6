//! The `.sir` text form of a graph: a printer and a parser such that `print(parse(t)) == t` for
//! every printed graph. Used by the ir/ golden tests and `--emit ir`.
//!
//! ```text
//! graph {
//!   %0 = Input 0 "x" : f32[2,3]
//!   %1 = Const f32[3] [1.0, 2.0, 3.0] "w" : f32[3]
//!   %2 = Add(%0, %1) "add" : f32[2,3]
//!   %3 = Split{axis=1, num_outputs=none}(%2, _) "split" : f32[2,1], f32[2,2]
//!   output "y" = %3.1
//! }
//! ```
//! `_` is an absent optional input; `;` starts a comment.
pub mod lex;
pub mod parse;
pub mod print;

pub use lex::ParseError;
pub use parse::parse_graph;
pub use print::print_graph;
