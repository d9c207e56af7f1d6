//! The table of supported ops and element types per engine (`docs/ops.md`), generated from the
//! code rather than written by hand: the op registry ([`Op::all_names`], one row per op), the
//! ONNX node conformance suite (which element types each op's cases use) and the per-engine
//! allowlists of `tests/conformance/` (which cases pass on which engine), plus a probe of the
//! element types each engine accepts at all (one Identity node per type, run on the interpreter
//! and lowered by code generation). `tests/guide.rs` regenerates the file and fails when the
//! committed one differs (`SHRINK_BLESS=1` rewrites it).
use shrink_ir::{ALL_DTYPES, DType, Graph, Op, Tensor, Value, ValueType};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// The engines of the table, with the allowlist file each is held to.
pub const ENGINES: [(&str, &str); 6] = [
    ("interp", "interp.txt"),
    ("jit", "jit.txt"),
    ("aot x86-64", "aot-x86_64.txt"),
    ("aot AArch64", "aot-aarch64.txt"),
    ("aot RISC-V 64", "aot-riscv64.txt"),
    ("aot RISC-V 64+V", "aot-riscv64v.txt"),
];

/// The cases an allowlist says pass (plain lines and lines with a tolerance; `!case` lines are
/// exclusions).
pub fn passing_cases(allowlist: &str) -> BTreeSet<String> {
    allowlist
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|case| !case.starts_with('!'))
        .map(str::to_string)
        .collect()
}

/// The (op, element type) pairs one graph uses: the types of each node's first input and first
/// output (the op's data type; for a Cast both sides, for a comparison the compared type and
/// bool).
fn op_dtypes(g: &Graph, into: &mut BTreeMap<&'static str, BTreeSet<DType>>) {
    for id in g.node_ids() {
        let node = g.node(id);
        if node.op.is_source() {
            continue;
        }
        let set = into.entry(node.op.name()).or_default();
        if let Some(Some(v)) = g.inputs_of(id).first() {
            set.insert(g.dtype(*v));
        }
        if let Some(t) = node.outputs.first() {
            set.insert(t.dtype);
        }
    }
}

/// What one case exercises: the ops of the graph as imported (what the interpreter runs) and of
/// the graph the JIT and AOT engines compile (specialized to the stored inputs and optimized, so
/// folded or fused ops are gone and fused ones appear).
struct CaseOps {
    imported: BTreeMap<&'static str, BTreeSet<DType>>,
    compiled: BTreeMap<&'static str, BTreeSet<DType>>,
}

fn case_ops(dir: &Path) -> Result<CaseOps, String> {
    let opts = shrink_onnx::ImportOptions::default();
    let model =
        shrink_onnx::load_model(&dir.join("model.onnx"), &opts).map_err(|e| e.to_string())?;
    let mut imported = BTreeMap::new();
    op_dtypes(&model.graph, &mut imported);
    let mut compiled = BTreeMap::new();
    let data = crate::dataset::load_dataset(&dir.join("test_data_set_0"), opts.max_memory)?;
    let inputs = crate::bind_inputs(&model.graph, &data.inputs)?;
    let mut g = model.graph;
    crate::specialize_to_values(&mut g, &inputs)?;
    crate::optimize(&mut g, &crate::OptOptions::default())?;
    op_dtypes(&g, &mut compiled);
    Ok(CaseOps { imported, compiled })
}

fn dtype_list(set: &BTreeSet<DType>) -> String {
    if set.is_empty() {
        return "—".into();
    }
    // ONNX code order (f32 first), which is DType's order.
    set.iter().map(|d| d.name()).collect::<Vec<_>>().join(" ")
}

/// Whether engine `engine` accepts tensors of `dtype` at its boundary: an Identity of a
/// two-element input evaluated by the interpreter, or lowered by code generation (which the JIT
/// and every AOT target share).
fn accepts(dtype: DType, engine: &str) -> bool {
    let mut g = Graph::new();
    let ty = ValueType::fixed(dtype, &[2]);
    let x = g.add_input("x", ty.clone());
    let y = g.add_node(
        Op::Unary(shrink_ir::op::Unary::Identity),
        "id",
        &[Some(Value::new(x, 0))],
        vec![ty],
    );
    g.outputs.push(("y".into(), Value::new(y, 0)));
    if engine == "interp" {
        let t = if dtype == DType::String {
            Tensor::from_strings(vec![2], vec![Default::default(); 2])
        } else {
            Tensor::from_bytes(dtype, vec![2], vec![0u8; 2 * dtype.size()].into())
        };
        t.is_ok_and(|t| shrink_ref::run(&g, &[t], &Default::default()).is_ok())
    } else {
        crate::lower_with(&g, &Default::default()).is_ok()
    }
}

/// The text of `docs/ops.md`: `suite` is the ONNX node suite (one folder per case), `lists` the
/// folder of the allowlists.
pub fn generate(suite: &Path, lists: &Path) -> Result<String, String> {
    let mut passing = vec![];
    for (engine, file) in ENGINES {
        let path = lists.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        passing.push((engine, passing_cases(&text)));
    }
    let mut cases: Vec<_> = std::fs::read_dir(suite)
        .map_err(|e| format!("{}: {e}", suite.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    // (op, engine) -> element types among the passing cases.
    let mut table: BTreeMap<(&str, usize), BTreeSet<DType>> = BTreeMap::new();
    let mut case_count: BTreeMap<&str, usize> = BTreeMap::new();
    // op -> element types code generation lowers, in the cases passing on the JIT.
    let mut lowered: BTreeMap<&str, BTreeSet<DType>> = BTreeMap::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let ops = case_ops(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for op in ops.imported.keys() {
            *case_count.entry(op).or_default() += 1;
        }
        for (i, (_, pass)) in passing.iter().enumerate() {
            if !pass.contains(&name) {
                continue;
            }
            for (op, dtypes) in &ops.imported {
                table.entry((op, i)).or_default().extend(dtypes);
            }
            if i == 1 {
                for (op, dtypes) in &ops.compiled {
                    lowered.entry(op).or_default().extend(dtypes);
                }
            }
        }
    }

    let mut md = String::new();
    let w = &mut md;
    writeln!(w, "# Supported ops and element types").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "<!-- Generated by crates/shrink/src/op_table.rs; do not edit. `SHRINK_BLESS=1 cargo test \
         --release -p shrink --test guide` rewrites it, and that test fails when it is stale. -->"
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "One row per op of shrink's IR (`Op::all_names`). An engine's cell lists the element \
         types of the op's first input and first output in the cases of the ONNX node suite \
         (`../shared/onnx-node`, {} cases) that pass on that engine, as its allowlist in \
         `tests/conformance/` records: the models with that op that the engine runs correctly. \
         `cases` counts the suite cases that use the op. The JIT and the AOT targets run the \
         graph after specializing it to the case's inputs and optimizing it, which folds shape \
         computations and fuses layers; the last column lists what reaches code generation \
         there (in the cases passing on the JIT): `—` for an op the optimizer removes in every \
         case; fused ops such as `DenseAct` (not an ONNX op) appear there when a case forms one.",
        cases.len()
    )
    .unwrap();
    writeln!(w).unwrap();
    let summary: Vec<String> = passing
        .iter()
        .map(|(e, p)| {
            let n = cases
                .iter()
                .filter(|d| p.contains(&*d.file_name().unwrap().to_string_lossy()))
                .count();
            format!("{e} {n}/{}", cases.len())
        })
        .collect();
    writeln!(w, "Cases passing: {}.", summary.join(", ")).unwrap();
    writeln!(w).unwrap();
    let header: Vec<&str> = ENGINES.iter().map(|(e, _)| *e).collect();
    // The AOT columns are almost always the JIT's; one column unless they differ.
    let aot_same = Op::all_names()
        .iter()
        .all(|op| (2..ENGINES.len()).all(|i| table.get(&(*op, i)) == table.get(&(*op, 1))));
    let shown: Vec<usize> = if aot_same {
        vec![0, 1]
    } else {
        (0..ENGINES.len()).collect()
    };
    let mut cols = vec!["op".to_string(), "cases".to_string()];
    cols.extend(shown.iter().map(|&i| header[i].to_string()));
    if aot_same {
        cols[3] = "jit and every aot target".into();
    }
    cols.push("lowered by code generation".into());
    writeln!(w, "| {} |", cols.join(" | ")).unwrap();
    writeln!(w, "|{}", " --- |".repeat(cols.len())).unwrap();
    let empty = BTreeSet::new();
    for op in Op::all_names() {
        let mut cells = vec![
            format!("`{op}`"),
            case_count.get(op).copied().unwrap_or(0).to_string(),
        ];
        for &i in &shown {
            cells.push(dtype_list(table.get(&(op, i)).unwrap_or(&empty)));
        }
        cells.push(dtype_list(lowered.get(op).unwrap_or(&empty)));
        writeln!(w, "| {} |", cells.join(" | ")).unwrap();
    }
    writeln!(w).unwrap();
    writeln!(w, "## Element types each engine accepts").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "Probed by one Identity node per type: `interp` evaluates it, `jit / aot` lowers it with \
         the code generator both share. Sub-byte and 8-bit float types travel one element per \
         byte."
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "| type | ONNX code | interp | jit / aot |").unwrap();
    writeln!(w, "| --- | --- | --- | --- |").unwrap();
    let mark = |b: bool| if b { "yes" } else { "no" };
    for d in ALL_DTYPES {
        writeln!(
            w,
            "| {} | {} | {} | {} |",
            d.name(),
            d.onnx_code(),
            mark(accepts(d, "interp")),
            mark(accepts(d, "jit"))
        )
        .unwrap();
    }
    Ok(md)
}
