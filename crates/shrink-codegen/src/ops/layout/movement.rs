//! Element-moving ops whose output position maps to one source element: Transpose, Concat,
//! Slice, Split, Expand, Tile (each one [`copy`]) and Gather (data-dependent indices).
use super::{Access, Coord, check_dims, const_ints, copy, norm_axis, opt_const_ints, signed};
use crate::loops::{Builder, Expr, Ty, broadcast_strides, linear, status, strides_of};
use crate::ops::{LowerResult, NodeCtx};
use shrink_ir::rules::layout::{slice_axes, transpose_perm};

pub(super) fn transpose(b: &mut Builder, cx: &NodeCtx, perm: Option<&[i64]>) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let rank = x.rank();
    let perm = transpose_perm(perm, rank)?;
    let dims: Vec<usize> = perm.iter().map(|&a| x.dims[a]).collect();
    check_dims(y, &dims)?;
    let st = strides_of(&x.dims);
    let src: Vec<i64> = perm.iter().map(|&a| st[a] as i64).collect();
    copy(
        b,
        &dims,
        x,
        &Access::strided(&src, 0),
        y,
        &Access::dense(&dims, 0),
        None,
    );
    Ok(())
}

/// Each input is copied into its block of the output along `axis`.
pub(super) fn concat(b: &mut Builder, cx: &NodeCtx, axis: i64) -> LowerResult {
    let y = cx.output(0);
    let a = norm_axis(axis, y.rank())?;
    let ost = strides_of(&y.dims);
    let mut pos = 0usize;
    for i in 0..cx.inputs.len() {
        let t = cx.input(i);
        let same_rest = t.rank() == y.rank()
            && (0..t.rank()).all(|d| d == a || t.dims[d] == y.dims[d])
            && t.dtype == y.dtype;
        if !same_rest {
            return Err(format!("cannot concat {:?} into {:?}", t.dims, y.dims));
        }
        let base = (pos * ost[a]) as i64;
        copy(
            b,
            &t.dims,
            t,
            &Access::dense(&t.dims, 0),
            y,
            &Access::strided(&signed(&ost), base),
            None,
        );
        pos += t.dims[a];
    }
    if pos != y.dims[a] {
        return Err(format!(
            "the inputs fill {pos} of {} on axis {a}",
            y.dims[a]
        ));
    }
    Ok(())
}

/// Output `k` is the slab of the input starting after outputs `0..k` along `axis`; the sizes are
/// the outputs' static dims (which shape inference derived from `split` / `num_outputs`).
pub(super) fn split(b: &mut Builder, cx: &NodeCtx, axis: i64) -> LowerResult {
    let x = cx.input(0);
    let a = norm_axis(axis, x.rank())?;
    let ist = signed(&strides_of(&x.dims));
    let mut pos = 0usize;
    for y in &cx.outputs {
        let same_rest =
            y.rank() == x.rank() && (0..x.rank()).all(|d| d == a || x.dims[d] == y.dims[d]);
        if !same_rest {
            return Err(format!("cannot split {:?} into {:?}", x.dims, y.dims));
        }
        let base = pos as i64 * ist[a];
        copy(
            b,
            &y.dims,
            x,
            &Access::strided(&ist, base),
            y,
            &Access::dense(&y.dims, 0),
            None,
        );
        pos += y.dims[a];
    }
    if pos != x.dims[a] {
        return Err(format!(
            "the outputs take {pos} of {} on axis {a}",
            x.dims[a]
        ));
    }
    Ok(())
}

/// Broadcast to the output's dims (size-1 input dims repeat).
pub(super) fn expand(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let compatible = x.rank() <= y.rank()
        && x.dims
            .iter()
            .zip(&y.dims[y.rank() - x.rank()..])
            .all(|(&d, &o)| d == o || d == 1);
    if !compatible {
        return Err(format!("cannot expand {:?} to {:?}", x.dims, y.dims));
    }
    let st = signed(&broadcast_strides(&x.dims, &y.dims));
    copy(
        b,
        &y.dims,
        x,
        &Access::strided(&st, 0),
        y,
        &Access::dense(&y.dims, 0),
        None,
    );
    Ok(())
}

/// Output coordinate `i` reads input coordinate `i mod d` on every axis.
pub(super) fn tile(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let ok = x.rank() == y.rank()
        && x.dims
            .iter()
            .zip(&y.dims)
            .all(|(&d, &o)| if d == 0 { o == 0 } else { o % d == 0 });
    if !ok {
        return Err(format!("cannot tile {:?} to {:?}", x.dims, y.dims));
    }
    let st = strides_of(&x.dims);
    let axes = (0..x.rank())
        .map(|d| {
            if x.dims[d] == y.dims[d] {
                Coord::Lin(st[d] as i64)
            } else {
                Coord::Mod(x.dims[d], st[d] as i64)
            }
        })
        .collect();
    copy(
        b,
        &y.dims,
        x,
        &Access { base: 0, axes },
        y,
        &Access::dense(&y.dims, 0),
        None,
    );
    Ok(())
}

/// Slice with constant starts/ends/axes/steps, resolved by the rule the interpreter uses
/// ([`slice_axes`]).
pub(super) fn slice(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let x = cx.input(0);
    if (1..5).any(|i| cx.opt_input(i).is_some() && cx.const_input(i).is_none()) {
        return slice_runtime(b, cx);
    }
    let starts = const_ints(cx, 1, "Slice starts")?;
    let ends = const_ints(cx, 2, "Slice ends")?;
    let axes = opt_const_ints(cx, 3, "Slice axes")?;
    let steps = opt_const_ints(cx, 4, "Slice steps")?;
    let sl = slice_axes(&x.dims, &starts, &ends, axes.as_deref(), steps.as_deref())?;
    let dims: Vec<usize> = sl.iter().map(|s| s.count).collect();
    let y = cx.output(0);
    check_dims(y, &dims)?;
    if y.numel() == 0 {
        return Ok(());
    }
    let st = strides_of(&x.dims);
    let base = sl.iter().zip(&st).map(|(s, &t)| s.start * t as i64).sum();
    let src: Vec<i64> = sl
        .iter()
        .zip(&st)
        .map(|(s, &t)| s.step * t as i64)
        .collect();
    copy(
        b,
        &dims,
        x,
        &Access::strided(&src, base),
        y,
        &Access::dense(&dims, 0),
        None,
    );
    Ok(())
}

/// Slice whose bounds arrive at run time (graph inputs, as in the ONNX node tests): the same
/// clamping computed by the kernel, per data axis, with the element counts checked against the
/// static output dims ([`status::BAD_VALUE`] if they differ, or for a zero step or a bad axis).
fn slice_runtime(b: &mut Builder, cx: &NodeCtx) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    let rank = x.rank() as i64;
    let k = cx.input(1).numel();
    for i in 2..5 {
        if let Some(t) = cx.opt_input(i)
            && t.numel() != k
        {
            return Err(format!(
                "Slice input {i} has {} entries, not {k}",
                t.numel()
            ));
        }
    }
    if (1..5).any(|i| cx.opt_input(i).is_some_and(|t| !t.compute_ty().is_int())) {
        return Err("Slice starts/ends/axes/steps must be integers".into());
    }
    if y.rank() != x.rank() {
        return Err(format!("cannot slice {:?} to {:?}", x.dims, y.dims));
    }
    let read = |b: &mut Builder, input: usize, i: usize, default: i64| -> Expr {
        match cx.opt_input(input) {
            Some(t) => {
                let v = b.load(t, Expr::idx(i as i64));
                b.let_(v.cast(Ty::I64))
            }
            None => Expr::idx(default),
        }
    };
    // Per slice entry: its normalized axis (checked in range and distinct), start, end, step.
    let mut entries = vec![];
    for i in 0..k {
        let a = read(b, 3, i, i as i64);
        let a = b.let_(Expr::select(
            a.clone().lt(Expr::idx(0)),
            a.clone().add_k(rank),
            a,
        ));
        let bad = a.clone().lt(Expr::idx(0)).or(a.clone().ge(Expr::idx(rank)));
        b.fail_if(bad, status::BAD_VALUE);
        for (p, _, _, _) in &entries {
            let p: &Expr = p;
            b.fail_if(p.clone().eq(a.clone()), status::BAD_VALUE);
        }
        let (s, e, st) = (read(b, 1, i, 0), read(b, 2, i, 0), read(b, 4, i, 1));
        b.fail_if(st.clone().eq(Expr::idx(0)), status::BAD_VALUE);
        entries.push((a, s, e, st));
    }
    let xst = strides_of(&x.dims);
    let mut base = Expr::idx(0);
    let mut steps = vec![];
    for (d, &dim) in x.dims.iter().enumerate() {
        let dl = dim as i64;
        // Untouched axes are taken whole.
        let (mut s, mut e, mut st) = (Expr::idx(0), Expr::idx(dl), Expr::idx(1));
        for (a, si, ei, sti) in &entries {
            let hit = b.let_(a.clone().eq(Expr::idx(d as i64)));
            s = Expr::select(hit.clone(), si.clone(), s);
            e = Expr::select(hit.clone(), ei.clone(), e);
            st = Expr::select(hit, sti.clone(), st);
        }
        let (s, e, st) = (b.let_(s), b.let_(e), b.let_(st));
        let s = b.let_(Expr::select(
            s.clone().lt(Expr::idx(0)),
            s.clone().add_k(dl),
            s,
        ));
        let e = b.let_(Expr::select(
            e.clone().lt(Expr::idx(0)),
            e.clone().add_k(dl),
            e,
        ));
        let up = b.let_(st.clone().gt(Expr::idx(0)));
        let clamp = |v: Expr, lo: i64, hi: i64| v.max(Expr::idx(lo)).min(Expr::idx(hi));
        let s = b.let_(Expr::select(
            up.clone(),
            clamp(s.clone(), 0, dl),
            clamp(s, 0, dl - 1),
        ));
        let e = Expr::select(up.clone(), clamp(e.clone(), 0, dl), clamp(e, -1, dl - 1));
        let span = b.let_(Expr::select(up, e.clone().sub(s.clone()), s.clone().sub(e)));
        // |step|, with i64::MIN (whose magnitude overflows) as i64::MAX: either way one step
        // covers the whole axis.
        let mag = Expr::select(
            st.clone().eq(Expr::idx(i64::MIN)),
            Expr::idx(i64::MAX),
            st.clone().abs(),
        );
        let count = Expr::select(
            span.clone().le(Expr::idx(0)),
            Expr::idx(0),
            span.sub(Expr::idx(1)).div(mag).add_k(1),
        );
        b.fail_if(count.ne(Expr::idx(y.dims[d] as i64)), status::BAD_VALUE);
        base = base.add(s.mul_k(xst[d] as i64));
        steps.push(b.let_(st.mul_k(xst[d] as i64)));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let base = b.let_(base);
    let yst = strides_of(&y.dims);
    b.nest(&y.dims, |b, idx| {
        let from = idx
            .iter()
            .zip(&steps)
            .fold(base, |acc, (i, st)| acc.add(i.clone().mul(st.clone())));
        let v = b.load_raw(x, from);
        b.store_raw(y, linear(idx, &yst), v);
    });
    Ok(())
}

/// Gather along `axis` with run-time indices (any integer dtype). Negative indices count from the
/// end once; if any index is outside the axis the kernel returns [`status::BAD_INDEX`] before
/// writing anything, as the interpreter refuses the whole op.
pub(super) fn gather(b: &mut Builder, cx: &NodeCtx, axis: i64) -> LowerResult {
    let (x, ind, y) = (cx.input(0), cx.input(1), cx.output(0));
    let a = norm_axis(axis, x.rank())?;
    if !ind.compute_ty().is_int() {
        return Err(format!(
            "Gather indices must be integers, got {}",
            ind.dtype
        ));
    }
    let mut dims = x.dims[..a].to_vec();
    dims.extend_from_slice(&ind.dims);
    dims.extend_from_slice(&x.dims[a + 1..]);
    check_dims(y, &dims)?;
    if y.numel() == 0 {
        // The interpreter checks no index when there is nothing to gather.
        return Ok(());
    }
    let size = x.dims[a] as i64;
    b.for_(ind.numel(), |b, k| {
        let i = b.load(ind, k);
        let i = b.let_(i.cast(Ty::I64));
        let bad = i.clone().lt(Expr::idx(-size)).or(i.ge(Expr::idx(size)));
        b.fail_if(bad, status::BAD_INDEX);
    });
    let st = strides_of(&x.dims);
    let ist = strides_of(&ind.dims);
    let ost = strides_of(&y.dims);
    let ir = ind.rank();
    b.nest(&y.dims[..a + ir], |b, outer| {
        let i = b.load(ind, linear(&outer[a..], &ist));
        let i = b.let_(i.cast(Ty::I64));
        let j = Expr::select(i.clone().lt(Expr::idx(0)), i.clone().add_k(size), i);
        // Checked above; the clamp lets the emitter prove the reads in bounds.
        let j = b.let_(j.max(Expr::idx(0)).min(Expr::idx(size - 1)));
        let from = linear(&outer[..a], &st[..a]).add(j.mul_k(st[a] as i64));
        let from = b.let_(from);
        let to = b.let_(linear(outer, &ost[..a + ir]));
        let inner = &y.dims[a + ir..];
        let (sin, oin) = (&st[a + 1..], &ost[a + ir..]);
        b.nest(inner, |b, rest| {
            let v = b.load_raw(x, from.add(linear(rest, sin)));
            b.store_raw(y, to.add(linear(rest, oin)), v);
        });
    });
    Ok(())
}
