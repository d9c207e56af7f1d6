//! Reductions: ReduceMean/Sum/Max/Min/SumSquare/L2 (axes as input 1 in every opset) and
//! ArgMax/ArgMin.
use super::{Built, Input, NodeIn, ints_const, lookup_table};
use shrink_ir::Op;
use shrink_ir::op::Reduce;

fn reduce(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let name = n.proto.op_type.as_str();
    let mut op = Reduce::with_defaults(name).ok_or("no reduce op")?;
    match &mut op {
        Reduce::ArgMax {
            axis,
            keepdims,
            select_last_index,
        }
        | Reduce::ArgMin {
            axis,
            keepdims,
            select_last_index,
        } => {
            *axis = a.int("axis", 0)?;
            *keepdims = a.flag("keepdims", true)?;
            *select_last_index = a.flag("select_last_index", false)?;
            return n.keep(Op::Reduce(op));
        }
        reduction => {
            let (keepdims, noop_with_empty_axes) = reduction
                .axes_flags_mut()
                .expect("ArgMax/ArgMin handled above");
            *keepdims = a.flag("keepdims", true)?;
            *noop_with_empty_axes = a.flag("noop_with_empty_axes", false)?;
        }
    }
    // Axes moved from attribute to input in opset 13 for ReduceSum and in opset 18 for the rest.
    let axes_is_input = if name == "ReduceSum" {
        n.opset >= 13
    } else {
        n.opset >= 18
    };
    if axes_is_input {
        if a.get("axes").is_some() {
            return Err(format!(
                "attribute 'axes' is not allowed in opset {} (axes is an input)",
                n.opset
            ));
        }
        return n.keep(Op::Reduce(op));
    }
    let inputs = match a.ints("axes")? {
        Some(axes) => n.with_input_at(1, ints_const(&axes)),
        None => n.with_input_at(1, Input::Absent),
    };
    Ok(Built {
        op: Op::Reduce(op),
        inputs,
    })
}

pub fn lookup(op_type: &str) -> Option<super::Builder> {
    lookup_table(op_type, &[(Reduce::NAMES, reduce)])
}
