//! Which nodes are "layers" (ops with a weight matrix) and how their weight maps onto the
//! [outputs × inputs] view that ternary detection, sparsity elimination, `inspect` and codegen
//! share.
use shrink_ir::op::{Conv, Fused, Linear};
use shrink_ir::{Graph, NodeId, Op, WeightLayout};

/// A layer's weight: the input slot it arrives on and its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightSlot {
    pub slot: usize,
    pub layout: WeightLayout,
}

/// The weight slot of a layer op (whether or not the weight is constant).
pub fn weight_slot(op: &Op) -> Option<WeightSlot> {
    let (slot, layout) = match op {
        Op::Linear(Linear::MatMul | Linear::MatMulInteger) => (1, WeightLayout::ColsFirst),
        Op::Linear(Linear::Gemm { trans_b, .. }) => (
            1,
            if *trans_b {
                WeightLayout::RowsFirst
            } else {
                WeightLayout::ColsFirst
            },
        ),
        Op::Linear(Linear::QLinearMatMul) => (3, WeightLayout::ColsFirst),
        Op::Fused(Fused::DenseAct { trans_b, .. }) => (
            1,
            if *trans_b {
                WeightLayout::RowsFirst
            } else {
                WeightLayout::ColsFirst
            },
        ),
        Op::Conv(Conv::Conv { .. } | Conv::ConvInteger { .. }) => (1, WeightLayout::RowsFirst),
        Op::Conv(Conv::QLinearConv { .. }) => (3, WeightLayout::RowsFirst),
        _ => return None,
    };
    Some(WeightSlot { slot, layout })
}

/// Layers whose weight is a constant, in topological order.
pub fn const_weight_layers(g: &Graph) -> Vec<(NodeId, WeightSlot, shrink_ir::op::ConstId)> {
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
    let mut out = Vec::new();
    for id in order {
        let Some(ws) = weight_slot(&g.node(id).op) else {
            continue;
        };
        let Some(Some(v)) = g.inputs_of(id).get(ws.slot).copied() else {
            continue;
        };
        // A 2-D MatMul weight only: batched weights are not a single matrix.
        if ws.layout == WeightLayout::ColsFirst
            && g.value_type(v)
                .shape
                .as_ref()
                .is_some_and(|s| s.rank() != 2)
        {
            continue;
        }
        if let Some(c) = g.const_id(v) {
            out.push((id, ws, c));
        }
    }
    out
}
