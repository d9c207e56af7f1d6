//! shrink's facade: one place that ties import, interpretation and (later) compilation together,
//! used by the `shrink` CLI, the integration tests and benches.
//!
//! The layers below are re-exported so that a host needs one dependency.
pub mod compare;
pub mod dataset;
pub mod demo;
pub mod inspect;
pub mod npy;

pub use shrink_ir as ir;
pub use shrink_onnx as onnx;
pub use shrink_ref as interp;

use shrink_ir::{Dim, Graph, Tensor};

/// Orders user-supplied tensors as the graph's inputs: by name when every tensor is named after
/// an input, else by position. Checks dtype and every fixed dimension against the declared type.
pub fn bind_inputs(g: &Graph, given: &[(String, Tensor)]) -> Result<Vec<Tensor>, String> {
    let names: Vec<&str> = g.inputs.iter().map(|&id| g.node(id).name.as_str()).collect();
    if given.len() != names.len() {
        return Err(format!("the model has {} inputs ({}), {} were given", names.len(), names.join(", "), given.len()));
    }
    let by_name = given.iter().all(|(n, _)| names.contains(&n.as_str()));
    let mut out = Vec::with_capacity(names.len());
    for (i, &id) in g.inputs.iter().enumerate() {
        let name = names[i];
        let t = if by_name { &given.iter().find(|(n, _)| n == name).expect("checked above").1 } else { &given[i].1 };
        let ty = &g.node(id).outputs[0];
        if t.dtype() != ty.dtype {
            return Err(format!("input '{name}' is {} but the model expects {}", t.dtype(), ty.dtype));
        }
        if let Some(shape) = &ty.shape {
            let fits = shape.rank() == t.rank()
                && shape.0.iter().zip(t.dims()).all(|(d, &n)| !matches!(d, Dim::Fixed(f) if *f != n));
            if !fits {
                return Err(format!("input '{name}' has shape {:?} but the model expects {shape}", t.dims()));
            }
        }
        out.push(t.clone());
    }
    Ok(out)
}
