//! Dense layers whose weight the optimizer proved ternary (`Graph::ternary`): `stream` folds the
//! weights into straight-line add/subtract code, `packed` reads them 2 bits each from read-only
//! data. Both compute `y[n, r] = act(scale_r · Σ_c sign(r, c) · x[n, c] + bias)`.
//!
//! Numerics: `stream` sums in f64, as the interpreter does for every float matrix product (it
//! accumulates in f64 and rounds once), so it gives the interpreter's result up to the rounding
//! of a reordered f64 sum. It skips zero weights, whose `0 · x` is 0 for a finite `x` but NaN
//! for an infinite or NaN one: a batch row with such an activation (a flag, `Σ (x − x)`, is
//! NaN) also adds `x − x` for each zero weight's column, the skipped terms' class. `packed`
//! sums exact integers on fixed-point activations (three int8 limbs, 24 bits, by default; one
//! with `--activations int8`, or where the graph itself puts the activations on an int8 grid,
//! [`grid`]): see [`packed`] for its bound.
//! `lut` uses `packed`'s quantizer and gives `packed`'s bits.
use super::elementwise::{unary_scalar, unary_supported};
use super::{LowerResult, NodeCtx};

mod grid;
mod lut;
mod packed;
#[cfg(test)]
mod test_cases;
use crate::Strategy;
use crate::loops::{Builder, Expr, TensorRef, Ty, broadcast_strides, linear};
use packed::packed;
use shrink_ir::op::{Fused, Linear, Op, Unary};
use shrink_ir::{TernaryScale, TernaryWeights, WeightLayout};

/// Most add/subtract terms in one generated function: each compiles in linear time.
const TERMS_PER_FUNCTION: usize = 4096;

/// A matrix product with a ternary weight in the form both strategies take.
struct Layer<'a> {
    w: &'a TernaryWeights,
    x: &'a TensorRef,
    bias: Option<&'a TensorRef>,
    activation: Option<&'a Unary>,
    y: &'a TensorRef,
    /// Gemm's (alpha, beta): `alpha·x·W + beta·C` rounded once from f64, as the interpreter does;
    /// `None` for MatMul/DenseAct, which round the product before adding the bias.
    gemm: Option<(f64, f64)>,
    /// The int8 grid the graph puts `x` on, if it proves one: `packed` then runs one limb
    /// holding exactly the graph's integers.
    grid: Option<grid::Grid>,
}

/// Lowers the node with a ternary strategy when its weight is ternary and the strategy asks for
/// one; `None` leaves it to the dense lowering.
pub fn try_lower(b: &mut Builder, op: &Op, cx: &NodeCtx) -> Option<LowerResult> {
    if !cx.graph.contains(cx.node) {
        return None;
    }
    let wv = cx.graph.inputs_of(cx.node).get(1).copied().flatten()?;
    let Op::Const(cid) = cx.graph.node(wv.node).op else {
        return None;
    };
    let w = cx.graph.ternary.get(&cid)?;
    let (x, y) = (cx.input(0), cx.output(0));
    let layout_for = |trans_b: bool| {
        if trans_b {
            WeightLayout::RowsFirst
        } else {
            WeightLayout::ColsFirst
        }
    };
    let mut gemm = None;
    let (bias, activation, layout_ok) = match op {
        Op::Linear(Linear::MatMul) => (None, None, w.layout == WeightLayout::ColsFirst),
        Op::Linear(Linear::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        }) => {
            gemm = Some((*alpha as f64, *beta as f64));
            (
                cx.opt_input(2),
                None,
                !trans_a && w.layout == layout_for(*trans_b),
            )
        }
        Op::Fused(Fused::DenseAct {
            trans_b,
            activation,
        }) => (
            cx.opt_input(2),
            activation.as_ref(),
            w.layout == layout_for(*trans_b),
        ),
        _ => return None,
    };
    // Only the plain [.., cols] × [cols, rows] form: float activations, 2-D weight.
    let fits = layout_ok
        && w.dims.len() == 2
        && x.dims.last() == Some(&w.cols)
        && y.dims.last() == Some(&w.rows)
        && x.compute_ty() == Ty::F32
        && y.compute_ty() == Ty::F32
        && activation.is_none_or(unary_supported);
    let grid = fits
        .then(|| cx.graph.inputs_of(cx.node)[0])
        .flatten()
        .and_then(|v| grid::of(cx.graph, v));
    let limbs = if grid.is_some() {
        1
    } else {
        limbs_for(cx.options.activations)
    };
    let shape = crate::cost::LayerShape {
        rows: w.rows,
        cols: w.cols,
        nonzeros: w.nonzeros(),
        batch: x.numel() / w.cols.max(1),
        limbs,
    };
    let chosen = match cx.strategy {
        Strategy::Auto if fits => fastest(cx.options, &shape),
        Strategy::Auto => Strategy::Dense,
        s => s,
    };
    if let Some(ns) = cx.options.cost.predict(chosen, &shape) {
        b.note_predicted_ns(ns);
    }
    let strategy = match chosen {
        Strategy::Dense => return None,
        s if !fits => {
            return Some(Err(format!(
                "strategy '{s}' needs a float matrix product with a 2-D ternary weight; this layer is lowered dense only"
            )));
        }
        s => s,
    };
    let layer = Layer {
        w,
        x,
        bias,
        activation,
        y,
        gemm,
        grid,
    };
    Some(match strategy {
        // A stream's size is known before it is built: refuse it then, not after.
        Strategy::Stream => crate::caps::check_code(
            cx.options.max_code_bytes,
            "stream",
            crate::cost::bytes(Strategy::Stream, &shape),
        )
        .and_then(|()| stream(b, &layer, cx.options.max_stream_terms)),
        Strategy::Lut => lut::lut(b, &layer, limbs, cx.options.threads),
        _ => packed(b, &layer, limbs, cx.options.threads),
    })
}

/// The strategy the cost model predicts fastest (or, with `--optimize size`, smallest) for a
/// layer of `shape`, among those that can take it: `stream` within its code budget, `packed`
/// within its column limit, `dense`, and `lut` where the target's cost table measured it
/// ([`crate::cost::CostModel::offer_lut`]).
fn fastest(o: &crate::CodegenOptions, shape: &crate::cost::LayerShape) -> Strategy {
    let mut candidates = vec![Strategy::Dense];
    if shape.cols <= packed::MAX_COLS {
        candidates.push(Strategy::Packed);
    }
    if o.cost.offer_lut && shape.cols <= lut::MAX_COLS {
        candidates.push(Strategy::Lut);
    }
    let stream_bytes = crate::cost::bytes(Strategy::Stream, shape);
    if shape.nonzeros <= o.auto_stream_terms.min(o.max_stream_terms)
        && o.max_code_bytes.is_none_or(|cap| stream_bytes <= cap)
    {
        candidates.push(Strategy::Stream);
    }
    let price = |s: Strategy| match o.goal {
        crate::Goal::Speed => o.cost.predict(s, shape).unwrap_or(f64::INFINITY),
        crate::Goal::Size => crate::cost::bytes(s, shape) as f64,
    };
    candidates
        .into_iter()
        .map(|s| (price(s), s))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(Strategy::Packed, |(_, s)| s)
}

/// Int8 limbs per activation for the activation mode.
fn limbs_for(a: crate::Activations) -> usize {
    match a {
        crate::Activations::F32 => 3,
        crate::Activations::Int8 => 1,
    }
}

/// The scale of row `r` as an f64 literal.
fn scale(w: &TernaryWeights, r: usize) -> Expr {
    Expr::f64(match &w.scale {
        TernaryScale::PerTensor(s) => *s,
        TernaryScale::PerRow(v) => v[r],
    })
}

/// Stores `acc` (an F64 sum of signed activations) of output element (n, r): scale, round to
/// the output type, add the bias, apply the activation.
fn finish_row(
    b: &mut Builder,
    l: &Layer,
    n: &Expr,
    r: Expr,
    acc: Expr,
    scale: Expr,
    activate: bool,
) {
    let rows = l.w.rows as i64;
    let out = b.let_(n.clone().mul_k(rows).add(r));
    let product = acc.mul(scale);
    let mut v = match l.gemm {
        Some((alpha, _)) => product.mul(Expr::f64(alpha)),
        None => product.cast(Ty::F32),
    };
    if let Some(bias) = l.bias {
        let strides = broadcast_strides(&bias.dims, &l.y.dims);
        // The bias index of output element `out`: decompose it into the output's dims.
        let mut idx = vec![];
        let mut rest = out.clone();
        for (d, &dim) in l.y.dims.iter().enumerate().rev() {
            if d == 0 {
                idx.push(rest.clone());
            } else {
                idx.push(rest.clone().rem(Expr::idx(dim as i64)));
                rest = rest.div(Expr::idx(dim as i64));
            }
        }
        idx.reverse();
        let bv = b.load(bias, linear(&idx, &strides));
        v = match l.gemm {
            Some((_, beta)) => v.add(bv.cast(Ty::F64).mul(Expr::f64(beta))),
            None => v.add(bv),
        };
    }
    if l.gemm.is_some() {
        v = v.cast(Ty::F32);
    }
    if let Some(a) = l.activation
        && activate
    {
        v = unary_scalar(b, a, v);
    }
    b.store(l.y, out, v);
}

/// Applies the layer's activation in place to rows `[r0, r1)` of every batch row: a stream
/// writes its pre-activation sums first, so the activation's code exists once in a loop rather
/// than once per unrolled row. Reading the stored f32 back is exact: the activation applies to
/// the rounded sum, as in the unfused graph.
fn activate_rows(b: &mut Builder, l: &Layer, batch: usize, r0: usize, r1: usize) {
    let Some(a) = l.activation else { return };
    let rows = l.w.rows as i64;
    b.for_(batch, |b, n| {
        b.for_(r1 - r0, |b, r| {
            let at = b.let_(n.mul_k(rows).add(r.add_k(r0 as i64)));
            let v = b.load(l.y, at.clone());
            let v = unary_scalar(b, a, v);
            b.store(l.y, at, v);
        });
    });
}

/// `stream`: one add or subtract per nonzero weight, nothing for zeros; rows split into
/// functions of at most [`TERMS_PER_FUNCTION`] terms.
fn stream(b: &mut Builder, l: &Layer, max_terms: usize) -> LowerResult {
    let w = l.w;
    let terms = w.nonzeros();
    if terms > max_terms {
        return Err(format!(
            "a stream of this layer is {terms} add/subtract terms (about {} KiB of code), over the cap of {max_terms} terms; use --strategy packed, or raise --max-code",
            terms * 10 / 1024
        ));
    }
    b.note_strategy("stream");
    let batch = l.x.numel() / w.cols.max(1);
    if batch >= 2 {
        stream_across_batch(b, l, batch);
        return Ok(());
    }
    let cols = w.cols as i64;
    let zeros = ZeroColumns::of(b, w);
    let mut r0 = 0;
    while r0 < w.rows {
        // Rows [r0, r1) go in one function.
        let r1 = next_chunk(w, r0);
        b.for_(batch, |b, n| {
            let row = n.clone().mul_k(cols);
            let flag = nonfinite_flag(b, w.cols, |b, c| {
                b.load(l.x, row.clone().add(c)).cast(Ty::F64)
            });
            for r in r0..r1 {
                let acc = b.mutable(Expr::f64(0.0));
                for c in 0..w.cols {
                    let s = w.sign(r, c);
                    if s == 0 {
                        continue;
                    }
                    let xv = b.load(l.x, n.clone().mul_k(cols).add_k(c as i64));
                    let term = xv.cast(Ty::F64);
                    let next = if s > 0 {
                        b.get(acc).add(term)
                    } else {
                        b.get(acc).sub(term)
                    };
                    b.set(acc, next);
                }
                if let Some(zeros) = zeros.as_ref().filter(|z| z.count(r) > 0) {
                    let first = zeros.starts[r];
                    b.if_(flag.clone().ne(flag.clone()), |b| {
                        b.for_(zeros.count(r), |b, z| {
                            let c = b.load_raw(&zeros.cols, z.add_k(first));
                            let v = b.load(l.x, row.clone().add(c)).cast(Ty::F64);
                            let v = b.let_(v);
                            let next = b.get(acc).add(v.clone().sub(v));
                            b.set(acc, next);
                        });
                    });
                }
                let sum = b.get(acc);
                finish_row(b, l, &n, Expr::idx(r as i64), sum, scale(w, r), false);
            }
        });
        activate_rows(b, l, batch, r0, r1);
        b.next_function();
        r0 = r1;
    }
    Ok(())
}

/// The rows `[r0, r1)` of one generated function: at most [`TERMS_PER_FUNCTION`] terms, at
/// least one row. Returns `r1`.
fn next_chunk(w: &TernaryWeights, r0: usize) -> usize {
    let (mut r1, mut n_terms) = (r0, 0);
    while r1 < w.rows && (r1 == r0 || n_terms + row_nonzeros(w, r1) <= TERMS_PER_FUNCTION) {
        n_terms += row_nonzeros(w, r1);
        r1 += 1;
    }
    r1
}

/// `stream` for a batch of at least two rows, vectorized across the batch: the activations are
/// first copied transposed and widened to f64 (`xt[c][n]`, in this kernel's workspace), so each
/// weight's term is one vector load and one vector add or subtract covering consecutive batch
/// rows (f64x2 in 128-bit registers). Each output row's sum goes to `sums[r][n]`, and a last
/// loop scales, rounds, adds the bias and applies the activation. The sums are the same f64
/// chains, in the same order, as the one-row stream's.
fn stream_across_batch(b: &mut Builder, l: &Layer, batch: usize) {
    let w = l.w;
    let (cols, bt) = (w.cols as i64, batch as i64);
    let xt = b.workspace(shrink_ir::DType::F64, &[w.cols, batch]);
    let sums = b.workspace(shrink_ir::DType::F64, &[w.rows, batch]);
    b.for_(w.cols, |b, c| {
        b.for_(batch, |b, n| {
            let v = b.load(l.x, n.clone().mul_k(cols).add(c.clone()));
            b.store(&xt, c.clone().mul_k(bt).add(n), v.cast(Ty::F64));
        });
    });
    let mut r0 = 0;
    while r0 < w.rows {
        let r1 = next_chunk(w, r0);
        for r in r0..r1 {
            b.for_(batch, |b, n| {
                // One `let` per partial sum: straight-line values the vectorizer can widen
                // (a variable set twice would be a loop-carried value to it).
                let mut acc = Expr::f64(0.0);
                for c in 0..w.cols {
                    let s = w.sign(r, c);
                    if s == 0 {
                        continue;
                    }
                    let xv = b.load(&xt, n.clone().add_k(c as i64 * bt));
                    acc = b.let_(if s > 0 { acc.add(xv) } else { acc.sub(xv) });
                }
                b.store(&sums, n.add_k(r as i64 * bt), acc);
            });
        }
        if r1 < w.rows {
            b.next_function();
        }
        r0 = r1;
    }
    zero_terms_of_nonfinite_rows(b, w, &xt, &sums, batch);
    finish_from_sums(b, l, &sums, batch);
}

/// `Σ_c (x(c) − x(c))` in f64 over `cols` activations: NaN exactly when one is infinite or NaN.
fn nonfinite_flag(
    b: &mut Builder,
    cols: usize,
    x: impl FnOnce(&mut Builder, Expr) -> Expr,
) -> Expr {
    let f = b.mutable(Expr::f64(0.0));
    b.for_(cols, |b, c| {
        let v = x(b, c);
        let v = b.let_(v);
        let next = b.get(f).add(v.clone().sub(v));
        b.set(f, next);
    });
    b.let_(b.get(f))
}

/// The zero weights `stream` skips add `0 · x`, which is 0 for a finite activation but NaN for an
/// infinite or NaN one: for a batch row with such an activation (its flag NaN), every output
/// row's sum gets `x − x` for each of its zero weights' columns, which is that `0 · x` term's
/// class (a finite row costs one flag and one compare).
fn zero_terms_of_nonfinite_rows(
    b: &mut Builder,
    w: &TernaryWeights,
    xt: &TensorRef,
    sums: &TensorRef,
    batch: usize,
) {
    let Some(zeros) = ZeroColumns::of(b, w) else {
        return;
    };
    let most = (0..w.rows).map(|r| zeros.count(r)).max().unwrap_or(0);
    let starts = b.table_i64(&zeros.starts);
    let zcols = zeros.cols;
    let bt = batch as i64;
    b.for_(batch, |b, n| {
        let flag = nonfinite_flag(b, w.cols, |b, c| b.load(xt, c.mul_k(bt).add(n.clone())));
        b.if_(flag.clone().ne(flag), |b| {
            b.for_(w.rows, |b, r| {
                let z0 = b.load_raw(&starts, r.clone());
                let z0 = b.let_(z0);
                let z1 = b.load_raw(&starts, r.clone().add_k(1));
                let count = b.let_(z1.sub(z0.clone()));
                let at = b.let_(r.mul_k(bt).add(n.clone()));
                let acc = b.mutable(b.load_raw(sums, at.clone()));
                b.for_(most, |b, z| {
                    b.if_(z.clone().lt(count.clone()), |b| {
                        let c = b.load_raw(&zcols, z0.clone().add(z));
                        let v = b.load(xt, c.mul_k(bt).add(n.clone()));
                        let v = b.let_(v);
                        let next = b.get(acc).add(v.clone().sub(v));
                        b.set(acc, next);
                    });
                });
                b.store(sums, at, b.get(acc));
            });
        });
    });
}

/// The columns of every output row's zero weights, as one table for the layer: row `r`'s are
/// entries `starts[r]..starts[r + 1]` of `cols`.
struct ZeroColumns {
    starts: Vec<i64>,
    cols: TensorRef,
}

impl ZeroColumns {
    /// None when no weight of `w` is zero.
    fn of(b: &mut Builder, w: &TernaryWeights) -> Option<ZeroColumns> {
        let mut starts = vec![0i64];
        let mut cols = vec![];
        for r in 0..w.rows {
            cols.extend((0..w.cols).filter(|&c| w.sign(r, c) == 0).map(|c| c as i64));
            starts.push(cols.len() as i64);
        }
        (!cols.is_empty()).then(|| ZeroColumns {
            starts,
            cols: b.table_i64(&cols),
        })
    }

    fn count(&self, r: usize) -> usize {
        (self.starts[r + 1] - self.starts[r]) as usize
    }
}

/// The last loop of the strategies that first gather each output's f64 sum in a workspace
/// (`sums[r][n]`, F64 `[rows, batch]`): scale (per-row scales from a table), round, add the
/// bias, activate, store.
fn finish_from_sums(b: &mut Builder, l: &Layer, sums: &TensorRef, batch: usize) {
    let w = l.w;
    let scales = match &w.scale {
        TernaryScale::PerRow(v) => Some(b.table(
            shrink_ir::DType::F64,
            &[v.len()],
            v.iter().flat_map(|s| s.to_le_bytes()).collect(),
        )),
        TernaryScale::PerTensor(_) => None,
    };
    b.for_(batch, |b, n| {
        b.for_(w.rows, |b, r| {
            let acc = b.load_raw(sums, r.clone().mul_k(batch as i64).add(n.clone()));
            let s = match &scales {
                Some(t) => b.load_raw(t, r.clone()),
                None => scale(w, 0),
            };
            finish_row(b, l, &n, r, acc, s, true);
        });
    });
}

fn row_nonzeros(w: &TernaryWeights, r: usize) -> usize {
    (0..w.cols).filter(|&c| w.sign(r, c) != 0).count()
}
