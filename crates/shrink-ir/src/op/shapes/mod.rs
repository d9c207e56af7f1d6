//! Output shape rules for every op: the shape half of type inference (dtypes are in `types.rs`).
//!
//! A rule sees each input's [`ValueType`] and, where the input is a constant, its value (needed by
//! Reshape, Slice, Expand, ... whose output shape depends on data). It returns one shape per
//! output: fully fixed when everything it needs is known, with [`Dim::Sym`] propagated where a
//! symbolic dimension flows through unchanged, and [`Dim::Unknown`] (or `None` = unknown rank)
//! only where the inputs leave it undetermined. Arithmetic on dims is checked: an overflow or an
//! inconsistent shape is a [`ShapeError`], never a panic.
//!
//! One module per op family, mirroring the interpreter's `ops/`.
mod conv;
mod elementwise;
mod fused;
mod layout;
mod linear;
mod norm;
mod reduce;

use crate::shape::{Dim, Shape};
use crate::{Op, Tensor, ValueType};

/// What a shape rule knows about one input.
#[derive(Clone, Copy, Debug)]
pub struct InputInfo<'a> {
    pub ty: &'a ValueType,
    /// The input's value when it is a constant.
    pub value: Option<&'a Tensor>,
}

/// Inconsistent or invalid shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

impl ShapeError {
    pub fn new(msg: impl Into<String>) -> ShapeError {
        ShapeError(msg.into())
    }
}

/// The inferred shape of each of the node's `num_outputs` outputs (`None` = unknown rank).
pub fn infer_shapes(
    op: &Op,
    inputs: &[Option<InputInfo<'_>>],
    num_outputs: usize,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let mut out = match op {
        Op::Input { .. } | Op::Const(_) => {
            return Err(ShapeError::new("sources carry their own shape"));
        }
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Variadic(_)
        | Op::Ternary(_)
        | Op::Convert(_)
        | Op::Quant(_) => elementwise::infer(op, inputs, num_outputs)?,
        Op::Linear(l) => linear::infer(l, inputs, num_outputs)?,
        Op::Conv(_) | Op::Pool(_) => conv::infer(op, inputs, num_outputs)?,
        Op::Norm(_) | Op::Transformer(_) => norm::infer(op, inputs, num_outputs)?,
        Op::Fused(f) => fused::infer(f, inputs)?,
        Op::Reduce(r) => reduce::infer(r, inputs, num_outputs)?,
        Op::Layout(l) => layout::infer(l, inputs, num_outputs)?,
    };
    out.resize(num_outputs, None);
    Ok(out)
}

/// Helper for rules: input `i`'s shape, `None` if absent or of unknown rank.
pub fn shape_of<'a>(inputs: &[Option<InputInfo<'a>>], i: usize) -> Option<&'a Shape> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .and_then(|x| x.ty.shape.as_ref())
}

/// Helper for rules: input `i`'s constant value as i64s (shape/axes inputs).
pub fn const_ints(inputs: &[Option<InputInfo<'_>>], i: usize) -> Option<Vec<i64>> {
    let t = inputs.get(i).copied().flatten()?.value?;
    t.dtype().is_int().then(|| t.to_i64_vec())
}

/// Helper for rules: a shape of `rank` unknown dims.
pub fn unknown_dims(rank: usize) -> Shape {
    Shape(vec![Dim::Unknown; rank])
}

/// Merges a declared shape with an inferred one: fixed dims win over symbolic or unknown ones,
/// and two different fixed dims (or ranks) are an error.
pub fn merge_shapes(
    declared: Option<&Shape>,
    inferred: Option<&Shape>,
) -> Result<Option<Shape>, ShapeError> {
    match (declared, inferred) {
        (None, x) | (x, None) => Ok(x.cloned()),
        (Some(d), Some(i)) => {
            if d.rank() != i.rank() {
                return Err(ShapeError::new(format!(
                    "declared shape {d} has rank {}, inferred {i} has rank {}",
                    d.rank(),
                    i.rank()
                )));
            }
            let dims =
                d.0.iter()
                    .zip(&i.0)
                    .map(|(a, b)| match (a, b) {
                        (Dim::Fixed(x), Dim::Fixed(y)) if x != y => Err(ShapeError::new(format!(
                            "declared shape {d} contradicts inferred {i}"
                        ))),
                        (Dim::Fixed(x), _) | (_, Dim::Fixed(x)) => Ok(Dim::Fixed(*x)),
                        (Dim::Sym(s), _) | (_, Dim::Sym(s)) => Ok(Dim::Sym(s.clone())),
                        _ => Ok(Dim::Unknown),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Shape(dims)))
        }
    }
}

/// The output shapes of node `id` inferred from its inputs' types and constant values.
pub fn infer_node_shapes(
    g: &crate::Graph,
    id: crate::NodeId,
) -> Result<Vec<Option<Shape>>, ShapeError> {
    let infos: Vec<Option<InputInfo<'_>>> = g
        .inputs_of(id)
        .iter()
        .map(|v| {
            v.map(|v| InputInfo {
                ty: g.value_type(v),
                value: g.const_value(v).map(|t| &**t),
            })
        })
        .collect();
    let node = g.node(id);
    infer_shapes(&node.op, &infos, node.outputs.len())
}

/// Infers every node's output shapes in topological order, merging with what the node already
/// declares. Errors name the node.
pub fn infer_graph(g: &mut crate::Graph) -> Result<(), (crate::NodeId, ShapeError)> {
    let order = g
        .topo_order()
        .map_err(|n| (n, ShapeError::new("the graph has a cycle")))?;
    for id in order {
        if g.node(id).op.is_source() {
            continue;
        }
        let inferred = infer_node_shapes(g, id).map_err(|e| (id, e))?;
        let node = g.node(id);
        let merged: Vec<Option<Shape>> = node
            .outputs
            .iter()
            .zip(&inferred)
            .map(|(t, i)| merge_shapes(t.shape.as_ref(), i.as_ref()))
            .collect::<Result<_, _>>()
            .map_err(|e| (id, e))?;
        for (t, s) in g.node_mut(id).outputs.iter_mut().zip(merged) {
            t.shape = s;
        }
    }
    Ok(())
}
