//! The `Conv` family (Conv, ConvInteger, QLinearConv; N-D, groups, dilations, pads, auto_pad)
//! as loop nests — or, for float convolutions with constant filters, as matrix products on the
//! Linear family's SIMD tiles ([`tiles`]) — and the window walker ([`for_taps`]) that pooling shares: both place windows
//! with shrink-ir's [`Window`], the type shape inference and the interpreter use.
//!
//! Numerics: f64 convolutions accumulate in f64, f32/f16/bf16 ones in f32 (a fixed order, within
//! the numerics contract's tolerance of the interpreter's f64 sums); the integer ones accumulate `(x - x_zp) * (w - w_zp[m])` in wrapping i32, QLinearConv
//! then requantizes per filter like QLinearMatMul. Taps that land in padding are skipped (so
//! padding contributes exactly nothing, as in the interpreter).
use super::linear::requantize;
use super::{LowerResult, NodeCtx};
use crate::loops::convert::{decode, encode};
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, strides_of};
use shrink_ir::DType;
use shrink_ir::op::Conv;
use shrink_ir::window::Window;

mod int8;
mod tiles;

/// Largest last-axis kernel extent whose taps the row-wise convolution unrolls.
const MAX_ROW_TAPS: usize = 16;

/// One tap of a window at some output position.
pub struct Tap<'a> {
    /// The kernel index (per spatial axis).
    pub kernel: &'a [Expr],
    /// Input coordinates (per spatial axis), possibly outside the input.
    pub coords: &'a [Expr],
    /// Row-major flat spatial index of the coordinates clamped into the input (so a load with it
    /// is provably in bounds); the element itself only when `inside`.
    pub flat: Expr,
    /// Whether the tap lands inside the input; `None` when it always does.
    pub inside: Option<Expr>,
}

/// Walks the taps of `w`'s window at output position `out` (per spatial axis), in row-major
/// kernel order, calling `f` once (the body of the kernel loop nest). Axes whose windows never
/// reach padding get no test.
pub fn for_taps(b: &mut Builder, w: &Window, out: &[Expr], f: impl FnOnce(&mut Builder, &Tap)) {
    let istr = strides_of(&w.input);
    b.nest(&w.kernel, |b, kidx| {
        let mut coords = vec![];
        let mut clamped = vec![];
        let mut inside: Option<Expr> = None;
        for a in 0..w.rank() {
            let c = out[a]
                .clone()
                .mul_k(w.strides[a] as i64)
                .add(kidx[a].clone().mul_k(w.dilations[a] as i64))
                .add_k(-(w.pad_begin[a] as i64));
            let c = b.let_(c);
            let lo = -(w.pad_begin[a] as i64);
            let hi = (w.output[a].max(1) as i64 - 1) * w.strides[a] as i64
                + (w.kernel[a] as i64 - 1) * w.dilations[a] as i64
                + lo;
            let dim = w.input[a] as i64;
            if lo >= 0 && hi < dim {
                clamped.push(c.clone());
            } else {
                let ok = c.clone().ge(Expr::idx(0)).and(c.clone().lt(Expr::idx(dim)));
                inside = Some(match inside {
                    None => ok,
                    Some(prev) => prev.and(ok),
                });
                clamped.push(b.let_(c.clone().max(Expr::idx(0)).min(Expr::idx(dim - 1))));
            }
            coords.push(c);
        }
        let inside = inside.map(|c| b.let_(c));
        let tap = Tap {
            kernel: kidx,
            coords: &coords,
            flat: linear(&clamped, &istr),
            inside,
        };
        f(b, &tap);
    });
}

/// Runs `f` for a tap only when it lands inside the input.
pub fn if_inside(b: &mut Builder, tap: &Tap, f: impl FnOnce(&mut Builder)) {
    match &tap.inside {
        Some(c) => b.if_(c.clone(), f),
        None => f(b),
    }
}

pub fn lower(b: &mut Builder, op: &Conv, cx: &NodeCtx) -> LowerResult {
    let (Conv::Conv { group, .. }
    | Conv::ConvInteger { group, .. }
    | Conv::QLinearConv { group, .. }) = op;
    let w_at = if matches!(op, Conv::QLinearConv { .. }) {
        3
    } else {
        1
    };
    let (x, w, y) = (cx.input(0), cx.input(w_at), cx.output(0));
    let shape = Shape::new(op, *group, x, w)?;
    if y.dims != shape.out_dims() {
        return Err(format!(
            "output {:?} is not the convolution's shape {:?}",
            y.dims,
            shape.out_dims()
        ));
    }
    match op {
        Conv::Conv { .. } => {
            if !matches!(x.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
                return Err(format!("Conv on {}", x.dtype));
            }
            let bias = match cx.opt_input(2) {
                Some(t) if t.dims != [shape.filters] => {
                    return Err(format!(
                        "Conv bias {:?} must have {} values",
                        t.dims, shape.filters
                    ));
                }
                other => other,
            };
            if let Some(r) = tiles::try_lower(b, cx.options, &shape, cx.const_input(1), bias, y) {
                return r;
            }
            let ty = y.compute_ty();
            // f32 (and narrower) graphs accumulate in f32, as peers do: a row of sums is then
            // one f32x4 loop per tap (within the numerics contract's tolerance of the
            // interpreter's f64 sums; the order is fixed, so every ISA gives the same bits).
            let acc = if x.dtype == DType::F64 {
                Ty::F64
            } else {
                Ty::F32
            };
            shape.accumulate(
                b,
                |b, m| match bias {
                    Some(t) => b.load(t, m.clone()).cast(acc),
                    None => Expr::lit(acc, 0.0),
                },
                |_, v, _| v.cast(acc),
                |_, v, _| v.cast(acc),
                |b, at, _, sum| b.store(y, at, sum.cast(ty)),
            );
            Ok(())
        }
        Conv::ConvInteger { .. } => {
            if y.dtype != DType::I32 {
                return Err(format!("ConvInteger output of type {}", y.dtype));
            }
            let (xz, wz) = zero_points(&shape, x, w, cx.opt_input(2), cx.opt_input(3))?;
            let init = |_: &mut Builder, _: &Expr| Expr::int(Ty::I32, 0);
            let done = |b: &mut Builder, at: Expr, _: &Expr, acc: Expr| b.store(y, at, acc);
            let finish = int8::Finish {
                init: &init,
                done: &done,
            };
            if int8::try_lower(b, cx.options, &shape, cx.const_input(1), (xz, wz), finish) {
                return Ok(());
            }
            shape.accumulate(
                b,
                init,
                |b, v, _| centered(b, v, xz.as_ref(), Expr::idx(0)),
                |b, v, m| centered(b, v, wz.as_ref(), m.clone()),
                done,
            );
            Ok(())
        }
        Conv::QLinearConv { .. } => qlinear(b, cx, &shape, x, w, y),
    }
}

/// A zero point (scalar or per filter) read as I32; `at` picks the filter.
type Zp<'a> = (&'a TensorRef, bool);

fn centered(b: &mut Builder, v: Expr, zp: Option<&Zp>, m: Expr) -> Expr {
    let v = v.cast(Ty::I32);
    match zp {
        None => v,
        Some((t, per_filter)) => {
            let at = if *per_filter { m } else { Expr::idx(0) };
            v.sub(b.load(t, at).cast(Ty::I32))
        }
    }
}

/// A parameter of `m` values, or one repeated: whether it is per filter.
fn per_filter(t: &TensorRef, m: usize, what: &str) -> Result<bool, String> {
    match t.numel() {
        1 => Ok(false),
        n if n == m => Ok(true),
        n => Err(format!("{what} has {n} values, expected 1 or {m}")),
    }
}

/// The zero points of x (one value) and w (one or per filter), checked against the operands.
fn zero_points<'a>(
    shape: &Shape,
    x: &TensorRef,
    w: &TensorRef,
    xz: Option<&'a TensorRef>,
    wz: Option<&'a TensorRef>,
) -> Result<(Option<Zp<'a>>, Option<Zp<'a>>), String> {
    for (t, what) in [(x, "conv input"), (w, "conv weight")] {
        if !matches!(t.dtype, DType::U8 | DType::I8) {
            return Err(format!("{what} of type {}", t.dtype));
        }
    }
    let check = |z: Option<&'a TensorRef>, of: &TensorRef, m: usize, what: &str| match z {
        None => Ok(None),
        Some(z) if z.dtype != of.dtype => Err(format!(
            "{what} of type {} for a {} tensor",
            z.dtype, of.dtype
        )),
        Some(z) => Ok(Some((z, per_filter(z, m, what)?))),
    };
    let xz = check(xz, x, 1, "x_zero_point")?;
    let wz = check(wz, w, shape.filters, "w_zero_point")?;
    Ok((xz, wz))
}

fn qlinear(
    b: &mut Builder,
    cx: &NodeCtx,
    shape: &Shape,
    x: &TensorRef,
    w: &TensorRef,
    y: &TensorRef,
) -> LowerResult {
    let (xs, ws, ys) = (cx.input(1), cx.input(4), cx.input(6));
    let (xz, wz) = zero_points(shape, x, w, cx.opt_input(2), cx.opt_input(5))?;
    if !y.compute_ty().is_int() {
        return Err(format!("quantized output of type {}", y.dtype));
    }
    let sdt = xs.dtype;
    if ws.dtype != sdt || ys.dtype != sdt || !xs.compute_ty().is_float() {
        return Err("QLinearConv scales must be floats of one dtype".into());
    }
    if xs.numel() != 1 || ys.numel() != 1 {
        return Err("x_scale and y_scale must be single values".into());
    }
    let ws_per = per_filter(ws, shape.filters, "w_scale")?;
    let yz = match cx.opt_input(7) {
        None => None,
        Some(z) if z.numel() == 1 && z.dtype == y.dtype => Some(z),
        Some(z) => {
            return Err(format!(
                "y_zero_point {} {:?} must be one {} value",
                z.dtype, z.dims, y.dtype
            ));
        }
    };
    let bias = match cx.opt_input(8) {
        None => None,
        Some(t) if t.dtype == DType::I32 && t.dims == [shape.filters] => Some(t),
        Some(t) => {
            return Err(format!(
                "QLinearConv bias {} {:?} must be i32 of {} values",
                t.dtype, t.dims, shape.filters
            ));
        }
    };
    let round = |b: &mut Builder, v: Expr| {
        if matches!(sdt, DType::F16 | DType::BF16) {
            let raw = encode(b, sdt, v, true);
            let raw = b.let_(raw);
            decode(b, sdt, raw)
        } else {
            v
        }
    };
    let init = |b: &mut Builder, m: &Expr| match bias {
        Some(t) => b.load(t, m.clone()),
        None => Expr::int(Ty::I32, 0),
    };
    let done = |b: &mut Builder, at: Expr, m: &Expr, acc: Expr| {
        let xsv = b.load(xs, Expr::idx(0));
        let wsv = b.load(ws, if ws_per { m.clone() } else { Expr::idx(0) });
        let ysv = b.load(ys, Expr::idx(0));
        let prod = round(b, xsv.mul(wsv));
        let mult = round(b, prod.div(ysv));
        let zp = match yz {
            Some(t) => b.load(t, Expr::idx(0)).cast(Ty::F64),
            None => Expr::f64(0.0),
        };
        let v = requantize(acc, mult, zp, y);
        b.store(y, at, v);
    };
    let finish = int8::Finish {
        init: &init,
        done: &done,
    };
    if int8::try_lower(b, cx.options, shape, cx.const_input(3), (xz, wz), finish) {
        return Ok(());
    }
    shape.accumulate(
        b,
        init,
        |b, v, _| centered(b, v, xz.as_ref(), Expr::idx(0)),
        |b, v, m| centered(b, v, wz.as_ref(), m.clone()),
        done,
    );
    Ok(())
}

/// Where one (image, filter) pair's data starts: the filter index `m` and element offsets.
struct FilterBases {
    m: Expr,
    x_base: Expr,
    w_base: Expr,
    y_base: Expr,
}

/// A convolution resolved against its input and weight shapes.
struct Shape {
    batch: usize,
    channels: usize,
    filters: usize,
    group: usize,
    /// Input channels per group (W's second dim).
    group_channels: usize,
    window: Window,
    x: TensorRef,
    w: TensorRef,
}

impl Shape {
    fn new(op: &Conv, group: i64, x: &TensorRef, w: &TensorRef) -> Result<Shape, String> {
        let window = Window::conv(op, &x.dims, &w.dims)?;
        let (batch, channels, filters, group_channels) =
            (x.dims[0], x.dims[1], w.dims[0], w.dims[1]);
        let g = usize::try_from(group).ok().filter(|&g| {
            g >= 1 && filters % g == 0 && group_channels.checked_mul(g) == Some(channels)
        });
        let Some(group) = g else {
            return Err(format!(
                "group {group} does not fit input {:?} and weight {:?}",
                x.dims, w.dims
            ));
        };
        Ok(Shape {
            batch,
            channels,
            filters,
            group,
            group_channels,
            window,
            x: x.clone(),
            w: w.clone(),
        })
    }

    fn out_dims(&self) -> Vec<usize> {
        [self.batch, self.filters]
            .into_iter()
            .chain(self.window.output.iter().copied())
            .collect()
    }

    /// Runs `f` once per (image, filter), inside a loop nest over both, with the element
    /// offsets of the filter's group input, its weights and its output plane.
    fn for_each_filter(&self, b: &mut Builder, f: impl FnOnce(&mut Builder, FilterBases)) {
        let win = &self.window;
        let (in_len, out_len, k_len) = (win.input_len(), win.output_len(), win.kernel_len());
        let (gf, cg) = (self.filters / self.group, self.group_channels);
        b.nest(&[self.batch, self.group, gf], |b, nid| {
            let (n, g, fi) = (&nid[0], &nid[1], &nid[2]);
            let m = b.let_(g.clone().mul_k(gf as i64).add(fi.clone()));
            // First input channel of the group in this image, as an element offset.
            let x_base = b.let_(
                n.clone()
                    .mul_k(self.channels as i64)
                    .add(g.clone().mul_k(cg as i64))
                    .mul_k(in_len as i64),
            );
            let w_base = b.let_(m.clone().mul_k((cg * k_len) as i64));
            let y_base = b.let_(
                n.clone()
                    .mul_k(self.filters as i64)
                    .add(m.clone())
                    .mul_k(out_len as i64),
            );
            f(
                b,
                FilterBases {
                    m,
                    x_base,
                    w_base,
                    y_base,
                },
            );
        });
    }

    /// The convolution loop nest: for each image, filter and output position, `init(m)` plus the
    /// sum over taps inside the input and the group's channels of `xe(x) * we(w, m)` (in
    /// `init`'s type), handed to `done(flat output index, m, sum)`.
    #[allow(clippy::too_many_arguments)]
    fn accumulate(
        &self,
        b: &mut Builder,
        init: impl FnOnce(&mut Builder, &Expr) -> Expr,
        xe: impl Fn(&mut Builder, Expr, &Expr) -> Expr,
        we: impl Fn(&mut Builder, Expr, &Expr) -> Expr,
        done: impl FnOnce(&mut Builder, Expr, &Expr, Expr),
    ) {
        let last = self.window.rank() - 1;
        if self.window.kernel[last] <= MAX_ROW_TAPS && self.window.output[last] >= 2 {
            return self.accumulate_rows(b, init, xe, we, done);
        }
        let win = &self.window;
        let (in_len, k_len) = (win.input_len(), win.kernel_len());
        let cg = self.group_channels;
        let (xt, wt) = (&self.x, &self.w);
        self.for_each_filter(
            b,
            |b,
             FilterBases {
                 m,
                 x_base,
                 w_base,
                 y_base,
             }| {
                let start = init(b, &m);
                let start = b.let_(start);
                let ostr = strides_of(&win.output);
                b.nest(&win.output, |b, oidx| {
                    let sum = b.mutable(start);
                    for_taps(b, win, oidx, |b, tap| {
                        let kflat = linear(tap.kernel, &strides_of(&win.kernel));
                        let xf = tap.flat.clone();
                        if_inside(b, tap, |b| {
                            let (xo, wo) = (b.let_(x_base.add(xf)), b.let_(w_base.add(kflat)));
                            b.for_(cg, |b, c| {
                                let xv = b.load(xt, xo.add(c.clone().mul_k(in_len as i64)));
                                let xv = xe(b, xv, &m);
                                let wv = b.load(wt, wo.add(c.mul_k(k_len as i64)));
                                let wv = we(b, wv, &m);
                                let s = b.get(sum).add(xv.mul(wv));
                                b.set(sum, s);
                            });
                        });
                    });
                    let at = y_base.add(linear(oidx, &ostr));
                    let total = b.get(sum);
                    done(b, at, &m, total);
                });
            },
        );
    }

    /// [`Shape::accumulate`] one output row at a time: the row's sums live in a workspace, and
    /// for each tap row and channel one loop over the row's output positions adds `x·w` to every
    /// sum. The taps of the last axis are unrolled, so the positions where a tap lands inside
    /// the input are a static range (no test per element, padding skipped as before), the
    /// loop has no dependency between iterations, and with stride 1 its loads are contiguous
    /// (vectorized). Sums are in the same type; only their association differs.
    #[allow(clippy::too_many_arguments)]
    fn accumulate_rows(
        &self,
        b: &mut Builder,
        init: impl FnOnce(&mut Builder, &Expr) -> Expr,
        xe: impl Fn(&mut Builder, Expr, &Expr) -> Expr,
        we: impl Fn(&mut Builder, Expr, &Expr) -> Expr,
        done: impl FnOnce(&mut Builder, Expr, &Expr, Expr),
    ) {
        let win = &self.window;
        let last = win.rank() - 1;
        let (in_len, k_len) = (win.input_len(), win.kernel_len());
        let cg = self.group_channels;
        let (xt, wt) = (&self.x, &self.w);
        let (ow_n, kl_n) = (win.output[last], win.kernel[last]);
        let (s, d, pb, iw) = (
            win.strides[last] as i64,
            win.dilations[last] as i64,
            win.pad_begin[last] as i64,
            win.input[last] as i64,
        );
        let istr = strides_of(&win.input);
        let kstr = strides_of(&win.kernel);
        let ostr = strides_of(&win.output);
        self.for_each_filter(
            b,
            |b,
             FilterBases {
                 m,
                 x_base,
                 w_base,
                 y_base,
             }| {
                let start = init(b, &m);
                let start = b.let_(start);
                let sums = b.workspace(
                    match start.ty {
                        Ty::F64 => DType::F64,
                        Ty::F32 => DType::F32,
                        _ => DType::I32,
                    },
                    &[ow_n],
                );
                b.nest(&win.output[..last], |b, oidx| {
                    b.for_(ow_n, |b, o| b.store_raw(&sums, o, start.clone()));
                    b.nest(&win.kernel[..last], |b, kidx| {
                        // The tap's row: its coordinates on the outer axes, inside the input or not.
                        let mut inside: Option<Expr> = None;
                        let mut row = Expr::idx(0);
                        for a in 0..last {
                            let c = b.let_(
                                oidx[a]
                                    .clone()
                                    .mul_k(win.strides[a] as i64)
                                    .add(kidx[a].clone().mul_k(win.dilations[a] as i64))
                                    .add_k(-(win.pad_begin[a] as i64)),
                            );
                            let dim = win.input[a] as i64;
                            let ok = c.clone().ge(Expr::idx(0)).and(c.clone().lt(Expr::idx(dim)));
                            inside = Some(inside.map_or(ok.clone(), |p| p.and(ok)));
                            let clamped = c.max(Expr::idx(0)).min(Expr::idx(dim - 1));
                            row = row.add(clamped.mul_k(istr[a] as i64));
                        }
                        let row = b.let_(row);
                        let kouter = b.let_(linear(kidx, &kstr[..last]));
                        let body = |b: &mut Builder| {
                            b.for_(cg, |b, c| {
                                let xrow = b.let_(
                                    x_base.add(c.clone().mul_k(in_len as i64)).add(row.clone()),
                                );
                                let wrow = w_base.add(c.mul_k(k_len as i64)).add(kouter.clone());
                                for kl in 0..kl_n as i64 {
                                    // Output positions whose tap kl lands inside the input.
                                    let lo = ((pb - kl * d).max(0) + s - 1) / s;
                                    let hi =
                                        ((iw - 1 + pb - kl * d).div_euclid(s) + 1).min(ow_n as i64);
                                    if hi <= lo {
                                        continue;
                                    }
                                    let wv = b.load(wt, wrow.clone().add_k(kl * kstr[last] as i64));
                                    let wv = we(b, wv, &m);
                                    let wv = b.let_(wv);
                                    b.for_((hi - lo) as usize, |b, i| {
                                        let o = b.let_(i.add_k(lo));
                                        let xi =
                                            xrow.clone().add(o.clone().mul_k(s)).add_k(kl * d - pb);
                                        let xv = b.load(xt, xi);
                                        let xv = xe(b, xv, &m);
                                        let next =
                                            b.load_raw(&sums, o.clone()).add(xv.mul(wv.clone()));
                                        b.store_raw(&sums, o, next);
                                    });
                                }
                            });
                        };
                        match inside {
                            Some(cond) => b.if_(cond, body),
                            None => body(b),
                        }
                    });
                    let out_row = b.let_(y_base.add(linear(oidx, &ostr[..last])));
                    b.for_(ow_n, |b, o| {
                        let v = b.load_raw(&sums, o.clone());
                        done(b, out_row.clone().add(o), &m, v);
                    });
                });
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::linear::tests::{In, f32s, run_op, to_f32};
    use shrink_ir::op::{AutoPad, Conv};
    use shrink_ir::{DType, Op};

    #[test]
    fn grouped_dilated_strided_conv_with_asymmetric_pads_and_bias() {
        // x [1, 4, 5, 6], two groups of 2 channels, 4 filters of [2, 2, 3], dilation (2, 1),
        // stride (1, 2), pads (top 1, left 0, bottom 0, right 2).
        let (c, h, wd, m, kh, kw) = (4, 5, 6, 4, 2, 3);
        let x: Vec<f32> = (0..c * h * wd)
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let w: Vec<f32> = (0..m * 2 * kh * kw)
            .map(|i| ((i * 5) % 7) as f32 * 0.5 - 1.5)
            .collect();
        let bias = [0.25f32, -1.0, 2.0, 0.0];
        let (dh, dw, sh, sw, pt, pl, pb, pr) = (2, 1, 1, 2, 1, 0, 0, 2);
        let oh = (h + pt + pb - (dh * (kh - 1) + 1)) / sh + 1;
        let ow = (wd + pl + pr - (dw * (kw - 1) + 1)) / sw + 1;
        let mut want = vec![];
        for f in 0..m {
            let g = f / 2;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bias[f] as f64;
                    for cc in 0..2 {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let (y, xx) = (
                                    (i * sh + a * dh) as i64 - pt as i64,
                                    (j * sw + bb * dw) as i64 - pl as i64,
                                );
                                if y < 0 || xx < 0 || y >= h as i64 || xx >= wd as i64 {
                                    continue;
                                }
                                let xv = x[((g * 2 + cc) * h + y as usize) * wd + xx as usize];
                                let wv = w[((f * 2 + cc) * kh + a) * kw + bb];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    want.push(acc as f32);
                }
            }
        }
        let op = Op::Conv(Conv::Conv {
            auto_pad: AutoPad::NotSet,
            dilations: vec![dh as i64, dw as i64],
            group: 2,
            kernel_shape: vec![],
            pads: vec![pt as i64, pl as i64, pb as i64, pr as i64],
            strides: vec![sh as i64, sw as i64],
        });
        let (code, outs) = run_op(
            &op,
            &[
                Some(f32s(&[1, c, h, wd], &x)),
                Some(f32s(&[m, 2, kh, kw], &w)),
                Some(f32s(&[m], &bias)),
            ],
            &[(DType::F32, vec![1, m, oh, ow])],
        );
        assert_eq!(code, 0);
        assert_eq!(to_f32(&outs[0]), want);
    }

    #[test]
    fn qlinear_conv_per_channel_scales_zero_points_and_bias() {
        // 1-D, one input channel, two 1-tap filters.
        let x = In(DType::I8, vec![1, 1, 2], vec![1i8 as u8, 3]);
        let w = In(DType::I8, vec![2, 1, 1], vec![2, 5]);
        let f = |v: &[f32], d: &[usize]| Some(f32s(d, v));
        let zp = |v: &[i8], d: &[usize]| {
            Some(In(
                DType::I8,
                d.to_vec(),
                v.iter().map(|&z| z as u8).collect(),
            ))
        };
        let bias = In(
            DType::I32,
            vec![2],
            [10i32, -1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        let op = Op::Conv(Conv::QLinearConv {
            auto_pad: AutoPad::NotSet,
            dilations: vec![],
            group: 1,
            kernel_shape: vec![],
            pads: vec![],
            strides: vec![],
        });
        let (code, outs) = run_op(
            &op,
            &[
                Some(x),
                f(&[1.0], &[]),
                zp(&[1], &[]),
                Some(w),
                f(&[0.5, 100.0], &[2]),
                zp(&[1, 4], &[2]),
                f(&[1.0], &[]),
                zp(&[-2], &[]),
                Some(bias),
            ],
            &[(DType::I8, vec![1, 2, 2])],
        );
        assert_eq!(code, 0);
        // Filter 0: (x-1)*(2-1) + 10 = [10, 12], * 0.5 = [5, 6], -2 -> [3, 4].
        // Filter 1: (x-1)*(5-4) - 1 = [-1, 1], * 100 = [-100, 100], -2 -> [-102, 98].
        let got: Vec<i8> = outs[0].iter().map(|&b| b as i8).collect();
        assert_eq!(got, vec![3, 4, -102, 98]);
    }
}
