//! The `Linear` family (MatMul, Gemm, MatMulInteger, QLinearMatMul) and the fused DenseAct, all
//! written with the one tiled dot-product loop of [`matmul`]; each op only says how elements
//! enter the sum (zero points) and what happens to a finished sum (its epilogue).
//!
//! f32 and f64 products run as SIMD register tiles ([`gemm`]), or over the nonzeros of a
//! mostly-zero constant weight ([`sparse`]), and sum in their element type, as ONNX runtimes do
//! (within the numerics contract's tolerance of the interpreter, which sums in f64); other float
//! types accumulate in f64 and round once to the output dtype; integer MatMul/Gemm wrap in the
//! element type; the quantized ops accumulate in wrapping i32 (with a constant 8-bit B as SIMD
//! integer dot products, [`int8`]) and requantize with the scale arithmetic rounded in the scale
//! dtype after each operation, then `round_half_even(acc * multiplier) + zero_point`, saturated.
mod gemm;
mod int8;
mod matmul;
mod sparse;
#[cfg(test)]
pub(crate) mod tests;

use super::elementwise::{unary_scalar, unary_supported};
use super::{LowerResult, NodeCtx};
use crate::loops::convert::{decode, encode};
use crate::loops::{Builder, Expr, TensorRef, Ty, broadcast_strides, linear};
pub(crate) use matmul::Dot;
use matmul::{Operand, ParamIndex, Plan, PlanIndex, fits, matmul_loops, panel_bytes};
use shrink_ir::DType;
use shrink_ir::op::{Fused, Linear, Unary};

pub fn lower(b: &mut Builder, op: &Linear, cx: &NodeCtx) -> LowerResult {
    if let Some(r) = super::ternary::try_lower(b, &shrink_ir::Op::Linear(op.clone()), cx) {
        return r;
    }
    match op {
        Linear::MatMul => {
            let (x, w) = (cx.input(0), cx.input(1));
            let plan = Plan::matmul(&x.dims, &w.dims)?;
            let dot = LinearDot::new(float_acc(x.dtype, "MatMul")?, &plan, cx.output(0))?;
            let (a, bm) = operands(&plan, x, w, false);
            loops_over(b, cx, 1, &plan, &a, bm, &dot);
            Ok(())
        }
        Linear::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => gemm(b, cx, *alpha as f64, *beta as f64, *trans_a, *trans_b),
        Linear::MatMulInteger => quantized(b, cx, false),
        Linear::QLinearMatMul => quantized(b, cx, true),
    }
}

/// The fused DenseAct op: activation(x · W + bias), exactly as MatMul → Add → activation (each
/// rounded to the dtype in turn).
pub fn lower_fused(b: &mut Builder, op: &Fused, cx: &NodeCtx) -> LowerResult {
    if let Some(r) = super::ternary::try_lower(b, &shrink_ir::Op::Fused(op.clone()), cx) {
        return r;
    }
    let Fused::DenseAct {
        trans_b,
        activation,
    } = op;
    if let Some(act) = activation
        && !unary_supported(act)
    {
        return Err(format!(
            "DenseAct activation {} has no native lowering yet",
            act.name()
        ));
    }
    let (x, w, y) = (cx.input(0), cx.input(1), cx.output(0));
    if w.rank() != 2 {
        return Err(format!("DenseAct weight {:?} must be 2-D", w.dims));
    }
    let w_dims = if *trans_b {
        vec![w.dims[1], w.dims[0]]
    } else {
        w.dims.clone()
    };
    let plan = Plan::matmul(&x.dims, &w_dims)?;
    let mut dot = LinearDot::new(float_acc(x.dtype, "DenseAct")?, &plan, y)?;
    let bias = match cx.opt_input(2) {
        None => None,
        Some(t) if t.rank() <= y.rank() && fits(&t.dims, &y.dims) => {
            Some((t, broadcast_strides(&t.dims, &y.dims)))
        }
        Some(t) => {
            return Err(format!(
                "DenseAct bias {:?} does not broadcast to {:?}",
                t.dims, y.dims
            ));
        }
    };
    dot.finish = Finish::Dense {
        bias,
        act: activation.as_ref(),
    };
    let (a, bm) = operands(&plan, x, w, *trans_b);
    loops_over(b, cx, 1, &plan, &a, bm, &dot);
    Ok(())
}

/// The accumulator type of a MatMul-like op on `dt`: f64 for floats, the element type for
/// integers (which wrap).
fn float_acc(dt: DType, what: &str) -> Result<Ty, String> {
    match dt {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => Ok(Ty::F64),
        DType::Bool | DType::String => Err(format!("{what} on {dt}")),
        _ if dt.is_narrow_float()
            || matches!(dt, DType::I4 | DType::U4 | DType::I2 | DType::U2) =>
        {
            Err(format!("{what} on {dt}"))
        }
        _ => Ok(Ty::compute(dt).expect("numeric")),
    }
}

/// Operands of a numpy matmul of row-major `x` and `w` (`w` stored `[N, K]` when `trans_w`).
fn operands<'a>(
    plan: &Plan,
    x: &'a TensorRef,
    w: &'a TensorRef,
    trans_w: bool,
) -> (Operand<'a>, Operand<'a>) {
    let (ar, br) = (plan.a_dims.len(), plan.b_dims.len());
    let a = Operand {
        t: x,
        batch_strides: plan.batch_strides(&plan.a_dims[..ar - 2], plan.m * plan.k),
        outer: plan.k,
        inner: 1,
        panels: false,
    };
    let (p_stride, j_stride) = if trans_w { (1, plan.k) } else { (plan.n, 1) };
    let bm = Operand {
        t: w,
        batch_strides: plan.batch_strides(&plan.b_dims[..br - 2], plan.k * plan.n),
        outer: p_stride,
        inner: j_stride,
        panels: false,
    };
    (a, bm)
}

/// A tensor read with broadcasting over the output's coordinates.
type Bcast<'a> = (&'a TensorRef, Vec<usize>);

/// What is done with a finished sum.
enum Finish<'a> {
    /// Round to the output dtype and store (MatMul, MatMulInteger).
    Store,
    Gemm {
        alpha: f64,
        beta: f64,
        c: Option<Bcast<'a>>,
    },
    Dense {
        bias: Option<Bcast<'a>>,
        act: Option<&'a Unary>,
    },
    QLinear {
        a_scale: (&'a TensorRef, ParamIndex),
        b_scale: (&'a TensorRef, ParamIndex),
        y_scale: Bcast<'a>,
        y_zp: Option<Bcast<'a>>,
    },
}

struct LinearDot<'a> {
    acc: Ty,
    plan: &'a Plan,
    out: &'a TensorRef,
    a_zp: Option<(&'a TensorRef, ParamIndex)>,
    b_zp: Option<(&'a TensorRef, ParamIndex)>,
    finish: Finish<'a>,
}

impl<'a> LinearDot<'a> {
    fn new(acc: Ty, plan: &'a Plan, out: &'a TensorRef) -> Result<LinearDot<'a>, String> {
        if out.dims != plan.out_dims {
            return Err(format!(
                "output {:?} is not the product's shape {:?}",
                out.dims, plan.out_dims
            ));
        }
        Ok(LinearDot {
            acc,
            plan,
            out,
            a_zp: None,
            b_zp: None,
            finish: Finish::Store,
        })
    }
}

/// `v` (compute type of `dt`) rounded to `dt`, as storing and reloading it would.
fn round_to(b: &mut Builder, dt: DType, v: Expr) -> Expr {
    if matches!(dt, DType::F16 | DType::BF16) {
        let raw = encode(b, dt, v, true);
        let raw = b.let_(raw);
        decode(b, dt, raw)
    } else {
        v
    }
}

impl Dot for LinearDot<'_> {
    fn acc_ty(&self) -> Ty {
        self.acc
    }
    fn a_row(&self, b: &mut Builder, bidx: &[Expr], i: &Expr) -> Option<Expr> {
        let (t, at) = self.a_zp.as_ref()?;
        Some(b.load(t, at.at(bidx, i)).cast(self.acc))
    }
    fn b_col(&self, b: &mut Builder, bidx: &[Expr], j: &Expr) -> Option<Expr> {
        let (t, at) = self.b_zp.as_ref()?;
        Some(b.load(t, at.at(bidx, j)).cast(self.acc))
    }
    fn epilogue(&self, b: &mut Builder, bidx: &[Expr], i: &Expr, j: &Expr, acc: Expr) {
        let out = self.out;
        let ty = out.compute_ty();
        let index = self.plan.out_index(bidx, i, j);
        let coords = || self.plan.out_coords(bidx, i, j);
        let v = match &self.finish {
            Finish::Store => acc.cast(ty),
            Finish::Gemm { alpha, beta, c } => {
                let c = c.as_ref().map(|(t, s)| b.load(t, linear(&coords(), s)));
                let unit = *alpha == 1.0 && (*beta == 1.0 || c.is_none());
                if (ty.is_int() || acc.ty == ty) && unit {
                    // Integer Gemm with unit coefficients stays exact (wrapping); a float sum
                    // already in the output type adds C with the one rounding the f64 form
                    // would make.
                    c.map_or(acc.clone(), |c| acc.clone().add(c))
                } else {
                    // Other coefficients scale through f64 (and truncate for integers).
                    let c = c.map_or(Expr::f64(0.0), |c| Expr::f64(*beta).mul(c.cast(Ty::F64)));
                    Expr::f64(*alpha).mul(acc.cast(Ty::F64)).add(c).cast(ty)
                }
            }
            Finish::Dense { bias, act } => {
                let mut v = acc.cast(ty);
                if let Some((t, s)) = bias {
                    v = round_to(b, out.dtype, v);
                    let bv = b.load(t, linear(&coords(), s));
                    v = v.add(bv);
                }
                if let Some(act) = act {
                    v = round_to(b, out.dtype, v);
                    v = unary_scalar(b, act, v);
                }
                v
            }
            Finish::QLinear {
                a_scale,
                b_scale,
                y_scale,
                y_zp,
            } => {
                let sdt = a_scale.0.dtype;
                let xs = b.load(a_scale.0, a_scale.1.at(bidx, i));
                let ws = b.load(b_scale.0, b_scale.1.at(bidx, j));
                let ys = b.load(y_scale.0, linear(&coords(), &y_scale.1));
                let prod = round_to(b, sdt, xs.mul(ws));
                let mult = round_to(b, sdt, prod.div(ys));
                let zp = match y_zp {
                    Some((t, s)) => b.load(t, linear(&coords(), s)).cast(Ty::F64),
                    None => Expr::f64(0.0),
                };
                requantize(acc, mult, zp, out)
            }
        };
        b.store(out, index, v);
    }
}

/// `saturate(round_half_even(acc * multiplier) + zero_point)` in f64 (the product is exact),
/// as `out`'s integer type; NaN becomes 0.
pub(crate) fn requantize(acc: Expr, mult: Expr, zp: Expr, out: &TensorRef) -> Expr {
    acc.cast(Ty::F64)
        .mul(mult.cast(Ty::F64))
        .nearest()
        .add(zp)
        .cast(out.compute_ty())
}

fn gemm(
    b: &mut Builder,
    cx: &NodeCtx,
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
) -> LowerResult {
    let (x, w, y) = (cx.input(0), cx.input(1), cx.output(0));
    let (&[ar, ac], &[br, bc]) = (&x.dims[..], &w.dims[..]) else {
        return Err(format!(
            "Gemm needs 2-D A and B, got {:?} and {:?}",
            x.dims, w.dims
        ));
    };
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(format!("Gemm inner dimensions differ: {k} vs {k2}"));
    }
    let plan = Plan::flat(m, k, n);
    let mut dot = LinearDot::new(float_acc(x.dtype, "Gemm")?, &plan, y)?;
    let c = match cx.opt_input(2) {
        None => None,
        Some(c) if c.rank() <= 2 && fits(&c.dims, &[m, n]) => {
            Some((c, broadcast_strides(&c.dims, &[m, n])))
        }
        Some(c) => {
            return Err(format!(
                "Gemm C of shape {:?} does not broadcast to [{m}, {n}]",
                c.dims
            ));
        }
    };
    dot.finish = Finish::Gemm { alpha, beta, c };
    let a = Operand {
        t: x,
        batch_strides: vec![],
        outer: if trans_a { 1 } else { ac },
        inner: if trans_a { ac } else { 1 },
        panels: false,
    };
    let bm = Operand {
        t: w,
        batch_strides: vec![],
        outer: if trans_b { 1 } else { bc },
        inner: if trans_b { bc } else { 1 },
        panels: false,
    };
    loops_over(b, cx, 1, &plan, &a, bm, &dot);
    Ok(())
}

/// A u8/i8 operand check.
fn check_q8(t: &TensorRef, what: &str) -> Result<(), String> {
    if matches!(t.dtype, DType::U8 | DType::I8) {
        Ok(())
    } else {
        Err(format!("{what} of type {}", t.dtype))
    }
}

/// A zero point of `of` (its dtype), laid out per row (A) or column (B).
fn zero_point<'a>(
    zp: Option<&'a TensorRef>,
    of: &TensorRef,
    promoted: &[usize],
    row_side: bool,
    plan: &Plan,
) -> Result<Option<(&'a TensorRef, ParamIndex)>, String> {
    let Some(zp) = zp else { return Ok(None) };
    if zp.dtype != of.dtype {
        return Err(format!(
            "zero point of type {} for a {} operand",
            zp.dtype, of.dtype
        ));
    }
    Ok(Some((
        zp,
        ParamIndex::new(&zp.dims, promoted, row_side, plan)?,
    )))
}

/// A y parameter of QLinearMatMul: broadcast over the output (scalar when one element).
fn y_param<'a>(p: &'a TensorRef, out: &[usize]) -> Result<Bcast<'a>, String> {
    let d: &[usize] = if p.numel() == 1 { &[] } else { &p.dims };
    if !fits(d, out) {
        return Err(format!(
            "y quantization parameter of shape {:?} does not fit the output {out:?}",
            p.dims
        ));
    }
    Ok((p, broadcast_strides(d, out)))
}

/// MatMulInteger (`qlinear` false: inputs a, b, a_zp?, b_zp?) or QLinearMatMul (a, a_scale,
/// a_zp?, b, b_scale, b_zp?, y_scale, y_zp?).
fn quantized(b: &mut Builder, cx: &NodeCtx, qlinear: bool) -> LowerResult {
    let (ai, bi) = if qlinear { (0, 3) } else { (0, 1) };
    let (x, w, y) = (cx.input(ai), cx.input(bi), cx.output(0));
    check_q8(x, "quantized matmul operand")?;
    check_q8(w, "quantized matmul operand")?;
    let plan = Plan::matmul(&x.dims, &w.dims)?;
    let mut dot = LinearDot::new(Ty::I32, &plan, y)?;
    let (a_zp, b_zp) = if qlinear {
        (cx.opt_input(2), cx.opt_input(5))
    } else {
        (cx.opt_input(2), cx.opt_input(3))
    };
    dot.a_zp = zero_point(a_zp, x, &plan.a_dims, true, &plan)?;
    dot.b_zp = zero_point(b_zp, w, &plan.b_dims, false, &plan)?;
    if qlinear {
        if !y.compute_ty().is_int() {
            return Err(format!("quantized output of type {}", y.dtype));
        }
        let (xs, ws, ys) = (cx.input(1), cx.input(4), cx.input(6));
        let sdt = ys.dtype;
        if xs.dtype != sdt || ws.dtype != sdt || !ys.compute_ty().is_float() {
            return Err("QLinearMatMul scales must be floats of one dtype".into());
        }
        let y_zp = match cx.opt_input(7) {
            Some(z) => Some(y_param(z, &plan.out_dims)?),
            None => None,
        };
        dot.finish = Finish::QLinear {
            a_scale: (xs, ParamIndex::new(&xs.dims, &plan.a_dims, true, &plan)?),
            b_scale: (ws, ParamIndex::new(&ws.dims, &plan.b_dims, false, &plan)?),
            y_scale: y_param(ys, &plan.out_dims)?,
            y_zp,
        };
    } else if y.dtype != DType::I32 {
        return Err(format!("MatMulInteger output of type {}", y.dtype));
    }
    let (a, bm) = operands(&plan, x, w, false);
    loops_over(b, cx, bi, &plan, &a, bm, &dot);
    Ok(())
}

/// `a [m, k] × bm [batch, k, n]` on the SIMD tiles (`a` typically a layer's constant filters,
/// `bm` per-call columns), `dot` consuming each sum as `(batch, row, column)`; false when the
/// tiles do not take these operands.
pub(crate) fn tiled_product(
    b: &mut Builder,
    options: &crate::CodegenOptions,
    a: &TensorRef,
    bm: &TensorRef,
    dot: &dyn Dot,
) -> Result<bool, String> {
    let plan = Plan::matmul(&a.dims, &bm.dims)?;
    let (a_op, b_op) = operands(&plan, a, bm, false);
    Ok(gemm::try_lower(b, options, &plan, &a_op, &b_op, None, dot))
}

/// `a [m, k] × wᵀ` on the int8 dot products, `w` a constant `[n, k]` 8-bit weight (`weight` its
/// values), `dot` consuming each sum as `(row, column)`; `before` is emitted first (what writes
/// `a`). False when the kernel does not take these operands: then nothing was emitted.
pub(crate) fn int8_product(
    b: &mut Builder,
    options: &crate::CodegenOptions,
    (a, w): (&TensorRef, &TensorRef),
    weight: &shrink_ir::Tensor,
    dot: &dyn Dot,
    before: impl FnOnce(&mut Builder),
) -> bool {
    if a.rank() != 2 || w.rank() != 2 || a.dims[1] != w.dims[1] {
        return false;
    }
    let plan = Plan::flat(a.dims[0], a.dims[1], w.dims[0]);
    let (a_op, b_op) = operands(&plan, a, w, true);
    if int8::accepts(&plan, &a_op, &b_op, Some(weight), dot).is_none() {
        return false;
    }
    before(b);
    int8::try_lower(b, options, &plan, &a_op, &b_op, Some(weight), dot)
}

/// [`matmul_loops`], with a constant, unbatched B (input `b_input`: the layer's weight) first
/// re-laid out in column panels so each tile's `k` loop reads it sequentially.
fn loops_over(
    b: &mut Builder,
    cx: &NodeCtx,
    b_input: usize,
    plan: &Plan,
    a: &Operand,
    bm: Operand,
    dot: &dyn Dot,
) {
    let weight = cx.const_input(b_input);
    if int8::try_lower(b, cx.options, plan, a, &bm, weight, dot) {
        return;
    }
    // A mostly-zero constant f32 weight: its nonzeros only, when predicted faster.
    if let Some(w) = weight
        && sparse::try_lower(b, cx.options, plan, a, &bm, w, dot)
    {
        return;
    }
    if gemm::try_lower(b, cx.options, plan, a, &bm, weight, dot) {
        return;
    }
    let whole_bytes = !matches!(
        bm.t.dtype,
        DType::I4 | DType::U4 | DType::I2 | DType::U2 | DType::F4E2M1 | DType::String
    );
    let weight = cx
        .const_input(b_input)
        .filter(|_| whole_bytes && bm.batch_strides.iter().all(|&s| s == 0));
    let Some(weight) = weight else {
        matmul_loops(b, plan, a, &bm, dot);
        return;
    };
    let size = bm.t.dtype.size();
    let bytes = panel_bytes(weight.bytes(), size, plan, bm.outer, bm.inner);
    let table = b.table(bm.t.dtype, &[plan.k * plan.n], bytes);
    let panels = Operand {
        t: &table,
        // All zero: every batch reads the one weight.
        batch_strides: bm.batch_strides.clone(),
        outer: 0,
        inner: 0,
        panels: true,
    };
    matmul_loops(b, plan, a, &panels, dot);
}
