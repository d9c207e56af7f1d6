//! Differential check of the importer's protobuf layer against an independent parser
//! (onnx-protobuf, built on rust-protobuf): on every model and tensor file of the conformance
//! suite both parsers must decode the same content; on truncated copies prost must reject whatever
//! the other parser rejects, and agree with it when both accept.
use onnx_protobuf::Message as _;
use prost::Message as _;
use shrink_onnx::proto as p;
use std::path::{Path, PathBuf};

fn suite() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/onnx-node");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("../shared/onnx-node")
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(v.len() >= 900, "suite incomplete: {} cases", v.len());
    v
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
        "{}:{}:{}:{}:{:?}:{:?}:{:?}:{t}",
        a.name,
        a.r#type,
        a.i,
        a.f,
        a.s.as_ref(),
        a.ints,
        a.floats
    )
}

fn attr_rp(a: &onnx_protobuf::AttributeProto) -> String {
    let t = a.t.as_ref().map(tensor_summary_rp).unwrap_or_default();
    format!(
        "{}:{}:{}:{}:{:?}:{:?}:{:?}:{t}",
        a.name,
        a.type_.value(),
        a.i,
        a.f,
        a.s.as_slice(),
        a.ints,
        a.floats
    )
}

fn model_summary_prost(m: &p::ModelProto) -> Vec<String> {
    let mut out = vec![format!("ir {}", m.ir_version)];
    out.extend(
        m.opset_import
            .iter()
            .map(|o| format!("opset {} {}", o.domain, o.version)),
    );
    if let Some(g) = &m.graph {
        out.extend(g.input.iter().map(|v| format!("in {}", v.name)));
        out.extend(g.output.iter().map(|v| format!("out {}", v.name)));
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
        out.extend(g.input.iter().map(|v| format!("in {}", v.name)));
        out.extend(g.output.iter().map(|v| format!("out {}", v.name)));
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

fn both_models(bytes: &[u8]) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let a = p::ModelProto::decode(bytes)
        .ok()
        .map(|m| model_summary_prost(&m));
    let b = onnx_protobuf::ModelProto::parse_from_bytes(bytes)
        .ok()
        .map(|m| model_summary_rp(&m));
    (a, b)
}

#[test]
fn both_parsers_agree_on_every_suite_model() {
    let mut checked = 0;
    for case in suite() {
        let bytes = std::fs::read(case.join("model.onnx")).unwrap();
        let (a, b) = both_models(&bytes);
        assert!(
            a.is_some() && b.is_some(),
            "{}: a parser rejected a valid model",
            case.display()
        );
        assert_eq!(a, b, "{}", case.display());
        for f in std::fs::read_dir(case.join("test_data_set_0")).unwrap() {
            let f = f.unwrap().path();
            let bytes = std::fs::read(&f).unwrap();
            let a = p::TensorProto::decode(bytes.as_slice()).map(|t| tensor_summary_prost(&t));
            let b =
                onnx_protobuf::TensorProto::parse_from_bytes(&bytes).map(|t| tensor_summary_rp(&t));
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", f.display()),
                (Err(_), Err(_)) => {}
                (a, b) => panic!(
                    "{}: parsers disagree: {:?} vs {:?}",
                    f.display(),
                    a.is_ok(),
                    b.is_ok()
                ),
            }
        }
        checked += 1;
    }
    assert!(checked >= 900);
}

#[test]
fn both_parsers_agree_on_truncated_models() {
    let mut rejected = 0;
    for case in suite().iter().step_by(7) {
        let bytes = std::fs::read(case.join("model.onnx")).unwrap();
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let (a, b) = both_models(&bytes[..cut]);
            // rust-protobuf accepts some prefixes that end inside a nested message (a leniency of
            // that parser); prost must never accept what it rejects.
            assert!(
                !(a.is_some() && b.is_none()),
                "{} cut at {cut}: only prost accepted",
                case.display()
            );
            if let (Some(a), Some(b)) = (&a, &b) {
                assert_eq!(a, b, "{} cut at {cut}", case.display());
            } else {
                rejected += 1;
            }
        }
    }
    assert!(
        rejected > 100,
        "truncation should break most models, only {rejected} rejected"
    );
}
