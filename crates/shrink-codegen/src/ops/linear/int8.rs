//! 8-bit integer matrix products (MatMulInteger, QLinearMatMul) with a constant B, as SIMD
//! integer dot products: the `vpdpbusd` tree on x86 with VNNI, the widening multiply-add form
//! elsewhere ([`dot_accumulate`]), 16 products per instruction instead of the loop nest's one.
//!
//! Both operands are brought to the form the instruction multiplies, unsigned A times signed B:
//! per call A's rows are copied to `au = a + ca` (`ca = 128` for int8 A, else 0: a bit flip),
//! zero-padded to whole 32-byte blocks, and each row's `Σ au` is kept; at compile time B's
//! columns become rows of `bs = b − cb` (`cb = 128` for uint8 B), zero-padded alike, and each
//! column's `Σ b` is kept. With `S = Σ au·bs` from the kernel, the exact integer identity
//!
//! ```text
//! Σ (a − za)(b − zb) = S + cb·Σau − ca·Σb − zb·(Σau − K·ca) − za·Σb + K·za·zb
//! ```
//!
//! gives the product with the zero points of either side (per tensor, per row of A, per column
//! of B). Every term is computed in wrapping i32, as the loop nest sums, so the results are the
//! same bits (the identity holds modulo 2^32); the op's epilogue (MatMulInteger's store,
//! QLinearMatMul's requantization) then runs unchanged.
//!
//! Loop order: output columns outer (a column's `K` weights stay in registers' reach while every
//! block of [`ROWS`] rows of A is dotted with them), `k` inner, two 16-byte vectors per step
//! into independent accumulators. Large layers split their columns across threads.
use super::matmul::{Dot, Operand, Plan};
use crate::CodegenOptions;
use crate::loops::ir::{BufId, NativeCx};
use crate::loops::native::{counted_loop, dot_accumulate};
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, strides_of};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};
use shrink_ir::{DType, Tensor};

/// Bytes of `k` per loop step: two vectors, two independent accumulators per row.
const STEP: usize = 32;

/// Rows of A dotted with one load of a weight vector.
const ROWS: usize = 4;

/// The kernel's static shape (`columns` the window of output columns it computes).
#[derive(Clone, Copy)]
struct Shape {
    rows: usize,
    k_pad: usize,
    n: usize,
    columns: (usize, usize),
}

/// The offsets `(ca, cb)` that bring A to unsigned and B to signed bytes, when the kernel takes
/// these operands: A and B 8-bit, B a constant shared by every batch, A's rows contiguous.
pub(super) fn accepts(
    plan: &Plan,
    a: &Operand,
    bm: &Operand,
    weight: Option<&Tensor>,
    dot: &dyn Dot,
) -> Option<(i32, i32)> {
    weight?;
    let offset = |dt: DType| match dt {
        DType::I8 => Some(128),
        DType::U8 => Some(0),
        _ => None,
    };
    let (ca, ub) = (offset(a.t.dtype)?, offset(bm.t.dtype)?);
    let batches: usize = plan.batch.iter().product();
    let (m, k, n) = (plan.m, plan.k, plan.n);
    let contiguous: Vec<usize> = strides_of(&plan.batch)
        .into_iter()
        .map(|s| s * m * k)
        .collect();
    let takes = dot.acc_ty() == Ty::I32
        && !bm.panels
        && bm.batch_strides.iter().all(|&s| s == 0)
        && a.inner == 1
        && a.outer == k
        && a.batch_strides == contiguous
        && batches * m * k * n != 0
        && k < 1 << 23;
    // uint8 B is shifted down by 128 (cb), int8 B is taken as is.
    takes.then_some((ca, 128 - ub))
}

/// Lowers the product on the int8 dot products when [`accepts`] takes it; false leaves it to
/// the loop nest (nothing emitted).
pub(super) fn try_lower(
    b: &mut Builder,
    options: &CodegenOptions,
    plan: &Plan,
    a: &Operand,
    bm: &Operand,
    weight: Option<&Tensor>,
    dot: &dyn Dot,
) -> bool {
    let (Some((ca, cb)), Some(weight)) = (accepts(plan, a, bm, weight, dot), weight) else {
        return false;
    };
    let batches: usize = plan.batch.iter().product();
    let (m, k, n) = (plan.m, plan.k, plan.n);
    let rows = batches * m;
    let k_pad = k.div_ceil(STEP) * STEP;
    let raw = weight.bytes();
    let b_at = |p: usize, j: usize| {
        let byte = raw[p * bm.outer + j * bm.inner];
        if cb == 0 {
            byte as i8 as i32
        } else {
            byte as i32
        }
    };
    let mut codes = vec![0u8; n * k_pad];
    let mut col_sums = Vec::with_capacity(n * 4);
    for j in 0..n {
        let mut sum = 0i32;
        for p in 0..k {
            let v = b_at(p, j);
            sum = sum.wrapping_add(v);
            codes[j * k_pad + p] = (v - cb) as i8 as u8;
        }
        col_sums.extend_from_slice(&sum.to_le_bytes());
    }
    b.note_form("int8");
    let bs = b.table(DType::I8, &[n * k_pad], codes);
    let sb = b.table(DType::I32, &[n], col_sums);
    let au = b.workspace(DType::U8, &[rows * k_pad]);
    let sau = b.workspace(DType::I32, &[rows]);
    let dots = b.workspace(DType::I32, &[rows * n]);
    shift_rows(b, a.t, &au, &sau, (rows, k, k_pad), ca != 0);
    let bufs = [au.buf, bs.buf, dots.buf];
    let parts = options.parallel_parts(rows * k * n, n);
    b.parallel(parts, |b, part| {
        let s = Shape {
            rows,
            k_pad,
            n,
            columns: (n * part / parts, n * (part + 1) / parts),
        };
        b.native(
            "int8 matrix product",
            &[&au, &bs, &dots],
            move |cx| emit(cx, s, bufs),
            |b| fallback(b, s, &au, &bs, &dots),
        );
    });
    let (ca, cb, kk) = (ca as i64, cb as i64, k as i64);
    let i32k = |v: i64| Expr::int(Ty::I32, v);
    b.nest(&plan.batch, |b, bidx| {
        let flat = linear(bidx, &strides_of(&plan.batch));
        b.for_(m, |b, i| {
            let r = b.let_(flat.clone().mul_k(m as i64).add(i.clone()));
            let sum_au = b.let_(b.load_raw(&sau, r.clone()));
            let za = dot.a_row(b, bidx, &i);
            let za = za.map(|z| b.let_(z));
            let row = b.let_(r.mul_k(n as i64));
            b.for_(n, |b, j| {
                let s = b.load_raw(&dots, row.clone().add(j.clone()));
                let sum_b = b.let_(b.load_raw(&sb, j.clone()));
                // Σ a·b (true values), then the zero points.
                let mut acc = s
                    .add(i32k(cb).mul(sum_au.clone()))
                    .sub(i32k(ca).mul(sum_b.clone()));
                let zb = dot.b_col(b, bidx, &j);
                if let Some(zb) = &zb {
                    let sum_a = sum_au.clone().sub(i32k(kk * ca));
                    acc = acc.sub(zb.clone().mul(sum_a));
                }
                if let Some(za) = &za {
                    acc = acc.sub(za.clone().mul(sum_b));
                    if let Some(zb) = &zb {
                        acc = acc.add(i32k(kk).mul(za.clone()).mul(zb.clone()));
                    }
                }
                dot.epilogue(b, bidx, &i, &j, acc);
            });
        });
    });
    true
}

/// `au[r][p] = a[r][p] + ca` (a flip of the sign bit for int8 A), zeros up to `k_pad`, and
/// `sau[r] = Σ_p au[r][p]`.
fn shift_rows(
    b: &mut Builder,
    a: &TensorRef,
    au: &TensorRef,
    sau: &TensorRef,
    (rows, k, k_pad): (usize, usize, usize),
    flip: bool,
) {
    b.for_(rows, |b, r| {
        let from = b.let_(r.clone().mul_k(k as i64));
        let to = b.let_(r.clone().mul_k(k_pad as i64));
        b.for_(k, |b, p| {
            let v = b.load_raw(a, from.clone().add(p.clone()));
            let u = if flip {
                v.xor(Expr::int(Ty::I8, -128)).bitcast(Ty::U8)
            } else {
                v
            };
            b.store_raw(au, to.clone().add(p), u);
        });
        b.for_(k_pad - k, |b, p| {
            b.store_raw(au, to.clone().add_k(k as i64).add(p), Expr::int(Ty::U8, 0));
        });
        let sum = b.mutable(Expr::int(Ty::I32, 0));
        b.for_(k, |b, p| {
            let v = b.load_raw(au, to.clone().add(p)).cast(Ty::I32);
            let next = b.get(sum).add(v);
            b.set(sum, next);
        });
        b.store_raw(sau, r, b.get(sum));
    });
}

/// The scalar form of [`emit`] for ISAs without 128-bit SIMD: the same wrapping i32 sums.
fn fallback(b: &mut Builder, s: Shape, au: &TensorRef, bs: &TensorRef, dots: &TensorRef) {
    let (j0, j1) = s.columns;
    b.for_(j1 - j0, |b, j| {
        let j = b.let_(j.add_k(j0 as i64));
        let w_row = b.let_(j.clone().mul_k(s.k_pad as i64));
        b.for_(s.rows, |b, r| {
            let a_row = b.let_(r.clone().mul_k(s.k_pad as i64));
            let acc = b.mutable(Expr::int(Ty::I32, 0));
            b.for_(s.k_pad, |b, p| {
                let x = b.load_raw(au, a_row.clone().add(p.clone())).cast(Ty::I32);
                let w = b.load_raw(bs, w_row.clone().add(p)).cast(Ty::I32);
                let next = b.get(acc).add(x.mul(w));
                b.set(acc, next);
            });
            let at = r.mul_k(s.n as i64).add(j.clone());
            b.store_raw(dots, at, b.get(acc));
        });
    });
}

/// `dots[r][j] = Σ_p au[r][p] · bs[j][p]` for the window's columns, in SIMD registers. Every
/// address is in range by construction: columns `< n`, rows `< rows`, `k` steps `< k_pad`,
/// exactly the extents the table and workspaces were made with.
fn emit(cx: &mut NativeCx, s: Shape, bufs: [BufId; 3]) {
    let [au, bs, dots] = bufs.map(|b| cx.bases[b.0 as usize]);
    let (vnni, ptr) = (cx.vnni, cx.pointer);
    let fb = &mut *cx.fb;
    let (j0, j1) = s.columns;
    let (full, rest) = (s.rows / ROWS, s.rows % ROWS);
    let row_bytes = (ROWS * s.k_pad) as i64;
    let out_rows = (ROWS * s.n * 4) as i64;
    counted_loop(fb, ptr, (j1 - j0) as i64, |fb, j| {
        let j = fb.ins().iadd_imm_s(j, j0 as i64);
        let w_off = fb.ins().imul_imm_s(j, s.k_pad as i64);
        let w = fb.ins().iadd(bs, w_off);
        let out_off = fb.ins().ishl_imm_s(j, 2);
        let out = fb.ins().iadd(dots, out_off);
        counted_loop(fb, ptr, full as i64, |fb, q| {
            let a_off = fb.ins().imul_imm_s(q, row_bytes);
            let a = fb.ins().iadd(au, a_off);
            let o_off = fb.ins().imul_imm_s(q, out_rows);
            let o = fb.ins().iadd(out, o_off);
            block(fb, s, ROWS, [w, a, o], ptr, vnni);
        });
        if rest > 0 {
            let a = fb.ins().iadd_imm_s(au, full as i64 * row_bytes);
            let o = fb.ins().iadd_imm_s(out, full as i64 * out_rows);
            block(fb, s, rest, [w, a, o], ptr, vnni);
        }
    });
}

/// `rows` rows of A at `a` dotted with the weight row at `w`, each sum stored at `out` plus a
/// row of `dots` per row.
fn block(
    fb: &mut FunctionBuilder,
    s: Shape,
    rows: usize,
    [w, a, out]: [Value; 3],
    ptr: cranelift_codegen::ir::Type,
    vnni: bool,
) {
    let flags = MemFlagsData::new().with_notrap();
    // The table is read-only data and the shifted rows are written before this loop: pure
    // loads, placed next to their use.
    let pure = flags.with_readonly().with_can_move();
    let zero = fb.ins().iconst(types::I32, 0);
    let zero = fb.ins().splat(types::I32X4, zero);
    let accs: Vec<Variable> = (0..2 * rows)
        .map(|_| {
            let v = fb.declare_var(types::I32X4);
            fb.def_var(v, zero);
            v
        })
        .collect();
    counted_loop(fb, ptr, (s.k_pad / STEP) as i64, |fb, g| {
        let off = fb.ins().ishl_imm_s(g, STEP.trailing_zeros() as i64);
        let wg = fb.ins().iadd(w, off);
        let ag = fb.ins().iadd(a, off);
        for h in 0..2 {
            let wv = fb.ins().load(types::I8X16, pure, wg, (16 * h) as i32);
            for r in 0..rows {
                let at = (r * s.k_pad + 16 * h) as i32;
                let xv = fb.ins().load(types::I8X16, pure, ag, at);
                let slot = accs[2 * r + h];
                let acc = fb.use_var(slot);
                let next = dot_accumulate(fb, wv, xv, acc, vnni);
                fb.def_var(slot, next);
            }
        }
    });
    for r in 0..rows {
        let (x, y) = (fb.use_var(accs[2 * r]), fb.use_var(accs[2 * r + 1]));
        let v = fb.ins().iadd(x, y);
        let mut sum = fb.ins().extractlane(v, 0);
        for lane in 1..4 {
            let e = fb.ins().extractlane(v, lane);
            sum = fb.ins().iadd(sum, e);
        }
        fb.ins().store(flags, sum, out, (r * s.n * 4) as i32);
    }
}

#[cfg(test)]
mod tests;
