//! `packed`: the ternary weights 2 bits each in read-only data, dotted with integer activations
//! by SIMD integer dot products (the VNNI form on x86 where the CPU or target has it).
//!
//! Weights: each output row is `blocks` 16-byte blocks of 64 weights; byte `i`, 2-bit field `j`
//! of block `b` holds `u = w + 1 ∈ {0, 1, 2}` of column `64·b + 16·j + i` (the no-shift layout of
//! CRANELIFT_NOTES.md: `q & (3 << 2j)` is `4^j·u` in place, fed to the dot product as is, its
//! accumulator shifted right by `2j` once at the end). Rows are padded with zero codes to whole
//! groups of [`GROUP`] blocks (256 weights); padded activations are zero, so padding adds
//! nothing. The activations' limbs are stored group by group, field-major inside a group: the
//! 16 digits of (block `b`, field `j`) are at `256·(b / 4) + 64·j + 16·(b % 4)`, so the digits
//! a field needs across 1, 2 or 4 consecutive blocks are contiguous (one load per 128, 256 or
//! 512 bits of vector).
//!
//! Activations: per call, each batch row of `x` is put in fixed point on its own absmax `a`:
//! `X = round(x · Q / a)`, split into `limbs` balanced int8 digits (`X = Σ_p 256^p · d_p`), with
//! `Q = 127` for one limb (`--activations int8`, BitNet's absmax quantizer) and `Q = 8 355 711`
//! (24 bits) for three (the faithful default). Each limb is one int8 dot product against the
//! same decoded weights, so a weight is decoded once per block of batch rows and limbs. The sums
//! are exact integers (`dot(u, d) − Σd = dot(w, d)`), combined in i64 and scaled by `a / Q` in
//! f64: the only error is the rounding of `x`, at most `a / 2Q` per activation, so an output row
//! is within `|scale| · nonzeros · a / 2Q` of the exact sum (`a · 2⁻²⁴ · nonzeros` for three
//! limbs). A batch row with an infinite or NaN activation has no fixed point: its sums are
//! recomputed in f64 from the weights, with the graph's NaN and infinity results.
//!
//! Activations the graph itself quantizes ([`super::grid`]: BitNet's absmax quantizer, QDQ) run
//! with one limb whose digits are the graph's own integers: `round(y / step)` for a compile-time
//! step, `round(y · K / a)` on the row's absmax for BitNet's per-row scale (`K` the quantizer's
//! full scale, 127), with the step `step` or `a / K`. The grid module proves those digits are
//! exactly the graph's `q` (up to a common factor the step absorbs); the kernel still checks
//! every digit is within [`super::grid::TOLERANCE`] of its unrounded value and in `[-128, 127]`,
//! and recomputes a row that fails (a row the epsilon clamp rescaled) in f64 like a non-finite
//! one. So the outputs are `step · Σ w q`, within `2 · 8 · 2⁻²⁴ · Σ |w y|` of the graph's f64
//! sum of its own f32 activations `y`.
//!
//! Integer sums do not depend on their order, so the x86 microkernel with wider vectors
//! ([`x86`], where the target has AVX-512 or AVX-VNNI), the 128-bit SIMD loop ([`emit_dots`])
//! and the scalar fallback (ISAs without 128-bit SIMD) give bit-identical outputs.
use super::{Layer, finish_from_sums};
use crate::loops::ir::{BufId, NativeCx};
pub(super) use crate::loops::native::counted_loop;
use crate::loops::native::dot_accumulate;
use crate::loops::{Builder, Expr, TensorRef, Ty};
use crate::ops::LowerResult;
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};
use shrink_ir::{DType, TernaryWeights};

/// Weights per 16-byte code block.
const BLOCK: usize = 64;

/// Blocks per group: rows are padded to whole groups, and the loop body covers one group.
pub(super) const GROUP: usize = 4;

/// Most independent accumulators per field position across a group's blocks.
const MAX_UNROLL: usize = 2;

/// Batch rows that share one decode of a row's weights.
const BATCH_BLOCK: usize = 4;

/// Live i32x4 accumulators the loop aims for: enough independent dot products to cover their
/// latency, few enough to leave registers for the codes, masks and operands (16 vector
/// registers on x86-64).
const ACCUMULATORS: usize = 12;

/// Most columns: keeps every per-lane i32 sum below 2³¹ (a lane adds at most `2¹⁴` per block).
pub(super) const MAX_COLS: usize = 1 << 20;

/// The largest fixed-point magnitude for `limbs` balanced int8 digits, each in `[-127, 127]`.
pub(super) fn max_fixed(limbs: usize) -> i64 {
    (0..limbs).map(|p| 127i64 << (8 * p)).sum()
}

/// Static shape of one packed layer, as the native loop sees it.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub(super) rows: usize,
    pub(super) blocks: usize,
    pub(super) batch: usize,
    pub(super) limbs: usize,
}

impl Shape {
    pub(super) fn padded(self) -> usize {
        self.blocks * BLOCK
    }
}

/// The buffers of the dot-product loop: it reads the codes and digits and writes
/// `dots[(r·batch + n)·limbs + p] = Σ_c u[r][c] · d_p[n][c]`.
#[derive(Clone, Copy)]
struct Bufs {
    codes: BufId,
    digits: BufId,
    dots: BufId,
}

/// Where digit `c` (a loop-language index) of a limb row sits (see the module doc).
pub(super) fn digit_offset_expr(c: &Expr) -> Expr {
    let k = |v: i64| Expr::idx(v);
    let block = c.clone().div(k(BLOCK as i64));
    c.clone()
        .div(k(256))
        .mul_k(256)
        .add(c.clone().rem(k(64)).div(k(16)).mul_k(64))
        .add(block.rem(k(GROUP as i64)).mul_k(16))
        .add(c.clone().rem(k(16)))
}

/// `threads`: the dot products of a large layer are split into that many parts over its output
/// rows ([`Builder::parallel`]); each part computes whole rows exactly as the unsplit loop does.
pub(super) fn packed(b: &mut Builder, l: &Layer, limbs: usize, threads: usize) -> LowerResult {
    let w = l.w;
    if w.cols > MAX_COLS {
        return Err(format!(
            "strategy 'packed' takes at most {MAX_COLS} columns; this layer has {}",
            w.cols
        ));
    }
    b.note_strategy("packed");
    b.note_activations(match (l.grid, limbs) {
        (Some(_), 1) => "int8-graph",
        (None, 1) => "int8-flag",
        _ => "f32",
    });
    let batch = l.x.numel() / w.cols.max(1);
    let blocks = w.cols.div_ceil(BLOCK * GROUP) * GROUP;
    let shape = Shape {
        rows: w.rows,
        blocks,
        batch,
        limbs,
    };
    let codes = b.table(DType::U8, &[w.rows * blocks * 16], block_codes(w, blocks));
    let digits = b.workspace(DType::I8, &[batch * limbs * shape.padded()]);
    let digit_sums = b.workspace(DType::I32, &[batch * limbs]);
    let steps = b.workspace(DType::F64, &[batch]);
    let dots = b.workspace(DType::I32, &[w.rows * batch * limbs]);
    let sums = b.workspace(DType::F64, &[w.rows, batch]);
    quantize(b, l, shape, &digits, &digit_sums, &steps);
    let bufs = Bufs {
        codes: codes.buf,
        digits: digits.buf,
        dots: dots.buf,
    };
    let macs = w.rows * w.cols * batch;
    let parts = crate::options::parallel_parts(threads, macs, w.rows);
    b.parallel(parts, |b, part| {
        // Rows [r0, r1): their codes and dots start r0 rows in; the digits are shared.
        let (r0, r1) = (w.rows * part / parts, w.rows * (part + 1) / parts);
        let s = Shape {
            rows: r1 - r0,
            ..shape
        };
        let offsets = [r0 * blocks * 16, 0, r0 * batch * limbs * 4];
        b.native(
            "packed ternary dot products",
            &[&codes, &digits, &dots],
            move |cx| {
                let ids = [bufs.codes, bufs.digits, bufs.dots];
                let bases: [Value; 3] = std::array::from_fn(|i| {
                    let base = cx.bases[ids[i].0 as usize];
                    cx.fb.ins().iadd_imm_s(base, offsets[i] as i64)
                });
                // Wider vectors than Cranelift's, as machine code of their own, where the
                // target has them; else the 128-bit loop.
                if let Some(code) = cx.wide.and_then(|w| x86::dots(w, s))
                    && cx.call_machine(code, &bases)
                {
                    return;
                }
                emit_dots(cx, s, bases)
            },
            |b| scalar_dots(b, s, r0, &codes, &digits, &dots),
        );
    });
    combine_limbs(b, shape, &dots, &digit_sums, &steps, &sums);
    exact_nonfinite_rows(b, l, shape, &codes, &steps, &sums);
    finish_from_sums(b, l, &sums, batch);
    Ok(())
}

/// The codes of `w` in the block layout of the module doc.
fn block_codes(w: &TernaryWeights, blocks: usize) -> Vec<u8> {
    let mut out = vec![0u8; w.rows * blocks * 16];
    for r in 0..w.rows {
        for c in 0..w.cols {
            let u = (w.sign(r, c) + 1) as u8;
            let (block, j, i) = (c / BLOCK, (c % BLOCK) / 16, c % 16);
            out[(r * blocks + block) * 16 + i] |= u << (2 * j);
        }
    }
    out
}

/// The code index and field shift of column `c` (a loop-language index) in row `r`'s blocks.
fn code_at(blocks: usize, r: &Expr, c: &Expr) -> (Expr, Expr) {
    let block = c.clone().div(Expr::idx(BLOCK as i64));
    let byte = r
        .clone()
        .mul_k(blocks as i64)
        .add(block)
        .mul_k(16)
        .add(c.clone().rem(Expr::idx(16)));
    let shift = c
        .clone()
        .rem(Expr::idx(BLOCK as i64))
        .div(Expr::idx(16))
        .mul_k(2);
    (byte, shift)
}

/// The fallback of [`emit_dots`]: the same integer sums, one weight at a time.
/// Rows `[r0, r0 + s.rows)`.
fn scalar_dots(
    b: &mut Builder,
    s: Shape,
    r0: usize,
    codes: &TensorRef,
    digits: &TensorRef,
    dots: &TensorRef,
) {
    let padded = s.padded();
    b.for_(s.batch, |b, n| {
        b.for_(s.rows, |b, r| {
            let r = b.let_(r.add_k(r0 as i64));
            let accs: Vec<_> = (0..s.limbs)
                .map(|_| b.mutable(Expr::int(Ty::I32, 0)))
                .collect();
            b.for_(padded, |b, c| {
                let (byte, shift) = code_at(s.blocks, &r, &c);
                let code = b.load_raw(codes, byte).cast(Ty::I64);
                let u = b.let_(code.shr(shift).and(Expr::idx(3)).cast(Ty::I32));
                let at = b.let_(
                    n.clone()
                        .mul_k((s.limbs * padded) as i64)
                        .add(digit_offset_expr(&c)),
                );
                for (p, &acc) in accs.iter().enumerate() {
                    let d = b.load_raw(digits, at.clone().add_k((p * padded) as i64));
                    let next = b.get(acc).add(u.clone().mul(d.cast(Ty::I32)));
                    b.set(acc, next);
                }
            });
            let at = b.let_(r.mul_k(s.batch as i64).add(n.clone()).mul_k(s.limbs as i64));
            for (p, &acc) in accs.iter().enumerate() {
                b.store_raw(dots, at.clone().add_k(p as i64), b.get(acc));
            }
        });
    });
}

/// `sums[r][n] = step_n · Σ_p 256^p · (dots[r][n][p] − Σ_c d_p[n][c])`: `u = w + 1`, so
/// subtracting the digit sums turns `Σ u·d` into `Σ w·d`; exact in i64, one f64 rounding.
fn combine_limbs(
    b: &mut Builder,
    s: Shape,
    dots: &TensorRef,
    digit_sums: &TensorRef,
    steps: &TensorRef,
    sums: &TensorRef,
) {
    let limbs = s.limbs as i64;
    b.for_(s.batch, |b, n| {
        let step = b.let_(b.load_raw(steps, n.clone()));
        let subtract: Vec<Expr> = (0..limbs)
            .map(|p| {
                let v = b.load_raw(digit_sums, n.clone().mul_k(limbs).add_k(p));
                b.let_(v.cast(Ty::I64))
            })
            .collect();
        b.for_(s.rows, |b, r| {
            let at = b.let_(r.clone().mul_k(s.batch as i64).add(n.clone()));
            let mut total = Expr::idx(0);
            for (p, sub) in subtract.iter().enumerate() {
                let d = b.load_raw(dots, at.clone().mul_k(limbs).add_k(p as i64));
                let dot = d.cast(Ty::I64).sub(sub.clone());
                total = total.add(dot.shl(Expr::idx(8 * p as i64)));
            }
            b.store_raw(sums, at, total.cast(Ty::F64).mul(step.clone()));
        });
    });
}

/// Batch rows whose step is NaN (an infinite or NaN activation, or a row off the graph's int8
/// grid) get their sums again in f64, straight from the activations, so they carry the graph's
/// NaN and infinity results.
fn exact_nonfinite_rows(
    b: &mut Builder,
    l: &Layer,
    s: Shape,
    codes: &TensorRef,
    steps: &TensorRef,
    sums: &TensorRef,
) {
    let cols = l.w.cols;
    b.for_(s.batch, |b, n| {
        let step = b.let_(b.load_raw(steps, n.clone()));
        b.if_(step.clone().ne(step), |b| {
            b.for_(s.rows, |b, r| {
                let acc = b.mutable(Expr::f64(0.0));
                b.for_(cols, |b, c| {
                    let (byte, shift) = code_at(s.blocks, &r, &c);
                    let code = b.load_raw(codes, byte).cast(Ty::I64);
                    let w = code.shr(shift).and(Expr::idx(3)).add_k(-1).cast(Ty::F64);
                    let x = b.load(l.x, n.clone().mul_k(cols as i64).add(c));
                    let next = b.get(acc).add(x.cast(Ty::F64).mul(w));
                    b.set(acc, next);
                });
                let at = r.mul_k(s.batch as i64).add(n.clone());
                b.store_raw(sums, at, b.get(acc));
            });
        });
    });
}

/// How one batch block keeps its accumulators.
#[derive(Clone, Copy)]
struct Plan {
    /// Batch rows in the block.
    rows: usize,
    /// Accumulators per (batch row, limb) across the four fields: 4 keeps the fields' `4^j`
    /// scales apart (no shifts in the loop); 2 or 1 shift each field down first.
    fields: usize,
    /// Accumulator sets the group's blocks rotate through (block `t` uses set `t % unroll`).
    unroll: usize,
}

impl Plan {
    fn of(rows: usize, limbs: usize) -> Plan {
        let per = rows * limbs;
        let fields = [4, 2, 1]
            .into_iter()
            .find(|f| per * f <= ACCUMULATORS)
            .unwrap_or(1);
        let unroll = if per * fields * MAX_UNROLL <= ACCUMULATORS.min(8) {
            MAX_UNROLL
        } else {
            1
        };
        Plan {
            rows,
            fields,
            unroll,
        }
    }
    fn scaled(self) -> bool {
        self.fields == 4
    }
    fn accumulators(self, limbs: usize) -> usize {
        self.rows * limbs * self.fields * self.unroll
    }
    /// The accumulator of (batch row `k`, limb `p`, field `j`, block `t` of the group).
    fn slot(self, limbs: usize, k: usize, p: usize, j: usize, t: usize) -> usize {
        ((k * limbs + p) * self.unroll + t % self.unroll) * self.fields + j % self.fields
    }
}

/// `dots[r][n][p] = Σ_c u[r][c] · d_p[n][c]` in SIMD registers, one group of blocks per loop
/// iteration. Every address is in range by construction: rows < `rows`, groups < `blocks / 4`,
/// batch rows < `batch`, and the table and workspaces have exactly those extents.
/// `bases`: the codes, digits and dots of the first row `s` covers.
fn emit_dots(cx: &mut NativeCx, s: Shape, [codes, digits, dots]: [Value; 3]) {
    let vnni = cx.vnni;
    let ptr = cx.pointer;
    let fb = &mut *cx.fb;
    let flags = MemFlagsData::new().with_notrap();
    // The codes are read-only data; the digits are written before this loop and not after it,
    // so to the loop they are read-only too. Pure loads are placed next to their use (else they
    // stay in program order, all live at once, and spill).
    let pure = flags.with_readonly().with_can_move();
    let row_bytes = (s.blocks * 16) as i64;
    let padded = s.padded();
    let groups = (s.blocks / GROUP) as i64;
    counted_loop(fb, ptr, s.rows as i64, |fb, r| {
        let row_off = fb.ins().imul_imm_s(r, row_bytes);
        let row_codes = fb.ins().iadd(codes, row_off);
        for n0 in (0..s.batch).step_by(BATCH_BLOCK) {
            let plan = Plan::of(BATCH_BLOCK.min(s.batch - n0), s.limbs);
            let vzero = fb.ins().iconst(types::I32, 0);
            let vzero = fb.ins().splat(types::I32X4, vzero);
            let accs: Vec<Variable> = (0..plan.accumulators(s.limbs))
                .map(|_| {
                    let v = fb.declare_var(types::I32X4);
                    fb.def_var(v, vzero);
                    v
                })
                .collect();
            let masks: Vec<Value> = (0..4)
                .map(|j| {
                    let m = if plan.scaled() { 3u8 << (2 * j) } else { 3 };
                    let m = fb.ins().iconst(types::I8, m as i64);
                    fb.ins().splat(types::I8X16, m)
                })
                .collect();
            counted_loop(fb, ptr, groups, |fb, g| {
                let code_off = fb.ins().ishl_imm_s(g, 6);
                let at_codes = fb.ins().iadd(row_codes, code_off);
                let digit_off = fb.ins().ishl_imm_s(g, 8);
                let at_digits = fb.ins().iadd(digits, digit_off);
                for t in 0..GROUP {
                    let q = fb.ins().load(types::I8X16, pure, at_codes, (16 * t) as i32);
                    for (j, &mask) in masks.iter().enumerate() {
                        let field = field_of(fb, q, j, mask, plan.scaled());
                        for k in 0..plan.rows {
                            for p in 0..s.limbs {
                                let off = ((n0 + k) * s.limbs + p) * padded + 64 * j + 16 * t;
                                let x = fb.ins().load(types::I8X16, pure, at_digits, off as i32);
                                let slot = accs[plan.slot(s.limbs, k, p, j, t)];
                                let acc = fb.use_var(slot);
                                let next = dot_accumulate(fb, x, field, acc, vnni);
                                fb.def_var(slot, next);
                            }
                        }
                    }
                }
            });
            let out_row = fb.ins().imul_imm_s(r, (s.batch * s.limbs * 4) as i64);
            let out_row = fb.ins().iadd(dots, out_row);
            for k in 0..plan.rows {
                for p in 0..s.limbs {
                    let mut v: Option<Value> = None;
                    for t in 0..plan.unroll {
                        for j in 0..plan.fields {
                            let mut a = fb.use_var(accs[plan.slot(s.limbs, k, p, j, t)]);
                            if plan.scaled() && j > 0 {
                                // Every term of field j is a multiple of 4^j: the shift is exact.
                                a = fb.ins().sshr_imm_s(a, 2 * j as i64);
                            }
                            v = Some(v.map_or(a, |acc| fb.ins().iadd(acc, a)));
                        }
                    }
                    let v = v.expect("at least one accumulator");
                    let mut sum = fb.ins().extractlane(v, 0);
                    for lane in 1..4 {
                        let e = fb.ins().extractlane(v, lane);
                        sum = fb.ins().iadd(sum, e);
                    }
                    let off = (((n0 + k) * s.limbs + p) * 4) as i32;
                    fb.ins().store(flags, sum, out_row, off);
                }
            }
        }
    });
}

/// Field `j` of the code bytes `q`: in place (`4^j·u`, `mask = 3 << 2j`) when `scaled`, else
/// shifted down to `u` (`mask = 3`). x86 has no byte shifts: shift 16-bit lanes, then mask off
/// the bits that crossed from the neighbouring byte.
fn field_of(fb: &mut FunctionBuilder, q: Value, j: usize, mask: Value, scaled: bool) -> Value {
    if scaled || j == 0 {
        return fb.ins().band(q, mask);
    }
    let le = MemFlagsData::new().with_endianness(Endianness::Little);
    let wide = fb.ins().bitcast(types::I16X8, le, q);
    let wide = fb.ins().ushr_imm_s(wide, 2 * j as i64);
    let bytes = fb.ins().bitcast(types::I8X16, le, wide);
    fb.ins().band(bytes, mask)
}

mod quantize;
pub(super) use quantize::quantize;
#[cfg(test)]
mod tests;
mod x86;
