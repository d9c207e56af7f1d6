//! `shrink inspect`: what a model contains and what shrink proves about its weights. The report is
//! the JSON schema of DESIGN.md's CLI contract; fields that later stages (optimizer, codegen)
//! fill are `null` until those stages run.
use serde::Serialize;
use shrink_ir::op::{Conv, Linear};
use shrink_ir::{Dim, Graph, NodeId, Op, Tensor};
use std::collections::BTreeMap;

#[derive(Serialize, Debug, Clone)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: String,
    /// Fixed dims as numbers, symbolic ones as their names, unknown ones as null.
    pub shape: Option<Vec<serde_json::Value>>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub op: String,
    pub weight_shape: Vec<usize>,
    pub ternary: bool,
    /// `per_tensor`, `per_row`, or null when not ternary.
    pub scale_kind: Option<String>,
    pub zeros: usize,
    pub nonzeros: usize,
    pub dead_rows: Option<usize>,
    pub dead_cols: Option<usize>,
    pub strategy: Option<String>,
    pub code_bytes: Option<usize>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Totals {
    pub params: usize,
    pub ternary_params: usize,
    pub zeros_eliminated: Option<usize>,
    pub code_bytes: Option<usize>,
    pub rodata_bytes: Option<usize>,
    pub scratch_bytes: Option<usize>,
}

/// One optimization pass as run for this report.
#[derive(Serialize, Debug, Clone)]
pub struct PassReport {
    pub name: String,
    pub counters: BTreeMap<String, usize>,
    pub ms: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub nodes_before: usize,
    /// Ops after optimization; null when the pipeline could not run (see `opt_error`).
    pub nodes_after: Option<usize>,
    pub op_counts: BTreeMap<String, usize>,
    pub passes: Vec<PassReport>,
    pub opt_error: Option<String>,
    pub layers: Vec<Layer>,
    pub totals: Totals,
}

fn value_info(g: &Graph, name: &str, ty: &shrink_ir::ValueType) -> ValueInfo {
    let _ = g;
    ValueInfo {
        name: name.to_string(),
        dtype: ty.dtype.name().to_string(),
        shape: ty.shape.as_ref().map(|s| {
            s.0.iter()
                .map(|d| match d {
                    Dim::Fixed(n) => serde_json::json!(n),
                    Dim::Sym(s) => serde_json::json!(s),
                    Dim::Unknown => serde_json::Value::Null,
                })
                .collect()
        }),
    }
}

/// How a weight is laid out relative to the layer's [outputs × inputs] view.
enum RowAxis {
    /// Output units are the leading axis (Gemm with trans_b, Conv).
    Leading,
    /// Output units are the last axis (MatMul B = [K, N]).
    Last,
}

/// The weight constant of a layer node and its layout, if the node is a layer with constant weights.
fn layer_weight<'g>(g: &'g Graph, id: NodeId) -> Option<(&'g Tensor, RowAxis)> {
    let ins = g.inputs_of(id);
    let (slot, axis) = match &g.node(id).op {
        Op::Linear(Linear::MatMul | Linear::MatMulInteger) => (1, RowAxis::Last),
        Op::Linear(Linear::Gemm { trans_b, .. }) => (1, if *trans_b { RowAxis::Leading } else { RowAxis::Last }),
        Op::Linear(Linear::QLinearMatMul) => (3, RowAxis::Last),
        Op::Conv(Conv::Conv { .. } | Conv::ConvInteger { .. }) => (1, RowAxis::Leading),
        Op::Conv(Conv::QLinearConv { .. }) => (3, RowAxis::Leading),
        _ => return None,
    };
    let w = g.const_value((*ins.get(slot)?)?)?;
    Some((w, axis))
}

/// Ternary structure of a weight: `Some("per_tensor" | "per_row")` if every nonzero value has the
/// same magnitude in the whole tensor / in each output row (and the values are exactly ±s).
fn ternary_kind(w: &Tensor, axis: &RowAxis) -> Option<&'static str> {
    if !(w.dtype().is_float() || w.dtype().is_int()) || w.is_empty() || w.rank() < 2 {
        return None;
    }
    let vals = w.to_f64_vec();
    let mags = |it: &mut dyn Iterator<Item = f64>| -> Option<Option<f64>> {
        let mut s: Option<f64> = None;
        for v in it {
            if v == 0.0 {
                continue;
            }
            if !v.is_finite() {
                return None;
            }
            match s {
                None => s = Some(v.abs()),
                Some(m) if m == v.abs() => {}
                Some(_) => return None,
            }
        }
        Some(s)
    };
    if mags(&mut vals.iter().copied()).is_some() {
        return Some("per_tensor");
    }
    let dims = w.dims();
    let (rows, inner) = match axis {
        RowAxis::Leading => (dims[0], vals.len() / dims[0].max(1)),
        RowAxis::Last => (dims[dims.len() - 1], 1),
    };
    let per_row_ok = (0..rows).all(|r| {
        let mut it: Box<dyn Iterator<Item = f64>> = match axis {
            RowAxis::Leading => Box::new(vals[r * inner..(r + 1) * inner].iter().copied()),
            RowAxis::Last => Box::new(vals.iter().copied().skip(r).step_by(rows)),
        };
        mags(&mut *it).is_some()
    });
    per_row_ok.then_some("per_row")
}

fn op_count(g: &Graph) -> usize {
    g.node_ids().into_iter().filter(|&id| !g.node(id).op.is_source()).count()
}

/// Builds the report for an imported graph and, when the pipeline ran, its optimized form.
pub fn inspect(g: &Graph, optimized: Option<(&Graph, &[shrink_opt::Stats])>, opt_error: Option<&String>) -> Report {
    let inputs = g.inputs.iter().map(|&id| value_info(g, &g.node(id).name, &g.node(id).outputs[0])).collect();
    let outputs = g.outputs.iter().map(|(n, v)| value_info(g, n, g.value_type(*v))).collect();
    let mut op_counts = BTreeMap::new();
    let mut layers = Vec::new();
    let mut ternary_params = 0;
    for id in g.topo_order().unwrap_or_else(|_| g.node_ids()) {
        let node = g.node(id);
        if node.op.is_source() {
            continue;
        }
        *op_counts.entry(node.op.name().to_string()).or_insert(0) += 1;
        if let Some((w, axis)) = layer_weight(g, id) {
            let kind = ternary_kind(w, &axis);
            let zeros = (0..w.len()).filter(|&i| w.get_f64(i) == 0.0).count();
            if kind.is_some() {
                ternary_params += w.len();
            }
            layers.push(Layer {
                name: node.name.clone(),
                op: node.op.name().to_string(),
                weight_shape: w.dims().to_vec(),
                ternary: kind.is_some(),
                scale_kind: kind.map(str::to_string),
                zeros,
                nonzeros: w.len() - zeros,
                dead_rows: None,
                dead_cols: None,
                strategy: None,
                code_bytes: None,
            });
        }
    }
    let nodes = op_counts.values().sum();
    let params = g.consts.iter().map(|t| t.len()).sum();
    Report {
        inputs,
        outputs,
        nodes_before: nodes,
        nodes_after: optimized.map(|(o, _)| op_count(o)),
        op_counts,
        passes: optimized
            .map(|(_, stats)| {
                stats
                    .iter()
                    .map(|s| PassReport {
                        name: s.pass.to_string(),
                        counters: s.counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                        ms: s.nanos as f64 / 1e6,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        opt_error: opt_error.cloned(),
        layers,
        totals: Totals {
            params,
            ternary_params,
            zeros_eliminated: None,
            code_bytes: None,
            rodata_bytes: None,
            scratch_bytes: None,
        },
    }
}

fn shape_text(v: &ValueInfo) -> String {
    match &v.shape {
        None => "[*]".into(),
        Some(s) => format!(
            "[{}]",
            s.iter().map(|d| if d.is_null() { "?".to_string() } else { d.to_string().trim_matches('"').to_string() }).collect::<Vec<_>>().join(",")
        ),
    }
}

/// The human-readable form of a report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for (title, list) in [("inputs", &r.inputs), ("outputs", &r.outputs)] {
        let _ = writeln!(s, "{title}:");
        for v in list {
            let _ = writeln!(s, "  {:<24} {}{}", v.name, v.dtype, shape_text(v));
        }
    }
    let ops: Vec<String> = r.op_counts.iter().map(|(k, v)| format!("{k}×{v}")).collect();
    let _ = writeln!(s, "nodes: {} ({})", r.nodes_before, ops.join(", "));
    match (&r.nodes_after, &r.opt_error) {
        (Some(n), _) => {
            let _ = writeln!(s, "after optimization: {n} nodes");
            for p in &r.passes {
                let c: Vec<String> = p.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(s, "  pass {:<12} {:>8.3} ms  {}", p.name, p.ms, c.join(" "));
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "not optimized: {e}");
        }
        (None, None) => {}
    }
    if !r.layers.is_empty() {
        let _ = writeln!(s, "layers:");
        let _ = writeln!(s, "  {:<24} {:<14} {:<16} {:<8} {:<11} {:>10} {:>10}", "name", "op", "weight", "ternary", "scale", "zeros", "nonzeros");
        for l in &r.layers {
            let shape = format!("{:?}", l.weight_shape);
            let _ = writeln!(
                s,
                "  {:<24} {:<14} {:<16} {:<8} {:<11} {:>10} {:>10}",
                l.name,
                l.op,
                shape,
                if l.ternary { "yes" } else { "no" },
                l.scale_kind.as_deref().unwrap_or("-"),
                l.zeros,
                l.nonzeros
            );
        }
    }
    let t = &r.totals;
    let zeros: usize = r.layers.iter().map(|l| l.zeros).sum();
    let weights: usize = r.layers.iter().map(|l| l.zeros + l.nonzeros).sum();
    let frac = if weights == 0 { 0.0 } else { 100.0 * zeros as f64 / weights as f64 };
    let _ = writeln!(
        s,
        "params: {} ({} in ternary layers); layer weights zero: {zeros}/{weights} ({frac:.1}%)",
        t.params, t.ternary_params
    );
    s
}
