//! The caps that bound code generation of an untrusted model: the machine code a compile may
//! emit (`--max-code`, [`crate::CodegenOptions::max_code_bytes`]) and the data it may lay out
//! (`--max-memory`, [`crate::CodegenOptions::max_memory`]: read-only data, the scratch arena,
//! each caller buffer).
//!
//! Code is checked three times, each as early as what it knows allows: a layer whose strategy
//! says up front how much code it is (a `stream` is bytes per term) before it is built; every
//! node's kernels, from the size of their loop-nest trees, before any Cranelift IR exists
//! ([`estimated_code_bytes`]); and the real bytes as the functions are compiled
//! ([`crate::define`]). Each refusal is one line naming the cap and what needed more.
use crate::loops::ir::{Expr, ExprKind, Kernel, Stmt};
use std::collections::HashMap;

/// `--max-code` when none is given: far above any model shrink is meant for (the largest shipped
/// example is a few hundred KiB of code), low enough that a hostile model cannot take the
/// machine's memory through the compiler (Cranelift holds ~10–50 bytes per code byte while it
/// compiles a function).
pub const DEFAULT_MAX_CODE: usize = 256 << 20;

/// `--max-memory` when none is given (the importer's default too).
pub const DEFAULT_MAX_MEMORY: usize = 4 << 30;

/// Machine-code bytes one loop-nest tree node becomes, at least: over the ONNX node suite and the
/// shipped examples (1344 kernels) a node compiled to 1.2–20 bytes, 4.6 on average (Cranelift
/// folds constant indices, vectorized loops emit a vector body and a scalar tail). The estimate
/// takes less than the least, so it refuses only code the exact count after compiling would
/// refuse too, and it refuses that before Cranelift holds any of it.
pub const BYTES_PER_NODE: usize = 1;

/// `bytes` for a person: `512 B`, `3.0 KiB`, `1.5 MiB`, `4.0 GiB`.
pub fn human(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The refusal under `cap`: `detail` says what needed how much (`stream needs 3.2 MiB`).
pub fn code_error(cap: usize, detail: &str) -> String {
    format!("code would exceed --max-code {} ({detail})", human(cap))
}

/// `Err` when `needs` bytes of code (`what`: `stream`) exceed `cap`.
pub fn check_code(cap: Option<usize>, what: &str, needs: usize) -> Result<(), String> {
    match cap {
        Some(cap) if needs > cap => Err(code_error(cap, &format!("{what} needs {}", human(needs)))),
        _ => Ok(()),
    }
}

/// `Err` when `needs` bytes of `what` exceed the memory cap.
pub fn check_memory(cap: usize, what: &str, needs: usize) -> Result<(), String> {
    if needs > cap {
        return Err(format!(
            "{what} would exceed --max-memory {} (needs {})",
            human(cap),
            human(needs)
        ));
    }
    Ok(())
}

/// The machine code `k` will take at least ([`BYTES_PER_NODE`] per node of its trees, counted
/// as the emitter expands them: an expression shared by `Rc` is emitted at each use). Linear in
/// the size of the DAG, saturating.
pub fn estimated_code_bytes(k: &Kernel) -> usize {
    let mut memo = HashMap::new();
    stmts_nodes(&k.body, &mut memo).saturating_mul(BYTES_PER_NODE)
}

fn stmts_nodes(body: &[Stmt], memo: &mut HashMap<*const ExprKind, usize>) -> usize {
    body.iter().fold(0usize, |acc, s| {
        let n = match s {
            Stmt::Loop { body, .. } => stmts_nodes(body, memo).saturating_add(4),
            Stmt::Set { value, .. } => expr_nodes(value, memo),
            Stmt::Store { index, value, .. } => {
                expr_nodes(index, memo).saturating_add(expr_nodes(value, memo))
            }
            Stmt::If {
                cond,
                then,
                otherwise,
            } => expr_nodes(cond, memo)
                .saturating_add(stmts_nodes(then, memo))
                .saturating_add(stmts_nodes(otherwise, memo)),
            Stmt::Fail { .. } => 1,
            Stmt::Native(n) => stmts_nodes(&n.fallback, memo),
        };
        acc.saturating_add(n).saturating_add(1)
    })
}

/// Nodes of the tree `e` expands to (each shared subtree once per use).
fn expr_nodes(e: &Expr, memo: &mut HashMap<*const ExprKind, usize>) -> usize {
    let key = std::rc::Rc::as_ptr(&e.kind);
    if let Some(&n) = memo.get(&key) {
        return n;
    }
    let n = 1usize.saturating_add(match &*e.kind {
        ExprKind::Lit(_) | ExprKind::Var(_) => 0,
        ExprKind::Load { index, .. } => expr_nodes(index, memo),
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) => expr_nodes(a, memo),
        ExprKind::Binary(_, a, b) | ExprKind::Cmp(_, a, b) => {
            expr_nodes(a, memo).saturating_add(expr_nodes(b, memo))
        }
        ExprKind::Select(c, a, b) => expr_nodes(c, memo)
            .saturating_add(expr_nodes(a, memo))
            .saturating_add(expr_nodes(b, memo)),
    });
    memo.insert(key, n);
    n
}

/// Code bytes accumulated against the cap, in program order.
#[derive(Clone, Copy, Debug)]
pub struct CodeBudget {
    pub cap: Option<usize>,
    pub used: usize,
}

impl CodeBudget {
    pub fn new(cap: Option<usize>) -> CodeBudget {
        CodeBudget { cap, used: 0 }
    }

    /// Adds `bytes`; `Err` (nothing added) when the total would cross the cap. `what` says
    /// what the bytes are, as in `this node needs at least`.
    pub fn add(&mut self, what: &str, bytes: usize) -> Result<(), String> {
        let total = self.used.saturating_add(bytes);
        if let Some(cap) = self.cap
            && total > cap
        {
            let before = if self.used == 0 {
                String::new()
            } else {
                format!(", after {} before it", human(self.used))
            };
            return Err(code_error(cap, &format!("{what} {}{before}", human(bytes))));
        }
        self.used = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(3 << 19), "1.5 MiB");
        assert_eq!(human(4 << 30), "4.0 GiB");
    }

    #[test]
    fn the_budget_refuses_the_addition_that_crosses_the_cap() {
        let mut b = CodeBudget::new(Some(100));
        assert!(b.add("a", 60).is_ok());
        let e = b.add("this node needs at least", 41).unwrap_err();
        assert_eq!(
            e,
            "code would exceed --max-code 100 B (this node needs at least 41 B, after 60 B before it)"
        );
        assert_eq!(b.used, 60);
        assert!(b.add("c", 40).is_ok());
        assert!(CodeBudget::new(None).add("d", usize::MAX).is_ok());
    }

    #[test]
    fn shared_subtrees_count_once_per_use_in_linear_time() {
        use crate::loops::ir::{BinOp, Ty, VarId};
        // x + x, squared 40 times: a DAG of 41 nodes whose tree has 2⁴¹ leaves.
        let mut e = Expr::var(VarId(0), Ty::F64);
        for _ in 0..40 {
            e = Expr::binary(BinOp::Add, e.clone(), e);
        }
        let mut memo = HashMap::new();
        assert_eq!(expr_nodes(&e, &mut memo), (1usize << 41) - 1);
    }
}
