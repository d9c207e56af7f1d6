//! The `Pool` family (MaxPool with its optional indices output, AveragePool, GlobalAveragePool,
//! GlobalMaxPool) as loop nests over shrink-ir's [`Window`], walked with the conv module's
//! [`for_taps`] so padding, dilation and ceil_mode agree with Conv and the interpreter.
//!
//! As in the interpreter: padding never wins a max (a window with no data yields the lowest
//! value and index -1); max skips NaN unless every value is NaN; averages sum in f64 and divide
//! once by the number of taps inside the input, or inside input + explicit padding with
//! `count_include_pad` (taps a ceil-mode window pushes past the end padding never count).
use super::conv::{for_taps, if_inside};
use super::{LowerResult, NodeCtx};
use crate::loops::{Builder, Expr, Ty, linear, strides_of};
use shrink_ir::DType;
use shrink_ir::op::Pool;
use shrink_ir::window::Window;

pub fn lower(b: &mut Builder, op: &Pool, cx: &NodeCtx) -> LowerResult {
    let x = cx.input(0);
    let win = Window::pool(op, &x.dims)?;
    let mut dims = x.dims[..2].to_vec();
    dims.extend(&win.output);
    if cx.output(0).dims != dims {
        return Err(format!(
            "output {:?} is not the pool's shape {dims:?}",
            cx.output(0).dims
        ));
    }
    match op {
        Pool::MaxPool { storage_order, .. } => {
            let col_major = shrink_ir::rules::pool::column_major(*storage_order)?;
            max_pool(b, cx, &win, cx.outputs.len() > 1, col_major)
        }
        Pool::GlobalMaxPool => max_pool(b, cx, &win, false, false),
        Pool::AveragePool {
            count_include_pad, ..
        } => average_pool(b, cx, &win, *count_include_pad),
        Pool::GlobalAveragePool => average_pool(b, cx, &win, false),
    }
}

/// The loop over planes (image × channel) and output positions shared by both pools: `f` gets
/// the plane, its input offset, the output position and the flat output index.
fn for_outputs(
    b: &mut Builder,
    planes: usize,
    win: &Window,
    f: impl FnOnce(&mut Builder, &Expr, &Expr, &[Expr], Expr),
) {
    let (in_len, out_len) = (win.input_len(), win.output_len());
    let ostr = strides_of(&win.output);
    b.for_(planes, |b, p| {
        let x_base = b.let_(p.clone().mul_k(in_len as i64));
        let y_base = b.let_(p.clone().mul_k(out_len as i64));
        b.nest(&win.output, |b, oidx| {
            let at = b.let_(y_base.add(linear(oidx, &ostr)));
            f(b, &p, &x_base, oidx, at);
        });
    });
}

fn max_pool(
    b: &mut Builder,
    cx: &NodeCtx,
    win: &Window,
    with_indices: bool,
    col_major: bool,
) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    if matches!(x.dtype, DType::Bool | DType::String) || x.dtype.is_narrow_float() {
        return Err(format!("MaxPool on {}", x.dtype));
    }
    let ty = x.compute_ty();
    let lowest = if ty.is_float() {
        Expr::lit(ty, f64::NEG_INFINITY)
    } else {
        min_int(ty)
    };
    let planes = x.dims[0] * x.dims[1];
    let in_len = win.input_len() as i64;
    // Column-major spatial strides for storage_order 1.
    let cstr: Vec<usize> = (0..win.rank())
        .map(|a| win.input[..a].iter().product())
        .collect();
    let indices = if with_indices {
        let t = cx.output(1);
        if t.dtype != DType::I64 || t.dims != y.dims {
            return Err(format!("MaxPool indices {} {:?}", t.dtype, t.dims));
        }
        Some(t)
    } else {
        None
    };
    for_outputs(b, planes, win, |b, p, x_base, oidx, at| {
        let best = b.mutable(lowest.clone());
        let have = b.mutable(Expr::bool(false));
        let idx = b.mutable(Expr::idx(-1));
        for_taps(b, win, oidx, |b, tap| {
            let xf = tap.flat.clone();
            let coords = tap.coords.to_vec();
            if_inside(b, tap, |b| {
                let v = b.load(x, x_base.clone().add(xf.clone()));
                let v = b.let_(v);
                let cur = b.get(best);
                let mut better = b.get(have).not().or(v.clone().gt(cur.clone()));
                if ty.is_float() {
                    // NaN loses to any number seen later.
                    let cur_nan = cur.clone().ne(cur);
                    let v_num = v.clone().eq(v.clone());
                    better = better.or(cur_nan.and(v_num));
                }
                let better = b.let_(better);
                b.if_(better, |b| {
                    b.set(best, v);
                    b.set(have, Expr::bool(true));
                    if indices.is_some() {
                        let spatial = if col_major {
                            linear(&coords, &cstr)
                        } else {
                            xf.clone()
                        };
                        b.set(idx, p.clone().mul_k(in_len).add(spatial));
                    }
                });
            });
        });
        let v = b.get(best);
        b.store(y, at.clone(), v);
        if let Some(t) = indices {
            let i = b.get(idx);
            b.store(t, at, i);
        }
    });
    Ok(())
}

fn min_int(ty: Ty) -> Expr {
    let v = match ty {
        Ty::I8 => i8::MIN as i64,
        Ty::I16 => i16::MIN as i64,
        Ty::I32 => i32::MIN as i64,
        Ty::I64 => i64::MIN,
        _ => 0,
    };
    Expr::int(ty, v)
}

fn average_pool(
    b: &mut Builder,
    cx: &NodeCtx,
    win: &Window,
    count_include_pad: bool,
) -> LowerResult {
    let (x, y) = (cx.input(0), cx.output(0));
    if !matches!(x.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(format!("AveragePool on {}", x.dtype));
    }
    let ty = y.compute_ty();
    let planes = x.dims[0] * x.dims[1];
    for_outputs(b, planes, win, |b, _, x_base, oidx, at| {
        let sum = b.mutable(Expr::f64(0.0));
        let count = b.mutable(Expr::f64(0.0));
        for_taps(b, win, oidx, |b, tap| {
            let xf = tap.flat.clone();
            if count_include_pad {
                // Inside the input or its explicit padding: the begin side always holds.
                let mut in_padded: Option<Expr> = None;
                for a in 0..win.rank() {
                    let end = (win.input[a] + win.pad_end[a]) as i64;
                    let ok = tap.coords[a].clone().lt(Expr::idx(end));
                    in_padded = Some(match in_padded {
                        None => ok,
                        Some(p) => p.and(ok),
                    });
                }
                let one = Expr::f64(1.0);
                let inc = match in_padded {
                    Some(c) => Expr::select(c, one, Expr::f64(0.0)),
                    None => one,
                };
                let c = b.get(count).add(inc);
                b.set(count, c);
            }
            if_inside(b, tap, |b| {
                let v = b.load(x, x_base.clone().add(xf)).cast(Ty::F64);
                let s = b.get(sum).add(v);
                b.set(sum, s);
                if !count_include_pad {
                    let c = b.get(count).add(Expr::f64(1.0));
                    b.set(count, c);
                }
            });
        });
        let v = b.get(sum).div(b.get(count)).cast(ty);
        b.store(y, at, v);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::ops::linear::tests::{f32s, run_op, to_f32};
    use shrink_ir::op::{AutoPad, Pool};
    use shrink_ir::{DType, Op};

    fn max_pool(kernel: &[i64], pads: &[i64], ceil_mode: bool) -> Op {
        Op::Pool(Pool::MaxPool {
            auto_pad: AutoPad::NotSet,
            ceil_mode,
            dilations: vec![],
            kernel_shape: kernel.to_vec(),
            pads: pads.to_vec(),
            storage_order: 0,
            strides: vec![],
        })
    }

    #[test]
    fn max_pool_padding_never_wins_and_nan_is_skipped() {
        // [3] with 2 elements of begin padding: the first window sees only padding.
        let op = max_pool(&[2], &[2, 0], false);
        let (code, outs) = run_op(
            &op,
            &[Some(f32s(&[1, 1, 3], &[f32::NAN, -5.0, f32::NAN]))],
            &[(DType::F32, vec![1, 1, 4]), (DType::I64, vec![1, 1, 4])],
        );
        assert_eq!(code, 0);
        let y = to_f32(&outs[0]);
        assert_eq!(y[0], f32::NEG_INFINITY);
        assert!(y[1].is_nan());
        assert_eq!(&y[2..], &[-5.0, -5.0]);
        let idx: Vec<i64> = outs[1]
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(idx, vec![-1, 0, 1, 1]);
    }

    #[test]
    fn average_pool_counts_padding_only_when_asked() {
        let avg = |include| {
            Op::Pool(Pool::AveragePool {
                auto_pad: AutoPad::NotSet,
                ceil_mode: true,
                count_include_pad: include,
                dilations: vec![],
                kernel_shape: vec![3],
                pads: vec![1, 0],
                strides: vec![2],
            })
        };
        // [0, 1, 2, 3] padded by one in front, kernel 3 stride 2, ceil mode: windows
        // [-1, 0, 1], [1, 2, 3], and none past the end (it would start in the end padding).
        let x = || Some(f32s(&[1, 1, 4], &[0.0, 1.0, 2.0, 3.0]));
        let (_, outs) = run_op(&avg(false), &[x()], &[(DType::F32, vec![1, 1, 2])]);
        assert_eq!(to_f32(&outs[0]), vec![0.5, 2.0]);
        let (_, outs) = run_op(&avg(true), &[x()], &[(DType::F32, vec![1, 1, 2])]);
        assert_eq!(to_f32(&outs[0]), vec![1.0 / 3.0, 2.0]);
    }
}
