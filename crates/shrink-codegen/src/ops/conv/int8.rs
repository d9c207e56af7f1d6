//! Integer convolutions (ConvInteger, QLinearConv) with one group and constant 8-bit filters as
//! matrix products on the Linear family's int8 dot products: per call the input is unfolded
//! into patches (`patches[n·hw + j][p]`: output position `j`'s input under filter element
//! `p = (channel, kernel position)`, in the weights' own order), and `y[n][f][j] = Σ_p
//! (patch − x_zp)(W[f][p] − w_zp[f])` is the product of those rows with the `[filters, p]`
//! weights, transposed into `y`'s layout by the epilogue.
//!
//! Numerics: the sums are exact wrapping i32, like the loop nest's. Taps in padding unfold to
//! the input's zero point, so their terms `(x_zp − x_zp)·w` are exactly 0 and padding still
//! contributes nothing; QLinearConv's bias and requantization then run unchanged.
use super::{Shape, for_taps};
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, strides_of};
use crate::ops::linear::{Dot, int8_product};
use shrink_ir::{DType, Tensor};

/// What the convolution does with its sums: the start value of filter `m`'s sum (QLinearConv's
/// bias) and the store of a finished sum at flat output index `at`.
pub(super) struct Finish<'a> {
    pub(super) init: &'a dyn Fn(&mut Builder, &Expr) -> Expr,
    pub(super) done: &'a dyn Fn(&mut Builder, Expr, &Expr, Expr),
}

/// Zero points as the loop nest reads them: the tensor and whether it has a value per filter.
type Zp<'a> = Option<(&'a TensorRef, bool)>;

/// Lowers the convolution on the int8 kernel when it qualifies; false leaves it to the loop nest
/// (nothing emitted).
pub(super) fn try_lower(
    b: &mut Builder,
    options: &crate::CodegenOptions,
    s: &Shape,
    filters: Option<&Tensor>,
    (xz, wz): (Zp, Zp),
    finish: Finish,
) -> bool {
    let Some(filters) = filters else {
        return false;
    };
    let win = &s.window;
    let (k, hw) = (s.channels * win.kernel_len(), win.output_len());
    let eight_bit = |d: DType| matches!(d, DType::U8 | DType::I8);
    if s.group != 1
        || !eight_bit(s.x.dtype)
        || !eight_bit(s.w.dtype)
        || k == 0
        || hw == 0
        || s.batch == 0
        || s.filters == 0
    {
        return false;
    }
    let rows = s.batch * hw;
    let patches = b.workspace(s.x.dtype, &[rows, k]);
    let w = TensorRef {
        dims: vec![s.filters, k],
        ..s.w.clone()
    };
    let dot = ConvDot {
        hw,
        filters: s.filters,
        xz,
        wz,
        finish,
    };
    int8_product(b, options, (&patches, &w), filters, &dot, |b| {
        unfold(b, s, &patches, xz)
    })
}

/// `patches[n·hw + j][c·K + t]` = the input of channel `c` under tap `t` of output position `j`,
/// or the input's zero point (its raw bytes) where the tap lands in padding.
fn unfold(b: &mut Builder, s: &Shape, patches: &TensorRef, xz: Zp) {
    let win = &s.window;
    let (in_len, k_len, hw) = (win.input_len(), win.kernel_len(), win.output_len());
    let k = s.channels * k_len;
    let (kstr, ostr) = (strides_of(&win.kernel), strides_of(&win.output));
    let pad = match xz {
        Some((t, _)) => b.load_raw(t, Expr::idx(0)),
        None => Expr::int(Ty::storage(s.x.dtype).expect("8-bit"), 0),
    };
    let pad = b.let_(pad);
    b.for_(s.batch, |b, n| {
        b.nest(&win.output, |b, oidx| {
            let row = b.let_(
                n.clone()
                    .mul_k(hw as i64)
                    .add(linear(oidx, &ostr))
                    .mul_k(k as i64),
            );
            b.for_(s.channels, |b, c| {
                let x_base = b.let_(
                    n.clone()
                        .mul_k(s.channels as i64)
                        .add(c.clone())
                        .mul_k(in_len as i64),
                );
                let p0 = b.let_(row.clone().add(c.mul_k(k_len as i64)));
                for_taps(b, win, oidx, |b, tap| {
                    let v = b.load_raw(&s.x, x_base.clone().add(tap.flat.clone()));
                    let v = match &tap.inside {
                        Some(inside) => Expr::select(inside.clone(), v, pad.clone()),
                        None => v,
                    };
                    let at = p0.clone().add(linear(tap.kernel, &kstr));
                    b.store_raw(patches, at, v);
                });
            });
        });
    });
}

/// The product's sums back into the convolution: zero points of x (one) and w (per filter or
/// one), and the epilogue at `y[n][f][j]` for row `n·hw + j`, column `f`.
struct ConvDot<'a> {
    hw: usize,
    filters: usize,
    xz: Zp<'a>,
    wz: Zp<'a>,
    finish: Finish<'a>,
}

impl Dot for ConvDot<'_> {
    fn acc_ty(&self) -> Ty {
        Ty::I32
    }
    fn a_row(&self, b: &mut Builder, _bidx: &[Expr], _i: &Expr) -> Option<Expr> {
        let (t, _) = self.xz?;
        Some(b.load(t, Expr::idx(0)).cast(Ty::I32))
    }
    fn b_col(&self, b: &mut Builder, _bidx: &[Expr], j: &Expr) -> Option<Expr> {
        let (t, per_filter) = self.wz?;
        let at = if per_filter { j.clone() } else { Expr::idx(0) };
        Some(b.load(t, at).cast(Ty::I32))
    }
    fn epilogue(&self, b: &mut Builder, _bidx: &[Expr], i: &Expr, j: &Expr, acc: Expr) {
        let hw = self.hw as i64;
        let (n, pos) = (i.clone().div(Expr::idx(hw)), i.clone().rem(Expr::idx(hw)));
        let at = b.let_(
            n.mul_k(self.filters as i64)
                .add(j.clone())
                .mul_k(hw)
                .add(pos),
        );
        let start = (self.finish.init)(b, j);
        (self.finish.done)(b, at, j, start.add(acc));
    }
}

#[cfg(test)]
mod tests;
