//! `shrink inspect`: what a model contains and what shrink proves about its weights. The report is
//! the JSON schema of DESIGN.md's CLI contract; fields that later stages (optimizer, codegen)
//! fill are `null` until those stages run.
use serde::Serialize;
use shrink_ir::{Dim, Graph, NodeId, Tensor};
use std::collections::{BTreeMap, BTreeSet};

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
    /// Read-only data the layer's kernels read: its constants and tables, each distinct one
    /// counted once per layer (a table two layers share counts for both, so the layers' sum can
    /// exceed `totals.rodata_bytes`, which also holds the constants of other nodes).
    pub data_bytes: Option<usize>,
    /// The cost model's predicted time per call of the chosen strategy, in µs (ternary
    /// layers; measured constants of the target, see `cargo bench --bench calibrate`).
    pub predicted_us: Option<f64>,
    /// How a `packed` layer represents its activations: `f32` (three faithful int8 limbs),
    /// `int8-graph` (one limb on the int8 grid the graph's own fake-quantization proves, exact
    /// w.r.t. the graph), `int8-flag` (one limb from `--activations int8`); null otherwise.
    pub activations: Option<String>,
    /// Which kernel a `dense` layer runs on: `tiles` (SIMD register tiles), `sparse` (the
    /// nonzeros of a mostly-zero f32 weight), `int8` (8-bit dot products); null for the loop
    /// nest and the ternary strategies.
    pub kernel: Option<String>,
    /// Zero weights left in the optimized weight (a `stream` computes none of them).
    #[serde(skip)]
    pub final_zeros: Option<usize>,
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
    /// Why no code was generated for the report (unbound input dims, an op without a lowering).
    pub codegen_error: Option<String>,
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

/// Every layer with a constant weight in `g`, by node name: its node, weight constant and layout.
pub fn layer_weights(
    g: &Graph,
) -> BTreeMap<String, (NodeId, shrink_ir::op::ConstId, shrink_ir::WeightLayout)> {
    shrink_opt::layers::const_weight_layers(g)
        .into_iter()
        .map(|(id, ws, c)| (g.node(id).name.clone(), (id, c, ws.layout)))
        .collect()
}

/// The [rows × cols] view of a layer's weight `t` with `layout`.
pub fn view_dims(t: &Tensor, layout: shrink_ir::WeightLayout) -> (usize, usize) {
    let d = t.dims();
    match layout {
        shrink_ir::WeightLayout::RowsFirst => (d[0], d.iter().skip(1).product()),
        shrink_ir::WeightLayout::ColsFirst => (d.get(1).copied().unwrap_or(1), d[0]),
    }
}

fn zeros_of(t: &Tensor) -> usize {
    t.count_zeros()
}

/// Builds the report for an imported graph and, when the pipeline ran, its staged results.
pub fn inspect(g: &Graph, staged: Option<&crate::Staged>, opt_error: Option<&String>) -> Report {
    let inputs = g
        .inputs
        .iter()
        .map(|&id| value_info(g, &g.node(id).name, &g.node(id).outputs[0]))
        .collect();
    let outputs = g
        .outputs
        .iter()
        .map(|(n, v)| value_info(g, n, g.value_type(*v)))
        .collect();
    let mut op_counts = BTreeMap::new();
    for id in g.node_ids() {
        let op = &g.node(id).op;
        if !op.is_source() {
            *op_counts.entry(op.name().to_string()).or_insert(0) += 1;
        }
    }
    // Layers as the model defines them: after folding when the pipeline ran, else as imported.
    let defined = staged.map_or(g, |s| &s.before_sparsity);
    let finals = staged
        .map(|s| layer_weights(&s.optimized))
        .unwrap_or_default();
    let mut layers = Vec::new();
    let (mut ternary_params, mut zeros_eliminated) = (0, 0);
    for (name, (id, c, layout)) in layer_weights(defined) {
        let w = &defined.consts[c.0 as usize];
        let (rows, cols) = view_dims(w, layout);
        let zeros = zeros_of(w);
        let (mut ternary, mut scale_kind, mut dead_rows, mut dead_cols) = (false, None, None, None);
        let mut final_zeros = None;
        if let Some(s) = staged
            && let Some((_, fc, fl)) = finals.get(&name)
        {
            {
                let fw = &s.optimized.consts[fc.0 as usize];
                let (fr, fcols) = view_dims(fw, *fl);
                dead_rows = Some(rows.saturating_sub(fr));
                dead_cols = Some(cols.saturating_sub(fcols));
                zeros_eliminated += zeros.saturating_sub(zeros_of(fw));
                final_zeros = Some(zeros_of(fw));
                if let Some(t) = s.optimized.ternary.get(fc) {
                    ternary = true;
                    scale_kind = Some(t.scale.kind().to_string());
                    ternary_params += w.len();
                }
            }
        }
        layers.push(Layer {
            name,
            op: defined.node(id).op.name().to_string(),
            weight_shape: w.dims().to_vec(),
            ternary,
            scale_kind,
            zeros,
            nonzeros: w.len() - zeros,
            dead_rows,
            dead_cols,
            strategy: None,
            code_bytes: None,
            data_bytes: None,
            predicted_us: None,
            activations: None,
            kernel: None,
            final_zeros,
        });
    }
    // Without the pipeline, still say which layers are ternary candidates.
    if staged.is_none() {
        for l in layers.iter_mut() {
            let (_, c, layout) = layer_weights(g)[&l.name];
            if let Some(t) = shrink_ir::TernaryWeights::detect(&g.consts[c.0 as usize], layout, 1) {
                l.ternary = true;
                l.scale_kind = Some(t.scale.kind().to_string());
                ternary_params += l.zeros + l.nonzeros;
            }
        }
    }
    let nodes = op_counts.values().sum();
    let params = g.consts.iter().map(|t| t.len()).sum();
    let scratch = staged.and_then(|s| {
        s.stats
            .iter()
            .find(|p| p.pass == "memory-plan")
            .map(|p| p.get("scratch_bytes"))
    });
    Report {
        inputs,
        outputs,
        nodes_before: nodes,
        nodes_after: staged.map(|s| s.optimized.op_count()),
        op_counts,
        passes: staged
            .map(|s| {
                s.stats
                    .iter()
                    .map(|p| PassReport {
                        name: p.pass.to_string(),
                        counters: p
                            .counters
                            .iter()
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                        ms: p.nanos as f64 / 1e6,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        opt_error: opt_error.cloned(),
        codegen_error: None,
        layers,
        totals: Totals {
            params,
            ternary_params,
            zeros_eliminated: staged.map(|_| zeros_eliminated),
            code_bytes: None,
            rodata_bytes: None,
            scratch_bytes: scratch,
        },
    }
}

/// Fills the codegen fields from a compiled program: per layer the strategy and machine-code
/// bytes of its kernel, in totals all code, read-only data and the scratch the program needs.
pub fn fill_codegen(
    r: &mut Report,
    program: &shrink_codegen::Program,
    stats: &shrink_jit::CodeStats,
) {
    for l in r.layers.iter_mut() {
        let bytes: usize = program
            .kernels
            .iter()
            .zip(&stats.kernel_code_bytes)
            .filter(|(k, _)| k.node_name == l.name)
            .map(|(_, b)| *b)
            .sum();
        if let Some(k) = program.kernels.iter().find(|k| k.node_name == l.name) {
            l.strategy = Some(k.strategy.to_string());
            l.code_bytes = Some(bytes);
            l.data_bytes = Some(layer_data_bytes(program, &l.name));
            l.predicted_us = k.predicted_ns.map(|ns| (ns / 10.0).round() / 100.0);
            l.activations = k.activations.map(str::to_string);
            l.kernel = k.form.map(str::to_string);
            // A stream emits nothing for a zero weight: those zeros are eliminated too.
            if k.strategy == "stream"
                && let (Some(z), Some(total)) = (l.final_zeros, r.totals.zeros_eliminated.as_mut())
            {
                *total += z;
            }
        }
    }
    r.totals.code_bytes = Some(stats.code_bytes);
    r.totals.rodata_bytes = Some(stats.rodata_bytes);
    r.totals.scratch_bytes = Some(program.scratch_bytes);
}

/// Bytes of the distinct constants and tables the kernels of layer `name` read, sized as
/// `shrink_codegen::define` places them (an empty object still takes one byte).
fn layer_data_bytes(program: &shrink_codegen::Program, name: &str) -> usize {
    use shrink_codegen::loops::Place;
    let (mut consts, mut tables) = (BTreeSet::new(), BTreeSet::new());
    for k in program.kernels.iter().filter(|k| k.node_name == name) {
        let k = &k.kernel;
        for b in k.used_bufs() {
            match &k.bufs[b.0 as usize].place {
                Place::Const(c) => {
                    consts.insert(*c);
                }
                Place::Table(t) => {
                    tables.insert(&k.tables[*t]);
                }
                _ => {}
            }
        }
    }
    let consts: usize = consts
        .iter()
        .filter_map(|c| program.consts.get(c))
        .map(|t| t.bytes().len().max(1))
        .sum();
    consts + tables.iter().map(|t| t.len().max(1)).sum::<usize>()
}

fn shape_text(v: &ValueInfo) -> String {
    match &v.shape {
        None => "[*]".into(),
        Some(s) => format!(
            "[{}]",
            s.iter()
                .map(|d| if d.is_null() {
                    "?".to_string()
                } else {
                    d.to_string().trim_matches('"').to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
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
    let ops: Vec<String> = r
        .op_counts
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect();
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
    if let Some(e) = &r.codegen_error {
        let _ = writeln!(s, "no code generated: {e}");
    }
    if !r.layers.is_empty() {
        let _ = writeln!(s, "layers:");
        let _ = writeln!(
            s,
            "  {:<24} {:<14} {:<16} {:<8} {:<11} {:>10} {:>10} {:>9} {:>9} {:<8} {:<7} {:>10} {:>12} activations",
            "name",
            "op",
            "weight",
            "ternary",
            "scale",
            "zeros",
            "nonzeros",
            "dead_rows",
            "dead_cols",
            "strategy",
            "kernel",
            "code_bytes",
            "predicted_us"
        );
        for l in &r.layers {
            let shape = format!("{:?}", l.weight_shape);
            let _ = writeln!(
                s,
                "  {:<24} {:<14} {:<16} {:<8} {:<11} {:>10} {:>10} {:>9} {:>9} {:<8} {:<7} {:>10} {:>12} {}",
                l.name,
                l.op,
                shape,
                if l.ternary { "yes" } else { "no" },
                l.scale_kind.as_deref().unwrap_or("-"),
                l.zeros,
                l.nonzeros,
                l.dead_rows.map_or("-".into(), |d| d.to_string()),
                l.dead_cols.map_or("-".into(), |d| d.to_string()),
                l.strategy.as_deref().unwrap_or("-"),
                l.kernel.as_deref().unwrap_or("-"),
                l.code_bytes.map_or("-".into(), |d| d.to_string()),
                l.predicted_us.map_or("-".into(), |d| format!("{d:.2}")),
                l.activations.as_deref().unwrap_or("-")
            );
        }
    }
    let t = &r.totals;
    let zeros: usize = r.layers.iter().map(|l| l.zeros).sum();
    let weights: usize = r.layers.iter().map(|l| l.zeros + l.nonzeros).sum();
    let frac = if weights == 0 {
        0.0
    } else {
        100.0 * zeros as f64 / weights as f64
    };
    let _ = writeln!(
        s,
        "params: {} ({} in ternary layers); layer weights zero: {zeros}/{weights} ({frac:.1}%)",
        t.params, t.ternary_params
    );
    if let Some(z) = t.zeros_eliminated {
        let _ = writeln!(
            s,
            "zeros eliminated: {z}; scratch: {} bytes",
            t.scratch_bytes.unwrap_or(0)
        );
    }
    if let (Some(c), Some(d)) = (t.code_bytes, t.rodata_bytes) {
        let _ = writeln!(
            s,
            "generated code: {c} bytes of machine code, {d} bytes of read-only data"
        );
    }
    s
}
