//! The dot-product loop every op of the Linear family (and DenseAct) is written with: a numpy
//! matmul problem over static shapes ([`Plan`]: 1-D promotion, broadcast batches, operand
//! strides so transposed operands need no copy) and one register-tiled loop nest
//! ([`matmul_loops`]) that hands each finished sum to the op's epilogue.
//!
//! Schedule: for each batch and row `i`, the columns are taken [`TILE`] at a time; the tile's
//! sums live in variables while the `k` loop loads one element of A and `TILE` neighbouring
//! elements of B per step (contiguous for row-major B), so nothing but the operands is read
//! inside the loop and the output is written once.
use crate::loops::ir::VarId;
use crate::loops::{Builder, Expr, TensorRef, Ty, broadcast_strides, linear, strides_of};
use shrink_ir::rules::broadcast_dims;
use shrink_ir::rules::linear::MatmulShape;

/// Columns computed together (one accumulator variable each).
pub const TILE: usize = 8;

/// A matmul problem `[.., M, K] x [.., K, N]` after 1-D promotion, with batch broadcasting: the
/// rule the interpreter shares ([`MatmulShape::matmul`], [`MatmulShape::flat`]).
pub type Plan = MatmulShape;

/// What the loop nest needs of a [`Plan`] beyond its dims: operand strides and output indices.
pub trait PlanIndex {
    /// Per output batch axis, the element stride into a tensor whose leading dims are
    /// `batch_dims` and whose matrices hold `mat` elements (0 where it broadcasts).
    fn batch_strides(&self, batch_dims: &[usize], mat: usize) -> Vec<usize>;
    /// Flat output index of element `(batch, i, j)`.
    fn out_index(&self, bidx: &[Expr], i: &Expr, j: &Expr) -> Expr;
    /// The output's coordinates of element `(batch, i, j)` (promoted axes left out).
    fn out_coords(&self, bidx: &[Expr], i: &Expr, j: &Expr) -> Vec<Expr>;
}

impl PlanIndex for Plan {
    fn batch_strides(&self, batch_dims: &[usize], mat: usize) -> Vec<usize> {
        broadcast_strides(batch_dims, &self.batch)
            .into_iter()
            .map(|s| s * mat)
            .collect()
    }

    fn out_index(&self, bidx: &[Expr], i: &Expr, j: &Expr) -> Expr {
        let bf = linear(bidx, &strides_of(&self.batch));
        bf.mul_k(self.m as i64)
            .add(i.clone())
            .mul_k(self.n as i64)
            .add(j.clone())
    }

    fn out_coords(&self, bidx: &[Expr], i: &Expr, j: &Expr) -> Vec<Expr> {
        let mut c = bidx.to_vec();
        if !self.a_1d {
            c.push(i.clone());
        }
        if !self.b_1d {
            c.push(j.clone());
        }
        c
    }
}

/// Whether `p` broadcasts to exactly `target`.
pub fn fits(p: &[usize], target: &[usize]) -> bool {
    broadcast_dims(&[p, target]).is_ok_and(|s| s == target)
}

/// How one operand is read: its tensor, batch strides over the plan's batch, and the element
/// strides of its two matrix axes (`(i, p)` for A, `(p, j)` for B).
pub struct Operand<'a> {
    pub t: &'a TensorRef,
    pub batch_strides: Vec<usize>,
    pub outer: usize,
    pub inner: usize,
    /// B only: `t` is a constant re-laid out in column panels ([`panel_bytes`]), so the `k`
    /// loop of a tile reads consecutive elements (`outer`/`inner` unused).
    pub panels: bool,
}

/// A constant B (`[K, N]` elements of `size` bytes at element strides `(outer, inner)` for
/// `(p, j)`) re-laid out as the tile loop reads it: the columns of each tile of [`TILE`] (and
/// the last, narrower one) stored together, `k`-major. Element `(p, j0 + t)` of the tile at `j0`
/// of width `w` sits at `j0·K + p·w + t`. Row-major B read a tile at a time strides a whole row
/// per `k` step: for a 4096² weight a new page per load.
pub fn panel_bytes(raw: &[u8], size: usize, plan: &Plan, outer: usize, inner: usize) -> Vec<u8> {
    let (k, n) = (plan.k, plan.n);
    let mut out = Vec::with_capacity(k * n * size);
    let mut j0 = 0;
    while j0 < n {
        let width = TILE.min(n - j0);
        for p in 0..k {
            for t in 0..width {
                let at = (p * outer + (j0 + t) * inner) * size;
                out.extend_from_slice(&raw[at..at + size]);
            }
        }
        j0 += width;
    }
    out
}

/// What the loop needs from an op: the accumulator type, how a loaded element (compute type)
/// becomes an accumulator term, and per-row / per-column terms computed outside the `k` loop
/// (zero points), then the epilogue that consumes each finished sum.
pub trait Dot {
    fn acc_ty(&self) -> Ty;
    /// A term of A's row `i` (batch `bidx`) made once per row, passed to [`Dot::a_elem`].
    fn a_row(&self, _b: &mut Builder, _bidx: &[Expr], _i: &Expr) -> Option<Expr> {
        None
    }
    /// A term of B's column `j`, passed to [`Dot::b_elem`].
    fn b_col(&self, _b: &mut Builder, _bidx: &[Expr], _j: &Expr) -> Option<Expr> {
        None
    }
    fn a_elem(&self, v: Expr, row: Option<&Expr>) -> Expr {
        centered(v.cast(self.acc_ty()), row)
    }
    fn b_elem(&self, v: Expr, col: Option<&Expr>) -> Expr {
        centered(v.cast(self.acc_ty()), col)
    }
    /// Consumes the sum of output element `(bidx, i, j)`.
    fn epilogue(&self, b: &mut Builder, bidx: &[Expr], i: &Expr, j: &Expr, acc: Expr);
}

fn centered(v: Expr, zp: Option<&Expr>) -> Expr {
    match zp {
        Some(z) => v.sub(z.clone()),
        None => v,
    }
}

/// The loop nest of `plan` reading `a` and `b`, accumulating with `dot`.
pub fn matmul_loops(b: &mut Builder, plan: &Plan, a: &Operand, bm: &Operand, dot: &dyn Dot) {
    let acc_ty = dot.acc_ty();
    let zero = Expr::lit(acc_ty, 0.0);
    b.nest(&plan.batch, |b, bidx| {
        let a_base = b.let_(linear(bidx, &a.batch_strides));
        let b_base = b.let_(linear(bidx, &bm.batch_strides));
        b.for_(plan.m, |b, i| {
            let a_row = b.let_(a_base.add(i.clone().mul_k(a.outer as i64)));
            let za = dot.a_row(b, bidx, &i);
            let za = za.map(|z| b.let_(z));
            let tile = |b: &mut Builder, j0: Expr, width: usize| {
                let cols: Vec<Expr> = (0..width)
                    .map(|t| b.let_(j0.clone().add_k(t as i64)))
                    .collect();
                let zb: Vec<Option<Expr>> = cols
                    .iter()
                    .map(|j| dot.b_col(b, bidx, j).map(|z| b.let_(z)))
                    .collect();
                let starts: Vec<Expr> = if bm.panels {
                    let tile_base = b.let_(j0.clone().mul_k(plan.k as i64));
                    (0..width)
                        .map(|t| tile_base.clone().add_k(t as i64))
                        .collect()
                } else {
                    cols.iter()
                        .map(|j| b.let_(b_base.clone().add(j.clone().mul_k(bm.inner as i64))))
                        .collect()
                };
                let p_step = if bm.panels { width } else { bm.outer } as i64;
                let accs: Vec<VarId> = (0..width).map(|_| b.mutable(zero.clone())).collect();
                b.for_(plan.k, |b, p| {
                    let x = b.load(a.t, a_row.clone().add(p.clone().mul_k(a.inner as i64)));
                    let x = b.let_(dot.a_elem(x, za.as_ref()));
                    for t in 0..width {
                        let at = starts[t].clone().add(p.clone().mul_k(p_step));
                        let y = b.load(bm.t, at);
                        let y = dot.b_elem(y, zb[t].as_ref());
                        let sum = b.get(accs[t]).add(x.clone().mul(y));
                        b.set(accs[t], sum);
                    }
                });
                for t in 0..width {
                    let acc = b.get(accs[t]);
                    dot.epilogue(b, bidx, &i, &cols[t], acc);
                }
            };
            let full = plan.n / TILE;
            if full > 0 {
                let tile = &tile;
                b.for_(full, |b, jt| tile(b, jt.mul_k(TILE as i64), TILE));
            }
            if !plan.n.is_multiple_of(TILE) {
                tile(b, Expr::idx((full * TILE) as i64), plan.n % TILE);
            }
        });
    });
}

/// The index into a quantization parameter of dims `p` (scalar when it has one element; a 1-D
/// per-row parameter of A becomes `[len, 1]`) laid over operand dims `promoted` with the `k`
/// axis collapsed, as a function of the output batch and the row (A) or column (B).
pub struct ParamIndex {
    /// Per output batch axis, the parameter's stride (0 where it or the operand broadcasts).
    batch: Vec<usize>,
    /// Stride of the row (A) or column (B) index.
    along: usize,
}

impl ParamIndex {
    pub fn new(
        p: &[usize],
        promoted: &[usize],
        row_side: bool,
        plan: &Plan,
    ) -> Result<ParamIndex, String> {
        let r = promoted.len();
        let mut target = promoted.to_vec();
        target[if row_side { r - 1 } else { r - 2 }] = 1;
        let numel: usize = p.iter().product();
        let p_dims: Vec<usize> = match p {
            _ if numel == 1 => vec![],
            &[len] if row_side => vec![len, 1],
            d => d.to_vec(),
        };
        if !fits(&p_dims, &target) {
            return Err(format!(
                "quantization parameter of shape {p:?} does not fit an operand of shape \
                 {promoted:?}"
            ));
        }
        let s = broadcast_strides(&p_dims, &target);
        // The operand's batch axes sit right-aligned under the output's; where the operand's
        // dim is 1 its coordinate is 0, so the parameter's stride there does not matter.
        let lead = plan.batch.len() - (r - 2);
        let batch = (0..plan.batch.len())
            .map(|d| {
                if d < lead || target[d - lead] == 1 {
                    0
                } else {
                    s[d - lead]
                }
            })
            .collect();
        let along = if row_side { s[r - 2] } else { s[r - 1] };
        Ok(ParamIndex { batch, along })
    }

    pub fn at(&self, bidx: &[Expr], x: &Expr) -> Expr {
        linear(bidx, &self.batch).add(x.clone().mul_k(self.along as i64))
    }
}
