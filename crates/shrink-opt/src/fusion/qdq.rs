//! QDQ → integer kernels: `DequantizeLinear(xq) , DequantizeLinear(wq const) → MatMul | Conv →
//! QuantizeLinear` becomes QLinearMatMul / QLinearConv, per-tensor scales and zero points only,
//! i8/u8 data, f32 scales. A missing zero point means 0 of the quantized dtype (a new constant).
//!
//! Both forms compute `round((Σ (x−xz)(w−wz) + Bq) · xs·ws / ys) + yz`, saturated; over the reals
//! they are equal. The float path rounds its intermediates to f32, so results can differ by one
//! step when `y/ys` lands within f32 rounding of a .5 boundary (the usual QDQ-lowering caveat,
//! shared with every runtime that executes QDQ models on integer kernels); with power-of-two
//! scales and small accumulations both paths are exact and agree bit for bit.
//!
//! A Conv bias is carried only when it is exactly `Bq · xs·ws` for an int32 `Bq` (checked on the
//! exact binary expansions, not in floating point); otherwise the pattern is left alone.
use super::{confined, fixed_dims, input, producer, replace_and_remove, scalar_const};
use shrink_ir::op::{Conv, Linear, Quant};
use shrink_ir::{DType, Graph, NodeId, Op, Tensor, Value};
use std::sync::Arc;

/// One `DequantizeLinear(q, scale, zp?)` operand.
struct Deq {
    node: NodeId,
    q: Value,
    scale: Value,
    zp: Option<Value>,
}

/// Whether `v` is a per-tensor quantization parameter: a fixed shape of rank ≤ 1 holding one
/// element.
fn per_tensor(g: &Graph, v: Value) -> bool {
    fixed_dims(g, v).is_some_and(|d| d.len() <= 1 && d.iter().product::<usize>() == 1)
}

fn is_q8(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8)
}

/// `v` as a per-tensor i8/u8 → f32 DequantizeLinear.
fn dequant(g: &Graph, v: Value) -> Option<Deq> {
    let node = producer(g, v)?;
    let Op::Quant(Quant::DequantizeLinear {
        block_size: 0,
        output_dtype: None | Some(DType::F32),
        ..
    }) = g.node(node).op
    else {
        return None;
    };
    let (q, scale, zp) = (input(g, node, 0)?, input(g, node, 1)?, input(g, node, 2));
    let ok = is_q8(g.dtype(q))
        && g.dtype(scale) == DType::F32
        && per_tensor(g, scale)
        && zp.is_none_or(|z| g.dtype(z) == g.dtype(q) && per_tensor(g, z))
        && g.dtype(v) == DType::F32;
    ok.then_some(Deq { node, q, scale, zp })
}

/// A zero-point value: `zp` itself, or a new scalar 0 of `dtype`.
fn zero_point(g: &mut Graph, zp: Option<Value>, dtype: DType, name: &str) -> Value {
    if let Some(z) = zp {
        return z;
    }
    let t = if dtype == DType::I8 {
        Tensor::scalar(0i8)
    } else {
        Tensor::scalar(0u8)
    };
    g.add_const(name, Arc::new(t)).into()
}

/// Anchored at the QuantizeLinear node.
pub(super) fn fuse_at(g: &mut Graph, q: NodeId) -> Option<&'static str> {
    let Op::Quant(Quant::QuantizeLinear {
        block_size: 0,
        precision: None,
        output_dtype,
        ..
    }) = g.node(q).op
    else {
        return None;
    };
    let (y, ys, yz) = (input(g, q, 0)?, input(g, q, 1)?, input(g, q, 2));
    let out_dt = g.node(q).outputs[0].dtype;
    let params_ok = is_q8(out_dt)
        && output_dtype.is_none_or(|d| d == out_dt)
        && g.dtype(y) == DType::F32
        && g.dtype(ys) == DType::F32
        && per_tensor(g, ys)
        && yz.is_none_or(|z| g.dtype(z) == out_dt && per_tensor(g, z));
    if !params_ok {
        return None;
    }
    let core = producer(g, y)?;
    let is_matmul = match &g.node(core).op {
        Op::Linear(Linear::MatMul) => true,
        Op::Conv(Conv::Conv { .. }) => false,
        _ => return None,
    };
    if !confined(g, &[core], q) {
        return None;
    }
    let x = dequant(g, input(g, core, 0)?)?;
    let w = dequant(g, input(g, core, 1)?)?;
    // Integer kernels take their weights from constants (packing happens at compile time).
    g.const_value(w.q)?;
    let bias = if is_matmul { None } else { input(g, core, 2) };
    let bias_q = match bias {
        Some(b) => Some(quantized_bias(g, b, x.scale, w.scale)?),
        None => None,
    };
    let name = g.node(core).name.clone();
    let (xq_dt, wq_dt) = (g.dtype(x.q), g.dtype(w.q));
    let xz = zero_point(g, x.zp, xq_dt, &format!("{name}.x_zero_point"));
    let wz = zero_point(g, w.zp, wq_dt, &format!("{name}.w_zero_point"));
    let yz = zero_point(g, yz, out_dt, &format!("{name}.y_zero_point"));
    let mut ins = vec![
        Some(x.q),
        Some(x.scale),
        Some(xz),
        Some(w.q),
        Some(w.scale),
        Some(wz),
        Some(ys),
        Some(yz),
    ];
    let out_ty = g.node(q).outputs[0].clone();
    let (op, counter) = match g.node(core).op.clone() {
        Op::Conv(Conv::Conv {
            auto_pad,
            dilations,
            group,
            kernel_shape,
            pads,
            strides,
        }) => {
            if let Some((t, _)) = &bias_q {
                let c = g.add_const(&format!("{name}.bias_i32"), Arc::new(t.clone()));
                ins.push(Some(c.into()));
            } else {
                ins.push(None);
            }
            (
                Op::Conv(Conv::QLinearConv {
                    auto_pad,
                    dilations,
                    group,
                    kernel_shape,
                    pads,
                    strides,
                }),
                "qdq_conv",
            )
        }
        _ => (Op::Linear(Linear::QLinearMatMul), "qdq_matmul"),
    };
    let fused = g.add_node(op, &name, &ins, vec![out_ty]);
    let mut others = vec![core, x.node, w.node];
    others.extend(bias_q.and_then(|(_, dq)| dq));
    replace_and_remove(g, q, fused.into(), &others);
    Some(counter)
}

/// The Conv bias `b` as int32 values with scale `xs·ws`, when exactly representable. `b` is a
/// constant f32 [M], or a DequantizeLinear of a constant int32 with constant per-tensor scale
/// (that node is returned so it can be deleted once unused).
fn quantized_bias(g: &Graph, b: Value, xs: Value, ws: Value) -> Option<(Tensor, Option<NodeId>)> {
    let xs = f64::from(scalar_const(g, xs)? as f32);
    let ws = f64::from(scalar_const(g, ws)? as f32);
    // Exact: two 24-bit mantissas multiply into 48 bits, within f64's 53.
    let scale = xs * ws;
    let (vals, dq_node): (Vec<f64>, Option<NodeId>) = if let Some(t) = g.const_value(b) {
        if t.dtype() != DType::F32 || t.rank() != 1 {
            return None;
        }
        (t.to_f64_vec(), None)
    } else {
        let node = producer(g, b)?;
        let Op::Quant(Quant::DequantizeLinear {
            block_size: 0,
            output_dtype: None | Some(DType::F32),
            ..
        }) = g.node(node).op
        else {
            return None;
        };
        let q = g.const_value(input(g, node, 0)?)?;
        let s = g.const_value(input(g, node, 1)?)?;
        let zp = match input(g, node, 2) {
            Some(z) => g.const_value(z)?.clone(),
            None => Arc::new(Tensor::scalar(0i32)),
        };
        if q.dtype() != DType::I32
            || q.rank() != 1
            || s.dtype() != DType::F32
            || s.len() != 1
            || zp.len() != 1
        {
            return None;
        }
        let (s, z) = (s.get_f64(0), zp.get_f64(0));
        // The dequantized value, rounded once to f32 as DequantizeLinear's output is.
        (
            q.to_f64_vec()
                .into_iter()
                .map(|v| f64::from(((v - z) * s) as f32))
                .collect(),
            Some(node),
        )
    };
    let ints: Option<Vec<i32>> = vals.iter().map(|&v| exact_multiple(v, scale)).collect();
    Some((Tensor::from_vec(vec![vals.len()], ints?), dq_node))
}

/// `(m, e)` with `x = m·2^e` and `m` odd, for finite nonzero `x`.
fn odd_expansion(x: f64) -> Option<(i128, i32)> {
    if !x.is_finite() || x == 0.0 {
        return None;
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    let tz = m.trailing_zeros();
    m >>= tz;
    e += tz as i32;
    let m = i128::from(m);
    Some((if x < 0.0 { -m } else { m }, e))
}

/// The int32 `q` with `q·scale == v` exactly, if there is one.
fn exact_multiple(v: f64, scale: f64) -> Option<i32> {
    if v == 0.0 {
        return Some(0);
    }
    let q = (v / scale).round();
    if !q.is_finite() || q == 0.0 || q.abs() > f64::from(i32::MAX) {
        return None;
    }
    let (mq, eq) = odd_expansion(q)?;
    let (ms, es) = odd_expansion(scale)?;
    let (mv, ev) = odd_expansion(v)?;
    // The product of odd mantissas is odd, so equal values have equal odd expansions.
    (mq * ms == mv && eq + es == ev).then_some(q as i32)
}

#[cfg(test)]
mod tests {
    use super::exact_multiple;

    #[test]
    fn bias_exactness_is_decided_on_binary_expansions() {
        assert_eq!(exact_multiple(0.75, 0.25), Some(3));
        assert_eq!(exact_multiple(-1.5, 0.125), Some(-12));
        assert_eq!(exact_multiple(0.0, 0.1), Some(0));
        // 0.1 is not a multiple of 0.25, and 0.3 is not exactly 3 · 0.1 in binary.
        assert_eq!(exact_multiple(0.1, 0.25), None);
        assert_eq!(exact_multiple(0.3, 0.1), None);
        assert_eq!(exact_multiple(1e12, 1e-3), None);
    }
}
