//! Malformed models never crash shrink. Every conformance model is mutated structurally
//! (attribute values and types, tensor dims, dtypes and data lengths, value types, node inputs
//! and op types, opset versions) and byte-wise (flips, truncation), deterministically; each
//! mutant goes through import, the default optimizer pipeline and the interpreter on the case's
//! stored inputs; a mutant the interpreter runs is then compiled by the JIT (specialized to the
//! inputs, like `shrink check`) and must give the interpreter's outputs. Each stage may refuse
//! the mutant, but only with a one-line error: a panic, a multi-line message or a JIT result that
//! differs from the interpreter's fails the test, naming the case and mutation so it reproduces.
use prost::Message as _;
use shrink::onnx::proto as p;
use std::path::{Path, PathBuf};

/// Mutants per case (each a different mutation of the original model).
const MUTANTS: u64 = 40;
/// Memory cap for every stage, so mutated sizes are refused quickly instead of allocated.
const CAP: usize = 64 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: well mixed from consecutive seeds.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const EXTREME_INTS: &[i64] = &[
    -1,
    0,
    1,
    2,
    3,
    -2,
    i64::MAX,
    i64::MIN,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 40,
    -(1 << 40),
    1000,
];
const EXTREME_FLOATS: &[f32] = &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -1.0, 1e30];
const OPS: &[&str] = &[
    "Add",
    "MatMul",
    "Gemm",
    "Conv",
    "Relu",
    "Reshape",
    "Transpose",
    "Gather",
    "Slice",
    "Concat",
    "Softmax",
    "ReduceMean",
    "Cast",
    "Clip",
    "MaxPool",
    "Pad",
    "Split",
    "Expand",
    "Where",
    "QuantizeLinear",
    "DequantizeLinear",
    "LayerNormalization",
    "BatchNormalization",
    "Range",
    "ConstantOfShape",
    "Tile",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Shape",
    "Identity",
];

fn mutate_attr(r: &mut Rng, a: &mut p::AttributeProto) -> String {
    match r.below(6) {
        0 => {
            a.i = r.pick(EXTREME_INTS);
            format!("attr {} i={}", a.name, a.i)
        }
        1 => {
            if a.ints.is_empty() || r.below(3) == 0 {
                a.ints.push(r.pick(EXTREME_INTS));
            } else {
                let k = r.below(a.ints.len());
                a.ints[k] = r.pick(EXTREME_INTS);
            }
            format!("attr {} ints={:?}", a.name, a.ints)
        }
        2 => {
            a.ints.clear();
            a.floats.clear();
            format!("attr {} lists cleared", a.name)
        }
        3 => {
            a.r#type = r.below(15) as i32;
            format!("attr {} type={}", a.name, a.r#type)
        }
        4 => {
            a.f = r.pick(EXTREME_FLOATS);
            a.floats.push(a.f);
            format!("attr {} f={}", a.name, a.f)
        }
        _ => {
            a.s = b"\xff\x00garbage".to_vec().into();
            if let Some(t) = a.t.as_mut() {
                mutate_tensor(r, t);
            }
            format!("attr {} s/t garbage", a.name)
        }
    }
}

fn mutate_tensor(r: &mut Rng, t: &mut p::TensorProto) -> String {
    match r.below(5) {
        0 if !t.dims.is_empty() => {
            let k = r.below(t.dims.len());
            t.dims[k] = r.pick(EXTREME_INTS);
            format!("tensor {} dims={:?}", t.name, t.dims)
        }
        1 => {
            t.data_type = r.below(30) as i32;
            format!("tensor {} dtype={}", t.name, t.data_type)
        }
        2 => {
            let n = t.raw_data.len();
            t.raw_data = t.raw_data.slice(..n / 2);
            t.float_data.truncate(t.float_data.len() / 2);
            t.int64_data.truncate(t.int64_data.len() / 2);
            t.int32_data.truncate(t.int32_data.len() / 2);
            format!("tensor {} data halved", t.name)
        }
        3 => {
            t.dims.push(r.pick(EXTREME_INTS));
            format!("tensor {} extra dim {:?}", t.name, t.dims)
        }
        _ => {
            t.dims.clear();
            format!("tensor {} dims cleared", t.name)
        }
    }
}

fn mutate_value_info(r: &mut Rng, v: &mut p::ValueInfoProto) -> String {
    let Some(p::type_proto::Value::TensorType(tt)) =
        v.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        v.r#type = None;
        return format!("value {} type removed", v.name);
    };
    match r.below(3) {
        0 => {
            tt.elem_type = r.below(30) as i32;
            format!("value {} elem_type={}", v.name, tt.elem_type)
        }
        1 => {
            if let Some(s) = tt.shape.as_mut()
                && !s.dim.is_empty()
            {
                let k = r.below(s.dim.len());
                s.dim[k].value = Some(p::tensor_shape_proto::dimension::Value::DimValue(
                    r.pick(EXTREME_INTS),
                ));
            }
            format!("value {} dim changed", v.name)
        }
        _ => {
            tt.shape = None;
            format!("value {} shape removed", v.name)
        }
    }
}

/// Applies one structural mutation; returns what it did.
fn mutate_model(r: &mut Rng, m: &mut p::ModelProto) -> String {
    let Some(g) = m.graph.as_mut() else {
        return "no graph".into();
    };
    let names: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).cloned())
        .chain(g.input.iter().map(|v| v.name.clone()))
        .collect();
    match r.below(8) {
        0 | 1 => {
            let Some(n) = (!g.node.is_empty()).then(|| r.below(g.node.len())) else {
                return "no node".into();
            };
            let node = &mut g.node[n];
            if node.attribute.is_empty() {
                return "no attribute".into();
            }
            let k = r.below(node.attribute.len());
            mutate_attr(r, &mut node.attribute[k])
        }
        2 => {
            if g.initializer.is_empty() {
                return "no initializer".into();
            }
            let k = r.below(g.initializer.len());
            mutate_tensor(r, &mut g.initializer[k])
        }
        3 => {
            let all = g.input.len() + g.output.len();
            if all == 0 {
                return "no values".into();
            }
            let k = r.below(all);
            if k < g.input.len() {
                mutate_value_info(r, &mut g.input[k])
            } else {
                mutate_value_info(r, &mut g.output[k - g.input.len()])
            }
        }
        4 => {
            let Some(n) = (!g.node.is_empty()).then(|| r.below(g.node.len())) else {
                return "no node".into();
            };
            let node = &mut g.node[n];
            match r.below(3) {
                0 if !node.input.is_empty() => {
                    let k = r.below(node.input.len());
                    node.input[k] = if names.is_empty() || r.below(4) == 0 {
                        String::new()
                    } else {
                        names[r.below(names.len())].clone()
                    };
                    format!("node {n} input {k} -> '{}'", node.input[k])
                }
                1 if !node.input.is_empty() => {
                    node.input.pop();
                    format!("node {n} lost its last input")
                }
                _ => {
                    node.input.push(names.first().cloned().unwrap_or_default());
                    format!("node {n} extra input")
                }
            }
        }
        5 => {
            let Some(n) = (!g.node.is_empty()).then(|| r.below(g.node.len())) else {
                return "no node".into();
            };
            g.node[n].op_type = r.pick(OPS).to_string();
            format!("node {n} op_type={}", g.node[n].op_type)
        }
        6 => {
            for o in &mut m.opset_import {
                o.version = r.pick(&[1, 6, 7, 9, 11, 13, 100]);
            }
            "opset changed".into()
        }
        _ => {
            // A node reading its own output: a cycle.
            let Some(n) = (!g.node.is_empty()).then(|| r.below(g.node.len())) else {
                return "no node".into();
            };
            let node = &mut g.node[n];
            if let (Some(o), false) = (node.output.first().cloned(), node.input.is_empty()) {
                node.input[0] = o;
            }
            format!("node {n} reads its own output")
        }
    }
}

/// Runs one mutant through every stage; `Err` carries a multi-line message (a defect).
fn run_stages(
    name: &str,
    bytes: Vec<u8>,
    inputs: &[(String, shrink::ir::Tensor)],
) -> Result<(), String> {
    let one_line = |stage: &str, msg: String| -> Result<(), String> {
        if msg.contains('\n') {
            Err(format!("{stage} error is not one line: {msg}"))
        } else {
            Ok(())
        }
    };
    let opts = shrink::onnx::ImportOptions { max_memory: CAP };
    let imp = match shrink::onnx::load_model_bytes(name, bytes.into(), &opts) {
        Ok(i) => i,
        Err(e) => return one_line("import", e.to_string()),
    };
    let imported = imp.graph.clone();
    let mut g = imp.graph;
    if let Err(e) = shrink::optimize(&mut g, &shrink::OptOptions::verified_within(CAP)) {
        return one_line("optimize", e);
    }
    let ins = match shrink::bind_inputs(&g, inputs) {
        Ok(i) => i,
        Err(e) => return one_line("bind inputs", e),
    };
    let want = match shrink::interp::run(&g, &ins, &shrink::interp::EvalCtx { max_bytes: CAP }) {
        Ok(outs) => outs,
        Err(e) => return one_line("run", e.to_string()),
    };
    // What the interpreter accepts, the JIT compiles and agrees with, or refuses in one line.
    let mut j = imported;
    let value_guards = match shrink::specialize_to_values(&mut j, &ins) {
        Ok(v) => v,
        Err(e) => return one_line("specialize", e),
    };
    if let Err(e) = shrink::optimize(&mut j, &shrink::OptOptions::verified_within(CAP)) {
        return one_line("optimize for jit", e);
    }
    let options = shrink::codegen::CodegenOptions {
        value_guards,
        ..Default::default()
    };
    let kernel = match shrink::compile_jit_with(&j, &options) {
        Ok(k) => k,
        Err(e) => return one_line("jit compile", e.to_string()),
    };
    let got = match kernel.run(&ins) {
        Ok(outs) => outs,
        Err(e) => return one_line("jit run", e.to_string()),
    };
    let tol = shrink::compare::Tolerance::INTERP;
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        if let Some(m) = shrink::compare::compare(a, b, tol).mismatch {
            return Err(format!("jit output {k} differs from the interpreter: {m}"));
        }
    }
    Ok(())
}

fn suite() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onnx-node");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("../shared/onnx-node must sit next to the repository")
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(v.len() >= 900, "suite incomplete: {} cases", v.len());
    v
}

#[test]
fn mutated_models_fail_cleanly() {
    // Panics are caught and reported below; keep their default output quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut defects = Vec::new();
    let mut total = 0usize;
    for case in suite() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let original = std::fs::read(case.join("model.onnx")).unwrap();
        let Ok(model) = p::ModelProto::decode(original.as_slice()) else {
            continue;
        };
        let inputs = shrink::dataset::load_dataset(&case.join("test_data_set_0"), CAP)
            .map(|d| d.inputs)
            .unwrap_or_default();
        for k in 0..MUTANTS {
            let mut r = Rng(name
                .bytes()
                .fold(k, |h, b| h.wrapping_mul(131).wrapping_add(b as u64)));
            let (what, bytes) = if k < MUTANTS - 2 {
                // One to three structural mutations.
                let mut m = model.clone();
                let n = 1 + r.below(3);
                let what: Vec<String> = (0..n).map(|_| mutate_model(&mut r, &mut m)).collect();
                (what.join("; "), m.encode_to_vec())
            } else if k == MUTANTS - 2 {
                let mut b = original.clone();
                for _ in 0..4 {
                    let i = r.below(b.len());
                    b[i] ^= 1 << r.below(8);
                }
                ("4 bit flips".to_string(), b)
            } else {
                let cut = r.below(original.len());
                (
                    format!("truncated to {cut} bytes"),
                    original[..cut].to_vec(),
                )
            };
            total += 1;
            if std::env::var_os("SHRINK_TRACE").is_some() {
                eprintln!("{name} [{k}: {what}]");
            }
            let out = std::panic::catch_unwind(|| run_stages(&name, bytes, &inputs));
            match out {
                Ok(Ok(())) => {}
                Ok(Err(defect)) => defects.push(format!("{name} [{k}: {what}]: {defect}")),
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    defects.push(format!("{name} [{k}: {what}]: panic: {msg}"));
                }
            }
        }
    }
    let _ = std::panic::take_hook();
    println!("robustness: {total} mutants, {} defects", defects.len());
    assert!(
        defects.is_empty(),
        "{} of {total} mutants crashed or gave a multi-line error:\n{}",
        defects.len(),
        defects
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
