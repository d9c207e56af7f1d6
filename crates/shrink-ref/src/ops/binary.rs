//! Interpreter for the `Binary` family: arithmetic (Add Sub Mul Div Pow PRelu), logic (And Or)
//! and comparisons, all with numpy broadcasting. Equal also compares string tensors (byte for
//! byte). Also owns the broadcasting and output-type
//! helpers the other elementwise families (`variadic`, `ternary`) share.
//!
//! Integer arithmetic wraps; integer Div truncates toward zero (C semantics, as the ONNX
//! reference and ONNX Runtime do) and division by zero is an error. Pow takes its exponent in any
//! numeric dtype and returns the base's dtype.
use super::required;
use crate::broadcast::{broadcast_shapes, strides};
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_num};
use shrink_ir::op::Binary;
use shrink_ir::{Bytes, DType, Element, Tensor, ValueType};

pub fn eval(
    op: &Binary,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    let a = required(ins, 0)?;
    let b = required(ins, 1)?;
    let y = match op {
        Binary::Add | Binary::Sub | Binary::Mul | Binary::Div => arith(op, a, b, ctx)?,
        Binary::Pow => pow(a, b, ctx)?,
        Binary::PRelu => prelu(a, b, ctx)?,
        Binary::And | Binary::Or => logic(op, a, b, ctx)?,
        Binary::Equal
        | Binary::Less
        | Binary::Greater
        | Binary::LessOrEqual
        | Binary::GreaterOrEqual => compare(op, a, b, ctx)?,
    };
    check_declared(outs, &y)?;
    Ok(vec![y])
}

/// Errors unless `y` has the dtype the node declares for its first output.
pub(crate) fn check_declared(outs: &[ValueType], y: &Tensor) -> Result<(), EvalError> {
    match outs.first() {
        Some(ty) if ty.dtype != y.dtype() => Err(EvalError::invalid(format!(
            "the output is declared {} but the op computes {}",
            ty.dtype,
            y.dtype()
        ))),
        _ => Ok(()),
    }
}

/// Errors unless `b` has the same dtype as `a` (`what` names the op for the message).
pub(crate) fn same_dtype(what: &str, a: &Tensor, b: &Tensor) -> Result<(), EvalError> {
    if a.dtype() == b.dtype() {
        Ok(())
    } else {
        Err(EvalError::invalid(format!(
            "{what}: input dtypes differ ({} vs {})",
            a.dtype(),
            b.dtype()
        )))
    }
}

/// The elements of `t` as `T`, or an error if `T` is not its storage type.
pub(crate) fn elems<T: Element>(t: &Tensor) -> Result<Vec<T>, EvalError> {
    t.to_vec::<T>().ok_or_else(|| {
        EvalError::invalid(format!("expected a {} tensor, got {}", T::DTYPE, t.dtype()))
    })
}

/// The elements of `t` as `T`, read in place, or an error if `T` is not its storage type.
pub(crate) fn elements<T: Element>(
    t: &Tensor,
) -> Result<impl ExactSizeIterator<Item = T> + Clone + '_, EvalError> {
    t.elements::<T>().ok_or_else(|| {
        EvalError::invalid(format!("expected a {} tensor, got {}", T::DTYPE, t.dtype()))
    })
}

/// Lazily yields, for each element of a broadcast output (row-major), the flat index of the input
/// element that maps to it. Unlike materializing an index vector, this costs no memory per
/// element, so only the output itself needs to fit the memory cap.
pub(crate) struct BroadcastIter {
    /// Input stride per output axis (0 where the input is broadcast).
    eff: Vec<usize>,
    out_dims: Vec<usize>,
    pos: Vec<usize>,
    flat: usize,
    left: usize,
}

impl BroadcastIter {
    /// `in_dims` must be broadcast-compatible with `out_dims` (as `broadcast_shapes` ensures).
    pub(crate) fn new(in_dims: &[usize], out_dims: &[usize]) -> BroadcastIter {
        let rank = out_dims.len();
        let off = rank.saturating_sub(in_dims.len());
        let in_strides = strides(in_dims);
        let eff = (0..rank)
            .map(|i| {
                if i < off || in_dims[i - off] == 1 {
                    0
                } else {
                    in_strides[i - off]
                }
            })
            .collect();
        BroadcastIter {
            eff,
            out_dims: out_dims.to_vec(),
            pos: vec![0; rank],
            flat: 0,
            left: out_dims.iter().product(),
        }
    }
}

impl Iterator for BroadcastIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let cur = self.flat;
        for d in (0..self.out_dims.len()).rev() {
            self.pos[d] += 1;
            self.flat += self.eff[d];
            if self.pos[d] < self.out_dims[d] {
                break;
            }
            self.flat -= self.eff[d] * self.pos[d];
            self.pos[d] = 0;
        }
        Some(cur)
    }
}

/// The broadcast shape of `shapes`, checked against the memory cap for an `out_dtype` result.
pub(crate) fn broadcast_out(
    shapes: &[&[usize]],
    out_dtype: DType,
    ctx: &EvalCtx,
) -> Result<Vec<usize>, EvalError> {
    let dims = broadcast_shapes(shapes)?;
    ctx.check_alloc(out_dtype, &dims)?;
    Ok(dims)
}

/// Applies `f` elementwise over the broadcast of `a` and `b`, producing an `out_dtype` tensor
/// stored as `R`.
pub(crate) fn map2<A: Element, B: Element, R: Element>(
    a: &Tensor,
    b: &Tensor,
    out_dtype: DType,
    ctx: &EvalCtx,
    mut f: impl FnMut(A, B) -> Result<R, EvalError>,
) -> Result<Tensor, EvalError> {
    let dims = broadcast_out(&[a.dims(), b.dims()], out_dtype, ctx)?;
    let n: usize = dims.iter().product();
    let (na, nb) = (a.len(), b.len());
    // Same-shape and scalar operands (the common cases) stream from the inputs' bytes straight
    // into the output's: no copies, no broadcast index walk (a scalar's one element cycles).
    if (na == n || na == 1) && (nb == n || nb == 1) {
        let pairs = elements::<A>(a)?
            .cycle()
            .zip(elements::<B>(b)?.cycle())
            .take(n);
        let mut err = None;
        let out = Tensor::from_elements(
            out_dtype,
            dims,
            pairs.map_while(|(x, y)| f(x, y).map_err(|e| err = Some(e)).ok()),
        );
        return match (err, out) {
            (Some(e), _) => Err(e),
            (None, Some(t)) => Ok(t),
            (None, None) => Err(EvalError::invalid(
                "the element count does not match the shape",
            )),
        };
    }
    let (av, bv) = (elems::<A>(a)?, elems::<B>(b)?);
    let out = BroadcastIter::new(a.dims(), &dims)
        .zip(BroadcastIter::new(b.dims(), &dims))
        .map(|(i, j)| f(av[i], bv[j]))
        .collect::<Result<Vec<R>, EvalError>>()?;
    Ok(Tensor::from_vec_as(out_dtype, dims, out))
}

/// Whether `dt` is one of the dtypes `dispatch_num!` covers (ordinary ints and floats).
pub(crate) fn is_num(dt: DType) -> bool {
    dt.size() > 1 || matches!(dt, DType::I8 | DType::U8)
}

/// `eval` sent `op` to the wrong helper: an interpreter bug, reported rather than computing
/// another op.
fn not_this_family(op: &Binary, what: &str) -> EvalError {
    EvalError::invalid(format!("internal error: {} is not a {what} op", op.name()))
}

fn unsupported(op: &str, dt: DType) -> EvalError {
    EvalError::unsupported(format!("{op} on {dt} tensors"))
}

fn arith(op: &Binary, a: &Tensor, b: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    same_dtype(op.name(), a, b)?;
    let dt = a.dtype();
    fn run<T: Num>(
        op: &Binary,
        a: &Tensor,
        b: &Tensor,
        ctx: &EvalCtx,
    ) -> Result<Tensor, EvalError> {
        match op {
            Binary::Add => map2(a, b, T::DTYPE, ctx, |x: T, y: T| Ok(x.add(y))),
            Binary::Sub => map2(a, b, T::DTYPE, ctx, |x: T, y: T| Ok(x.sub(y))),
            Binary::Mul => map2(a, b, T::DTYPE, ctx, |x: T, y: T| Ok(x.mul(y))),
            Binary::Div => map2(a, b, T::DTYPE, ctx, |x: T, y: T| {
                x.div(y)
                    .ok_or_else(|| EvalError::invalid("integer division by zero"))
            }),
            // Listed (no `_`): a new variant must choose its arithmetic, not become Div.
            Binary::Pow
            | Binary::PRelu
            | Binary::And
            | Binary::Or
            | Binary::Equal
            | Binary::Less
            | Binary::Greater
            | Binary::LessOrEqual
            | Binary::GreaterOrEqual => Err(not_this_family(op, "arithmetic")),
        }
    }
    dispatch_num!(dt, T => run::<T>(op, a, b, ctx), else Err(unsupported(op.name(), dt)))
}

/// `x < 0 ? slope * x : x`, with `slope` broadcast to the shape of `x` (one direction only).
fn prelu(x: &Tensor, slope: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    same_dtype("PRelu", x, slope)?;
    if broadcast_shapes(&[x.dims(), slope.dims()])? != x.dims() {
        return Err(EvalError::invalid(format!(
            "PRelu: slope of shape {:?} does not broadcast to X of shape {:?}",
            slope.dims(),
            x.dims()
        )));
    }
    let dt = x.dtype();
    fn run<T: Num>(x: &Tensor, s: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
        map2(x, s, T::DTYPE, ctx, |v: T, s: T| {
            Ok(if v < T::zero() { s.mul(v) } else { v })
        })
    }
    dispatch_num!(dt, T => run::<T>(x, slope, ctx), else Err(unsupported("PRelu", dt)))
}

fn logic(op: &Binary, a: &Tensor, b: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    for t in [a, b] {
        if t.dtype() != DType::Bool {
            return Err(EvalError::invalid(format!(
                "{} needs bool inputs, got {}",
                op.name(),
                t.dtype()
            )));
        }
    }
    let f: fn(bool, bool) -> bool = match op {
        Binary::And => |x, y| x && y,
        Binary::Or => |x, y| x || y,
        Binary::Add
        | Binary::Sub
        | Binary::Mul
        | Binary::Div
        | Binary::Pow
        | Binary::PRelu
        | Binary::Equal
        | Binary::Less
        | Binary::Greater
        | Binary::LessOrEqual
        | Binary::GreaterOrEqual => return Err(not_this_family(op, "logic")),
    };
    map2(a, b, DType::Bool, ctx, |x: bool, y: bool| Ok(f(x, y)))
}

fn compare(op: &Binary, a: &Tensor, b: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    same_dtype(op.name(), a, b)?;
    if let (Binary::Equal, Some(x), Some(y)) = (op, a.strings(), b.strings()) {
        return equal_strings(a.dims(), x, b.dims(), y, ctx);
    }
    // IEEE comparisons: anything involving NaN is false (Equal too), and -0 == +0.
    fn run<T: PartialOrd + Element>(
        op: &Binary,
        a: &Tensor,
        b: &Tensor,
        ctx: &EvalCtx,
    ) -> Result<Tensor, EvalError> {
        let f: fn(&T, &T) -> bool = match op {
            Binary::Equal => T::eq,
            Binary::Less => T::lt,
            Binary::Greater => T::gt,
            Binary::LessOrEqual => T::le,
            Binary::GreaterOrEqual => T::ge,
            Binary::Add
            | Binary::Sub
            | Binary::Mul
            | Binary::Div
            | Binary::Pow
            | Binary::PRelu
            | Binary::And
            | Binary::Or => return Err(not_this_family(op, "comparison")),
        };
        map2(a, b, DType::Bool, ctx, |x: T, y: T| Ok(f(&x, &y)))
    }
    let dt = a.dtype();
    dispatch_num!(dt, T => run::<T>(op, a, b, ctx), else {
        if dt == DType::Bool {
            run::<bool>(op, a, b, ctx)
        } else {
            Err(unsupported(op.name(), dt))
        }
    })
}

/// Equal on two string tensors: elements are equal when their bytes are.
fn equal_strings(
    a_dims: &[usize],
    a: &[Bytes],
    b_dims: &[usize],
    b: &[Bytes],
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let dims = broadcast_out(&[a_dims, b_dims], DType::Bool, ctx)?;
    let out = BroadcastIter::new(a_dims, &dims)
        .zip(BroadcastIter::new(b_dims, &dims))
        .map(|(i, j)| a[i] == b[j])
        .collect();
    Ok(Tensor::from_vec(dims, out))
}

/// Pow: the result has the base's dtype. A float base is raised in f64 and rounded once; an
/// integer base with an integer exponent uses exact wrapping integer power (numpy's semantics);
/// an integer base with a float exponent is computed in f64 and truncated back.
fn pow(base: &Tensor, exp: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let (bt, et) = (base.dtype(), exp.dtype());
    if !is_num(et) {
        return Err(unsupported("Pow exponent", et));
    }
    let dims = broadcast_out(&[base.dims(), exp.dims()], bt, ctx)?;
    let pairs =
        || BroadcastIter::new(base.dims(), &dims).zip(BroadcastIter::new(exp.dims(), &dims));
    fn float_pow<T: Num>(
        base: &Tensor,
        exp: &[f64],
        pairs: impl Iterator<Item = (usize, usize)>,
    ) -> Result<Vec<T>, EvalError> {
        let bv = elems::<T>(base)?;
        Ok(pairs
            .map(|(i, j)| T::from_f64(bv[i].to_f64().powf(exp[j])))
            .collect())
    }
    fn int_pow_all<T: Num>(
        base: &Tensor,
        exp: &[i64],
        pairs: impl Iterator<Item = (usize, usize)>,
    ) -> Result<Vec<T>, EvalError> {
        let bv = elems::<T>(base)?;
        pairs
            .map(|(i, j)| int_pow(bv[i].to_i64(), T::IS_SIGNED, exp[j]).map(T::from_i64))
            .collect()
    }
    let float_math = bt.is_float() || et.is_float();
    let (ev_f, ev_i) = if float_math {
        (exp.to_f64_vec(), vec![])
    } else {
        (vec![], exp.to_i64_vec())
    };
    fn run<T: Num>(
        base: &Tensor,
        float_math: bool,
        ev_f: &[f64],
        ev_i: &[i64],
        pairs: impl Iterator<Item = (usize, usize)>,
        dims: Vec<usize>,
    ) -> Result<Tensor, EvalError> {
        let out = if float_math {
            float_pow::<T>(base, ev_f, pairs)?
        } else {
            int_pow_all::<T>(base, ev_i, pairs)?
        };
        Ok(Tensor::from_vec(dims, out))
    }
    dispatch_num!(bt, T => run::<T>(base, float_math, &ev_f, &ev_i, pairs(), dims.clone()),
        else Err(unsupported("Pow", bt)))
}

/// `b^e` in wrapping 64-bit integer arithmetic (truncating to the storage type afterwards gives
/// the same bits as wrapping in that type). `b` holds the two's complement bits of the base;
/// `signed` says whether to read it as signed. A negative exponent gives the truncated real
/// result (0 unless |b| = 1); 0 to a negative power has no value and is an error.
fn int_pow(b: i64, signed: bool, e: i64) -> Result<i64, EvalError> {
    if e < 0 {
        return match b {
            0 => Err(EvalError::invalid(
                "Pow: integer 0 raised to a negative power",
            )),
            1 => Ok(1),
            -1 if signed => Ok(if e % 2 == 0 { 1 } else { -1 }),
            _ => Ok(0),
        };
    }
    let (mut acc, mut sq, mut e) = (1i64, b, e as u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(sq);
        }
        sq = sq.wrapping_mul(sq);
        e >>= 1;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shrink_ir::Op;

    fn run(op: Binary, a: Tensor, b: Tensor) -> Result<Tensor, EvalError> {
        eval(&op, &[Some(&a), Some(&b)], &[], &EvalCtx::default()).map(|mut v| v.remove(0))
    }

    #[test]
    fn broadcast_iter_matches_shared_helper() {
        for (i, o) in [
            (&[3, 1][..], &[2, 3, 4][..]),
            (&[], &[2, 2]),
            (&[4], &[3, 4]),
            (&[2, 1, 3], &[2, 5, 3]),
        ] {
            let got: Vec<usize> = BroadcastIter::new(i, o).collect();
            assert_eq!(
                got,
                crate::broadcast::broadcast_indices(i, o),
                "{i:?} -> {o:?}"
            );
        }
        assert_eq!(BroadcastIter::new(&[0], &[0]).count(), 0);
    }

    #[test]
    fn equal_compares_strings_with_broadcasting() {
        let s = |dims: Vec<usize>, v: &[&'static [u8]]| {
            Tensor::from_strings(dims, v.iter().map(|b| Bytes::from_static(b)).collect()).unwrap()
        };
        let a = s(vec![2, 1], &[b"ab", b"\xff"]);
        let b = s(vec![3], &[b"ab", b"\xff", b"ab "]);
        let y = run(Binary::Equal, a.clone(), b).unwrap();
        assert_eq!(y.dims(), &[2, 3]);
        assert_eq!(
            y.to_vec::<bool>().unwrap(),
            [true, false, false, false, true, false]
        );
        // Only Equal (and Identity) take strings, whatever graph the caller built.
        let outs = [ValueType::unknown_shape(DType::Bool)];
        for op in [Binary::Less, Binary::Add] {
            let e = crate::eval_op(
                &Op::Binary(op),
                &[Some(&a), Some(&a)],
                &outs,
                &EvalCtx::default(),
            );
            assert!(matches!(e, Err(EvalError::Unsupported(_))), "{e:?}");
        }
        let id = Op::Unary(shrink_ir::op::Unary::Identity);
        let outs = [ValueType::unknown_shape(DType::String)];
        assert_eq!(
            crate::eval_op(&id, &[Some(&a)], &outs, &EvalCtx::default()),
            Ok(vec![a])
        );
    }

    #[test]
    fn add_broadcasts_and_wraps() {
        let a = Tensor::from_vec(vec![2, 1], vec![1i8, 127]);
        let b = Tensor::from_vec(vec![3], vec![0i8, 1, 2]);
        let y = run(Binary::Add, a, b).unwrap();
        assert_eq!(y.dims(), &[2, 3]);
        assert_eq!(y.to_vec::<i8>().unwrap(), vec![1, 2, 3, 127, -128, -127]);
    }

    #[test]
    fn int_div_truncates_and_rejects_zero() {
        let a = Tensor::from_vec(vec![4], vec![7i32, -7, 7, i32::MIN]);
        let b = Tensor::from_vec(vec![4], vec![2i32, 2, -2, -1]);
        assert_eq!(
            run(Binary::Div, a, b).unwrap().to_vec::<i32>().unwrap(),
            vec![3, -3, -3, i32::MIN]
        );
        let z = run(
            Binary::Div,
            Tensor::from_vec(vec![1], vec![1u8]),
            Tensor::from_vec(vec![1], vec![0u8]),
        );
        assert!(matches!(z, Err(EvalError::Invalid(_))));
        let f = run(
            Binary::Div,
            Tensor::from_vec(vec![1], vec![1f32]),
            Tensor::from_vec(vec![1], vec![0f32]),
        );
        assert_eq!(f.unwrap().to_vec::<f32>().unwrap(), vec![f32::INFINITY]);
    }

    #[test]
    fn pow_mixed_types() {
        let y = run(
            Binary::Pow,
            Tensor::from_vec(vec![3], vec![2f32, 3., -2.]),
            Tensor::from_vec(vec![3], vec![3i64, 2, 3]),
        );
        assert_eq!(y.unwrap().to_vec::<f32>().unwrap(), vec![8., 9., -8.]);
        let y = run(
            Binary::Pow,
            Tensor::from_vec(vec![3], vec![2i32, 3, 4]),
            Tensor::from_vec(vec![3], vec![0.5f32, 2., 1.5]),
        );
        assert_eq!(y.unwrap().to_vec::<i32>().unwrap(), vec![1, 9, 8]);
        let y = run(
            Binary::Pow,
            Tensor::from_vec(vec![4], vec![3i64, -1, 2, 2]),
            Tensor::from_vec(vec![4], vec![40i64, -3, -1, 64]),
        );
        assert_eq!(
            y.unwrap().to_vec::<i64>().unwrap(),
            vec![3i64.wrapping_pow(40), -1, 0, 0]
        );
        assert!(run(Binary::Pow, Tensor::scalar(0i32), Tensor::scalar(-1i32)).is_err());
    }

    #[test]
    fn prelu_is_unidirectional() {
        let x = Tensor::from_vec(vec![2, 2], vec![-1f32, 2., -3., 4.]);
        let s = Tensor::from_vec(vec![2], vec![0.5f32, 0.25]);
        assert_eq!(
            run(Binary::PRelu, x.clone(), s)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![-0.5, 2., -1.5, 4.]
        );
        let big = Tensor::from_vec(vec![3, 2, 2], vec![1f32; 12]);
        assert!(run(Binary::PRelu, x, big).is_err());
    }

    #[test]
    fn comparisons_follow_ieee() {
        let a = Tensor::from_vec(vec![3], vec![f32::NAN, -0.0, 1.0]);
        let b = Tensor::from_vec(vec![3], vec![f32::NAN, 0.0, 2.0]);
        assert_eq!(
            run(Binary::Equal, a.clone(), b.clone())
                .unwrap()
                .to_vec::<bool>()
                .unwrap(),
            vec![false, true, false]
        );
        assert_eq!(
            run(Binary::LessOrEqual, a, b)
                .unwrap()
                .to_vec::<bool>()
                .unwrap(),
            vec![false, true, true]
        );
        let a = Tensor::from_vec(vec![2], vec![-1i8, 5]);
        let b = Tensor::from_vec(vec![2], vec![1i8, 5]);
        assert_eq!(
            run(Binary::Less, a, b).unwrap().to_vec::<bool>().unwrap(),
            vec![true, false]
        );
        let p = Tensor::from_vec(vec![2], vec![true, false]);
        assert_eq!(
            run(Binary::Equal, p.clone(), Tensor::scalar(true))
                .unwrap()
                .to_vec::<bool>()
                .unwrap(),
            vec![true, false]
        );
        assert_eq!(
            run(Binary::Or, p, Tensor::scalar(false))
                .unwrap()
                .to_vec::<bool>()
                .unwrap(),
            vec![true, false]
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = Tensor::from_vec(vec![2], vec![1f32, 2.]);
        assert!(
            run(
                Binary::Add,
                a.clone(),
                Tensor::from_vec(vec![3], vec![1f32, 2., 3.])
            )
            .is_err()
        );
        assert!(
            run(
                Binary::Add,
                a.clone(),
                Tensor::from_vec(vec![2], vec![1f64, 2.])
            )
            .is_err()
        );
        assert!(run(Binary::And, a.clone(), a).is_err());
        let declared = [ValueType::new(DType::F64, None)];
        let a = Tensor::scalar(1f32);
        assert!(
            eval(
                &Binary::Add,
                &[Some(&a), Some(&a)],
                &declared,
                &EvalCtx::default()
            )
            .is_err()
        );
    }
}
