//! Turns criterion's saved results (`target/criterion/**/new/`) into the README's tables: one
//! row per criterion group, one column per line, each cell the median time, its ratio to
//! tract's line in the same group (`3.1× tract` = 3.1 times faster) and, for groups with a
//! throughput (the matvecs), G weights per second. Run after `cargo bench`:
//! `cargo run --release -p shrink-benches --bin bench-table [-- GROUP_PREFIX]`.
use std::collections::BTreeMap;
use std::path::Path;

struct Line {
    median_ns: f64,
    elements: Option<f64>,
}

fn read_json(p: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn time_text(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.0} ns"),
        n if n < 1e6 => format!("{:.2} µs", n / 1e3),
        n => format!("{:.2} ms", n / 1e6),
    }
}

fn main() {
    let prefix = std::env::args().nth(1).unwrap_or_default();
    let root = std::env::var("CRITERION_HOME").unwrap_or_else(|_| "target/criterion".into());
    let mut groups: BTreeMap<String, BTreeMap<String, Line>> = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(&root) else {
        eprintln!("no criterion results in {root}: run `cargo bench` first");
        std::process::exit(1);
    };
    for group_dir in dirs.flatten() {
        let Ok(lines) = std::fs::read_dir(group_dir.path()) else {
            continue;
        };
        for line in lines.flatten() {
            let new = line.path().join("new");
            let (Some(b), Some(e)) = (
                read_json(&new.join("benchmark.json")),
                read_json(&new.join("estimates.json")),
            ) else {
                continue;
            };
            let (Some(group), Some(id), Some(median)) = (
                b["group_id"].as_str(),
                b["function_id"].as_str(),
                e["median"]["point_estimate"].as_f64(),
            ) else {
                continue;
            };
            if !group.starts_with(&prefix) {
                continue;
            }
            groups.entry(group.to_string()).or_default().insert(
                id.to_string(),
                Line {
                    median_ns: median,
                    elements: b["throughput"]["Elements"].as_f64(),
                },
            );
        }
    }
    if groups.is_empty() {
        eprintln!("no criterion groups starting with '{prefix}' in {root}");
        std::process::exit(1);
    }
    let mut columns: Vec<String> = groups.values().flat_map(|g| g.keys().cloned()).collect();
    columns.sort();
    columns.dedup();
    // tract last, as the reference column.
    columns.sort_by_key(|c| c == "tract");
    println!("| group | {} |", columns.join(" | "));
    println!("| --- |{}", " --- |".repeat(columns.len()));
    for (group, lines) in &groups {
        let tract = lines.get("tract").map(|l| l.median_ns);
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match lines.get(c) {
                None => String::new(),
                Some(l) => {
                    let mut cell = time_text(l.median_ns);
                    if let Some(e) = l.elements {
                        cell += &format!(", {:.1} G/s", e / l.median_ns);
                    }
                    if let Some(t) = tract
                        && c != "tract"
                    {
                        cell += &format!(", {:.2}× tract", t / l.median_ns);
                    }
                    cell
                }
            })
            .collect();
        println!("| {group} | {} |", cells.join(" | "));
    }
}
