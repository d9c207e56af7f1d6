//! Memory planning (owned here because code generation consumes it): every intermediate value
//! (not a graph input, constant or graph output — those live in caller buffers or `.rodata`) gets
//! an offset in one scratch arena. Offsets come from liveness over the topological order with
//! first-fit reuse of freed blocks, aligned to [`ALIGN`]; an elementwise op whose input dies at
//! that op, with the output's shape and element size, writes its output in place. String values
//! (interpreter-only, with no fixed-size layout) get no slot. [`verify_plan`] re-checks a plan
//! from the graph alone.
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
            // In place: an elementwise op overwriting an input that dies here. Element i of the
            // output then only overwrites element i of the input after reading it, which holds
            // only when both have the same shape (no broadcast: a broadcast input is read again
            // by later output elements) and the same element size (same byte position).
            let out_ty = g.value_type(v);
            let same_layout = |x: &Value| {
                let t = g.value_type(*x);
                t.dtype.size() == out_ty.dtype.size()
                    && t.shape.as_ref().and_then(|s| s.as_fixed())
                        == out_ty.shape.as_ref().and_then(|s| s.as_fixed())
            };
            let donor = elementwise
                .then(|| {
                    ins.iter().flatten().find(|x| {
                        last_use.get(x) == Some(&i)
                            && plan.slots.contains_key(x)
                            && same_layout(x)
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
    }
    Ok(plan)
}

/// Checks a plan against the graph, independently of how it was made: every slot is aligned and
/// lies within `total`, and two values whose lifetimes overlap (in topological order, from the
/// producing node to the last reader) never share a byte — except an elementwise output placed
/// exactly on an input that dies at that node (the in-place rule: same offset, same shape, same
/// element size).
pub fn verify_plan(g: &Graph, plan: &MemoryPlan) -> Result<(), String> {
    let order = g
        .topo_order()
        .map_err(|_| "the graph has a cycle".to_string())?;
    let pos: HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    if !plan.total.is_multiple_of(ALIGN) {
        return Err(format!(
            "arena size {} is not a multiple of {ALIGN}",
            plan.total
        ));
    }
    let mut last_use: HashMap<Value, usize> = HashMap::new();
    for &id in &order {
        for v in g.inputs_of(id).into_iter().flatten() {
            let e = last_use.entry(v).or_insert(0);
            *e = (*e).max(pos[&id]);
        }
    }
    // (value, offset, bytes, born, dies)
    let mut live = Vec::with_capacity(plan.slots.len());
    for (&v, &(o, s)) in &plan.slots {
        if !g.contains(v.node) || v.slot as usize >= g.node(v.node).outputs.len() {
            return Err(format!("slot for {v}, which is not a value of the graph"));
        }
        if !o.is_multiple_of(ALIGN) {
            return Err(format!(
                "value {v} is at offset {o}, not aligned to {ALIGN}"
            ));
        }
        if o.checked_add(s).is_none_or(|end| end > plan.total) {
            return Err(format!(
                "value {v} ({s} bytes at {o}) lies outside the {}-byte arena",
                plan.total
            ));
        }
        let t = g.value_type(v);
        if let Some(dims) = t.shape.as_ref().and_then(|s| s.as_fixed()) {
            let want = dims
                .iter()
                .try_fold(t.dtype.size(), |a, &d| a.checked_mul(d));
            if want != Some(s) {
                return Err(format!(
                    "value {v} of type {t} needs {want:?} bytes, its slot has {s}"
                ));
            }
        }
        if s == 0 {
            continue; // occupies no bytes
        }
        let born = pos[&v.node];
        live.push((v, o, s, born, last_use.get(&v).copied().unwrap_or(born)));
    }
    let in_place = |out: Value, inp: Value, o: usize| -> bool {
        let node = g.node(out.node);
        matches!(node.op, Op::Unary(_) | Op::Binary(_) | Op::Ternary(_))
            && plan.slots.get(&inp).is_some_and(|&(io, _)| io == o)
            && last_use.get(&inp) == Some(&pos[&out.node])
            && g.value_type(inp).dtype.size() == g.value_type(out).dtype.size()
            && g.value_type(inp).shape == g.value_type(out).shape
            && g.inputs_of(out.node)
                .iter()
                .flatten()
                .filter(|x| **x == inp)
                .count()
                == 1
    };
    // Sweep by offset: only pairs whose byte ranges overlap need a lifetime check.
    live.sort_by_key(|&(_, o, ..)| o);
    for (i, &(a, ao, asz, ab, ad)) in live.iter().enumerate() {
        for &(b, bo, bsz, bb, bd) in &live[i + 1..] {
            if bo >= ao + asz {
                break;
            }
            // Lifetimes [born, dies] overlap?
            if ab > bd || bb > ad {
                continue;
            }
            let ok = (ad == bb && in_place(b, a, ao) && ao == bo)
                || (bd == ab && in_place(a, b, bo) && ao == bo);
            if !ok {
                return Err(format!(
                    "values {a} ({asz} bytes at {ao}, live at nodes {ab}..={ad}) and {b} ({bsz} \
                     bytes at {bo}, live at {bb}..={bd}) overlap while both are alive"
                ));
            }
        }
    }
    Ok(())
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
        verify_plan(&g, &p).unwrap();
        assert!(
            !p.slots.contains_key(&Value::from(y)),
            "graph outputs live in caller buffers"
        );
    }

    /// `Less(a: f32[4], b: f32[4,4]) -> bool[4,4]`: the output has a's byte size, but a is
    /// broadcast over the rows, so row 1 still reads a after row 0 was written.
    fn broadcast_less() -> (Graph, crate::NodeId, crate::NodeId) {
        let mut g = Graph::new();
        let x = g.add_input("x", ValueType::fixed(DType::F32, &[4]));
        let b = g.add_input("b", ValueType::fixed(DType::F32, &[4, 4]));
        let a = g.add_node(
            Op::Unary(Unary::Relu),
            "a",
            &[Some(x.into())],
            vec![ValueType::fixed(DType::F32, &[4])],
        );
        let less = g.add_node(
            Op::Binary(Binary::Less),
            "less",
            &[Some(a.into()), Some(b.into())],
            vec![ValueType::fixed(DType::Bool, &[4, 4])],
        );
        let y = g.add_node(
            Op::Unary(Unary::Not),
            "y",
            &[Some(less.into())],
            vec![ValueType::fixed(DType::Bool, &[4, 4])],
        );
        g.outputs.push(("y".into(), y.into()));
        (g, a, less)
    }

    #[test]
    fn broadcast_input_of_equal_byte_size_is_not_overwritten_in_place() {
        let (g, a, less) = broadcast_less();
        let p = plan_memory(&g).unwrap();
        let off = |id: crate::NodeId| p.slots[&Value::from(id)].0;
        assert_eq!(p.slots[&Value::from(a)].1, p.slots[&Value::from(less)].1);
        assert_ne!(off(a), off(less), "a is read again by later rows");
        assert_eq!(p.in_place, 0);
        verify_plan(&g, &p).unwrap();
    }

    #[test]
    fn verify_plan_rejects_overlapping_live_values() {
        let (g, a, less) = broadcast_less();
        let mut p = plan_memory(&g).unwrap();
        // The old (wrong) in-place decision: less on a's block.
        let a_off = p.slots[&Value::from(a)].0;
        p.slots.get_mut(&Value::from(less)).unwrap().0 = a_off;
        let e = verify_plan(&g, &p).unwrap_err();
        assert!(e.contains("overlap while both are alive"), "{e}");
    }

    #[test]
    fn verify_plan_rejects_out_of_arena_and_misaligned_slots() {
        let (g, _, less) = broadcast_less();
        let good = plan_memory(&g).unwrap();
        let mut p = good.clone();
        p.slots.get_mut(&Value::from(less)).unwrap().0 = p.total;
        assert!(verify_plan(&g, &p).unwrap_err().contains("outside"));
        let mut p = good.clone();
        p.slots.get_mut(&Value::from(less)).unwrap().0 += 8;
        assert!(verify_plan(&g, &p).unwrap_err().contains("aligned"));
        let mut p = good;
        p.slots.get_mut(&Value::from(less)).unwrap().1 = 4;
        assert!(verify_plan(&g, &p).unwrap_err().contains("bytes"));
    }
}
