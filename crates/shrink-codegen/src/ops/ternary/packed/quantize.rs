//! The per-call quantizer of `packed` and `lut`: each batch row of f32 activations becomes
//! `limbs` balanced int8 digits on its own absmax (or on the graph's int8 grid), laid out as the
//! dot-product loops read them (the module doc of [`super`]), with each limb's digit sum and
//! the row's step.
//!
//! It runs once per call and touches every activation, so it is a fixed cost of every layer:
//! scalar, its f64 rounding and limb split took about 7.5 ns per column (8 µs of a 1024-column
//! layer's 42 µs, measured with `shrink bench` here). Off the graph's grid it is emitted as
//! 128-bit SIMD ([`emit_quantize`]) computing the same digits: the absmax as an integer max of
//! the activations' magnitude bits (IEEE order of non-negative floats), the rounding
//! `round(x · Q / a)` in f64 by adding `1.5 · 2⁵²` (ties to even, as `nearest`), the limbs with
//! lane-wise shifts, and saturating narrows to bytes (exact: every digit is in `[-128, 127]`).
use super::{GROUP, Shape, max_fixed};
use crate::loops::ir::{BufId, NativeCx};
use crate::loops::native::counted_loop;
use crate::loops::{Builder, Expr, TensorRef, Ty};
use crate::ops::ternary::Layer;
use crate::ops::ternary::grid::{Grid, TOLERANCE};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{ConstantData, Endianness, InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};
use shrink_ir::DType;

/// `1.5 · 2⁵²`: `v + MAGIC` is an f64 whose low 32 bits are `round(v)` (ties to even) for
/// `|v| < 2³¹`, since its unit in the last place is 1 and the low 32 bits of `MAGIC` are 0.
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// Magnitude bits at or above this are an infinity or a NaN.
const NONFINITE_BITS: i64 = 0x7f80_0000;

/// Per batch row: the absmax, the step `a / Q` (NaN when the row has an infinite or NaN value,
/// 0 when it is all zeros), the limbs of every activation and each limb's sum. With one limb on
/// the graph's own grid (`l.grid`) the digits and step are the grid's (module doc of
/// [`super`]), and a row whose digits are not all on it gets step NaN (recomputed in f64).
pub(in crate::ops::ternary) fn quantize(
    b: &mut Builder,
    l: &Layer,
    s: Shape,
    digits: &TensorRef,
    digit_sums: &TensorRef,
    steps: &TensorRef,
) {
    let on_grid = l.grid.is_some() && s.limbs == 1;
    if on_grid || l.x.dtype != DType::F32 {
        return quantize_loops(b, l, s, digits, digit_sums, steps);
    }
    let cols = l.w.cols;
    let q = max_fixed(s.limbs) as f64;
    let bufs = [l.x.buf, digits.buf, digit_sums.buf, steps.buf];
    b.native_shuffling(
        "activation quantizer",
        &[l.x, digits, digit_sums, steps],
        move |cx| emit_quantize(cx, s, cols, q, bufs),
        |b| quantize_loops(b, l, s, digits, digit_sums, steps),
    );
}

/// [`quantize`] in the loop language: the fallback of the SIMD quantizer, and the only form on
/// the graph's int8 grid. Per batch row: the absmax, the step `a / Q` (NaN when the row has an infinite or NaN value,
/// 0 when it is all zeros), the limbs of every activation and each limb's sum. With one limb on
/// the graph's own grid (`l.grid`) the digits and step are the grid's (module doc), and a row
/// whose digits are not all on it gets step NaN (recomputed in f64).
fn quantize_loops(
    b: &mut Builder,
    l: &Layer,
    s: Shape,
    digits: &TensorRef,
    digit_sums: &TensorRef,
    steps: &TensorRef,
) {
    let cols = l.w.cols;
    let padded = s.padded();
    let grid = l.grid.filter(|_| s.limbs == 1);
    let q = match grid {
        Some(Grid::RowAbsmax { full }) => full as f64,
        _ => max_fixed(s.limbs) as f64,
    };
    let fixed = match grid {
        Some(Grid::Fixed { step }) => Some(step),
        _ => None,
    };
    b.for_(s.batch, |b, n| {
        let from = b.let_(n.clone().mul_k(cols as i64));
        let amax = b.mutable(Expr::f32(0.0));
        // x·0 is 0 for every finite x and NaN for an infinity or NaN.
        let probe = b.mutable(Expr::f32(0.0));
        b.for_(cols, |b, c| {
            let v = b.load(l.x, from.clone().add(c));
            let v = b.let_(v);
            let m = b.get(amax).max(v.clone().abs());
            b.set(amax, m);
            let p = b.get(probe).add(v.mul(Expr::f32(0.0)));
            b.set(probe, p);
        });
        let a = b.let_(b.get(amax).cast(Ty::F64));
        let finite = b.let_(b.get(probe).eq(Expr::f32(0.0)));
        let usable = b.let_(finite.clone().and(a.clone().gt(Expr::f64(0.0))));
        let (inv, step) = match fixed {
            Some(t) => (Expr::f64(1.0 / t), Expr::f64(t)),
            None => (
                b.let_(Expr::select(
                    usable,
                    Expr::f64(q).div(a.clone()),
                    Expr::f64(0.0),
                )),
                a.div(Expr::f64(q)),
            ),
        };
        let step = Expr::select(finite, step, Expr::f64(f64::NAN));
        b.store_raw(steps, n.clone(), step);
        // On a grid: the largest distance of `x · inv` from its digit, and of a digit from
        // -1/2 (a digit is in [-128, 127] when that is at most 127.5).
        let checks = grid.map(|_| (b.mutable(Expr::f64(0.0)), b.mutable(Expr::f64(0.0))));
        let sums: Vec<_> = (0..s.limbs)
            .map(|_| b.mutable(Expr::int(Ty::I32, 0)))
            .collect();
        let row = b.let_(n.clone().mul_k((s.limbs * padded) as i64));
        // Every digit slot of the padded row, in the order of the layout (group, block, field,
        // byte), so the offset and the column are affine in the loop counters; padding columns
        // quantize a 0 (the clamped load keeps the read inside `x`).
        b.nest(&[s.blocks / GROUP, GROUP, 4, 16], |b, idx| {
            let (g, t, j, i) = (&idx[0], &idx[1], &idx[2], &idx[3]);
            let c = b.let_(
                g.clone()
                    .mul_k(256)
                    .add(t.clone().mul_k(64))
                    .add(j.clone().mul_k(16))
                    .add(i.clone()),
            );
            let off = b.let_(
                g.clone()
                    .mul_k(256)
                    .add(j.clone().mul_k(64))
                    .add(t.clone().mul_k(16))
                    .add(i.clone()),
            );
            let last = Expr::idx(cols as i64 - 1);
            let v = b.load(l.x, from.clone().add(c.clone().min(last)));
            let v = Expr::select(c.lt(Expr::idx(cols as i64)), v, Expr::f32(0.0));
            let scaled = b.let_(v.cast(Ty::F64).mul(inv.clone()));
            let digit = b.let_(scaled.clone().nearest());
            if let Some((off_grid, reach)) = checks {
                let d = b.get(off_grid).max(scaled.sub(digit.clone()).abs());
                b.set(off_grid, d);
                let r = b.get(reach).max(digit.clone().add(Expr::f64(0.5)).abs());
                b.set(reach, r);
            }
            let mut rest = b.let_(digit.cast(Ty::I32));
            for (p, &sum) in sums.iter().enumerate() {
                let digit = if p + 1 == s.limbs {
                    rest.clone()
                } else {
                    // The balanced low byte: in [-128, 127], and `rest - digit` divides by 256.
                    let d = b.let_(
                        rest.clone()
                            .add(Expr::int(Ty::I32, 128))
                            .and(Expr::int(Ty::I32, 255))
                            .sub(Expr::int(Ty::I32, 128)),
                    );
                    rest = b.let_(rest.clone().sub(d.clone()).shr(Expr::int(Ty::I32, 8)));
                    d
                };
                let at = row.clone().add_k((p * padded) as i64).add(off.clone());
                b.store_raw(digits, at, digit.clone().cast(Ty::I8));
                let next = b.get(sum).add(digit);
                b.set(sum, next);
            }
        });
        for (p, &sum) in sums.iter().enumerate() {
            let at = n.clone().mul_k(s.limbs as i64).add_k(p as i64);
            b.store_raw(digit_sums, at, b.get(sum));
        }
        if let Some((off_grid, reach)) = checks {
            let off = b.get(off_grid).gt(Expr::f64(TOLERANCE));
            let out = b.get(reach).gt(Expr::f64(127.5));
            b.if_(off.or(out), |b| {
                b.store_raw(steps, n.clone(), Expr::f64(f64::NAN))
            });
        }
    });
}

/// [`quantize_loops`] off the grid as 128-bit SIMD (module doc), the same digits, sums and
/// steps. Every access is in range: whole 16-column chunks read `x` only below `cols`, the
/// partial chunk loads its columns one by one, and padding chunks only store zeros.
fn emit_quantize(cx: &mut NativeCx, s: Shape, cols: usize, q: f64, bufs: [BufId; 4]) {
    let ptr = cx.pointer;
    let [x, digits, digit_sums, steps] = bufs.map(|b| cx.bases[b.0 as usize]);
    let fb = &mut *cx.fb;
    let padded = s.padded();
    counted_loop(fb, ptr, s.batch as i64, |fb, n| {
        let at = |fb: &mut FunctionBuilder, base: Value, bytes: usize| {
            let off = fb.ins().imul_imm_s(n, bytes as i64);
            fb.ins().iadd(base, off)
        };
        let xs = at(fb, x, cols * 4);
        let row = Row {
            xs,
            digits: at(fb, digits, s.limbs * padded),
            sums: at(fb, digit_sums, s.limbs * 4),
        };
        let step_at = at(fb, steps, 8);
        let (inv, finite) = absmax_step(fb, ptr, xs, cols, q, step_at);
        digit_chunks(fb, ptr, s, cols, row, inv, finite);
    });
}

/// Where one batch row's activations, digits and digit sums start.
#[derive(Clone, Copy)]
struct Row {
    xs: Value,
    digits: Value,
    sums: Value,
}

fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

fn bitcast(fb: &mut FunctionBuilder, ty: types::Type, v: Value) -> Value {
    let le = MemFlagsData::new().with_endianness(Endianness::Little);
    fb.ins().bitcast(ty, le, v)
}

fn splat_i32(fb: &mut FunctionBuilder, v: i64) -> Value {
    let c = fb.ins().iconst(types::I32, v);
    fb.ins().splat(types::I32X4, c)
}

/// The row's absmax `a` (as the largest magnitude bits, so the same value as the scalar `max`
/// on finite rows), its step `a / Q` stored at `step_at` (NaN when not finite) and the
/// multiplier `Q / a` (0 when not finite or all zero). Returns the multiplier and the
/// finiteness (an i32 0 or 1).
fn absmax_step(
    fb: &mut FunctionBuilder,
    ptr: types::Type,
    xs: Value,
    cols: usize,
    q: f64,
    step_at: Value,
) -> (Value, Value) {
    let magnitude = splat_i32(fb, 0x7fff_ffff);
    let acc = fb.declare_var(types::I32X4);
    let zero = splat_i32(fb, 0);
    fb.def_var(acc, zero);
    counted_loop(fb, ptr, (cols / 4) as i64, |fb, i| {
        let off = fb.ins().ishl_imm_s(i, 4);
        let p = fb.ins().iadd(xs, off);
        let v = fb.ins().load(types::I32X4, flags(), p, 0);
        let m = fb.ins().band(v, magnitude);
        let old = fb.use_var(acc);
        let more = fb.ins().icmp(IntCC::SignedGreaterThan, m, old);
        let next = fb.ins().bitselect(more, m, old);
        fb.def_var(acc, next);
    });
    let v = fb.use_var(acc);
    let mut max = fb.ins().extractlane(v, 0);
    let lanes: Vec<Value> = (1..4).map(|l| fb.ins().extractlane(v, l)).collect();
    let tail: Vec<Value> = (cols / 4 * 4..cols)
        .map(|c| {
            let v = fb.ins().load(types::I32, flags(), xs, (4 * c) as i32);
            fb.ins().band_imm_s(v, 0x7fff_ffff)
        })
        .collect();
    for m in lanes.into_iter().chain(tail) {
        max = fb.ins().smax(max, m);
    }
    let finite = fb
        .ins()
        .icmp_imm_s(IntCC::SignedLessThan, max, NONFINITE_BITS);
    let a = bitcast(fb, types::F32, max);
    let a = fb.ins().fpromote(types::F64, a);
    let zero = fb.ins().f64const(0.0);
    let positive = fb.ins().fcmp(FloatCC::GreaterThan, a, zero);
    let usable = fb.ins().band(finite, positive);
    let qv = fb.ins().f64const(q);
    let inv = fb.ins().fdiv(qv, a);
    let inv = fb.ins().select(usable, inv, zero);
    let step = fb.ins().fdiv(a, qv);
    let nan = fb.ins().f64const(f64::NAN);
    let step = fb.ins().select(finite, step, nan);
    fb.ins().store(flags(), step, step_at, 0);
    (inv, finite)
}

/// The digits of every 16-column chunk of the padded row, and each limb's sum. Chunk `k`
/// (columns `16k..16k + 16`, group `k / 16`, block `k / 4 % 4`, field `k % 4`) goes to digit
/// offset `256·(k / 16) + 64·(k % 4) + 16·(k / 4 % 4)` of each limb.
fn digit_chunks(
    fb: &mut FunctionBuilder,
    ptr: types::Type,
    s: Shape,
    cols: usize,
    row: Row,
    inv: Value,
    finite: Value,
) {
    let padded = s.padded();
    let chunk_offset = |fb: &mut FunctionBuilder, k: Value| {
        let g = fb.ins().ushr_imm_s(k, 4);
        let g = fb.ins().ishl_imm_s(g, 8);
        let j = fb.ins().band_imm_s(k, 3);
        let j = fb.ins().ishl_imm_s(j, 6);
        let t = fb.ins().ushr_imm_s(k, 2);
        let t = fb.ins().band_imm_s(t, (GROUP - 1) as i64);
        let t = fb.ins().ishl_imm_s(t, 4);
        let off = fb.ins().iadd(g, j);
        fb.ins().iadd(off, t)
    };
    let cx = ChunkCx::new(fb, s, inv, finite);
    let full = cols / 16;
    counted_loop(fb, ptr, full as i64, |fb, k| {
        let off = fb.ins().imul_imm_s(k, 64);
        let src = fb.ins().iadd(row.xs, off);
        let xs: [Value; 4] =
            std::array::from_fn(|i| fb.ins().load(types::F32X4, flags(), src, 16 * i as i32));
        let off = chunk_offset(fb, k);
        let dst = fb.ins().iadd(row.digits, off);
        cx.digits(fb, xs, dst);
    });
    if !cols.is_multiple_of(16) {
        // The partial chunk: its columns loaded one by one into zeroed vectors.
        let zero = fb.ins().f32const(0.0);
        let zero = fb.ins().splat(types::F32X4, zero);
        let xs: [Value; 4] = std::array::from_fn(|i| {
            let mut v = zero;
            for lane in 0..4 {
                let c = 16 * full + 4 * i + lane;
                if c < cols {
                    let e = fb.ins().load(types::F32, flags(), row.xs, (4 * c) as i32);
                    v = fb.ins().insertlane(v, e, lane as u8);
                }
            }
            v
        });
        let k = fb.ins().iconst(ptr, full as i64);
        let off = chunk_offset(fb, k);
        let dst = fb.ins().iadd(row.digits, off);
        cx.digits(fb, xs, dst);
    }
    // Padding chunks: zero digits, nothing added to the sums.
    let first = cols.div_ceil(16);
    let zero = fb.ins().iconst(types::I8, 0);
    let zero = fb.ins().splat(types::I8X16, zero);
    counted_loop(fb, ptr, (padded / 16 - first) as i64, |fb, i| {
        let k = fb.ins().iadd_imm_s(i, first as i64);
        let off = chunk_offset(fb, k);
        let dst = fb.ins().iadd(row.digits, off);
        for p in 0..s.limbs {
            fb.ins().store(flags(), zero, dst, (p * padded) as i32);
        }
    });
    for (p, &sum) in cx.sums.iter().enumerate() {
        let v = fb.use_var(sum);
        let mut total = fb.ins().extractlane(v, 0);
        for lane in 1..4 {
            let e = fb.ins().extractlane(v, lane);
            total = fb.ins().iadd(total, e);
        }
        fb.ins().store(flags(), total, row.sums, (4 * p) as i32);
    }
}

/// What every chunk's digits need: the splatted multiplier, the rounding constant, the row's
/// finiteness as a lane mask, the shuffle that packs two i64x2's low halves into an i32x4,
/// and the limbs' running sums.
struct ChunkCx {
    limbs: usize,
    padded: usize,
    inv: Value,
    magic: Value,
    keep: Value,
    low_halves: cranelift_codegen::ir::Immediate,
    high_pair: cranelift_codegen::ir::Immediate,
    sums: Vec<Variable>,
}

impl ChunkCx {
    fn new(fb: &mut FunctionBuilder, s: Shape, inv: Value, finite: Value) -> ChunkCx {
        let inv = fb.ins().splat(types::F64X2, inv);
        let magic = fb.ins().f64const(MAGIC);
        let magic = fb.ins().splat(types::F64X2, magic);
        // All ones on a finite row, else zero: a non-finite row's digits are all 0, as the
        // scalar quantizer's (its sums are recomputed in f64 anyway).
        let keep = fb.ins().uextend(types::I32, finite);
        let keep = fb.ins().ineg(keep);
        let keep = fb.ins().splat(types::I32X4, keep);
        let low: Vec<u8> = [0u8, 8, 16, 24].iter().flat_map(|&b| b..b + 4).collect();
        let low_halves = fb.func.dfg.immediates.push(ConstantData::from(low));
        let high: Vec<u8> = (8u8..16).chain(8..16).collect();
        let high_pair = fb.func.dfg.immediates.push(ConstantData::from(high));
        let zero = splat_i32(fb, 0);
        let sums = (0..s.limbs)
            .map(|_| {
                let v = fb.declare_var(types::I32X4);
                fb.def_var(v, zero);
                v
            })
            .collect();
        ChunkCx {
            limbs: s.limbs,
            padded: s.padded(),
            inv,
            magic,
            keep,
            low_halves,
            high_pair,
            sums,
        }
    }

    /// `round(x · inv)` of four activations as i32 lanes.
    fn rounded(&self, fb: &mut FunctionBuilder, x: Value) -> Value {
        let bytes = bitcast(fb, types::I8X16, x);
        let high = fb.ins().shuffle(bytes, bytes, self.high_pair);
        let high = bitcast(fb, types::F32X4, high);
        let halves = [x, high].map(|v| {
            let wide = fb.ins().fvpromote_low(v);
            let scaled = fb.ins().fmul(wide, self.inv);
            let t = fb.ins().fadd(scaled, self.magic);
            bitcast(fb, types::I8X16, t)
        });
        let packed = fb.ins().shuffle(halves[0], halves[1], self.low_halves);
        let lanes = bitcast(fb, types::I32X4, packed);
        fb.ins().band(lanes, self.keep)
    }

    /// The limbs of 16 activations stored at `dst` (limb `p` at `p · padded`), added to the sums.
    fn digits(&self, fb: &mut FunctionBuilder, xs: [Value; 4], dst: Value) {
        let mut rest = xs.map(|x| self.rounded(fb, x));
        let bias = splat_i32(fb, 128);
        let low_byte = splat_i32(fb, 255);
        for p in 0..self.limbs {
            let d = if p + 1 == self.limbs {
                rest
            } else {
                // The balanced low byte, in [-128, 127]; `rest - d` divides by 256.
                let d = rest.map(|r| {
                    let v = fb.ins().iadd(r, bias);
                    let v = fb.ins().band(v, low_byte);
                    fb.ins().isub(v, bias)
                });
                for (r, &d) in rest.iter_mut().zip(&d) {
                    let v = fb.ins().isub(*r, d);
                    *r = fb.ins().sshr_imm_s(v, 8);
                }
                d
            };
            let sum = self.sums[p];
            let mut acc = fb.use_var(sum);
            for &v in &d {
                acc = fb.ins().iadd(acc, v);
            }
            fb.def_var(sum, acc);
            let lo = fb.ins().snarrow(d[0], d[1]);
            let hi = fb.ins().snarrow(d[2], d[3]);
            let bytes = fb.ins().snarrow(lo, hi);
            fb.ins()
                .store(flags(), bytes, dst, (p * self.padded) as i32);
        }
    }
}
