//! Float convolutions (one group, constant finite filters) as matrix products on the SIMD tiles
//! of the Linear family: per call the input is unfolded into columns (`cols[n][p][j]`, `p` the
//! filter element `(channel, kernel position)` in the weights' own order, `j` the output
//! position), and `y[n][f][j] = Σ_p W[f][p] · cols[n][p][j] + bias[f]` is a product of the
//! `[filters, p]` weights and those columns whose output is already `y`'s layout.
//!
//! Numerics: each output is one sequential sum over `p` in the element type (as the loop nest
//! sums in f32 for f32 graphs), plus the bias last. Taps in padding unfold to 0; with finite
//! filters their terms `0 · w` are exactly 0, so padding still contributes nothing — filters
//! with an infinity or NaN keep the loop nest, which skips padded taps.
use super::Shape;
use crate::loops::{Builder, Expr, TensorRef, Ty, linear, strides_of};
use crate::ops::linear::{Dot, tiled_product};
use shrink_ir::{DType, Tensor};

/// Lowers the convolution on the tiles when it qualifies; None leaves it to the loop nest.
pub(super) fn try_lower(
    b: &mut Builder,
    options: &crate::CodegenOptions,
    s: &Shape,
    filters: Option<&Tensor>,
    bias: Option<&TensorRef>,
    y: &TensorRef,
) -> Option<Result<(), String>> {
    let ty = match s.x.dtype {
        DType::F32 => Ty::F32,
        DType::F64 => Ty::F64,
        _ => return None,
    };
    let finite = filters?.to_f64_vec().iter().all(|v| v.is_finite());
    if s.group != 1 || s.w.dtype != s.x.dtype || y.dtype != s.x.dtype || !finite {
        return None;
    }
    let win = &s.window;
    let (k, hw) = (s.channels * win.kernel_len(), win.output_len());
    if k == 0 || hw == 0 || s.batch == 0 || s.filters == 0 {
        return None;
    }
    let cols = b.workspace(s.x.dtype, &[s.batch, k, hw]);
    unfold(b, s, &cols, ty);
    let w = TensorRef {
        dims: vec![s.filters, k],
        ..s.w.clone()
    };
    let dot = ConvDot {
        ty,
        filters: s.filters,
        hw,
        bias,
        y,
    };
    match tiled_product(b, options, &w, &cols, &dot) {
        Ok(true) => Some(Ok(())),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

/// `cols[n][c·K + t][j]` = the input under tap `t` of output position `j` of channel `c`
/// (0 where the tap lands in padding). Along the last axis each kernel offset is unrolled and
/// its output positions split into the static ranges before, inside and after the input, so
/// the inside range is a plain copy (a vector loop at stride 1) and the others store zeros.
fn unfold(b: &mut Builder, s: &Shape, cols: &TensorRef, ty: Ty) {
    let win = &s.window;
    let last = win.rank() - 1;
    let (in_len, k_len, hw) = (win.input_len(), win.kernel_len(), win.output_len());
    let istr = strides_of(&win.input);
    let (kstr, ostr) = (strides_of(&win.kernel), strides_of(&win.output));
    let [st, d, pb, iw, ow] = [
        win.strides[last],
        win.dilations[last],
        win.pad_begin[last],
        win.input[last],
        win.output[last],
    ]
    .map(|v| v as i64);
    let zero = Expr::lit(ty, 0.0);
    b.nest(&[s.batch, s.channels], |b, nc| {
        let (n, c) = (&nc[0], &nc[1]);
        let x_base = b.let_(
            n.clone()
                .mul_k(s.channels as i64)
                .add(c.clone())
                .mul_k(in_len as i64),
        );
        let row0 = b.let_(
            n.clone()
                .mul_k((s.channels * k_len) as i64)
                .add(c.clone().mul_k(k_len as i64))
                .mul_k(hw as i64),
        );
        b.nest(&win.kernel[..last], |b, kidx| {
            b.nest(&win.output[..last], |b, oidx| {
                // The tap's row on the outer axes: inside the input or not (then zeros), and its
                // coordinates clamped so the loads stay inside `x` either way.
                let mut inside: Option<Expr> = None;
                let mut clamped = vec![];
                for a in 0..last {
                    let at = oidx[a]
                        .clone()
                        .mul_k(win.strides[a] as i64)
                        .add(kidx[a].clone().mul_k(win.dilations[a] as i64))
                        .add_k(-(win.pad_begin[a] as i64));
                    let at = b.let_(at);
                    let dim = win.input[a] as i64;
                    let ok = at
                        .clone()
                        .ge(Expr::idx(0))
                        .and(at.clone().lt(Expr::idx(dim)));
                    inside = Some(inside.map_or(ok.clone(), |p| p.and(ok)));
                    clamped.push(at.max(Expr::idx(0)).min(Expr::idx(dim - 1)));
                }
                let inside = inside.map(|c| b.let_(c));
                let xrow = b.let_(x_base.clone().add(linear(&clamped, &istr[..last])));
                let k_outer = linear(kidx, &kstr[..last]);
                let o_outer = linear(oidx, &ostr[..last]);
                for kl in 0..win.kernel[last] as i64 {
                    let crow = b.let_(
                        row0.clone()
                            .add(k_outer.clone().add_k(kl).mul_k(hw as i64))
                            .add(o_outer.clone()),
                    );
                    // Output positions whose tap kl lands inside the input: [lo, hi).
                    let lo = (((pb - kl * d).max(0) + st - 1) / st).min(ow);
                    let hi = ((iw - 1 + pb - kl * d).div_euclid(st) + 1).clamp(lo, ow);
                    for (from, to) in [(0, lo), (hi, ow)] {
                        b.for_((to - from) as usize, |b, i| {
                            b.store(cols, crow.clone().add(i.add_k(from)), zero.clone());
                        });
                    }
                    b.for_((hi - lo) as usize, |b, i| {
                        let o = b.let_(i.add_k(lo));
                        let xi = xrow.clone().add(o.clone().mul_k(st)).add_k(kl * d - pb);
                        let v = b.load(&s.x, xi);
                        let v = match &inside {
                            Some(c) => Expr::select(c.clone(), v, zero.clone()),
                            None => v,
                        };
                        b.store(cols, crow.clone().add(o), v);
                    });
                }
            });
        });
    });
}

/// The epilogue: `y[n][f][j] = sum + bias[f]`.
struct ConvDot<'a> {
    ty: Ty,
    filters: usize,
    hw: usize,
    bias: Option<&'a TensorRef>,
    y: &'a TensorRef,
}

impl Dot for ConvDot<'_> {
    fn acc_ty(&self) -> Ty {
        self.ty
    }

    fn epilogue(&self, b: &mut Builder, bidx: &[Expr], i: &Expr, j: &Expr, acc: Expr) {
        let at = bidx[0]
            .clone()
            .mul_k(self.filters as i64)
            .add(i.clone())
            .mul_k(self.hw as i64)
            .add(j.clone());
        let v = match self.bias {
            Some(t) => acc.add(b.load(t, i.clone())),
            None => acc,
        };
        b.store(self.y, at, v);
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::lower_node;
    use crate::ops::op_testing::{In, f32s, run_node_traced, values};
    use shrink_ir::DType;
    use shrink_ir::op::{AutoPad, Conv, Op};
    use shrink_ir::window::Window;

    /// Runs `op` with the filters as a constant (`constant`) or as a per-call input; returns
    /// the output and the bytes of machine code placed.
    fn run(
        op: &Op,
        x: &In,
        w: (&[usize], &[f32]),
        bias: &[f32],
        out: &[usize],
        constant: bool,
    ) -> (Vec<f32>, usize) {
        let mut wi = In::f32s(w.0, w.1);
        if constant {
            wi = wi.constant();
        }
        let x = In::new(x.dtype, &x.dims, x.bytes.clone());
        let (code, outs, machine) = run_node_traced(
            |b, cx| lower_node(b, op, cx),
            &[Some(x), Some(wi), Some(In::f32s(&[bias.len()], bias))],
            &[(DType::F32, out)],
            |_| {},
        )
        .unwrap();
        assert_eq!(code, 0);
        (f32s(&outs[0]), machine)
    }

    /// The tiles (constant filters) agree with the loop nest (per-call filters, which never take
    /// the tiles) on 1-D, 2-D and 3-D convolutions with pads, strides, dilations and batches.
    #[test]
    fn tiled_convolutions_agree_with_the_loop_nest() {
        // (x dims, w dims, pads, strides, dilations)
        type Case = (
            &'static [usize],
            &'static [usize],
            &'static [i64],
            &'static [i64],
            &'static [i64],
        );
        let cases: [Case; 5] = [
            (
                &[1, 3, 8, 8],
                &[8, 3, 3, 3],
                &[1, 1, 1, 1],
                &[1, 1],
                &[1, 1],
            ),
            (
                &[2, 4, 9, 7],
                &[5, 4, 3, 2],
                &[0, 1, 2, 0],
                &[2, 1],
                &[1, 2],
            ),
            (&[1, 2, 17], &[7, 2, 5], &[2, 2], &[3], &[1]),
            (
                &[1, 16, 6, 6],
                &[33, 16, 1, 1],
                &[0, 0, 0, 0],
                &[1, 1],
                &[1, 1],
            ),
            (
                &[1, 2, 4, 5, 3],
                &[3, 2, 2, 3, 2],
                &[1, 0, 1, 0, 1, 1],
                &[1, 2, 1],
                &[1, 1, 1],
            ),
        ];
        for (t, (xd, wd, pads, strides, dilations)) in cases.into_iter().enumerate() {
            let op = Op::Conv(Conv::Conv {
                auto_pad: AutoPad::NotSet,
                dilations: dilations.to_vec(),
                group: 1,
                kernel_shape: vec![],
                pads: pads.to_vec(),
                strides: strides.to_vec(),
            });
            let Op::Conv(conv) = &op else { unreachable!() };
            let win = Window::conv(conv, xd, wd).unwrap();
            let out: Vec<usize> = [xd[0], wd[0]]
                .into_iter()
                .chain(win.output.clone())
                .collect();
            let x = In::f32s(xd, &values(xd.iter().product(), 2 * t as u64 + 1));
            let w = values(wd.iter().product(), 2 * t as u64 + 2);
            let bias = values(wd[0], 7 + t as u64);
            let (tiled, machine) = run(&op, &x, (wd, &w), &bias, &out, true);
            let (nest, none) = run(&op, &x, (wd, &w), &bias, &out, false);
            // The tiles' machine code (zmm with AVX-512, ymm with AVX2 + FMA3) runs where the
            // host has either, the loop nest's never.
            #[cfg(target_arch = "x86_64")]
            assert_eq!(
                machine > 0,
                std::arch::is_x86_feature_detected!("avx512f")
                    || (std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")),
                "case {t}"
            );
            let _ = machine;
            assert_eq!(none, 0, "case {t}");
            let k: usize = wd[1..].iter().product();
            for (f, (a, b)) in tiled.iter().zip(&nest).enumerate() {
                // Two f32 sums of k terms of magnitude < 1 in different orders.
                let bound = 2.0 * (k as f32 + 1.0) * f32::EPSILON;
                assert!((a - b).abs() <= bound, "case {t} element {f}: {a} vs {b}");
            }
        }
    }
}
