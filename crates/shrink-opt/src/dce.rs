//! Dead code elimination: nodes that no graph output depends on are deleted (graph inputs stay:
//! they are part of the kernel ABI), then unreferenced constants are dropped.
use crate::{Ctx, OptError, Stats};
use shrink_ir::Graph;
use std::collections::HashSet;

pub fn remove_dead(g: &mut Graph, _ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new("dce");
    let mut live = HashSet::new();
    let mut stack: Vec<_> = g.outputs.iter().map(|(_, v)| v.node).collect();
    stack.extend(g.inputs.iter().copied());
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(g.inputs_of(n).into_iter().flatten().map(|v| v.node));
        }
    }
    for id in g.node_ids() {
        if !live.contains(&id) {
            g.remove_node(id);
            stats.add("nodes_removed", 1);
        }
    }
    let before = g.consts.len();
    g.compact_consts();
    stats.add("consts_dropped", before - g.consts.len());
    Ok(stats)
}
