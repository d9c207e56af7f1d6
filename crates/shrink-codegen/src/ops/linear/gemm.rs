//! Float matrix products (f32 and f64 MatMul, Gemm, DenseAct) as register-blocked SIMD code.
//!
//! B is laid out in column panels (at compile time when it is a constant, else per call in this
//! kernel's workspace): panel `q` holds columns `[q·NR, q·NR + w)`, `k`-major, zero-padded to a
//! whole number of vectors, so one `k` step of a panel is `w / lanes` consecutive vectors. A
//! tile of `MR` rows × one panel keeps its `MR·w/lanes` sums in vector registers for the whole
//! `k` loop: each step loads the panel's vectors once, splats one element of A per row, and
//! multiplies-adds. The tile's sums are stored to a workspace `C` (`[batch][M][N padded]`), and
//! a loop-language epilogue applies the op's finish (scale, bias, activation, rounding to the
//! output) to each real column.
//!
//! Numerics: every output is one sequential sum over `k` in the element type (f32 for f32
//! graphs, as ONNX runtimes do, within the contract's rtol 1e-3 / atol 1e-4 of the
//! interpreter's f64 sum), multiply-added with one rounding where the ISA has a fused
//! multiply-add, else (and with `CodegenOptions::fma` off) multiplied and added with two —
//! the same bits as the scalar fallback, on every ISA.
use super::matmul::{Dot, Operand, Plan};
use crate::CodegenOptions;
use crate::loops::ir::{BufId, NativeCx};
use crate::loops::native::counted_loop;
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, strides_of};
use cranelift_codegen::ir::{FuncRef, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};
use shrink_ir::{DType, Tensor};

/// Vector accumulators a tile aims for: 8 independent multiply-add chains cover the latency of
/// two FMA pipes, and leave 8 of x86-64's 16 vector registers for the panel's vectors and the
/// splat.
const ACCUMULATORS: usize = 8;

/// Most rows per tile.
const MAX_ROWS: usize = 4;

/// The element type as the native code sees it.
#[derive(Clone, Copy)]
struct Elem {
    ty: Ty,
    dtype: DType,
    scalar: Type,
    vector: Type,
    bytes: usize,
    lanes: usize,
}

impl Elem {
    fn of(dt: DType) -> Option<Elem> {
        match dt {
            DType::F32 => Some(Elem {
                ty: Ty::F32,
                dtype: dt,
                scalar: types::F32,
                vector: types::F32X4,
                bytes: 4,
                lanes: 4,
            }),
            DType::F64 => Some(Elem {
                ty: Ty::F64,
                dtype: dt,
                scalar: types::F64,
                vector: types::F64X2,
                bytes: 8,
                lanes: 2,
            }),
            _ => None,
        }
    }
}

/// Columns of a full panel: what the widest kernel covers with one tile (x86 zmm: 8 vectors of
/// 16 f32 for a single row, 4 for several), independent of the ISA so the layout is decided
/// before the target's kernel is.
fn panel_width(m: usize) -> usize {
    if m == 1 { 128 } else { 64 }
}

/// Panel widths are multiples of this many elements (one zmm of f32; whole vectors on every
/// ISA).
pub(super) const PANEL_UNIT: usize = 16;

/// The product's static shape as the native loops walk it; strides in elements.
#[derive(Clone)]
struct Geometry {
    elem: Elem,
    m: usize,
    k: usize,
    n: usize,
    batch: Vec<usize>,
    /// Per output batch axis, the stride into A, the panels and C.
    a_batch: Vec<usize>,
    p_batch: Vec<usize>,
    c_batch: Vec<usize>,
    /// A's strides along its rows and along `k`.
    a_outer: usize,
    a_inner: usize,
    /// Columns of a full panel ([`panel_width`]); how many full panels; the width of the last,
    /// narrower panel ([`PANEL_UNIT`]s, 0 when the full panels cover `n`).
    width: usize,
    full: usize,
    last: usize,
    /// The panels this piece of code computes, `[first, end)`: all of them, or one thread's
    /// share ([`Geometry::window`]).
    first: usize,
    end: usize,
}

impl Geometry {
    fn new(elem: Elem, plan: &Plan, a: &Operand) -> Geometry {
        let width = panel_width(plan.m);
        let (full, last) = (
            plan.n / width,
            (plan.n % width).div_ceil(PANEL_UNIT) * PANEL_UNIT,
        );
        Geometry {
            elem,
            m: plan.m,
            k: plan.k,
            n: plan.n,
            batch: plan.batch.clone(),
            a_batch: a.batch_strides.clone(),
            p_batch: vec![0; plan.batch.len()],
            c_batch: vec![],
            a_outer: a.outer,
            a_inner: a.inner,
            width,
            full,
            last,
            first: 0,
            end: full + usize::from(last > 0),
        }
    }

    /// Every panel, full and last.
    fn panel_count(&self) -> usize {
        self.full + usize::from(self.last > 0)
    }

    /// Part `part` of `parts` near-equal shares of the panels (whole panels, in order).
    fn window(&self, part: usize, parts: usize) -> Geometry {
        let n = self.panel_count();
        Geometry {
            first: n * part / parts,
            end: n * (part + 1) / parts,
            ..self.clone()
        }
    }

    /// Full panels in the window, and the width of its narrower last panel (0 if it has none).
    fn window_panels(&self) -> (usize, usize) {
        let full = self.end.min(self.full).saturating_sub(self.first);
        let last = if self.end > self.full { self.last } else { 0 };
        (full, last)
    }

    /// Columns of C and of the panels: `n` rounded up to whole panels.
    fn padded(&self) -> usize {
        self.full * self.width + self.last
    }

    fn panel_elems(&self) -> usize {
        self.k * self.padded()
    }

    /// `(first column, width)` of every panel.
    fn panels(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let full = (0..self.full).map(|q| (q * self.width, self.width));
        full.chain((self.last > 0).then_some((self.full * self.width, self.last)))
    }

    /// [`Geometry::panels`] of the window only.
    fn window_iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.panels().skip(self.first).take(self.end - self.first)
    }

    /// The 128-bit tiles: rows per tile and columns per tile (inside a panel).
    fn tile(&self) -> (usize, usize) {
        let vectors = match self.m {
            1 => ACCUMULATORS,
            2 => ACCUMULATORS / 2,
            _ => ACCUMULATORS / MAX_ROWS,
        };
        (self.m.clamp(1, MAX_ROWS), vectors * self.elem.lanes)
    }
}

/// Lowers the product with the SIMD tiles when its operands are f32 or f64 (`weight`: B's
/// value when it is a constant). False leaves it to the scalar loop nest.
pub(super) fn try_lower(
    b: &mut Builder,
    options: &CodegenOptions,
    plan: &Plan,
    a: &Operand,
    bm: &Operand,
    weight: Option<&Tensor>,
    dot: &dyn Dot,
) -> bool {
    let Some(elem) = Elem::of(a.t.dtype) else {
        return false;
    };
    let out_elems = plan.batch.iter().product::<usize>() * plan.m * plan.n;
    if bm.t.dtype != a.t.dtype || !dot.acc_ty().is_float() || bm.panels || out_elems == 0 {
        return false;
    }
    let mut g = Geometry::new(elem, plan, a);
    let batches: usize = plan.batch.iter().product();
    g.c_batch = strides_of(&plan.batch)
        .into_iter()
        .map(|s| s * g.m * g.padded())
        .collect();
    let shared_b = bm.batch_strides.iter().all(|&s| s == 0);
    let panels = match weight.filter(|_| shared_b) {
        Some(w) => {
            let bytes = constant_panels(w.bytes(), &g, bm.outer, bm.inner);
            b.table(elem.dtype, &[g.panel_elems()], bytes)
        }
        None => {
            let copies = if shared_b { 1 } else { batches };
            let panels = b.workspace(elem.dtype, &[copies * g.panel_elems()]);
            if !shared_b {
                g.p_batch = strides_of(&plan.batch)
                    .into_iter()
                    .map(|s| s * g.panel_elems())
                    .collect();
            }
            pack(b, &g, bm, &panels, shared_b);
            panels
        }
    };
    b.note_form("tiles");
    let c = b.workspace(elem.dtype, &[batches * g.m * g.padded()]);
    let (a_buf, p_buf, c_buf) = (a.t.buf, panels.buf, c.buf);
    let fuse = options.fma;
    // Threads take whole panels: each writes its own columns of C.
    let parts = options.parallel_parts(out_elems * g.k, g.panel_count());
    b.parallel(parts, |b, part| {
        let g = g.window(part, parts);
        let native = g.clone();
        b.native(
            "f32/f64 matrix product tiles",
            &[a.t, &panels, &c],
            move |cx| emit(cx, &native, fuse, a_buf, p_buf, c_buf),
            |b| fallback(b, &g, a.t, &panels, &c),
        );
    });
    let row = g.padded() as i64;
    b.nest(&plan.batch, |b, bidx| {
        let flat = linear(bidx, &strides_of(&plan.batch));
        let c_base = b.let_(flat.mul_k((g.m * g.padded()) as i64));
        b.for_(g.m, |b, i| {
            let c_row = b.let_(c_base.clone().add(i.clone().mul_k(row)));
            b.for_(g.n, |b, j| {
                let sum = b.load_raw(&c, c_row.clone().add(j.clone()));
                dot.epilogue(b, bidx, &i, &j, sum);
            });
        });
    });
    true
}

/// A constant B (`raw` little-endian elements at strides `(outer, inner)` for `(k, column)`)
/// in the panel layout, zero-padded.
fn constant_panels(raw: &[u8], g: &Geometry, outer: usize, inner: usize) -> Vec<u8> {
    let size = g.elem.bytes;
    let mut out = vec![0u8; g.panel_elems() * size];
    for (j0, w) in g.panels() {
        let base = j0 * g.k;
        for p in 0..g.k {
            for t in 0..w.min(g.n - j0) {
                let from = (p * outer + (j0 + t) * inner) * size;
                let to = (base + p * w + t) * size;
                out[to..to + size].copy_from_slice(&raw[from..from + size]);
            }
        }
    }
    out
}

/// Copies B into `panels` per call: once when every batch reads the same B (`shared`), else
/// once per output batch.
fn pack(b: &mut Builder, g: &Geometry, bm: &Operand, panels: &TensorRef, shared: bool) {
    let dims: Vec<usize> = if shared { vec![] } else { g.batch.clone() };
    let (k, n) = (g.k as i64, g.n as i64);
    b.nest(&dims, |b, bidx| {
        // A shared B reads batch 0 (every stride is 0).
        let src = b.let_(if shared {
            Expr::idx(0)
        } else {
            linear(bidx, &bm.batch_strides)
        });
        let dst = b.let_(linear(bidx, &strides_of(&dims)).mul_k(g.panel_elems() as i64));
        let copy = |b: &mut Builder, j0: Expr, w: usize, clamp: bool| {
            b.for_(g.k, |b, p| {
                let from = b.let_(src.clone().add(p.clone().mul_k(bm.outer as i64)));
                let to = b.let_(dst.clone().add(j0.clone().mul_k(k)).add(p.mul_k(w as i64)));
                b.for_(w, |b, t| {
                    let j = j0.clone().add(t.clone());
                    let v = if clamp {
                        let j = b.let_(j);
                        let at = j.clone().min(Expr::idx(n - 1)).mul_k(bm.inner as i64);
                        let v = b.load(bm.t, from.clone().add(at));
                        Expr::select(j.lt(Expr::idx(n)), v, Expr::lit(g.elem.ty, 0.0))
                    } else {
                        b.load(bm.t, from.clone().add(j.mul_k(bm.inner as i64)))
                    };
                    b.store(panels, to.clone().add(t), v);
                });
            });
        };
        if g.full > 0 {
            b.for_(g.full, |b, q| {
                copy(b, q.mul_k(g.width as i64), g.width, false)
            });
        }
        if g.last > 0 {
            copy(b, Expr::idx((g.full * g.width) as i64), g.last, true);
        }
    });
}

/// The scalar form of [`emit`] for ISAs without 128-bit SIMD: the same sums in the same order,
/// multiplied and added with two roundings, over the real columns only.
fn fallback(b: &mut Builder, g: &Geometry, a: &TensorRef, panels: &TensorRef, c: &TensorRef) {
    let zero = Expr::lit(g.elem.ty, 0.0);
    b.nest(&g.batch, |b, bidx| {
        let a_base = b.let_(linear(bidx, &g.a_batch));
        let p_base = b.let_(linear(bidx, &g.p_batch));
        let c_base = b.let_(linear(bidx, &g.c_batch));
        b.for_(g.m, |b, i| {
            let a_row = b.let_(a_base.clone().add(i.clone().mul_k(g.a_outer as i64)));
            let c_row = b.let_(c_base.clone().add(i.mul_k(g.padded() as i64)));
            for (j0, w) in g.window_iter() {
                let base = b.let_(p_base.clone().add_k((j0 * g.k) as i64));
                b.for_(w.min(g.n - j0), |b, t| {
                    let acc = b.mutable(zero.clone());
                    b.for_(g.k, |b, p| {
                        let x = b.load_raw(a, a_row.clone().add(p.clone().mul_k(g.a_inner as i64)));
                        let y =
                            b.load_raw(panels, base.clone().add(p.mul_k(w as i64)).add(t.clone()));
                        let next = b.get(acc).add(x.mul(y));
                        b.set(acc, next);
                    });
                    b.store_raw(c, c_row.clone().add_k(j0 as i64).add(t), b.get(acc));
                });
            }
        });
    });
}

/// The tiles in Cranelift IR. Every address is in range by construction: batch coordinates,
/// rows `< m`, `k` steps `< k` and panel columns `< padded` index A, the panels and C within
/// the extents their buffers were made with.
fn emit(cx: &mut NativeCx, g: &Geometry, fuse: bool, a: BufId, panels: BufId, c: BufId) {
    let base = |b: BufId| cx.bases[b.0 as usize];
    let (a, p, c) = (base(a), base(panels), base(c));
    let fuse = fuse && cx.fma;
    // f32 with AVX-512 or AVX2 + FMA: one matrix as zmm or ymm machine code, called per batch.
    let machine = match (g.elem.ty, cx.float_wide) {
        (Ty::F32, Some(wide)) => x86::matrix(g, fuse, wide).and_then(|code| cx.place_machine(code)),
        _ => None,
    };
    let t = Tiles {
        g,
        ptr: cx.pointer,
        fma: fuse,
        machine,
    };
    t.batches(cx.fb, 0, a, p, c);
}

struct Tiles<'a> {
    g: &'a Geometry,
    ptr: Type,
    fma: bool,
    /// The matrix as machine code, when the target has wider vectors than Cranelift's.
    machine: Option<FuncRef>,
}

/// `base + i · stride` bytes (`base` when the stride is 0).
fn advance(fb: &mut FunctionBuilder, base: Value, i: Value, stride: usize) -> Value {
    if stride == 0 {
        return base;
    }
    let off = fb.ins().imul_imm_s(i, stride as i64);
    fb.ins().iadd(base, off)
}

impl Tiles<'_> {
    fn bytes(&self, elems: usize) -> usize {
        elems * self.g.elem.bytes
    }

    fn batches(&self, fb: &mut FunctionBuilder, axis: usize, a: Value, p: Value, c: Value) {
        let g = self.g;
        if axis == g.batch.len() {
            // The window's first panel, and its columns of C.
            let first = g.first * g.width;
            let p = fb.ins().iadd_imm_s(p, self.bytes(first * g.k) as i64);
            let c = fb.ins().iadd_imm_s(c, self.bytes(first) as i64);
            match self.machine {
                Some(f) => {
                    fb.ins().call(f, &[a, p, c]);
                }
                None => self.matrix(fb, a, p, c),
            }
            return;
        }
        counted_loop(fb, self.ptr, g.batch[axis] as i64, |fb, i| {
            let a = advance(fb, a, i, self.bytes(g.a_batch[axis]));
            let p = advance(fb, p, i, self.bytes(g.p_batch[axis]));
            let c = advance(fb, c, i, self.bytes(g.c_batch[axis]));
            self.batches(fb, axis + 1, a, p, c);
        });
    }

    /// One matrix: panels outer, row tiles inner, so a panel (`k · width` elements) is read
    /// from memory once and stays in cache while every row tile uses it; A's rows are re-read
    /// per panel instead, and the product's A is the smaller operand in the layers this is for.
    fn matrix(&self, fb: &mut FunctionBuilder, a: Value, p: Value, c: Value) {
        let g = self.g;
        let (full, last) = g.window_panels();
        if full > 0 {
            counted_loop(fb, self.ptr, full as i64, |fb, q| {
                let p = advance(fb, p, q, self.bytes(g.width * g.k));
                let c = advance(fb, c, q, self.bytes(g.width));
                self.columns(fb, g.width, a, p, c);
            });
        }
        if last > 0 {
            let p = fb
                .ins()
                .iadd_imm_s(p, self.bytes(full * g.width * g.k) as i64);
            let c = fb.ins().iadd_imm_s(c, self.bytes(full * g.width) as i64);
            self.columns(fb, last, a, p, c);
        }
    }

    /// The tile columns of one panel of `width` columns at `p` (C's columns at `c`).
    fn columns(&self, fb: &mut FunctionBuilder, width: usize, a: Value, p: Value, c: Value) {
        let (_, cols) = self.g.tile();
        let (whole, rest) = (width / cols, width % cols);
        let step = self.bytes(cols);
        match whole {
            0 => {}
            1 => self.rows(fb, cols, width, a, p, c),
            _ => counted_loop(fb, self.ptr, whole as i64, |fb, s| {
                let p = advance(fb, p, s, step);
                let c = advance(fb, c, s, step);
                self.rows(fb, cols, width, a, p, c);
            }),
        }
        if rest > 0 {
            let p = fb.ins().iadd_imm_s(p, (whole * step) as i64);
            let c = fb.ins().iadd_imm_s(c, (whole * step) as i64);
            self.rows(fb, rest, width, a, p, c);
        }
    }

    /// Every row tile of A times `cols` columns of a panel `width` wide at `p`, into C at `c`.
    fn rows(
        &self,
        fb: &mut FunctionBuilder,
        cols: usize,
        width: usize,
        a: Value,
        p: Value,
        c: Value,
    ) {
        let g = self.g;
        let (mr, _) = g.tile();
        let (tiles, rest) = (g.m / mr, g.m % mr);
        let a_tile = self.bytes(mr * g.a_outer);
        let c_tile = self.bytes(mr * g.padded());
        if tiles > 0 {
            counted_loop(fb, self.ptr, tiles as i64, |fb, t| {
                let a = advance(fb, a, t, a_tile);
                let c = advance(fb, c, t, c_tile);
                self.tile(fb, mr, cols, width, a, p, c);
            });
        }
        if rest > 0 {
            let a = fb.ins().iadd_imm_s(a, (tiles * a_tile) as i64);
            let c = fb.ins().iadd_imm_s(c, (tiles * c_tile) as i64);
            self.tile(fb, rest, cols, width, a, p, c);
        }
    }

    /// `rows` rows of A times `cols` columns of a panel `width` wide, into C.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        fb: &mut FunctionBuilder,
        rows: usize,
        cols: usize,
        width: usize,
        a: Value,
        p: Value,
        c: Value,
    ) {
        let g = self.g;
        let e = g.elem;
        let vectors = cols / e.lanes;
        let zero = match e.ty {
            Ty::F32 => fb.ins().f32const(0.0),
            _ => fb.ins().f64const(0.0),
        };
        let zero = fb.ins().splat(e.vector, zero);
        let accs: Vec<Variable> = (0..rows * vectors)
            .map(|_| {
                let v = fb.declare_var(e.vector);
                fb.def_var(v, zero);
                v
            })
            .collect();
        // One `k` step per iteration: Cranelift's mid-end places pure values at their first use,
        // chain by chain, so with two steps per iteration the first accumulator's chain pulls
        // every step's panel vectors and splats in at once, and the tile spills.
        let (a_step, p_step) = (self.bytes(g.a_inner), self.bytes(width));
        counted_loop(fb, self.ptr, g.k as i64, |fb, kk| {
            let a = advance(fb, a, kk, a_step);
            let p = advance(fb, p, kk, p_step);
            self.step(fb, &accs, rows, vectors, a, p);
        });
        let flags = MemFlagsData::new().with_notrap();
        for r in 0..rows {
            for v in 0..vectors {
                let acc = fb.use_var(accs[r * vectors + v]);
                let off = self.bytes(r * g.padded() + v * e.lanes);
                store(fb, flags, acc, c, off);
            }
        }
    }

    /// One `k` step of a tile: A's elements at `a` (row `r` a further `r · a_outer`), the
    /// panel's vectors at `p`.
    fn step(
        &self,
        fb: &mut FunctionBuilder,
        accs: &[Variable],
        rows: usize,
        vectors: usize,
        a: Value,
        p: Value,
    ) {
        let e = self.g.elem;
        // A and the panels are read-only to this loop (the panels are packed before it): pure
        // loads, scheduled next to their use.
        let pure = MemFlagsData::new()
            .with_notrap()
            .with_readonly()
            .with_can_move();
        let bv: Vec<Value> = (0..vectors)
            .map(|v| load(fb, e.vector, pure, p, self.bytes(v * e.lanes)))
            .collect();
        for r in 0..rows {
            let x = load(fb, e.scalar, pure, a, self.bytes(r * self.g.a_outer));
            let x = fb.ins().splat(e.vector, x);
            for (v, &y) in bv.iter().enumerate() {
                let slot = accs[r * vectors + v];
                let acc = fb.use_var(slot);
                let next = if self.fma {
                    fb.ins().fma(x, y, acc)
                } else {
                    let prod = fb.ins().fmul(x, y);
                    fb.ins().fadd(acc, prod)
                };
                fb.def_var(slot, next);
            }
        }
    }
}

/// A load at `base + off` bytes (the offset folded into the instruction when it fits).
fn load(fb: &mut FunctionBuilder, ty: Type, flags: MemFlagsData, base: Value, off: usize) -> Value {
    match i32::try_from(off) {
        Ok(off) => fb.ins().load(ty, flags, base, off),
        Err(_) => {
            let at = fb.ins().iadd_imm_s(base, off as i64);
            fb.ins().load(ty, flags, at, 0)
        }
    }
}

fn store(fb: &mut FunctionBuilder, flags: MemFlagsData, v: Value, base: Value, off: usize) {
    match i32::try_from(off) {
        Ok(off) => {
            fb.ins().store(flags, v, base, off);
        }
        Err(_) => {
            let at = fb.ins().iadd_imm_s(base, off as i64);
            fb.ins().store(flags, v, at, 0);
        }
    }
}

#[cfg(test)]
mod tests;
mod x86;
