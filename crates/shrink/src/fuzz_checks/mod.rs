//! The checks of the fuzz targets (`fuzz/fuzz_targets/`), shared with the replay of their findings
//! (`tests/fuzz_regressions.rs`) so that a saved input is judged by exactly the code that found
//! it. Each check takes arbitrary bytes and returns `Err` with a one-line description of a defect
//! (a disagreement, a multi-line error); a panic inside shrink is a defect too, surfaced as such.
//! Every stage runs under small caps ([`CAP`]) so that huge declared sizes are refused, not
//! allocated.

/// Unwraps a stage's result, or ends the check: `Ok` (with the check's default verdict) when
/// the stage refused in one line, a defect when its message is multi-line or empty.
macro_rules! refuse {
    ($stage:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return crate::fuzz_checks::one_line($stage, e).map(|()| Default::default()),
        }
    };
}

mod import;
mod node_by_node;
mod pipeline;
mod text;

pub use import::import;
pub use pipeline::{Agreement, pipeline, pipeline_agreement};
pub use text::{text, text_seeds};

/// Memory cap of every stage (importer, optimizer folds, interpreter tensors).
pub const CAP: usize = 16 << 20;

/// `Ok` for a one-line refusal by `stage`, a defect for a multi-line (or empty) message.
fn one_line(stage: &str, msg: impl std::fmt::Display) -> Result<(), String> {
    let msg = msg.to_string();
    if msg.is_empty() || msg.contains('\n') {
        Err(format!("{stage}: refusal is not a one-line error: {msg:?}"))
    } else {
        Ok(())
    }
}
