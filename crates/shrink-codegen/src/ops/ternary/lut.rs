//! `lut`: the ternary weights as 4-bit indices into tables of partial sums built per call
//! (T-MAC / bitnet.cpp TL1 style), looked up 16 at a time with a byte shuffle (`pshufb` on x86,
//! `tbl` on AArch64, `vrgather` on RISC-V V).
//!
//! Activations: `packed`'s quantizer, unchanged (each batch row in fixed point on its absmax,
//! `limbs` balanced int8 digits per activation, the same digit layout), so for the same limbs the
//! integer sums, and therefore the outputs, are bit-identical to `packed`'s.
//!
//! Tables: for each virtual row `m = n·limbs + p` (batch row `n`, limb `p`) and each group `g` of
//! [`PAIR`] columns `(2g, 2g + 1)`, the 9 sums `T[3·ua + ub] = (ua − 1)·d[2g] + (ub − 1)·d[2g+1]`
//! (`ua, ub ∈ {0, 1, 2}`; entries 9..15 are 0), each in `[−256, 256]`: an i16, kept as two
//! 16-byte planes (its low bytes, then its high bytes) at `tables[(m·groups + g)·32]`.
//!
//! Weights: index `3·(w[r][2g] + 1) + (w[r][2g+1] + 1)` (4 for a zero pair and for padding) in
//! read-only data, 32 rows per 16-byte vector (byte `i`: row `32t + i` in the low nibble, row
//! `32t + 16 + i` in the high one), chunk by chunk, tile by tile in a chunk (one sequential pass). Two lookups (both planes) of one
//! nibble vector and an interleave of their bytes give the 16 rows' exact i16 terms; i16
//! accumulators take [`CHUNK`] groups (|sum| ≤ 64·256), then are added into the i32 `dots`.
//!
//! Loop order: chunk of groups (its tables stay in L1), tile of 32 rows, block of virtual rows,
//! groups. Per 64 weights of one virtual row the loop does 1 index load and 3 nibble-split ops
//! (shared by the block), 2 table loads, 4 lookups, 4 interleaves and 4 i16 adds.
//!
//! Integer sums do not depend on their order, so this loop, its loop-language fallback (ISAs
//! without 128-bit SIMD) and `packed` on every path give the same bits.
use super::packed::{self, counted_loop, digit_offset_expr, quantize};
use super::{Layer, finish_from_sums};
use crate::loops::ir::{BufId, NativeCx};
use crate::loops::{Builder, Expr, TensorRef, Ty};
use crate::ops::LowerResult;
use cranelift_codegen::ir::{
    ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value, types,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use shrink_ir::{DType, TernaryWeights};

/// Columns per table (9 of its 16 entries used).
const PAIR: usize = 2;

/// Rows per 16-byte index vector: 16 in the low nibbles, 16 in the high ones.
pub(super) const TILE: usize = 32;

/// Groups per i16 accumulation: each term is in `[−256, 256]`, so 64 of them stay in i16.
const CHUNK: usize = 64;

/// Groups per iteration of the lookup loop. More (2, 4) keep more lookups live across the
/// accumulator chains and spill on x86 (16 vector registers); the loop overhead is scalar.
const UNROLL: usize = 1;

/// The group count is padded to a multiple of this (half a run of the table build).
const PAD_GROUPS: usize = 4;

/// Virtual rows sharing one nibble split: 4 accumulators each, plus the split, the tables and
/// the lookups, within x86-64's 16 vector registers.
const BLOCK_X86: usize = 2;

/// The same on AArch64 and RISC-V V (32 vector registers).
const BLOCK_WIDE: usize = 4;

/// Most columns, as for `packed` (its quantizer's digit sums stay in i32).
pub(super) const MAX_COLS: usize = packed::MAX_COLS;

/// Static shape of one lut layer.
#[derive(Clone, Copy)]
struct Shape {
    rows: usize,
    batch: usize,
    limbs: usize,
    tiles: usize,
    groups: usize,
    /// Virtual rows: batch rows × limbs.
    virt: usize,
    /// Digits per limb row (`packed`'s padded columns).
    padded: usize,
}

impl Shape {
    fn rows_padded(self) -> usize {
        self.tiles * TILE
    }
}

/// Groups of `cols` columns the loop covers (padded to [`PAD_GROUPS`]).
pub(super) fn groups_of(cols: usize) -> usize {
    cols.div_ceil(PAIR).div_ceil(PAD_GROUPS) * PAD_GROUPS
}

/// `threads`: the lookups of a large layer are split into that many parts over its row tiles
/// ([`Builder::parallel`]), each computing whole rows exactly as the unsplit loop does.
pub(super) fn lut(b: &mut Builder, l: &Layer, limbs: usize, threads: usize) -> LowerResult {
    let w = l.w;
    if w.cols > MAX_COLS {
        return Err(format!(
            "strategy 'lut' takes at most {MAX_COLS} columns; this layer has {}",
            w.cols
        ));
    }
    b.note_strategy("lut");
    let batch = l.x.numel() / w.cols.max(1);
    let padded = crate::cost::packed_columns(w.cols);
    let qshape = packed::Shape {
        rows: w.rows,
        blocks: padded / 64,
        batch,
        limbs,
    };
    let s = Shape {
        rows: w.rows,
        batch,
        limbs,
        tiles: w.rows.div_ceil(TILE),
        groups: groups_of(w.cols),
        virt: batch * limbs,
        padded,
    };
    let idx = b.table(
        DType::U8,
        &[s.tiles * s.groups * 16],
        index_codes(w, s.tiles, s.groups),
    );
    let digits = b.workspace(DType::I8, &[batch * limbs * padded]);
    let digit_sums = b.workspace(DType::I32, &[batch * limbs]);
    let steps = b.workspace(DType::F64, &[batch]);
    let tables = b.workspace(DType::U8, &[s.virt * s.groups * 32]);
    let dots = b.workspace(DType::I32, &[s.virt * s.rows_padded()]);
    let sums = b.workspace(DType::F64, &[w.rows, batch]);
    quantize(b, l, qshape, &digits, &digit_sums, &steps);
    let (db, tb) = (digits.buf, tables.buf);
    b.native(
        "lut ternary tables",
        &[&digits, &tables],
        move |cx| emit_tables(cx, s, db, tb),
        |b| scalar_tables(b, s, &digits, &tables),
    );
    b.for_(s.virt * s.rows_padded(), |b, i| {
        b.store_raw(&dots, i, Expr::int(Ty::I32, 0))
    });
    let bufs = [idx.buf, tables.buf, dots.buf];
    // Threads take whole tiles of 32 rows (their own dots); the tables are shared.
    let parts = crate::options::parallel_parts(threads, w.rows * w.cols * batch, s.tiles);
    b.parallel(parts, |b, part| {
        let tiles = (s.tiles * part / parts, s.tiles * (part + 1) / parts);
        b.native_shuffling(
            "lut ternary lookups",
            &[&idx, &tables, &dots],
            move |cx| emit_lookups(cx, s, tiles, bufs),
            |b| scalar_lookups(b, s, tiles, &idx, &tables, &dots),
        );
    });
    combine(b, s, &dots, &steps, &sums);
    exact_nonfinite_rows(b, l, s, &idx, &steps, &sums);
    finish_from_sums(b, l, &sums, batch);
    Ok(())
}

/// The index of weight pair `(r, g)` (4, a zero pair, outside the matrix).
fn pair_index(w: &TernaryWeights, r: usize, g: usize) -> u8 {
    let u = |c: usize| {
        if r < w.rows && c < w.cols {
            (w.sign(r, c) + 1) as u8
        } else {
            1
        }
    };
    3 * u(PAIR * g) + u(PAIR * g + 1)
}

/// Where the index vector of (tile `t`, group `g`) starts, in vectors: chunk by chunk (the
/// order the loop reads them in), tile by tile inside a chunk.
fn vector_at(tiles: usize, groups: usize, t: usize, g: usize) -> usize {
    let g0 = g / CHUNK * CHUNK;
    let len = CHUNK.min(groups - g0);
    g0 * tiles + t * len + (g - g0)
}

/// The index vectors of `w` in the layout of the module doc.
fn index_codes(w: &TernaryWeights, tiles: usize, groups: usize) -> Vec<u8> {
    let mut out = vec![0u8; tiles * groups * 16];
    for t in 0..tiles {
        for g in 0..groups {
            for i in 0..16 {
                let lo = pair_index(w, TILE * t + i, g);
                let hi = pair_index(w, TILE * t + 16 + i, g);
                out[vector_at(tiles, groups, t, g) * 16 + i] = lo | hi << 4;
            }
        }
    }
    out
}

/// Weight of table entry `e` on the pair's first and second column.
fn entry_weights(e: usize) -> (i16, i16) {
    if e < 9 {
        ((e / 3) as i16 - 1, (e % 3) as i16 - 1)
    } else {
        (0, 0)
    }
}

fn vconst(fb: &mut FunctionBuilder, ty: Type, bytes: Vec<u8>) -> Value {
    let c = fb.func.dfg.constants.insert(ConstantData::from(bytes));
    fb.ins().vconst(ty, c)
}

fn le() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// Every table of the module doc, one group per step: the pair's two digits splat to i16 lanes,
/// times the entries' weights, split into the byte planes by two narrowing packs. Addresses stay
/// in range by construction: `m < virt`, `g < groups`, and `groups ≤ padded / 2`.
fn emit_tables(cx: &mut NativeCx, s: Shape, digits: BufId, tables: BufId) {
    let ptr = cx.pointer;
    let (dig, tab) = (cx.bases[digits.0 as usize], cx.bases[tables.0 as usize]);
    let fb = &mut *cx.fb;
    let flags = MemFlagsData::new().with_notrap();
    let weights = |first: bool, half: usize| -> Vec<u8> {
        (0..8)
            .flat_map(|k| {
                let (a, b) = entry_weights(8 * half + k);
                (if first { a } else { b }).to_le_bytes()
            })
            .collect()
    };
    let coef: Vec<Value> = [(true, 0), (true, 1), (false, 0), (false, 1)]
        .into_iter()
        .map(|(first, half)| vconst(fb, types::I16X8, weights(first, half)))
        .collect();
    let low_bytes = vconst(fb, types::I16X8, [0xffu8, 0].repeat(8));
    counted_loop(fb, ptr, s.virt as i64, |fb, m| {
        let row_off = fb.ins().imul_imm_s(m, s.padded as i64);
        let row = fb.ins().iadd(dig, row_off);
        let tab_off = fb.ins().imul_imm_s(m, (s.groups * 32) as i64);
        let out = fb.ins().iadd(tab, tab_off);
        // Groups in runs of 8 (16 columns): a run's digits are contiguous in the quantizer's
        // layout, so one offset per run.
        let runs = s.groups.div_ceil(8) as i64;
        counted_loop(fb, ptr, runs, |fb, k| {
            let c = fb.ins().ishl_imm_s(k, 4);
            let at = digit_offset(fb, c);
            let at = fb.ins().iadd(row, at);
            let out_off = fb.ins().ishl_imm_s(k, 8);
            let out = fb.ins().iadd(out, out_off);
            for u in 0..8.min(s.groups) {
                // `groups` is a multiple of 4, not 8: the last run may have 4 groups.
                let emit = |fb: &mut FunctionBuilder| {
                    let xa = fb.ins().sload8(types::I16, flags, at, (2 * u) as i32);
                    let xb = fb.ins().sload8(types::I16, flags, at, (2 * u + 1) as i32);
                    let xa = fb.ins().splat(types::I16X8, xa);
                    let xb = fb.ins().splat(types::I16X8, xb);
                    let half = |fb: &mut FunctionBuilder, h: usize| {
                        let a = fb.ins().imul(xa, coef[h]);
                        let b = fb.ins().imul(xb, coef[2 + h]);
                        fb.ins().iadd(a, b)
                    };
                    let (t0, t1) = (half(fb, 0), half(fb, 1));
                    let l0 = fb.ins().band(t0, low_bytes);
                    let l1 = fb.ins().band(t1, low_bytes);
                    let lo = fb.ins().unarrow(l0, l1);
                    let h0 = fb.ins().sshr_imm_s(t0, 8);
                    let h1 = fb.ins().sshr_imm_s(t1, 8);
                    let hi = fb.ins().snarrow(h0, h1);
                    fb.ins().store(flags, lo, out, (32 * u) as i32);
                    fb.ins().store(flags, hi, out, (32 * u + 16) as i32);
                };
                if u < 4 || s.groups.is_multiple_of(8) {
                    emit(fb);
                } else {
                    let last = fb.ins().icmp_imm_s(
                        cranelift_codegen::ir::condcodes::IntCC::Equal,
                        k,
                        runs - 1,
                    );
                    let (body, join) = (fb.create_block(), fb.create_block());
                    fb.ins().brif(last, join, &[], body, &[]);
                    fb.switch_to_block(body);
                    emit(fb);
                    fb.ins().jump(join, &[]);
                    fb.switch_to_block(join);
                }
            }
        });
    });
}

/// The quantizer's digit offset of column `c` (a multiple of 16, pointer-sized): see the layout
/// in `packed`'s module doc.
fn digit_offset(fb: &mut FunctionBuilder, c: Value) -> Value {
    let group = fb.ins().band_imm_s(c, !255i64);
    let field = fb.ins().band_imm_s(c, 48);
    let field = fb.ins().ishl_imm_s(field, 2);
    let block = fb.ins().ushr_imm_s(c, 6);
    let block = fb.ins().band_imm_s(block, 3);
    let block = fb.ins().ishl_imm_s(block, 4);
    let v = fb.ins().iadd(group, field);
    fb.ins().iadd(v, block)
}

/// The fallback of [`emit_tables`]: the same bytes, one entry at a time.
fn scalar_tables(b: &mut Builder, s: Shape, digits: &TensorRef, tables: &TensorRef) {
    let weights = |first: bool| -> Vec<i64> {
        (0..16)
            .map(|e| {
                let (a, b) = entry_weights(e);
                (if first { a } else { b }) as i64
            })
            .collect()
    };
    let (wa, wb) = (b.table_i64(&weights(true)), b.table_i64(&weights(false)));
    b.nest(&[s.virt, s.groups, 16], |b, ix| {
        let (m, g, e) = (&ix[0], &ix[1], &ix[2]);
        let row = m.clone().mul_k(s.padded as i64);
        let c = g.clone().mul_k(PAIR as i64);
        let xa = b.load_raw(digits, row.clone().add(digit_offset_expr(&c)));
        let xb = b.load_raw(digits, row.add(digit_offset_expr(&c.add_k(1))));
        let ca = b.load_raw(&wa, e.clone());
        let cb = b.load_raw(&wb, e.clone());
        let t = b.let_(
            ca.mul(xa.cast(Ty::I64))
                .add(cb.mul(xb.cast(Ty::I64)))
                .cast(Ty::I32),
        );
        let at = b.let_(
            m.clone()
                .mul_k(s.groups as i64)
                .add(g.clone())
                .mul_k(32)
                .add(e.clone()),
        );
        b.store_raw(tables, at.clone(), t.clone().cast(Ty::U8));
        b.store_raw(
            tables,
            at.add_k(16),
            t.shr(Expr::int(Ty::I32, 8)).cast(Ty::U8),
        );
    });
}

/// `dots[m·rows_padded + r] += Σ_g T_m,g[idx(r, g)]` in SIMD registers (see the module doc),
/// for the row tiles `[t0, t1)`. Addresses stay in range by construction: chunks and their
/// groups cover `[0, groups)`, tiles `[t0, t1)` within `[0, tiles)`, virtual rows `[0, virt)`,
/// and the buffers have exactly those extents.
fn emit_lookups(cx: &mut NativeCx, s: Shape, (t0, t1): (usize, usize), bufs: [BufId; 3]) {
    let ptr = cx.pointer;
    let x86 = cx.x86;
    let [idx, tab, dots] = bufs.map(|b| cx.bases[b.0 as usize]);
    let fb = &mut *cx.fb;
    let flags = MemFlagsData::new().with_notrap();
    // The indices are read-only data and the tables are not written during this loop.
    let pure = flags.with_readonly().with_can_move();
    let nibble = fb.ins().iconst(types::I8, 15);
    let nibble = fb.ins().splat(types::I8X16, nibble);
    let interleave = |fb: &mut FunctionBuilder, high: usize| {
        let mask: Vec<u8> = (0..8u8)
            .flat_map(|i| [8 * high as u8 + i, 16 + 8 * high as u8 + i])
            .collect();
        fb.func.dfg.immediates.push(ConstantData::from(mask))
    };
    let inter = [interleave(fb, 0), interleave(fb, 1)];
    let block = if x86 { BLOCK_X86 } else { BLOCK_WIDE };
    let unroll = UNROLL;
    let full = s.groups / CHUNK;
    let rest = s.groups % CHUNK;
    // The full chunks, then the remainder chunk (from group `start`).
    for (start, count, len) in [
        (0, full, CHUNK),
        (full * CHUNK, usize::from(rest > 0), rest),
    ] {
        if count == 0 {
            continue;
        }
        counted_loop(fb, ptr, count as i64, |fb, c| {
            let g0 = fb.ins().imul_imm_s(c, CHUNK as i64);
            let g0 = fb.ins().iadd_imm_s(g0, start as i64);
            counted_loop(fb, ptr, (t1 - t0) as i64, |fb, t| {
                let t = fb.ins().iadd_imm_s(t, t0 as i64);
                // The chunk's vectors start at vector `g0·tiles`, a tile's at `t·len` in them.
                let first = fb.ins().imul_imm_s(g0, s.tiles as i64);
                let tile = fb.ins().imul_imm_s(t, len as i64);
                let first = fb.ins().iadd(first, tile);
                let at_idx = fb.ins().ishl_imm_s(first, 4);
                let at_idx = fb.ins().iadd(idx, at_idx);
                let at_tab = fb.ins().ishl_imm_s(g0, 5);
                let at_tab = fb.ins().iadd(tab, at_tab);
                for m0 in (0..s.virt).step_by(block) {
                    let ms = block.min(s.virt - m0);
                    let zero = fb.ins().iconst(types::I16, 0);
                    let zero = fb.ins().splat(types::I16X8, zero);
                    // accs[(k·2 + nibble)·2 + half]: rows 32t + 16·nibble + 8·half + 0..8.
                    let accs: Vec<Variable> = (0..4 * ms)
                        .map(|_| {
                            let v = fb.declare_var(types::I16X8);
                            fb.def_var(v, zero);
                            v
                        })
                        .collect();
                    counted_loop(fb, ptr, (len / unroll) as i64, |fb, i| {
                        let step = fb.ins().ishl_imm_s(i, 4 + unroll.trailing_zeros() as i64);
                        let q_at = fb.ins().iadd(at_idx, step);
                        let step = fb.ins().ishl_imm_s(i, 5 + unroll.trailing_zeros() as i64);
                        let t_at = fb.ins().iadd(at_tab, step);
                        for u in 0..unroll {
                            let q = fb.ins().load(types::I8X16, pure, q_at, (16 * u) as i32);
                            let lo = fb.ins().band(q, nibble);
                            // No byte shifts on x86: shift 16-bit lanes, mask the crossed bits.
                            let wide = fb.ins().bitcast(types::I16X8, le(), q);
                            let wide = fb.ins().ushr_imm_s(wide, 4);
                            let hi = fb.ins().bitcast(types::I8X16, le(), wide);
                            let hi = fb.ins().band(hi, nibble);
                            for k in 0..ms {
                                let off = ((m0 + k) * s.groups + u) * 32;
                                let at = fb.ins().iadd_imm_s(t_at, off as i64);
                                let t_lo = fb.ins().load(types::I8X16, pure, at, 0);
                                let t_hi = fb.ins().load(types::I8X16, pure, at, 16);
                                for (n, &ix) in [lo, hi].iter().enumerate() {
                                    let a = lookup(fb, x86, t_lo, ix);
                                    let b = lookup(fb, x86, t_hi, ix);
                                    for (h, &mask) in inter.iter().enumerate() {
                                        let v = fb.ins().shuffle(a, b, mask);
                                        let v = fb.ins().bitcast(types::I16X8, le(), v);
                                        let slot = accs[(k * 2 + n) * 2 + h];
                                        let acc = fb.use_var(slot);
                                        let next = fb.ins().iadd(acc, v);
                                        fb.def_var(slot, next);
                                    }
                                }
                            }
                        }
                    });
                    // Add the chunk's i16 sums into the i32 dots.
                    let tile_rows = fb.ins().imul_imm_s(t, (TILE * 4) as i64);
                    let out = fb.ins().iadd(dots, tile_rows);
                    for k in 0..ms {
                        let row = ((m0 + k) * s.rows_padded() * 4) as i64;
                        let out = fb.ins().iadd_imm_s(out, row);
                        for q in 0..4 {
                            let v = fb.use_var(accs[k * 4 + q]);
                            for (h, wide) in [fb.ins().swiden_low(v), fb.ins().swiden_high(v)]
                                .into_iter()
                                .enumerate()
                            {
                                let off = (8 * q + 4 * h) * 4;
                                let old = fb.ins().load(types::I32X4, flags, out, off as i32);
                                let new = fb.ins().iadd(old, wide);
                                fb.ins().store(flags, new, out, off as i32);
                            }
                        }
                    }
                }
            });
        });
    }
}

/// The 16 table entries `table[ix[i]]` (`ix` in 0..15): `pshufb` on x86 (plain `swizzle` adds a
/// saturating add there for out-of-range indices, which never occur), `swizzle` elsewhere.
fn lookup(fb: &mut FunctionBuilder, x86: bool, table: Value, ix: Value) -> Value {
    if x86 {
        fb.ins().x86_pshufb(table, ix)
    } else {
        fb.ins().swizzle(table, ix)
    }
}

/// The index of weight pair (row `r`, group `g`) from the index table (loop-language indices).
fn index_at(b: &mut Builder, s: Shape, idx: &TensorRef, r: &Expr, g: &Expr) -> Expr {
    let k = |v: usize| Expr::idx(v as i64);
    let t = r.clone().div(k(TILE));
    let g0 = b.let_(g.clone().div(k(CHUNK)).mul_k(CHUNK as i64));
    let len = k(CHUNK).min(k(s.groups).sub(g0.clone()));
    let vector = g0
        .clone()
        .mul_k(s.tiles as i64)
        .add(t.mul(len))
        .add(g.clone().sub(g0));
    let byte = vector.mul_k(16).add(r.clone().rem(k(16)));
    let shift = r.clone().rem(k(TILE)).div(k(16)).mul_k(4);
    let code = b.load_raw(idx, byte).cast(Ty::I64);
    b.let_(code.shr(shift).and(Expr::idx(15)))
}

/// The fallback of [`emit_lookups`]: the same sums, one lookup at a time.
fn scalar_lookups(
    b: &mut Builder,
    s: Shape,
    (t0, t1): (usize, usize),
    idx: &TensorRef,
    tables: &TensorRef,
    dots: &TensorRef,
) {
    b.for_(s.virt, |b, m| {
        b.for_((t1 - t0) * TILE, |b, r| {
            let r = b.let_(r.add_k((t0 * TILE) as i64));
            let acc = b.mutable(Expr::int(Ty::I32, 0));
            b.for_(s.groups, |b, g| {
                let e = index_at(b, s, idx, &r, &g);
                let at = b.let_(m.clone().mul_k(s.groups as i64).add(g).mul_k(32).add(e));
                let lo = b.load_raw(tables, at.clone()).cast(Ty::I32);
                let hi = b.load_raw(tables, at.add_k(16)).cast(Ty::I8).cast(Ty::I32);
                let next = b.get(acc).add(hi.shl(Expr::int(Ty::I32, 8)).or(lo));
                b.set(acc, next);
            });
            let at = m.clone().mul_k(s.rows_padded() as i64).add(r);
            b.store_raw(dots, at, b.get(acc));
        });
    });
}

/// `sums[r][n] = step_n · Σ_p 256^p · dots[n·limbs + p][r]`: exact in i64, one f64 rounding
/// (the same integer and rounding as `packed`'s limb combination).
fn combine(b: &mut Builder, s: Shape, dots: &TensorRef, steps: &TensorRef, sums: &TensorRef) {
    let (batch, limbs) = (s.batch, s.limbs);
    let rp = s.rows_padded() as i64;
    b.for_(batch, |b, n| {
        let step = b.let_(b.load_raw(steps, n.clone()));
        b.for_(s.rows, |b, r| {
            let mut total = Expr::idx(0);
            for p in 0..limbs {
                let m = n.clone().mul_k(limbs as i64).add_k(p as i64);
                let d = b.load_raw(dots, m.mul_k(rp).add(r.clone()));
                total = total.add(d.cast(Ty::I64).shl(Expr::idx(8 * p as i64)));
            }
            let at = r.mul_k(batch as i64).add(n.clone());
            b.store_raw(sums, at, total.cast(Ty::F64).mul(step.clone()));
        });
    });
}

/// Batch rows whose step is NaN (an infinite or NaN activation) get their sums again in f64,
/// straight from the activations and the index table, so they carry the graph's NaN and
/// infinity results (as `packed` does).
fn exact_nonfinite_rows(
    b: &mut Builder,
    l: &Layer,
    s: Shape,
    idx: &TensorRef,
    steps: &TensorRef,
    sums: &TensorRef,
) {
    let (cols, rows, batch) = (l.w.cols, s.rows, s.batch);
    b.for_(batch, |b, n| {
        let step = b.let_(b.load_raw(steps, n.clone()));
        b.if_(step.clone().ne(step), |b| {
            b.for_(rows, |b, r| {
                let acc = b.mutable(Expr::f64(0.0));
                b.for_(cols, |b, c| {
                    let g = b.let_(c.clone().div(Expr::idx(PAIR as i64)));
                    let e = index_at(b, s, idx, &r, &g);
                    let u = Expr::select(
                        c.clone().rem(Expr::idx(2)).eq(Expr::idx(0)),
                        e.clone().div(Expr::idx(3)),
                        e.rem(Expr::idx(3)),
                    );
                    let w = u.add_k(-1).cast(Ty::F64);
                    let x = b.load(l.x, n.clone().mul_k(cols as i64).add(c));
                    let next = b.get(acc).add(x.cast(Ty::F64).mul(w));
                    b.set(acc, next);
                });
                let at = r.mul_k(batch as i64).add(n.clone());
                b.store_raw(sums, at, b.get(acc));
            });
        });
    });
}

#[cfg(test)]
mod tests;
