//! The `text` check: the `.sir` parser on any string. What parses must print, reparse and print
//! to the same text (the round trip the golden files rely on), and the verifier must judge the
//! parsed graph without panicking.
use shrink_ir::text::{parse_graph, print_graph};

/// Checks `data` as `.sir` text; `Err` is a defect.
pub fn text(data: &[u8]) -> Result<(), String> {
    let Ok(src) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let g = match parse_graph(src) {
        Ok(g) => g,
        Err(e) => return super::one_line("parse", e),
    };
    // Judged, not required to pass: the parser accepts graphs the verifier refuses.
    if let Err(e) = shrink_ir::verify(&g) {
        super::one_line("verify", e)?;
    }
    let printed = print_graph(&g);
    let back = parse_graph(&printed)
        .map_err(|e| format!("the printed graph does not parse again: {e}"))?;
    let again = print_graph(&back);
    if again != printed {
        let line = printed
            .lines()
            .zip(again.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("{a:?} became {b:?}"))
            .unwrap_or_else(|| "the line count changed".into());
        return Err(format!("print → parse → print changed the text: {line}"));
    }
    Ok(())
}

/// Seeds for the `text` target from an ONNX model: its graph as imported and as optimized,
/// printed (empty when the model does not import).
pub fn text_seeds(model: &[u8]) -> Vec<String> {
    let opts = shrink_onnx::ImportOptions {
        max_memory: super::CAP,
    };
    let Ok(imp) = shrink_onnx::load_model_bytes("seed", model.to_vec().into(), &opts) else {
        return vec![];
    };
    let mut out = vec![print_graph(&imp.graph)];
    let mut g = imp.graph;
    if crate::optimize(&mut g, &crate::OptOptions::verified_within(super::CAP)).is_ok() {
        out.push(print_graph(&g));
    }
    out
}
