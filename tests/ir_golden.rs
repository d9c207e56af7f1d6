//! Golden IR files under `ir/` (Cranelift filetest style). Each `.sir` file starts with a
//! `; test <kind>` line:
//! - `roundtrip`: the graph must verify and print exactly as written (`print(parse(t)) == t`);
//! - `verify`: the graph parses but the verifier rejects it with a message containing every
//!   `; error: <text>` line of the file;
//! - `opt <pass,pass,...>`: the passes run (verifier after each), then the printed result must
//!   contain the `; check: <text>` lines in order, each `; nextln: <text>` on the line right after
//!   the previous match, and no `; not: <text>` anywhere; `; stat: <pass>.<counter>=<n>` lines pin
//!   pass statistics exactly. The graph before and after the passes must also compute the same
//!   outputs on the interpreter for deterministic inputs of every numeric dtype (an input that
//!   cannot be sampled — a string, a dynamic shape — fails the file).
//!
//! `SHRINK_BLESS=1` rewrites a `roundtrip` file with the printer's output (review the diff);
//! without it a mismatch fails with both texts.
use shrink::ir::text::{parse_graph, print_graph};
use std::path::{Path, PathBuf};

fn sir_files() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "sir") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ir"),
        &mut v,
    );
    v.sort();
    v
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (header, body) = text.split_once('\n').ok_or("empty file")?;
    let kind = header
        .strip_prefix("; test ")
        .ok_or("first line must be `; test <kind>`")?
        .trim();
    // The graph starts at the first non-comment line.
    let start = body
        .lines()
        .take_while(|l| l.starts_with(';') || l.trim().is_empty())
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let (comments, graph_text) = body.split_at(start.min(body.len()));
    let g = parse_graph(graph_text).map_err(|e| format!("parse error: {e}"))?;
    match kind {
        "roundtrip" => {
            shrink::ir::verify(&g).map_err(|e| format!("verify: {e}"))?;
            let printed = print_graph(&g);
            if printed != graph_text {
                if std::env::var("SHRINK_BLESS").as_deref() == Ok("1") {
                    std::fs::write(path, format!("{header}\n{comments}{printed}"))
                        .map_err(|e| e.to_string())?;
                } else {
                    return Err(format!(
                        "printed form differs:\n--- file\n{graph_text}\n--- printed\n{printed}"
                    ));
                }
            }
            Ok(())
        }
        "verify" => {
            let expected: Vec<&str> = comments
                .lines()
                .filter_map(|l| l.strip_prefix("; error: "))
                .collect();
            if expected.is_empty() {
                return Err("a verify test needs `; error:` lines".into());
            }
            match shrink::ir::verify(&g) {
                Ok(()) => Err("the verifier accepted the graph".into()),
                Err(e) => {
                    let msg = e.to_string();
                    match expected.iter().find(|x| !msg.contains(*x)) {
                        Some(x) => Err(format!("error `{msg}` does not contain `{x}`")),
                        None => Ok(()),
                    }
                }
            }
        }
        k if k.starts_with("opt ") => run_opt(&k[4..], comments, g),
        other => Err(format!("unknown test kind `{other}`")),
    }
}

fn run_opt(passes: &str, comments: &str, mut g: shrink::ir::Graph) -> Result<(), String> {
    let names: Vec<&str> = passes.split(',').map(str::trim).collect();
    let ctx = shrink::opt::Ctx {
        verify: true,
        ..Default::default()
    };
    let before = g.clone();
    let stats = shrink::opt::run_passes(&mut g, &names, &ctx).map_err(|e| e.to_string())?;
    same_outputs(&before, &g)?;
    let printed = print_graph(&g);
    let lines: Vec<&str> = printed.lines().collect();
    let mut at = 0usize;
    for c in comments.lines() {
        if let Some(want) = c.strip_prefix("; check: ") {
            match lines[at..].iter().position(|l| l.contains(want)) {
                Some(p) => at += p + 1,
                None => {
                    return Err(format!(
                        "`; check: {want}` not found after line {at} of:\n{printed}"
                    ));
                }
            }
        } else if let Some(want) = c.strip_prefix("; nextln: ") {
            if !lines.get(at).is_some_and(|l| l.contains(want)) {
                return Err(format!(
                    "`; nextln: {want}` does not match line {} of:\n{printed}",
                    at + 1
                ));
            }
            at += 1;
        } else if let Some(bad) = c.strip_prefix("; not: ") {
            if printed.contains(bad) {
                return Err(format!("`; not: {bad}` is present in:\n{printed}"));
            }
        } else if let Some(stat) = c.strip_prefix("; stat: ") {
            let (key, n) = stat.split_once('=').ok_or("stat needs pass.counter=N")?;
            let (pass, counter) = key.split_once('.').ok_or("stat needs pass.counter=N")?;
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("bad stat value in `{stat}`"))?;
            let got: usize = stats
                .iter()
                .filter(|s| s.pass == pass)
                .map(|s| s.get(counter))
                .sum();
            if got != n {
                return Err(format!(
                    "stat {pass}.{counter} = {got}, expected {n}; stats: {stats:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Deterministic inputs for `g`: floats spread over [-2, 2] with some exact zeros, signed
/// integers over -3..=3, unsigned over 0..=6, bools alternating irregularly. An input this cannot
/// sample (a string, or a shape that is not static) is an error: the comparison before/after the
/// passes is never skipped.
fn sample_inputs(g: &shrink::ir::Graph) -> Result<Vec<shrink::ir::Tensor>, String> {
    use shrink::ir::DType;
    g.inputs
        .iter()
        .map(|&id| {
            let node = g.node(id);
            let ty = &node.outputs[0];
            let dims = ty
                .shape
                .as_ref()
                .and_then(|s| s.as_fixed())
                .ok_or_else(|| {
                    format!(
                        "input '{}' ({ty}) has no static shape, so its outputs cannot be compared",
                        node.name
                    )
                })?;
            let n: usize = dims.iter().product();
            let k = |i: usize| (i * 37 + 11) % 41;
            let t = match ty.dtype {
                d if d.is_float() => shrink::ir::Tensor::from_vec(
                    dims,
                    (0..n).map(|i| k(i) as f64 / 10.0 - 2.0).collect(),
                ),
                DType::Bool => {
                    shrink::ir::Tensor::from_vec(dims, (0..n).map(|i| k(i) % 3 == 0).collect())
                }
                DType::String => {
                    return Err(format!(
                        "input '{}' is a string tensor; give the file a numeric input",
                        node.name
                    ));
                }
                d if d.is_signed_int() => shrink::ir::Tensor::from_vec(
                    dims,
                    (0..n).map(|i| (k(i) % 7) as i64 - 3).collect(),
                ),
                _ => {
                    shrink::ir::Tensor::from_vec(dims, (0..n).map(|i| (k(i) % 7) as i64).collect())
                }
            };
            Ok(if t.dtype() == ty.dtype {
                t
            } else {
                shrink::interp::ops::convert::cast(
                    &t,
                    ty.dtype,
                    true,
                    shrink::ir::op::RoundMode::Up,
                )
            })
        })
        .collect()
}

fn same_outputs(a: &shrink::ir::Graph, b: &shrink::ir::Graph) -> Result<(), String> {
    let ins = sample_inputs(a)?;
    let ra = shrink::interp::run(a, &ins, &Default::default()).map_err(|e| e.to_string())?;
    let rb = shrink::interp::run(b, &ins, &Default::default()).map_err(|e| e.to_string())?;
    for (k, (x, y)) in ra.iter().zip(&rb).enumerate() {
        // Passes may round (near-ternary weights, folded constants) once in the value's dtype:
        // allow a couple of its ulps.
        let tol = match x.dtype() {
            shrink::ir::DType::F16 => shrink::compare::Tolerance {
                rtol: 2e-3,
                atol: 1e-3,
            },
            shrink::ir::DType::BF16 => shrink::compare::Tolerance {
                rtol: 2e-2,
                atol: 1e-2,
            },
            _ => shrink::compare::Tolerance::INTERP,
        };
        let c = shrink::compare::compare(x, y, tol);
        if let Some(m) = c.mismatch {
            return Err(format!("output {k} changed by the passes: {m:?}"));
        }
    }
    Ok(())
}

#[test]
fn golden_ir_files() {
    let files = sir_files();
    assert!(!files.is_empty(), "no .sir files under ir/");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run_file(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("ir golden: {} files", files.len());
}
