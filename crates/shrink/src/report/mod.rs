//! `shrink inspect MODEL --html OUT.html`: the inspect [`Report`] as one self-contained page
//! (inline CSS and SVG, no script, nothing fetched). Every number on it is a field of the same
//! `Report` `inspect --json` prints, in an element whose `data-field` names the JSON field; the
//! page adds what JSON cannot show — each layer's weight as a sign map with its removed rows and
//! columns ([`sign_map`], [`dead`]) — and the object sizes on the three AOT ISAs ([`targets`]).
//!
//! The page is deterministic (no times, no addresses: pass timings are left out) and bounded:
//! a sign map has at most `MAX_CELLS²` cells, a name at most [`MAX_NAME`] characters, a list of
//! removed lines at most [`MAX_RANGES`] ranges. Every string from the model is HTML-escaped.
pub mod dead;
pub mod sign_map;
pub mod targets;

use crate::inspect::{Layer, Report, ValueInfo, layer_weights};
use shrink_ir::Graph;
use std::fmt::Write;
use std::path::Path;

/// Characters of a name shown at most (node names come from the model and may be huge).
pub const MAX_NAME: usize = 256;
/// Ranges of removed lines listed per side at most.
pub const MAX_RANGES: usize = 24;

/// What the page is built from: `inspect`'s report and the graphs it was made from.
pub struct PageInput<'a> {
    /// The model as named on the command line.
    pub model: &'a str,
    /// The imported graph.
    pub graph: &'a Graph,
    /// The pipeline's snapshots, when it ran.
    pub staged: Option<&'a crate::Staged>,
    pub opt: &'a crate::OptOptions,
    pub codegen: &'a shrink_codegen::CodegenOptions,
    pub report: &'a Report,
    /// Symbol prefix of the AOT objects (as `shrink compile` derives it).
    pub prefix: &'a str,
}

/// `s` with the five HTML-special characters replaced by entities (safe in text and in
/// double- or single-quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name from the model, cut to [`MAX_NAME`] characters, escaped.
fn name_html(s: &str) -> String {
    if s.chars().count() > MAX_NAME {
        escape(&format!(
            "{}…",
            s.chars().take(MAX_NAME).collect::<String>()
        ))
    } else {
        escape(s)
    }
}

fn opt_num<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn opt_text(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_string(), escape)
}

/// One `<tr>` of a key/value table whose value cell carries `data-field`.
fn kv(out: &mut String, label: &str, field: &str, value: &str) {
    let _ = write!(
        out,
        "<tr><th>{label}</th><td data-field=\"{field}\">{value}</td></tr>"
    );
}

/// Sorted line numbers as ranges "3, 7–9", at most [`MAX_RANGES`] of them.
fn ranges(lines: &[usize]) -> String {
    let mut rs: Vec<(usize, usize)> = vec![];
    for &l in lines {
        match rs.last_mut() {
            Some((_, end)) if *end + 1 == l => *end = l,
            _ => rs.push((l, l)),
        }
    }
    let mut parts: Vec<String> = rs
        .iter()
        .take(MAX_RANGES)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            }
        })
        .collect();
    if rs.len() > MAX_RANGES {
        parts.push(format!("… {} more ranges", rs.len() - MAX_RANGES));
    }
    parts.join(", ")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;background:#fff}\
h1{font-size:20px}h2{font-size:17px;margin:18px 0 6px}h3{font-size:15px;margin:0 0 4px;word-break:break-all}\
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #cbd5e0;padding:2px 6px;text-align:left}\
td[data-field]{font-variant-numeric:tabular-nums}.error{color:#9b2c2c}\
.cards{display:flex;flex-wrap:wrap;gap:12px}\
.layer{border:1px solid #cbd5e0;padding:8px;width:540px;box-sizing:border-box}\
.layer figure{margin:0 0 6px}\
figcaption{font-size:12px;color:#4a5568;padding-top:4px}p{font-size:13px;margin:4px 0}";

fn io_table(out: &mut String, title: &str, list: &[ValueInfo]) {
    let _ = write!(
        out,
        "<table class=\"io\"><tr><th>{title}</th><th>dtype</th><th>shape</th></tr>"
    );
    for v in list {
        let shape = match &v.shape {
            None => "*".to_string(),
            Some(s) => s
                .iter()
                .map(|d| match d {
                    serde_json::Value::Null => "?".to_string(),
                    serde_json::Value::String(s) => s.clone(),
                    d => d.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" × "),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            name_html(&v.name),
            escape(&v.dtype),
            name_html(&shape)
        );
    }
    out.push_str("</table>");
}

fn model_section(out: &mut String, r: &Report) {
    let t = &r.totals;
    out.push_str("<section id=\"model\"><h2>Model</h2><table class=\"kv\">");
    kv(
        out,
        "nodes before",
        "nodes_before",
        &r.nodes_before.to_string(),
    );
    kv(out, "nodes after", "nodes_after", &opt_num(r.nodes_after));
    kv(out, "params", "totals.params", &t.params.to_string());
    kv(
        out,
        "ternary params",
        "totals.ternary_params",
        &t.ternary_params.to_string(),
    );
    kv(
        out,
        "zeros eliminated",
        "totals.zeros_eliminated",
        &opt_num(t.zeros_eliminated),
    );
    kv(
        out,
        "code bytes",
        "totals.code_bytes",
        &opt_num(t.code_bytes),
    );
    kv(
        out,
        "rodata bytes",
        "totals.rodata_bytes",
        &opt_num(t.rodata_bytes),
    );
    kv(
        out,
        "scratch bytes",
        "totals.scratch_bytes",
        &opt_num(t.scratch_bytes),
    );
    out.push_str("</table>");
    let ops: Vec<String> = r
        .op_counts
        .iter()
        .map(|(k, v)| format!("{}×{v}", escape(k)))
        .collect();
    let _ = write!(out, "<p>ops: {}</p>", ops.join(", "));
    io_table(out, "input", &r.inputs);
    io_table(out, "output", &r.outputs);
    if let Some(e) = &r.opt_error {
        let _ = write!(
            out,
            "<p class=\"error\" data-field=\"opt_error\">not optimized: {}</p>",
            name_html(e)
        );
    }
    if let Some(e) = &r.codegen_error {
        let _ = write!(
            out,
            "<p class=\"error\" data-field=\"codegen_error\">no code generated: {}</p>",
            name_html(e)
        );
    }
    out.push_str("</section>");
}

fn targets_section(out: &mut String, sizes: &[targets::TargetSize]) {
    out.push_str(
        "<section id=\"targets\"><h2>Ahead-of-time objects</h2><table><tr><th>target</th>\
         <th>triple</th><th>code bytes</th><th>rodata bytes</th></tr>",
    );
    for t in sizes {
        let _ = write!(
            out,
            "<tr data-target=\"{}\"><td>{}</td><td>{}</td>",
            escape(&t.target),
            escape(&t.target),
            escape(&t.triple)
        );
        match &t.sizes {
            Ok((code, data)) => {
                let _ = write!(
                    out,
                    "<td data-field=\"code_bytes\">{code}</td><td data-field=\"rodata_bytes\">{data}</td>"
                );
            }
            Err(e) => {
                let _ = write!(
                    out,
                    "<td colspan=\"2\" class=\"error\" data-field=\"error\">{}</td>",
                    name_html(e)
                );
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

type WeightsByName = std::collections::BTreeMap<
    String,
    (
        shrink_ir::NodeId,
        shrink_ir::op::ConstId,
        shrink_ir::WeightLayout,
    ),
>;

fn layer_card(
    out: &mut String,
    index: usize,
    l: &Layer,
    defined: &Graph,
    weights: &WeightsByName,
    removed: Option<&Result<dead::Removed, String>>,
) {
    let _ = write!(
        out,
        "<article class=\"layer\" data-index=\"{index}\"><h3 data-field=\"name\">{}</h3>",
        name_html(&l.name)
    );
    let weight = weights
        .get(&l.name)
        .map(|&(_, c, layout)| (&defined.consts[c.0 as usize], layout));
    let shape: Vec<String> = l.weight_shape.iter().map(|d| d.to_string()).collect();
    let view = weight.map(|(w, layout)| crate::inspect::view_dims(w, layout));
    let _ = write!(
        out,
        "<p><span data-field=\"op\">{}</span> · weight [{}]{}</p>",
        escape(&l.op),
        shape.join(", "),
        view.map_or(String::new(), |(r, c)| format!(
            " · seen as {r} outputs × {c} inputs"
        ))
    );
    let mut table = String::from("<table class=\"kv\">");
    let out_table = &mut table;
    kv(
        out_table,
        "ternary",
        "ternary",
        if l.ternary { "yes" } else { "no" },
    );
    kv(
        out_table,
        "scale kind",
        "scale_kind",
        &opt_text(l.scale_kind.as_deref()),
    );
    kv(out_table, "zeros", "zeros", &l.zeros.to_string());
    kv(out_table, "nonzeros", "nonzeros", &l.nonzeros.to_string());
    kv(out_table, "dead rows", "dead_rows", &opt_num(l.dead_rows));
    kv(out_table, "dead cols", "dead_cols", &opt_num(l.dead_cols));
    kv(
        out_table,
        "strategy",
        "strategy",
        &opt_text(l.strategy.as_deref()),
    );
    kv(
        out_table,
        "kernel",
        "kernel",
        &opt_text(l.kernel.as_deref()),
    );
    kv(
        out_table,
        "activations",
        "activations",
        &opt_text(l.activations.as_deref()),
    );
    kv(
        out_table,
        "predicted µs",
        "predicted_us",
        &opt_num(l.predicted_us),
    );
    kv(
        out_table,
        "code bytes",
        "code_bytes",
        &opt_num(l.code_bytes),
    );
    kv(
        out_table,
        "data bytes",
        "data_bytes",
        &opt_num(l.data_bytes),
    );
    out_table.push_str("</table>");
    if let Some((w, layout)) = weight {
        let grid = sign_map::SignGrid::of_weight(w, layout);
        let located = removed.and_then(|r| r.as_ref().ok());
        let lines = located.map(|r| sign_map::DeadLines {
            rows: &r.rows,
            cols: &r.cols,
        });
        out.push_str("<figure>");
        out.push_str(&sign_map::svg(
            &grid,
            lines.as_ref(),
            &format!(
                "sign map of {}",
                l.name.chars().take(MAX_NAME).collect::<String>()
            ),
        ));
        let _ = write!(
            out,
            "<figcaption>{} × {} cells",
            grid.grid_rows, grid.grid_cols
        );
        if grid.block_rows * grid.block_cols > 1 {
            let _ = write!(
                out,
                ", each the majority sign of {} × {} weights",
                grid.block_rows, grid.block_cols
            );
        }
        out.push('.');
        match removed {
            Some(Ok(r)) if !r.rows.is_empty() || !r.cols.is_empty() => {
                if !r.rows.is_empty() {
                    let _ = write!(
                        out,
                        " Removed rows: <span class=\"dead-rows\">{}</span>.",
                        ranges(&r.rows)
                    );
                }
                if !r.cols.is_empty() {
                    let _ = write!(
                        out,
                        " Removed columns: <span class=\"dead-cols\">{}</span>.",
                        ranges(&r.cols)
                    );
                }
            }
            Some(Ok(_)) => out.push_str(" Nothing removed."),
            Some(Err(e)) => {
                let _ = write!(
                    out,
                    " <span class=\"error\">Removed lines not shown: {}</span>",
                    name_html(e)
                );
            }
            None => out.push_str(" The optimizer did not run."),
        }
        out.push_str("</figcaption></figure>");
    }
    out.push_str(&table);
    out.push_str("</article>");
}

/// The whole page.
pub fn page(input: &PageInput) -> String {
    let r = input.report;
    // The weights as `inspect` counts them: after folding when the pipeline ran.
    let defined = input.staged.map_or(input.graph, |s| &s.before_sparsity);
    let weights = layer_weights(defined);
    let removed = input
        .staged
        .map(|s| dead::removed_lines(&s.before_sparsity, &r.layers, &input.opt.ctx))
        .unwrap_or_default();
    let optimized = match input.staged {
        Some(s) => Ok(&s.optimized),
        None => Err(r
            .opt_error
            .as_deref()
            .unwrap_or("the optimizer did not run (--no-opt)")),
    };
    let sizes = targets::target_sizes(optimized, input.codegen, input.prefix);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>shrink inspect {m}</title><style>{STYLE}</style></head><body>\
         <h1>shrink inspect <code>{m}</code></h1>",
        m = name_html(input.model)
    );
    model_section(&mut out, r);
    targets_section(&mut out, &sizes);
    let _ = write!(
        out,
        "<section id=\"layers\"><h2>Layers ({})</h2><p>Each weight seen as [outputs × inputs], \
         one cell per weight up to {max} a side, else the majority sign of a block (ties: 0, \
         then +1). Orange marks in the gutters: rows (left and right) and columns (top and \
         bottom) the optimizer removed; a gutter cell is marked when any line it covers was removed.</p>",
        r.layers.len(),
        max = sign_map::MAX_CELLS
    );
    out.push_str(&sign_map::legend());
    out.push_str("<div class=\"cards\">");
    for (i, l) in r.layers.iter().enumerate() {
        layer_card(&mut out, i, l, defined, &weights, removed.get(&l.name));
    }
    out.push_str("</div></section></body></html>\n");
    out
}

/// Writes the page to `out`; returns the line to print.
pub fn write_html(out: &Path, input: &PageInput) -> Result<String, String> {
    let html = page(input);
    std::fs::write(out, &html).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(format!(
        "wrote {}: {} layers, {} bytes",
        out.display(),
        input.report.layers.len(),
        html.len()
    ))
}
