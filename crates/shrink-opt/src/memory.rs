//! The `memory-plan` pass: runs [`shrink_ir::plan::plan_memory`] and reports the arena size (the
//! plan itself is recomputed by `prepare` for code generation, on the final graph). With
//! `ctx.verify` the plan is checked by [`shrink_ir::plan::verify_plan`].
use crate::{Ctx, OptError, Stats};
use shrink_ir::Graph;
use shrink_ir::plan::{plan_memory, verify_plan};

pub fn plan_pass(g: &mut Graph, ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new("memory-plan");
    let plan = match plan_memory(g) {
        Ok(p) => p,
        // Dynamic shapes only matter to code generation; the interpreter allocates per value.
        Err(_) if !ctx.require_static => {
            stats.add("skipped_dynamic", 1);
            return Ok(stats);
        }
        Err(e) => return Err(OptError::new("memory-plan", e)),
    };
    if ctx.verify {
        verify_plan(g, &plan)
            .map_err(|e| OptError::new("memory-plan", format!("the plan is invalid: {e}")))?;
    }
    stats.add("scratch_bytes", plan.total);
    stats.add("values", plan.slots.len());
    stats.add("in_place", plan.in_place);
    Ok(stats)
}
