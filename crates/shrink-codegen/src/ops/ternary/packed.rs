//! `packed`: the ternary weights 2 bits each in read-only data, decoded in the kernel.
//!
//! Layout: each output row's codes start on a byte (`groups = ⌈cols/4⌉` bytes per row, four
//! 2-bit codes per byte, `0b01` = +1, `0b11` = −1, `0b00` = 0, low bits first), and a 256-byte
//! table maps each 4-bit half of a code byte to the f64 pair of weights it stands for. The
//! activations are first widened to f64 and padded with zeros to whole groups (workspace), so
//! the hand-scheduled loop ([`emit_dots`]) per code byte does two table loads and, for each batch
//! row, two f64x2 loads, multiplies and adds: a weight is decoded once per block of up to
//! [`BATCH_BLOCK`] batch rows. Multiplying by ±1 or 0 is exact, and the sum is in f64 as in the
//! interpreter (only its association differs); a zero weight times an infinite activation is
//! NaN, as in the graph's MatMul.
//!
//! On an ISA without 128-bit SIMD the same sums come from a loop-language fallback.
use super::{Layer, finish_from_sums};
use crate::loops::ir::{BufId, NativeCx};
use crate::loops::{Builder, Expr, Ty};
use crate::ops::LowerResult;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, types};
use shrink_ir::{DType, TernaryWeights};

/// Batch rows that share one decode of a row's weights (two f64x2 accumulators each: eight
/// live vectors, well inside the sixteen registers of the smallest ISA).
const BATCH_BLOCK: usize = 4;

/// Code bytes per loop iteration at most (fewer batch rows get more groups per iteration, so
/// there are always about eight independent accumulators to hide the add latency). Rows are
/// padded with zero codes to a multiple of it.
const UNROLL: usize = 4;

/// Static shape of one packed layer, as the native loop sees it.
#[derive(Clone, Copy)]
struct Shape {
    rows: usize,
    groups: usize,
    padded: usize,
    batch: usize,
}

pub(super) fn packed(b: &mut Builder, l: &Layer) -> LowerResult {
    let w = l.w;
    b.note_strategy("packed");
    let batch = l.x.numel() / w.cols.max(1);
    let (rows, cols) = (w.rows, w.cols);
    let groups = cols.div_ceil(4).div_ceil(UNROLL) * UNROLL;
    let padded = groups * 4;
    let shape = Shape {
        rows,
        groups,
        padded,
        batch,
    };
    let codes = b.table(DType::U8, &[rows * groups], row_aligned_codes(w, groups));
    let pairs = b.table(DType::F64, &[32], pair_table());
    let xs = b.workspace(DType::F64, &[batch, padded]);
    let sums = b.workspace(DType::F64, &[rows, batch]);
    let (cols_k, padded_k, batch_k) = (cols as i64, padded as i64, batch as i64);
    b.for_(batch, |b, n| {
        let from = b.let_(n.clone().mul_k(cols_k));
        let to = b.let_(n.mul_k(padded_k));
        b.for_(cols, |b, c| {
            let v = b.load(l.x, from.clone().add(c.clone()));
            b.store(&xs, to.clone().add(c), v.cast(Ty::F64));
        });
        if padded > cols {
            b.for_(padded - cols, |b, c| {
                b.store(&xs, to.clone().add(c).add_k(cols_k), Expr::f64(0.0));
            });
        }
    });
    let bufs = [codes.buf, pairs.buf, xs.buf, sums.buf];
    b.native(
        "packed ternary dot products",
        &[&codes, &pairs, &xs, &sums],
        move |cx| emit_dots(cx, shape, bufs),
        |b| {
            // The same sums, one weight at a time.
            b.for_(batch, |b, n| {
                b.for_(rows, |b, r| {
                    let acc = b.mutable(Expr::f64(0.0));
                    b.for_(groups, |b, g| {
                        let byte = b.let_(
                            b.load_raw(&codes, r.clone().mul_k(groups as i64).add(g.clone()))
                                .cast(Ty::I64),
                        );
                        for k in 0..4i64 {
                            let nibble =
                                byte.clone().shr(Expr::idx(4 * (k / 2))).and(Expr::idx(15));
                            let wv = b.load_raw(&pairs, nibble.mul_k(2).add_k(k % 2));
                            let xi = n.clone().mul_k(padded_k).add(g.clone().mul_k(4)).add_k(k);
                            let xv = b.load_raw(&xs, xi);
                            let next = b.get(acc).add(xv.mul(wv));
                            b.set(acc, next);
                        }
                    });
                    let total = b.get(acc);
                    b.store_raw(&sums, r.mul_k(batch_k).add(n.clone()), total);
                });
            });
        },
    );
    finish_from_sums(b, l, &sums, batch);
    Ok(())
}

/// The codes of `w` with every row starting on a byte.
fn row_aligned_codes(w: &TernaryWeights, groups: usize) -> Vec<u8> {
    let mut out = vec![0u8; w.rows * groups];
    for r in 0..w.rows {
        for c in 0..w.cols {
            // The weights' own codes (same encoding), moved to a byte-aligned row.
            let k = r * w.cols + c;
            let code = (w.signs[k / 4] >> ((k % 4) * 2)) & 3;
            out[r * groups + c / 4] |= code << ((c % 4) * 2);
        }
    }
    out
}

/// For each 4-bit half of a code byte, the f64 weights of its two codes (little-endian bytes).
fn pair_table() -> Vec<u8> {
    let weight = |code: u8| match code {
        0b01 => 1.0f64,
        0b11 => -1.0,
        _ => 0.0,
    };
    (0u8..16)
        .flat_map(|e| [weight(e & 3), weight(e >> 2)])
        .flat_map(f64::to_le_bytes)
        .collect()
}

/// `sums[n][r] = Σ_c xs[n][c] · w[r][c]` for every row and batch row, in f64x2 lanes. Every
/// address is an in-range offset by construction: rows < `rows`, groups < `groups`, batch rows
/// < `batch`, and the tables and workspaces have exactly those extents.
fn emit_dots(cx: &mut NativeCx, s: Shape, bufs: [BufId; 4]) {
    let [codes, pairs, xs, sums] = bufs.map(|b| cx.bases[b.0 as usize]);
    let fb = &mut *cx.fb;
    let ptr = cx.pointer;
    let flags = MemFlagsData::new().with_notrap();
    let table = flags.with_readonly();
    let r_var = fb.declare_var(ptr);
    let zero = fb.ins().iconst(ptr, 0);
    fb.def_var(r_var, zero);
    let (r_head, done) = (fb.create_block(), fb.create_block());
    fb.ins().jump(r_head, &[]);
    fb.switch_to_block(r_head);
    let r = fb.use_var(r_var);
    let row_codes = fb.ins().imul_imm_s(r, s.groups as i64);
    let row_codes = fb.ins().iadd(codes, row_codes);
    for n0 in (0..s.batch).step_by(BATCH_BLOCK) {
        let nb = BATCH_BLOCK.min(s.batch - n0);
        let unroll = (BATCH_BLOCK / nb).min(UNROLL);
        let fzero = fb.ins().f64const(0.0);
        let vzero = fb.ins().splat(types::F64X2, fzero);
        // Accumulator (batch row k, unrolled group u, half h) at index (k·unroll + u)·2 + h.
        let accs: Vec<_> = (0..2 * nb * unroll)
            .map(|_| {
                let v = fb.declare_var(types::F64X2);
                fb.def_var(v, vzero);
                v
            })
            .collect();
        let g_var = fb.declare_var(ptr);
        let gz = fb.ins().iconst(ptr, 0);
        fb.def_var(g_var, gz);
        let (g_head, g_exit) = (fb.create_block(), fb.create_block());
        fb.ins().jump(g_head, &[]);
        fb.switch_to_block(g_head);
        let g = fb.use_var(g_var);
        let at = fb.ins().iadd(row_codes, g);
        let group_bytes = fb.ins().ishl_imm_s(g, 5);
        for u in 0..unroll {
            let byte = fb.ins().uload8(ptr, table, at, u as i32);
            let lo = fb.ins().band_imm_s(byte, 15);
            let hi = fb.ins().ushr_imm_s(byte, 4);
            let weights = [lo, hi].map(|nibble| {
                let off = fb.ins().ishl_imm_s(nibble, 4);
                let at = fb.ins().iadd(pairs, off);
                fb.ins().load(types::F64X2, table, at, 0)
            });
            for k in 0..nb {
                let row = fb.ins().iadd_imm_s(xs, ((n0 + k) * s.padded * 8) as i64);
                let at = fb.ins().iadd(row, group_bytes);
                for (half, &wv) in weights.iter().enumerate() {
                    let x = fb
                        .ins()
                        .load(types::F64X2, flags, at, (32 * u + 16 * half) as i32);
                    let t = fb.ins().fmul(x, wv);
                    let slot = accs[(k * unroll + u) * 2 + half];
                    let acc = fb.use_var(slot);
                    let next = fb.ins().fadd(acc, t);
                    fb.def_var(slot, next);
                }
            }
        }
        let g_next = fb.ins().iadd_imm_s(g, unroll as i64);
        fb.def_var(g_var, g_next);
        let more = fb
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, g_next, s.groups as i64);
        fb.ins().brif(more, g_head, &[], g_exit, &[]);
        fb.switch_to_block(g_exit);
        for k in 0..nb {
            let mut pair = fb.use_var(accs[k * unroll * 2]);
            for j in 1..unroll * 2 {
                let a = fb.use_var(accs[k * unroll * 2 + j]);
                pair = fb.ins().fadd(pair, a);
            }
            let l0 = fb.ins().extractlane(pair, 0);
            let l1 = fb.ins().extractlane(pair, 1);
            let total = fb.ins().fadd(l0, l1);
            let base = fb.ins().iadd_imm_s(sums, ((n0 + k) * 8) as i64);
            let off = fb.ins().imul_imm_s(r, (s.batch * 8) as i64);
            let at = fb.ins().iadd(base, off);
            fb.ins().store(flags, total, at, 0);
        }
    }
    let r_next = fb.ins().iadd_imm_s(r, 1);
    fb.def_var(r_var, r_next);
    let more = fb
        .ins()
        .icmp_imm_s(IntCC::UnsignedLessThan, r_next, s.rows as i64);
    fb.ins().brif(more, r_head, &[], done, &[]);
    fb.switch_to_block(done);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::Place;
    use crate::loops::testing::run_kernel_with;
    use shrink_ir::{Tensor, WeightLayout};

    /// Batches that fill 1, 2 and a partial batch block, columns that need padding to whole
    /// unrolled groups, per-row scales: the SIMD loop and the scalar fallback both give the f64
    /// reference sum rounded to f32, which the interpreter computes.
    #[test]
    fn simd_and_fallback_match_an_f64_reference() {
        for (batch, cols, rows) in [(1, 5, 3), (3, 37, 9), (6, 64, 17), (9, 130, 4)] {
            let digit = |i: usize| ((i * 2654435761) >> 7) % 3;
            let mut wv = vec![0f32; cols * rows];
            for c in 0..cols {
                for r in 0..rows {
                    let s = 0.25 * (1 + r % 3) as f32;
                    wv[c * rows + r] = [0.0, s, -s][digit(c * rows + r)];
                }
            }
            let dense = Tensor::from_vec(vec![cols, rows], wv.clone());
            let w = TernaryWeights::detect(&dense, WeightLayout::ColsFirst, 0).unwrap();
            let x: Vec<f32> = (0..batch * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
                .collect();
            let want: Vec<f32> = (0..batch * rows)
                .map(|i| {
                    let (n, r) = (i / rows, i % rows);
                    (0..cols)
                        .map(|c| x[n * cols + c] as f64 * wv[c * rows + r] as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            let mut b = Builder::new("packed");
            let xr = b.buffer(Place::Input(0), DType::F32, &[batch, cols]);
            let yr = b.buffer(Place::Output(0), DType::F32, &[batch, rows]);
            let layer = Layer {
                w: &w,
                x: &xr,
                bias: None,
                activation: None,
                y: &yr,
                gemm: None,
            };
            packed(&mut b, &layer).unwrap();
            let k = b.finish().unwrap();
            let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            for simd in [true, false] {
                let (status, outs) = run_kernel_with(
                    &k,
                    std::slice::from_ref(&xb),
                    &[batch * rows * 4],
                    k.workspace_bytes,
                    simd,
                );
                assert_eq!(status, 0);
                let got: Vec<f32> = outs[0]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let close = (g - e).abs() <= 1e-6 * e.abs().max(1.0);
                    assert!(close, "{batch}x{cols}x{rows} simd={simd} [{i}]: {g} vs {e}");
                }
            }
        }
    }
}
