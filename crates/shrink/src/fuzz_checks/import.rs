//! The `import` check: shrink's importer against an independent protobuf parser (onnx-protobuf,
//! built on rust-protobuf), then the optimizer and the interpreter on what was imported.
//!
//! The rule, for any bytes:
//! - onnx-protobuf refuses them (a protobuf-level refusal) ⇒ shrink refuses them.
//! - shrink accepts them ⇒ onnx-protobuf accepts them, shrink's own protobuf layer (prost) decodes
//!   the same content field for field (or, where rust-protobuf keeps only the last of a
//!   singular message field given twice instead of merging them as the protobuf spec says,
//!   reads prost's re-encoding the same), and the imported graph shows what both see: the graph
//!   inputs (less those an initializer gives a value) and outputs by name and order, one constant
//!   per initializer with its name and dims, and one IR node per ONNX node (`Constant` nodes
//!   become constants) with the same name and op type.
//! - shrink may refuse what onnx-protobuf parses (unknown ops, bad attributes, types, and
//!   rust-protobuf's leniency on messages cut short), but only with a one-line error.
//!
//! What was imported then goes through the default pipeline (verifier after every pass) and the
//! interpreter on small inputs; each may refuse, in one line.
use super::CAP;
use onnx_protobuf::Message as _;
use prost::Message as _;
use shrink_ir::{Graph, Op, Value};
use shrink_onnx::proto as p;

/// Checks `data` as an ONNX model; `Err` is a defect.
pub fn import(data: &[u8]) -> Result<(), String> {
    let reference = onnx_protobuf::ModelProto::parse_from_bytes(data);
    let opts = shrink_onnx::ImportOptions { max_memory: CAP };
    let imported = shrink_onnx::load_model_bytes("fuzz", data.to_vec().into(), &opts);
    let imp = match (imported, reference) {
        (Err(e), _) => return super::one_line("import", e),
        (Ok(_), Err(e)) => {
            return Err(format!(
                "shrink imported a model onnx-protobuf refuses at the protobuf level: {e}"
            ));
        }
        (Ok(imp), Ok(r)) => {
            let ours = p::ModelProto::decode(data)
                .map_err(|e| format!("imported, yet prost refuses the bytes: {e}"))?;
            let a = model_summary_prost(&ours);
            // rust-protobuf replaces a singular message field that occurs twice (last one wins)
            // where the protobuf spec, and prost, merge the occurrences. When the readings
            // differ, the bytes prost re-encodes (each field once) must read the same in both.
            let r = if model_summary_rp(&r) == a {
                r
            } else {
                onnx_protobuf::ModelProto::parse_from_bytes(&ours.encode_to_vec())
                    .map_err(|e| format!("onnx-protobuf refuses prost's re-encoding: {e}"))?
            };
            let b = model_summary_rp(&r);
            if a != b {
                let k = a.iter().zip(&b).position(|(x, y)| x != y);
                let what = k.map_or_else(
                    || format!("{} vs {} items", a.len(), b.len()),
                    |k| format!("{:?} vs {:?}", a[k], b[k]),
                );
                return Err(format!(
                    "prost and onnx-protobuf decode different content: {what}"
                ));
            }
            let g = r.graph.as_ref().ok_or("imported a model without a graph")?;
            same_graph(&imp.graph, g)?;
            imp
        }
    };
    let mut g = imp.graph;
    refuse!(
        "optimize",
        crate::optimize(&mut g, &crate::OptOptions::verified_within(CAP))
    );
    let Some(inputs) = super::pipeline::inputs_for(&g, data) else {
        return Ok(());
    };
    refuse!(
        "interpret",
        shrink_ref::run(&g, &inputs, &shrink_ref::EvalCtx { max_bytes: CAP })
    );
    Ok(())
}

/// What the imported graph must show of the ONNX graph both parsers read.
fn same_graph(g: &Graph, r: &onnx_protobuf::GraphProto) -> Result<(), String> {
    let ids = g.node_ids();
    // The importer adds the initializers first, in order, then the inputs, then the nodes.
    if ids.len() < r.initializer.len() {
        return Err("fewer IR nodes than initializers".into());
    }
    for (init, &id) in r.initializer.iter().zip(&ids) {
        let n = g.node(id);
        let dims = g.const_value(Value::from(id)).map(|t| t.dims().to_vec());
        let want: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
        if !matches!(n.op, Op::Const { .. }) || n.name != init.name || dims != Some(want) {
            return Err(format!(
                "initializer '{}' {:?} imported as {} '{}' {dims:?}",
                init.name,
                init.dims,
                n.op.name(),
                n.name
            ));
        }
    }
    let inits: std::collections::HashSet<&str> =
        r.initializer.iter().map(|t| t.name.as_str()).collect();
    let want_in: Vec<&str> = r
        .input
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| !inits.contains(n))
        .collect();
    let got_in: Vec<&str> = g
        .inputs
        .iter()
        .map(|&id| g.node(id).name.as_str())
        .collect();
    if got_in != want_in {
        return Err(format!(
            "graph inputs {got_in:?}, onnx-protobuf reads {want_in:?}"
        ));
    }
    let want_out: Vec<&str> = r.output.iter().map(|v| v.name.as_str()).collect();
    let got_out: Vec<&str> = g.outputs.iter().map(|(n, _)| n.as_str()).collect();
    if got_out != want_out {
        return Err(format!(
            "graph outputs {got_out:?}, onnx-protobuf reads {want_out:?}"
        ));
    }
    // One IR node per ONNX node, named as the importer names it: the node's name, else its
    // first output (unique in a graph), else its position.
    let mut want_ops: Vec<(String, &str)> = r
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type != "Constant")
        .map(|(i, n)| {
            let label = if n.name.is_empty() {
                n.output
                    .iter()
                    .find(|o| !o.is_empty())
                    .cloned()
                    .unwrap_or_else(|| format!("#{i}"))
            } else {
                n.name.clone()
            };
            (label, ir_op(&n.op_type))
        })
        .collect();
    let mut got_ops: Vec<(String, &str)> = ids
        .iter()
        .map(|&id| g.node(id))
        .filter(|n| !matches!(n.op, Op::Const { .. } | Op::Input { .. }))
        .map(|n| (n.name.clone(), n.op.name()))
        .collect();
    want_ops.sort_unstable();
    got_ops.sort_unstable();
    if got_ops != want_ops {
        return Err(format!(
            "nodes {got_ops:?}, onnx-protobuf reads {want_ops:?}"
        ));
    }
    Ok(())
}

/// The IR op an ONNX op type imports as (most keep their name).
fn ir_op(op_type: &str) -> &str {
    match op_type {
        "CastLike" => "Cast",
        o => o,
    }
}

/// A parser-neutral summary of a tensor: everything that determines its value.
fn tensor_summary_prost(t: &p::TensorProto) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        t.name,
        t.dims,
        t.data_type,
        t.raw_data.as_ref(),
        t.float_data,
        t.int32_data,
        t.int64_data,
        t.double_data,
        t.uint64_data,
        t.string_data
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<&[u8]>>()
    )
}

fn tensor_summary_rp(t: &onnx_protobuf::TensorProto) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        t.name,
        t.dims,
        t.data_type,
        t.raw_data.as_slice(),
        t.float_data,
        t.int32_data,
        t.int64_data,
        t.double_data,
        t.uint64_data,
        t.string_data
    )
}

fn attr_prost(a: &p::AttributeProto) -> String {
    let t = a.t.as_ref().map(tensor_summary_prost).unwrap_or_default();
    format!(
        "{}:{}:{}:{:?}:{:?}:{:?}:{:?}:{t}",
        a.name,
        a.r#type,
        a.i,
        a.f.to_bits(),
        a.s.as_ref(),
        a.ints,
        a.floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    )
}

fn attr_rp(a: &onnx_protobuf::AttributeProto) -> String {
    let t = a.t.as_ref().map(tensor_summary_rp).unwrap_or_default();
    format!(
        "{}:{}:{}:{:?}:{:?}:{:?}:{:?}:{t}",
        a.name,
        a.type_.value(),
        a.i,
        a.f.to_bits(),
        a.s.as_slice(),
        a.ints,
        a.floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    )
}

fn value_prost(v: &p::ValueInfoProto) -> String {
    let tt = v.r#type.as_ref().and_then(|t| match &t.value {
        Some(p::type_proto::Value::TensorType(tt)) => Some(tt),
        _ => None,
    });
    let dims: Option<Vec<String>> = tt.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(p::tensor_shape_proto::dimension::Value::DimValue(v)) => v.to_string(),
                Some(p::tensor_shape_proto::dimension::Value::DimParam(s)) => s.clone(),
                None => "?".into(),
            })
            .collect()
    });
    format!("{} {:?} {dims:?}", v.name, tt.map(|t| t.elem_type))
}

fn value_rp(v: &onnx_protobuf::ValueInfoProto) -> String {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as D;
    let tt = v
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .map(|t| t.tensor_type());
    let dims: Option<Vec<String>> = tt.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(D::DimValue(v)) => v.to_string(),
                Some(D::DimParam(s)) => s.clone(),
                _ => "?".into(),
            })
            .collect()
    });
    format!("{} {:?} {dims:?}", v.name, tt.map(|t| t.elem_type))
}

fn model_summary_prost(m: &p::ModelProto) -> Vec<String> {
    let mut out = vec![format!("ir {}", m.ir_version)];
    out.extend(
        m.opset_import
            .iter()
            .map(|o| format!("opset {} {}", o.domain, o.version)),
    );
    if let Some(g) = &m.graph {
        out.extend(g.input.iter().map(|v| format!("in {}", value_prost(v))));
        out.extend(g.output.iter().map(|v| format!("out {}", value_prost(v))));
        out.extend(
            g.value_info
                .iter()
                .map(|v| format!("vi {}", value_prost(v))),
        );
        out.extend(g.initializer.iter().map(tensor_summary_prost));
        for n in &g.node {
            let attrs: Vec<String> = n.attribute.iter().map(attr_prost).collect();
            out.push(format!(
                "node {} {} {} {:?} {:?} {:?}",
                n.name, n.domain, n.op_type, n.input, n.output, attrs
            ));
        }
    }
    out
}

fn model_summary_rp(m: &onnx_protobuf::ModelProto) -> Vec<String> {
    let mut out = vec![format!("ir {}", m.ir_version)];
    out.extend(
        m.opset_import
            .iter()
            .map(|o| format!("opset {} {}", o.domain, o.version)),
    );
    if let Some(g) = m.graph.as_ref() {
        out.extend(g.input.iter().map(|v| format!("in {}", value_rp(v))));
        out.extend(g.output.iter().map(|v| format!("out {}", value_rp(v))));
        out.extend(g.value_info.iter().map(|v| format!("vi {}", value_rp(v))));
        out.extend(g.initializer.iter().map(tensor_summary_rp));
        for n in &g.node {
            let attrs: Vec<String> = n.attribute.iter().map(attr_rp).collect();
            out.push(format!(
                "node {} {} {} {:?} {:?} {:?}",
                n.name, n.domain, n.op_type, n.input, n.output, attrs
            ));
        }
    }
    out
}
