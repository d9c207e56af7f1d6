//! f32 products `y = x · W` with a constant, mostly-zero weight (pruned dense layers): only W's
//! nonzeros are stored, and only they are multiplied.
//!
//! Layout (read-only data, built at compile time from the constant): the output columns sorted
//! by descending nonzero count (a block's columns then have about as many nonzeros, so little
//! of a chunk is padding: on a random 90%-pruned 1024² weight 0.1% instead of 9.7%), in blocks of
//! [`LANES`] (16) slots; block `b` has `chunks[b]` chunks, its most nonzeros of a column; chunk
//! `t` holds in lane `l` the `t`-th nonzero (ascending row `p`) of the column of slot `16·b + l`
//! as a row index (u16 when `k ≤ 65536`, else u32) and a value (f32), padded with index 0 / value 0
//! after a column's last nonzero and for the columns past `n`. One chunk is 16 contiguous
//! indices and 16 contiguous values, so a block's whole work is two sequential streams.
//!
//! Kernels (all write the sums to a workspace `CT[slot][row]`, then the op's epilogue runs as
//! the tiles' does, reading each output column from its slot):
//! - batch 1, x86-64 AVX-512 F or AVX2 + FMA3 (`sparse/x86.rs`): per chunk one `vgatherdps`
//!   of the 16 activations by the 16 indices (two of 8 in AVX2; x is in L1) and one
//!   multiply-add into the block's accumulator, whose lanes are its 16 columns: no horizontal
//!   sums.
//! - batch ≥ 2, the same ISAs: x is first copied transposed into the workspace,
//!   `xT[pass][k][w]` (`w` = 4, 8 or 16 batch rows a pass: an xmm, ymm or zmm — two ymm in
//!   AVX2 —, so that at small batches xT stays in L1), so each nonzero is one broadcast weight
//!   times one vector of `w` rows' activations, multiply-added into its column's accumulator
//!   (one per lane of the block).
//! - elsewhere, 128-bit Cranelift IR per batch row: four f32x4 accumulators per block, the
//!   activations loaded one by one into lanes; on ISAs without SIMD a loop-language form.
//!
//! Numerics: every column is one sequential sum over its nonzeros in ascending `p`, in f32, each
//! a fused multiply-add where the target has one and `fma` is on, else multiplied and added
//! (every path then gives the same bits). A skipped zero weight and a padding entry add exactly
//! ±0 in the dense tiles' sequential sum, so for finite activations this is the dense tiles'
//! sum bit for bit (up to the sign of a zero result). A weight that is not finite keeps the
//! dense path (`build` refuses it). Activations: `0 · inf = NaN` in the graph, which a skipped
//! zero would lose, so the kernel also computes per batch row `Σ (x − x)` (NaN exactly when the
//! row has an inf or NaN); such a row is recomputed in the loop language from the nonzeros
//! alone: a column is NaN when a non-finite activation meets one of its zero weights (fewer of
//! the row's non-finite activations among its nonzeros than in the row), else the sum of its
//! nonzero terms (then itself inf or NaN), exactly the dense product's class.
//!
//! Threads (`--threads`, JIT): a layer whose predicted time is that of at least
//! [`crate::options::PARALLEL_MIN_MACS`] dense multiply-adds is split into parts that take
//! shares of the blocks by chunk count (each writes its own CT columns and has its own xT);
//! only the machine code splits, elsewhere part 0 computes every block.
//!
//! When: `loops_over` asks [`try_lower`] first for a constant f32 weight; it lowers sparse when
//! the cost model ([`crate::cost::CostModel::predict_sparse`]) predicts it faster than the
//! tiles (or, with `--optimize size`, smaller), reported as strategy `dense`.
use super::matmul::{Dot, Operand, Plan};
use crate::cost::SparseShape;
use crate::loops::emit::Wide;
use crate::loops::ir::{BufId, NativeCx};
use crate::loops::native::counted_loop;
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, strides_of};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::FunctionBuilder;
use shrink_ir::{DType, Tensor};

/// Output columns per block, the lanes of one chunk (one zmm of f32).
pub(crate) const LANES: usize = 16;

/// Most batch-row passes the machine code unrolls (a pass is a few hundred bytes of code).
const MAX_PASSES: usize = 64;

/// The nonzeros of a constant weight in the block layout (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub k: usize,
    pub n: usize,
    /// The output column of each slot (`16·block + lane`): the columns by descending nonzero
    /// count, so that the 16 columns of a block have about as many nonzeros and a block's
    /// chunks (its longest column's count) carry little padding.
    pub columns: Vec<usize>,
    /// Chunks of each block.
    pub chunks: Vec<usize>,
    /// First chunk of each block.
    pub starts: Vec<usize>,
    /// `[chunk][lane]` row indices and values.
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
    pub nonzeros: usize,
}

impl Layout {
    /// The layout of the f32 weight `raw` (element `(p, j)` at `p·outer + j·inner`) of `k` rows
    /// and `n` columns; None when a weight is not finite (the dense path keeps its NaN/inf).
    pub(crate) fn build(
        raw: &[u8],
        k: usize,
        n: usize,
        outer: usize,
        inner: usize,
    ) -> Option<Self> {
        let at = |p: usize, j: usize| {
            let o = (p * outer + j * inner) * 4;
            f32::from_le_bytes(raw[o..o + 4].try_into().expect("4 bytes"))
        };
        let mut cols: Vec<Vec<(u32, f32)>> = Vec::with_capacity(n);
        for j in 0..n {
            let mut col = vec![];
            for p in 0..k {
                let w = at(p, j);
                if !w.is_finite() {
                    return None;
                }
                if w != 0.0 {
                    col.push((p as u32, w));
                }
            }
            cols.push(col);
        }
        let nonzeros = cols.iter().map(Vec::len).sum();
        // Longest first; ties by column, so the layout is a function of the weight alone.
        let mut columns: Vec<usize> = (0..n).collect();
        columns.sort_by_key(|&j| (std::cmp::Reverse(cols[j].len()), j));
        let blocks = n.div_ceil(LANES);
        let (mut chunks, mut starts) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
        let (mut idx, mut val) = (vec![], vec![]);
        let mut total = 0;
        for block in columns.chunks(LANES) {
            let c = block.iter().map(|&j| cols[j].len()).max().unwrap_or(0);
            for t in 0..c {
                for l in 0..LANES {
                    let (p, w) = block
                        .get(l)
                        .and_then(|&j| cols[j].get(t))
                        .copied()
                        .unwrap_or((0, 0.0));
                    idx.push(p);
                    val.push(w);
                }
            }
            chunks.push(c);
            starts.push(total);
            total += c;
        }
        Some(Layout {
            k,
            n,
            columns,
            chunks,
            starts,
            idx,
            val,
            nonzeros,
        })
    }

    /// The slot of each output column (the inverse of [`Self::columns`]); None when every
    /// column is in its own slot.
    fn slots(&self) -> Option<Vec<i64>> {
        if self.columns.iter().enumerate().all(|(s, &j)| s == j) {
            return None;
        }
        let mut slot = vec![0i64; self.n];
        for (s, &j) in self.columns.iter().enumerate() {
            slot[j] = s as i64;
        }
        Some(slot)
    }

    pub(crate) fn blocks(&self) -> usize {
        self.chunks.len()
    }

    /// Chunks of every block together.
    pub(crate) fn total_chunks(&self) -> usize {
        self.chunks.iter().sum()
    }

    /// Bytes per stored index.
    pub(crate) fn idx_bytes(&self) -> usize {
        if self.k <= 1 << 16 { 2 } else { 4 }
    }

    fn idx_table(&self) -> (DType, Vec<u8>) {
        if self.idx_bytes() == 2 {
            let b = self
                .idx
                .iter()
                .flat_map(|&i| (i as u16).to_le_bytes())
                .collect();
            (DType::U16, b)
        } else {
            (
                DType::U32,
                self.idx.iter().flat_map(|i| i.to_le_bytes()).collect(),
            )
        }
    }
}

/// The static shape the kernels walk: `rows` batch rows of A (row `r`, element `p` at
/// `r·a_outer + p·a_inner`) times the layout.
#[derive(Clone)]
pub(crate) struct Geometry {
    pub rows: usize,
    pub k: usize,
    pub n: usize,
    pub a_outer: usize,
    pub a_inner: usize,
    pub chunks: Vec<usize>,
    pub idx_bytes: usize,
    /// Batch rows per xT row (a pass): 4, 8 or 16 at batch ≥ 2 (xmm, ymm, zmm), 1 at batch 1.
    pub width: usize,
    /// Row slots of CT per column: whole passes of `width` rows.
    pub m_pad: usize,
    /// Where the per-row finiteness flags and `xT` start in the workspace (elements).
    pub flags_at: usize,
    pub xt_at: usize,
    /// Threads the kernel is split across (each has its own `xT`), this code's part, and the
    /// blocks it computes, `[first, end)` ([`Geometry::part`]).
    pub parts: usize,
    pub part: usize,
    pub first: usize,
    pub end: usize,
}

impl Geometry {
    fn new(l: &Layout, rows: usize, a_outer: usize, a_inner: usize) -> Geometry {
        let width = match rows {
            1 => 1,
            2..=4 => 4,
            5..=8 => 8,
            _ => LANES,
        };
        let m_pad = rows.div_ceil(width) * width;
        let flags_at = l.blocks() * LANES * m_pad;
        let xt_at = flags_at + m_pad;
        Geometry {
            rows,
            k: l.k,
            n: l.n,
            a_outer,
            a_inner,
            chunks: l.chunks.clone(),
            idx_bytes: l.idx_bytes(),
            width,
            m_pad,
            flags_at,
            xt_at,
            parts: 1,
            part: 0,
            first: 0,
            end: l.blocks(),
        }
    }

    pub(crate) fn blocks(&self) -> usize {
        self.chunks.len()
    }

    /// Part `part` of `parts`: the blocks whose chunks are that share of all chunks (the
    /// columns are sorted by nonzero count, so equal block counts would not be equal work).
    /// Each part transposes x into its own `xT`; part 0 also writes the flags.
    fn part(&self, part: usize, parts: usize) -> Geometry {
        let total: usize = self.chunks.iter().sum();
        let at = |p: usize| {
            let want = total * p / parts;
            let mut sum = 0;
            (0..self.blocks())
                .find(|&b| {
                    let reached = sum >= want;
                    sum += self.chunks[b];
                    reached
                })
                .unwrap_or(self.blocks())
        };
        let end = if part + 1 == parts {
            self.blocks()
        } else {
            at(part + 1)
        };
        Geometry {
            parts,
            part,
            first: if part == 0 { 0 } else { at(part) },
            end,
            ..self.clone()
        }
    }

    /// Blocks of this part's window.
    pub(crate) fn window_blocks(&self) -> usize {
        self.end - self.first
    }

    /// Chunks before this part's window, and in it.
    pub(crate) fn window_chunks(&self) -> (usize, usize) {
        let before = self.chunks[..self.first].iter().sum();
        (before, self.chunks[self.first..self.end].iter().sum())
    }

    /// Where this part's `xT` starts in the workspace (elements).
    pub(crate) fn xt_of_part(&self) -> usize {
        self.xt_at + self.part * self.m_pad * self.k
    }

    pub(crate) fn passes(&self) -> usize {
        self.m_pad / self.width
    }

    /// Elements of the workspace: CT, the flags, an `xT` per part (batch ≥ 2).
    fn workspace(&self) -> usize {
        let xt = if self.rows == 1 {
            0
        } else {
            self.m_pad * self.k
        };
        self.xt_at + self.parts * xt
    }
}

/// Lowers the product sparse when the weight is a finite f32 constant and the cost model
/// prefers it to the tiles; false leaves it to them.
#[allow(clippy::too_many_arguments)]
pub(super) fn try_lower(
    b: &mut Builder,
    o: &crate::CodegenOptions,
    plan: &Plan,
    a: &Operand,
    bm: &Operand,
    weight: &Tensor,
    dot: &dyn Dot,
) -> bool {
    let f32s = a.t.dtype == DType::F32 && bm.t.dtype == DType::F32 && weight.dtype() == DType::F32;
    let shared = bm.batch_strides.iter().all(|&s| s == 0);
    let batches: usize = plan.batch.iter().product();
    // Batch axes flatten into rows when A's batches follow each other row by row.
    let flat_rows = strides_of(&plan.batch)
        .iter()
        .zip(&a.batch_strides)
        .all(|(&s, &as_)| as_ == s * plan.m * a.outer);
    let rows = batches * plan.m;
    if !f32s
        || !shared
        || !flat_rows
        || bm.panels
        || !dot.acc_ty().is_float()
        || rows == 0
        || plan.n == 0
        || plan.k == 0
        || (rows == 1 && a.inner != 1)
    {
        return false;
    }
    let Some(l) = Layout::build(weight.bytes(), plan.k, plan.n, bm.outer, bm.inner) else {
        return false;
    };
    let g = Geometry::new(&l, rows, a.outer, a.inner);
    let take = chosen(o, &l, rows);
    #[cfg(test)]
    let take = tests::FORCE.with(|f| f.get()).unwrap_or(take);
    if !take {
        return false;
    }
    let predicted = o.cost.predict_sparse(&shape(&l, rows));
    b.note_predicted_ns(predicted);
    // The threshold of splitting is in dense multiply-adds: the layer's predicted time in them.
    let macs = (predicted / o.cost.dense_mac.max(1e-6)) as usize;
    let parts = if machine_fits(&g) {
        o.parallel_parts(macs, l.blocks())
    } else {
        1
    };
    lower(b, o.fma, parts, plan, a.t, &l, &g, dot);
    true
}

/// What the cost model knows of the sparse kernel on layout `l` at `rows` batch rows.
pub(crate) fn shape(l: &Layout, rows: usize) -> SparseShape {
    SparseShape {
        rows: l.n,
        cols: l.k,
        batch: rows,
        slots: l.total_chunks() * LANES,
        nonzeros: l.nonzeros,
    }
}

/// Whether the sparse kernel is predicted faster (or smaller, with `--optimize size`) than the
/// tiles on this layer.
pub(crate) fn chosen(o: &crate::CodegenOptions, l: &Layout, rows: usize) -> bool {
    let s = shape(l, rows);
    match o.goal {
        crate::Goal::Speed => o.cost.predict_sparse(&s) < o.cost.predict_tiles(&s),
        crate::Goal::Size => crate::cost::sparse_bytes(&s, l.idx_bytes()) < 4 * l.k * l.n,
    }
}

/// The sparse kernel, the recomputation of non-finite rows, and the epilogue.
#[allow(clippy::too_many_arguments)]
fn lower(
    b: &mut Builder,
    fma: bool,
    parts: usize,
    plan: &Plan,
    x: &TensorRef,
    l: &Layout,
    g: &Geometry,
    dot: &dyn Dot,
) {
    b.note_form("sparse");
    // An empty layout (every weight zero) still gets one-element tables.
    let (idt, mut ibytes) = l.idx_table();
    if ibytes.is_empty() {
        ibytes = vec![0; l.idx_bytes()];
    }
    let idx = b.table(idt, &[l.idx.len().max(1)], ibytes);
    let val = b.table_f32(if l.val.is_empty() { &[0.0] } else { &l.val });
    let counts: Vec<u32> = l.chunks.iter().map(|&c| c as u32).collect();
    let cnt = b.table(
        DType::U32,
        &[counts.len()],
        counts.iter().flat_map(|c| c.to_le_bytes()).collect(),
    );
    // Threads take shares of the blocks, each writing its own columns of CT. Only the machine
    // code is split: elsewhere part 0 computes every block (the other parts are empty).
    let split = Geometry {
        parts: parts.max(1),
        ..g.clone()
    };
    let g = &split;
    let ws = b.workspace(DType::F32, &[g.workspace()]);
    let bufs = [x.buf, idx.buf, val.buf, cnt.buf, ws.buf];
    b.parallel(g.parts, |b, part| {
        let native = g.part(part, g.parts);
        b.native(
            "f32 sparse product",
            &[x, &idx, &val, &cnt, &ws],
            move |cx| emit(cx, &native, fma, bufs),
            |b| {
                if part == 0 {
                    fallback(b, g, l, x, &idx, &val, &ws)
                }
            },
        );
    });
    let starts = b.table_i64(&l.starts.iter().map(|&s| s as i64).collect::<Vec<_>>());
    let cnt64 = b.table_i64(&l.chunks.iter().map(|&c| c as i64).collect::<Vec<_>>());
    let tabs = Tabs {
        idx: &idx,
        val: &val,
        starts: &starts,
        chunks: &cnt64,
        max_chunks: l.chunks.iter().copied().max().unwrap_or(0),
    };
    let slots = l.slots().map(|s| b.table_i64(&s));
    let m_pad = g.m_pad as i64;
    b.nest(&plan.batch, |b, bidx| {
        let flat = linear(bidx, &strides_of(&plan.batch));
        let r0 = b.let_(flat.mul_k(plan.m as i64));
        b.for_(plan.m, |b, i| {
            let r = b.let_(r0.clone().add(i.clone()));
            let flag = b.load_raw(&ws, r.clone().add_k(g.flags_at as i64));
            let flag = b.let_(flag);
            b.if_(flag.clone().ne(flag), |b| {
                recompute(b, g, x, &ws, &tabs, &r)
            });
            b.for_(g.n, |b, j| {
                let slot = match &slots {
                    Some(t) => b.load_raw(t, j.clone()),
                    None => j.clone(),
                };
                let sum = b.load_raw(&ws, slot.mul_k(m_pad).add(r.clone()));
                dot.epilogue(b, bidx, &i, &j, sum);
            });
        });
    });
}

struct Tabs<'a> {
    idx: &'a TensorRef,
    val: &'a TensorRef,
    starts: &'a TensorRef,
    chunks: &'a TensorRef,
    max_chunks: usize,
}

/// Row `r` of the product from the nonzeros alone, for a row with an inf or NaN activation: a
/// column is NaN when one of the row's non-finite activations meets one of its zero weights
/// (`0 · inf` and `0 · NaN` of the dense sum), else its nonzero terms' sum.
fn recompute(b: &mut Builder, g: &Geometry, x: &TensorRef, ws: &TensorRef, t: &Tabs, r: &Expr) {
    let row = b.let_(r.clone().mul_k(g.a_outer as i64));
    let bad = b.mutable(Expr::idx(0));
    b.for_(g.k, |b, p| {
        let v = b.load_raw(x, row.clone().add(p.mul_k(g.a_inner as i64)));
        let v = b.let_(v);
        let inc = Expr::select(finite(v), Expr::idx(0), Expr::idx(1));
        let next = b.get(bad).add(inc);
        b.set(bad, next);
    });
    let nf = b.get(bad);
    b.for_(g.blocks(), |b, blk| {
        let start = b.load_raw(t.starts, blk.clone());
        let start = b.let_(start);
        let chunks = b.load_raw(t.chunks, blk.clone());
        let chunks = b.let_(chunks);
        b.for_(LANES, |b, lane| {
            let j = b.let_(blk.clone().mul_k(LANES as i64).add(lane.clone()));
            b.if_(j.clone().lt(Expr::idx(g.n as i64)), |b| {
                let s = b.mutable(Expr::f32(0.0));
                let hits = b.mutable(Expr::idx(0));
                b.for_(t.max_chunks, |b, c| {
                    b.if_(c.clone().lt(chunks.clone()), |b| {
                        let e = start.clone().add(c).mul_k(LANES as i64).add(lane.clone());
                        let e = b.let_(e);
                        let w = b.load_raw(t.val, e.clone());
                        let w = b.let_(w);
                        b.if_(w.clone().ne(Expr::f32(0.0)), |b| {
                            let p = b.load(t.idx, e).cast(Ty::I64);
                            let v = b.load_raw(x, row.clone().add(p.mul_k(g.a_inner as i64)));
                            let v = b.let_(v);
                            let next = b.get(s).add(w.mul(v.clone()));
                            b.set(s, next);
                            let inc = Expr::select(finite(v), Expr::idx(0), Expr::idx(1));
                            let next = b.get(hits).add(inc);
                            b.set(hits, next);
                        });
                    });
                });
                let out = Expr::select(b.get(hits).lt(nf.clone()), Expr::f32(f32::NAN), b.get(s));
                b.store_raw(ws, j.mul_k(g.m_pad as i64).add(r.clone()), out);
            });
        });
    });
}

/// Whether an f32 is finite: `v − v` is 0 exactly then (NaN for ±inf and NaN).
fn finite(v: Expr) -> Expr {
    v.clone().sub(v).eq(Expr::f32(0.0))
}

/// The loop-language form of the kernel, for ISAs without 128-bit SIMD: the same sums in the
/// same order, multiplied and added with two roundings.
fn fallback(
    b: &mut Builder,
    g: &Geometry,
    l: &Layout,
    x: &TensorRef,
    idx: &TensorRef,
    val: &TensorRef,
    ws: &TensorRef,
) {
    b.for_(g.rows, |b, r| {
        let row = b.let_(r.clone().mul_k(g.a_outer as i64));
        let flag = b.mutable(Expr::f32(0.0));
        b.for_(g.k, |b, p| {
            let v = b.load_raw(x, row.clone().add(p.mul_k(g.a_inner as i64)));
            let v = b.let_(v);
            let next = b.get(flag).add(v.clone().sub(v));
            b.set(flag, next);
        });
        b.store_raw(ws, r.clone().add_k(g.flags_at as i64), b.get(flag));
        for (blk, (&chunks, &start)) in l.chunks.iter().zip(&l.starts).enumerate() {
            b.for_(LANES, |b, lane| {
                let acc = b.mutable(Expr::f32(0.0));
                b.for_(chunks, |b, c| {
                    let e = c.add_k(start as i64).mul_k(LANES as i64).add(lane.clone());
                    let e = b.let_(e);
                    let w = b.load_raw(val, e.clone());
                    let p = b.load(idx, e).cast(Ty::I64);
                    let v = b.load_raw(x, row.clone().add(p.mul_k(g.a_inner as i64)));
                    let next = b.get(acc).add(w.mul(v));
                    b.set(acc, next);
                });
                let j = lane.add_k((blk * LANES) as i64);
                b.store_raw(ws, j.mul_k(g.m_pad as i64).add(r.clone()), b.get(acc));
            });
        }
    });
}

/// The kernel in Cranelift IR, or as AVX-512 or AVX2 machine code where the target has it.
fn emit(cx: &mut NativeCx, g: &Geometry, fuse: bool, bufs: [BufId; 5]) {
    let [x, idx, val, cnt, ws] = bufs.map(|b| cx.bases[b.0 as usize]);
    let fuse = fuse && cx.fma;
    let zmm = match cx.float_wide {
        Some(Wide::Zmm) => Some(true),
        Some(Wide::YmmVex) => Some(false),
        _ => None,
    };
    if let Some(zmm) = zmm
        && let Some(code) = x86::kernel(g, fuse, zmm)
        && cx.call_machine(code, &[x, idx, val, cnt, ws])
    {
        return;
    }
    if g.part == 0 {
        Portable {
            g,
            fuse,
            ptr: cx.pointer,
        }
        .emit(cx.fb, x, idx, val, ws);
    }
}

/// The 128-bit IR kernel: per batch row and block, four f32x4 accumulators (the block's 16
/// columns), each chunk's activations loaded lane by lane.
struct Portable<'a> {
    g: &'a Geometry,
    fuse: bool,
    ptr: cranelift_codegen::ir::Type,
}

impl Portable<'_> {
    fn emit(&self, fb: &mut FunctionBuilder, x: Value, idx: Value, val: Value, ws: Value) {
        let g = self.g;
        // Every access is in range by construction: rows `< rows`, indices `< k` (the
        // layout's), chunks within the tables, CT slots `< blocks · 16 · m_pad`.
        let pure = MemFlagsData::new()
            .with_notrap()
            .with_readonly()
            .with_can_move();
        let rw = MemFlagsData::new().with_notrap();
        counted_loop(fb, self.ptr, g.rows as i64, |fb, r| {
            let off = fb.ins().imul_imm_s(r, (4 * g.a_outer) as i64);
            let xr = fb.ins().iadd(x, off);
            // Σ (x − x): 0 when the row is finite, NaN otherwise.
            let zero = fb.ins().f32const(0.0);
            let flag = fb.declare_var(types::F32);
            fb.def_var(flag, zero);
            counted_loop(fb, self.ptr, g.k as i64, |fb, p| {
                let o = fb.ins().imul_imm_s(p, (4 * g.a_inner) as i64);
                let at = fb.ins().iadd(xr, o);
                let v = fb.ins().load(types::F32, pure, at, 0);
                let d = fb.ins().fsub(v, v);
                let f = fb.use_var(flag);
                let f = fb.ins().fadd(f, d);
                fb.def_var(flag, f);
            });
            let f = fb.use_var(flag);
            let o = fb.ins().imul_imm_s(r, 4);
            let at = fb.ins().iadd(ws, o);
            fb.ins().store(rw, f, at, (4 * g.flags_at) as i32);
            // The column slot of row r: CT[j][r] at ws + 4·(j·m_pad + r).
            let ct = fb.ins().iadd(ws, o);
            let mut chunk0 = 0usize;
            for (blk, &chunks) in g.chunks.iter().enumerate() {
                self.block(fb, xr, idx, val, ct, blk, chunk0, chunks);
                chunk0 += chunks;
            }
        });
    }

    /// One block of row `xr`: its sums into CT at `ct` (row `r`'s slot of column 0).
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        fb: &mut FunctionBuilder,
        xr: Value,
        idx: Value,
        val: Value,
        ct: Value,
        blk: usize,
        chunk0: usize,
        chunks: usize,
    ) {
        let g = self.g;
        let pure = MemFlagsData::new()
            .with_notrap()
            .with_readonly()
            .with_can_move();
        let zero = fb.ins().f32const(0.0);
        let zero = fb.ins().splat(types::F32X4, zero);
        let accs: Vec<_> = (0..4)
            .map(|_| {
                let v = fb.declare_var(types::F32X4);
                fb.def_var(v, zero);
                v
            })
            .collect();
        let ib = fb
            .ins()
            .iadd_imm_s(idx, (chunk0 * LANES * g.idx_bytes) as i64);
        let vb = fb.ins().iadd_imm_s(val, (chunk0 * LANES * 4) as i64);
        counted_loop(fb, self.ptr, chunks as i64, |fb, c| {
            let o = fb.ins().imul_imm_s(c, (LANES * g.idx_bytes) as i64);
            let ic = fb.ins().iadd(ib, o);
            let o = fb.ins().imul_imm_s(c, (LANES * 4) as i64);
            let vc = fb.ins().iadd(vb, o);
            for (q, &acc) in accs.iter().enumerate() {
                let mut xv = None;
                for lane in 0..4 {
                    let e = (4 * q + lane) as i32;
                    let p = if g.idx_bytes == 2 {
                        fb.ins().uload16(self.ptr, pure, ic, 2 * e)
                    } else {
                        fb.ins().uload32(pure, ic, 4 * e)
                    };
                    let p = fb.ins().imul_imm_s(p, (4 * g.a_inner) as i64);
                    let at = fb.ins().iadd(xr, p);
                    let v = fb.ins().load(types::F32, pure, at, 0);
                    xv = Some(match xv {
                        None => fb.ins().scalar_to_vector(types::F32X4, v),
                        Some(vec) => fb.ins().insertlane(vec, v, lane as u8),
                    });
                }
                let xv = xv.expect("four lanes");
                let w = fb.ins().load(types::F32X4, pure, vc, 16 * q as i32);
                let a = fb.use_var(acc);
                let next = if self.fuse {
                    fb.ins().fma(w, xv, a)
                } else {
                    let prod = fb.ins().fmul(w, xv);
                    fb.ins().fadd(a, prod)
                };
                fb.def_var(acc, next);
            }
        });
        let rw = MemFlagsData::new().with_notrap();
        let lanes = LANES.min(g.n - blk * LANES);
        for (q, &acc) in accs.iter().enumerate() {
            let a = fb.use_var(acc);
            for lane in 0..4 {
                let l = 4 * q + lane;
                if l >= lanes {
                    break;
                }
                let v = fb.ins().extractlane(a, lane as u8);
                let slot = ((blk * LANES + l) * g.m_pad * 4) as i64;
                let at = fb.ins().iadd_imm_s(ct, slot);
                fb.ins().store(rw, v, at, 0);
            }
        }
    }
}

/// Whether the machine code can take `g`: passes within [`MAX_PASSES`] and every displacement
/// within an instruction's 32 bits.
pub(crate) fn machine_fits(g: &Geometry) -> bool {
    let largest = 4 * (g.workspace() + g.rows * g.a_outer + g.k * g.a_inner)
        + g.chunks.iter().sum::<usize>() * LANES * 4;
    g.passes() <= MAX_PASSES && i32::try_from(largest).is_ok()
}

#[cfg(test)]
mod tests;
mod x86;
