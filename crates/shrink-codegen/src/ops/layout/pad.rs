//! Pad in its four modes (constant, reflect, edge, wrap). Negative pads crop first; positive pads
//! are then filled relative to the cropped tensor, as the interpreter does. Each padded axis
//! becomes a table of source coordinates (-1 for "the constant") built here from the constant
//! pads, so all modes share one [`copy`].
use super::{Access, Coord, check_dims, const_ints, copy, opt_const_ints, zero_of};
use crate::loops::{Builder, Expr, Ty, linear, status, strides_of};
use crate::ops::{LowerResult, NodeCtx};
use shrink_ir::op::PadMode;
use shrink_ir::rules::layout::{PadExtents, pad_axis_map, pad_extents};

pub(super) fn pad(b: &mut Builder, cx: &NodeCtx, mode: PadMode) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let runtime = |i: usize| cx.opt_input(i).is_some() && cx.const_input(i).is_none();
    if runtime(1) || runtime(3) {
        return pad_runtime(b, cx, mode);
    }
    let pads = const_ints(cx, 1, "Pad pads")?;
    let rank = x.rank();
    let axes = opt_const_ints(cx, 3, "Pad axes")?;
    let PadExtents { begin, end, dims } = pad_extents(&x.dims, &pads, axes.as_deref())?;
    check_dims(y, &dims)?;
    if y.numel() == 0 {
        return Ok(());
    }
    let fill = fill_value(b, cx)?;
    let st = strides_of(&x.dims);
    let mut src = Vec::with_capacity(rank);
    for a in 0..rank {
        let s = st[a] as i64;
        src.push(if begin[a] == 0 && end[a] == 0 {
            Coord::Lin(s)
        } else {
            Coord::Table(axis_map(x.dims[a], begin[a], end[a], dims[a], mode)?, s)
        });
    }
    copy(
        b,
        &dims,
        x,
        &Access { base: 0, axes: src },
        y,
        &Access::dense(&dims, 0),
        Some(&fill),
    );
    Ok(())
}

/// The constant: element 0 of input 2 when present and non-empty (read at run time, so it need
/// not be a graph constant), else zero.
fn fill_value(b: &mut Builder, cx: &NodeCtx) -> Result<Expr, String> {
    let y = cx.output(0);
    let ty = Ty::storage(y.dtype).ok_or("string tensors are not supported")?;
    Ok(match cx.opt_input(2).filter(|t| t.numel() > 0) {
        Some(f) if f.dtype != y.dtype => {
            return Err(format!(
                "Pad constant_value is {} but the data is {}",
                f.dtype, y.dtype
            ));
        }
        Some(f) => {
            let v = b.load_raw(f, Expr::idx(0));
            b.let_(v)
        }
        None => zero_of(ty),
    })
}

/// Pad whose pads (or axes) arrive at run time: the per-axis mapping of [`axis_map`] computed
/// by the kernel for every element, after checking that the pads produce the static output dims
/// ([`status::BAD_VALUE`] otherwise, or for bad axes, or for an empty axis outside constant mode).
fn pad_runtime(b: &mut Builder, cx: &NodeCtx, mode: PadMode) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let rank = x.rank();
    let pads = cx.input(1);
    let axes = cx.opt_input(3);
    let na = axes.map_or(rank, |t| t.numel());
    if pads.numel() != 2 * na || y.rank() != rank {
        return Err(format!("{} pads for {na} axes", pads.numel()));
    }
    if !pads.compute_ty().is_int() || axes.is_some_and(|t| !t.compute_ty().is_int()) {
        return Err("Pad pads and axes must be integers".into());
    }
    let mut ax: Vec<Expr> = vec![];
    for i in 0..na {
        let a = match axes {
            Some(t) => {
                let a = b.load(t, Expr::idx(i as i64));
                let a = b.let_(a.cast(Ty::I64));
                let r = rank as i64;
                let a = b.let_(Expr::select(
                    a.clone().lt(Expr::idx(0)),
                    a.clone().add_k(r),
                    a,
                ));
                let bad = a.clone().lt(Expr::idx(0)).or(a.clone().ge(Expr::idx(r)));
                b.fail_if(bad, status::BAD_VALUE);
                for p in &ax {
                    b.fail_if(p.clone().eq(a.clone()), status::BAD_VALUE);
                }
                a
            }
            None => Expr::idx(i as i64),
        };
        ax.push(a);
    }
    let mut pv = vec![];
    for i in 0..2 * na {
        let v = b.load(pads, Expr::idx(i as i64));
        pv.push(b.let_(v.cast(Ty::I64)));
    }
    // Per data axis: the first kept source coordinate, how many are kept, the leading pad.
    let mut axis = vec![];
    for d in 0..rank {
        let (mut begin, mut end) = (Expr::idx(0), Expr::idx(0));
        for (i, a) in ax.iter().enumerate() {
            let hit = b.let_(a.clone().eq(Expr::idx(d as i64)));
            begin = Expr::select(hit.clone(), pv[i].clone(), begin);
            end = Expr::select(hit, pv[na + i].clone(), end);
        }
        let (begin, end) = (b.let_(begin), b.let_(end));
        let grow = y.dims[d] as i64 - x.dims[d] as i64;
        b.fail_if(
            begin.clone().add(end.clone()).ne(Expr::idx(grow)),
            status::BAD_VALUE,
        );
        let zero = Expr::idx(0);
        let lo = b.let_(begin.clone().neg().max(zero.clone()));
        let kept = b.let_(
            Expr::idx(x.dims[d] as i64)
                .sub(lo.clone())
                .sub(end.neg().max(zero.clone())),
        );
        if mode != PadMode::Constant && y.dims[d] > 0 {
            b.fail_if(kept.clone().le(zero.clone()), status::BAD_VALUE);
        }
        let pad_lo = b.let_(begin.max(zero));
        axis.push((lo, kept, pad_lo));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let fill = fill_value(b, cx)?;
    let xst = strides_of(&x.dims);
    let yst = strides_of(&y.dims);
    b.nest(&y.dims, |b, idx| {
        let mut from = Expr::idx(0);
        let mut valid: Option<Expr> = None;
        for (d, (lo, kept, pad_lo)) in axis.iter().enumerate() {
            let j = b.let_(idx[d].clone().sub(pad_lo.clone()));
            let c = match mode {
                PadMode::Constant => {
                    let inside = j.clone().ge(Expr::idx(0)).and(j.clone().lt(kept.clone()));
                    valid = Some(match valid.take() {
                        Some(v) => v.and(inside),
                        None => inside,
                    });
                    j
                }
                PadMode::Edge => j.max(Expr::idx(0)).min(kept.clone().sub(Expr::idx(1))),
                PadMode::Wrap => rem_euclid(b, j, kept.clone()),
                PadMode::Reflect => {
                    let p = b.let_(kept.clone().sub(Expr::idx(1)).mul_k(2));
                    let m = rem_euclid(b, j, p.clone());
                    let r = Expr::select(m.clone().ge(kept.clone()), p.sub(m.clone()), m);
                    Expr::select(kept.clone().eq(Expr::idx(1)), Expr::idx(0), r)
                }
            };
            from = from.add(lo.clone().add(c).mul_k(xst[d] as i64));
        }
        let to = b.let_(linear(idx, &yst));
        match valid {
            Some(ok) => b.if_else(
                ok,
                |b| {
                    let v = b.load_raw(x, from);
                    b.store_raw(y, to.clone(), v);
                },
                |b| b.store_raw(y, to.clone(), fill),
            ),
            None => {
                let v = b.load_raw(x, from);
                b.store_raw(y, to, v);
            }
        }
    });
    Ok(())
}

/// `j mod m` in `0..m` for `m > 0`.
fn rem_euclid(b: &mut Builder, j: Expr, m: Expr) -> Expr {
    let r = b.let_(j.rem(m.clone()));
    Expr::select(r.clone().lt(Expr::idx(0)), r.clone().add(m), r)
}

/// The shared [`pad_axis_map`] as a table: the source coordinate in `0..dim` of each of the
/// `out_dim` output coordinates of one axis, -1 where the constant is written.
pub(super) fn axis_map(
    dim: usize,
    begin: i128,
    end: i128,
    out_dim: usize,
    mode: PadMode,
) -> Result<Vec<i64>, String> {
    let map = pad_axis_map(dim, begin, end, out_dim, mode)?;
    // A source coordinate is below `dim`, so it fits an i64.
    Ok(map
        .into_iter()
        .map(|j| j.map_or(-1, |j| j as i64))
        .collect())
}
