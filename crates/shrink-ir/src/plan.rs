//! Memory planning (owned here because code generation consumes it): every intermediate value (not a graph input, constant or graph output — those
//! live in caller buffers or `.rodata`) gets an offset in one scratch arena. Offsets come from
//! liveness over the topological order with first-fit reuse of freed blocks, aligned to
//! [`ALIGN`]; an elementwise op whose input dies at that op writes its output in place. String
//! values (interpreter-only, with no fixed-size layout) get no slot.
use crate::{DType, Graph, Op, Value};
use std::collections::{BTreeMap, HashMap};

/// Alignment of every scratch offset (a cache line; also enough for 512-bit vectors).
pub const ALIGN: usize = 64;

/// Where each intermediate value lives in the scratch arena.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// value → (offset, bytes)
    pub slots: BTreeMap<Value, (usize, usize)>,
    /// Arena size in bytes (a multiple of `ALIGN`, 0 when nothing needs scratch).
    pub total: usize,
    /// Values that share their input's block.
    pub in_place: usize,
}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Plans the arena. Requires static shapes (run after `shapes`).
pub fn plan_memory(g: &Graph) -> Result<MemoryPlan, String> {
    let order = g
        .topo_order()
        .map_err(|_| "the graph has a cycle".to_string())?;
    let pos: HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let outputs: Vec<Value> = g.outputs.iter().map(|(_, v)| *v).collect();
    let mut last_use: HashMap<Value, usize> = HashMap::new();
    for &id in &order {
        for v in g.inputs_of(id).into_iter().flatten() {
            let e = last_use.entry(v).or_insert(0);
            *e = (*e).max(pos[&id]);
        }
    }
    let bytes_of = |v: Value| -> Result<usize, String> {
        let t = g.value_type(v);
        let dims = t.shape.as_ref().and_then(|s| s.as_fixed()).ok_or_else(|| {
            format!(
                "value {v} of node '{}' has no static shape",
                g.node(v.node).name
            )
        })?;
        dims.iter()
            .try_fold(t.dtype.size(), |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("value {v} is too large"))
    };
    let mut plan = MemoryPlan::default();
    // Free blocks as offset → size, coalesced on release.
    let mut free: BTreeMap<usize, usize> = BTreeMap::new();
    let mut dying: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    for (i, &id) in order.iter().enumerate() {
        let node = g.node(id);
        if node.op.is_source() {
            continue;
        }
        let elementwise = matches!(node.op, Op::Unary(_) | Op::Binary(_) | Op::Ternary(_));
        let ins = g.inputs_of(id);
        for k in 0..node.outputs.len() {
            let v = Value::new(id, k as u32);
            if outputs.contains(&v)
                || !last_use.contains_key(&v)
                || node.outputs[k].dtype == DType::String
            {
                continue;
            }
            let size = bytes_of(v)?;
            // In place: an elementwise op overwriting an input that dies here, of the same size.
            let donor = elementwise
                .then(|| {
                    ins.iter().flatten().find(|x| {
                        last_use.get(x) == Some(&i)
                            && plan.slots.get(x).is_some_and(|&(_, s)| s == size)
                            && ins.iter().flatten().filter(|y| *y == *x).count() == 1
                    })
                })
                .flatten()
                .copied();
            let offset = match donor {
                Some(x) => {
                    plan.in_place += 1;
                    // The donor's block now belongs to v: cancel its release.
                    if let Some(list) = dying.get_mut(&i) {
                        list.retain(|y| *y != x);
                    }
                    plan.slots[&x].0
                }
                None => {
                    let need = round_up(size.max(1));
                    let hit = free
                        .iter()
                        .find(|&(_, &s)| s >= need)
                        .map(|(&o, &s)| (o, s));
                    match hit {
                        Some((o, s)) => {
                            free.remove(&o);
                            if s > need {
                                free.insert(o + need, s - need);
                            }
                            o
                        }
                        None => {
                            let o = plan.total;
                            plan.total += need;
                            o
                        }
                    }
                }
            };
            plan.slots.insert(v, (offset, size));
            dying.entry(last_use[&v]).or_default().push(v);
        }
        // Release values whose last use was this node (after outputs are placed, so an output
        // never overlaps an input it reads, except the in-place donor).
        for v in dying.remove(&i).unwrap_or_default() {
            let (o, s) = plan.slots[&v];
            let mut start = o;
            let mut len = round_up(s.max(1));
            if let Some((&po, &ps)) = free.range(..o).next_back()
                && po + ps == o
            {
                free.remove(&po);
                start = po;
                len += ps;
            }
            if let Some(&ns) = free.get(&(o + round_up(s.max(1)))) {
                free.remove(&(o + round_up(s.max(1))));
                len += ns;
            }
            free.insert(start, len);
        }
        // Inputs consumed here that were allocated earlier and die here are handled above; values
        // created here that nobody reads were skipped.
        let _ = &dying;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueType;
    use crate::op::{Binary, Unary};

    #[test]
    fn chain_reuses_blocks_and_never_overlaps_live_values() {
        // x → relu → neg → add(neg, relu) → exp → y : relu is live across neg.
        let mut g = Graph::new();
        let t = ValueType::fixed(DType::F32, &[100]);
        let x = g.add_input("x", t.clone());
        let r = g.add_node(
            Op::Unary(Unary::Relu),
            "r",
            &[Some(x.into())],
            vec![t.clone()],
        );
        let n = g.add_node(
            Op::Unary(Unary::Neg),
            "n",
            &[Some(r.into())],
            vec![t.clone()],
        );
        let a = g.add_node(
            Op::Binary(Binary::Add),
            "a",
            &[Some(n.into()), Some(r.into())],
            vec![t.clone()],
        );
        let e = g.add_node(
            Op::Unary(Unary::Exp),
            "e",
            &[Some(a.into())],
            vec![t.clone()],
        );
        let y = g.add_node(Op::Unary(Unary::Neg), "y", &[Some(e.into())], vec![t]);
        g.outputs.push(("y".into(), y.into()));
        let p = plan_memory(&g).unwrap();
        let off = |id: crate::NodeId| p.slots[&Value::from(id)].0;
        assert!(p.slots.values().all(|(o, _)| o % ALIGN == 0));
        assert_ne!(off(r), off(n), "relu is still live when neg writes");
        // add overwrites a dying input in place; exp then reuses add's block in place.
        assert!(off(a) == off(n) || off(a) == off(r));
        assert_eq!(off(e), off(a));
        assert_eq!(p.total, 2 * 448);
        assert!(
            !p.slots.contains_key(&Value::from(y)),
            "graph outputs live in caller buffers"
        );
    }
}
