//! Common subexpression elimination: two nodes with the same op (attributes included), the same
//! inputs and the same output types compute the same values, so the later one's uses move to the
//! earlier one; identical constants (dtype, dims and bytes or strings) are merged the same way.
//! Runs in topological order so chains of duplicates collapse in one pass.
use crate::{Ctx, OptError, Stats};
use shrink_ir::{Graph, NodeId, Op, Value};
use std::collections::HashMap;

/// A node's identity for CSE: its printed op and attributes, its inputs and output types.
fn key(g: &Graph, id: NodeId) -> Option<String> {
    let n = g.node(id);
    let mut k = String::new();
    match &n.op {
        Op::Input { .. } => return None,
        Op::Const(c) => {
            let t = &g.consts[c.0 as usize];
            // Hash the bytes rather than keep them in the key: weights can be large.
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.bytes().hash(&mut h);
            t.strings().hash(&mut h);
            k.push_str(&format!(
                "const {}{:?} {} {:x}",
                t.dtype(),
                t.dims(),
                t.len(),
                h.finish()
            ));
        }
        // Everything in the op set is pure: even training-mode Dropout draws its mask from its seed
        // attribute (0 when absent), so identical Dropout nodes compute identical outputs.
        op => {
            k.push_str(op.name());
            op.print_attrs(&mut k);
            for v in g.inputs_of(id) {
                match v {
                    Some(v) => k.push_str(&format!(" {v}")),
                    None => k.push_str(" _"),
                }
            }
        }
    }
    for t in &n.outputs {
        k.push_str(&format!(" :{t}"));
    }
    Some(k)
}

pub fn eliminate_common(g: &mut Graph, _ctx: &Ctx) -> Result<Stats, OptError> {
    let mut stats = Stats::new("cse");
    let order = crate::topo_order(g, "cse")?;
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    for id in order {
        let Some(k) = key(g, id) else { continue };
        match seen.get(&k) {
            Some(&first) => {
                // Constants with equal hashes must also have equal bytes.
                if let (Op::Const(a), Op::Const(b)) = (&g.node(first).op, &g.node(id).op)
                    && g.consts[a.0 as usize] != g.consts[b.0 as usize]
                {
                    continue;
                }
                for k in 0..g.node(id).outputs.len() as u32 {
                    g.replace_uses(Value::new(id, k), Value::new(first, k));
                }
                stats.add(
                    if matches!(g.node(id).op, Op::Const(_)) {
                        "consts_merged"
                    } else {
                        "nodes_merged"
                    },
                    1,
                );
            }
            None => {
                seen.insert(k, id);
            }
        }
    }
    Ok(stats)
}
