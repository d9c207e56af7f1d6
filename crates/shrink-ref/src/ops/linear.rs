//! Interpreter for the `Linear` family: MatMul (numpy matmul: 1-D promotion, batch broadcasting),
//! Gemm, MatMulInteger and QLinearMatMul. Also owns the requantization arithmetic (scale products
//! rounded in the scale dtype, ties-to-even, saturation) that QLinearConv shares.
//!
//! Float products accumulate in f64 and round once to the output dtype; integer MatMul/Gemm wrap
//! in the element type; the quantized ops accumulate in wrapping i32 as the spec allows.
use super::{optional, required};
use crate::broadcast::{broadcast_indices, broadcast_shapes};
use crate::num::Num;
use crate::{EvalCtx, EvalError, dispatch_float, dispatch_num};
use half::{bf16, f16};
use shrink_ir::op::Linear;
use shrink_ir::rules::linear::MatmulShape;
use shrink_ir::{DType, Tensor, ValueType};

pub fn eval(
    op: &Linear,
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Vec<Tensor>, EvalError> {
    match op {
        Linear::MatMul => matmul(required(ins, 0)?, required(ins, 1)?, ctx).map(|t| vec![t]),
        Linear::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let gemm = Gemm {
                alpha: *alpha as f64,
                beta: *beta as f64,
                trans_a: *trans_a,
                trans_b: *trans_b,
            };
            gemm.eval(required(ins, 0)?, required(ins, 1)?, optional(ins, 2), ctx)
                .map(|t| vec![t])
        }
        Linear::MatMulInteger => matmul_integer(ins, ctx).map(|t| vec![t]),
        Linear::QLinearMatMul => qlinear_matmul(ins, outs, ctx).map(|t| vec![t]),
    }
}

/// How a numpy-style matmul of two shapes pairs up its operands: the shared rule's promoted
/// `[.., M, K]` and `[.., K, N]` problem ([`MatmulShape`]), and for every output batch the batch
/// indices of `a` and `b` it reads.
struct MatmulPlan {
    shape: MatmulShape,
    /// `(a batch, b batch)` per output batch, row-major over the broadcast batch shape.
    batches: Vec<(usize, usize)>,
}

impl MatmulPlan {
    fn new(
        a: &[usize],
        b: &[usize],
        out_dtype: DType,
        ctx: &EvalCtx,
    ) -> Result<MatmulPlan, EvalError> {
        let shape = MatmulShape::matmul(a, b)?;
        ctx.check_alloc(out_dtype, &shape.out_dims)?;
        let ai = broadcast_indices(shape.a_batch(), &shape.batch);
        let bi = broadcast_indices(shape.b_batch(), &shape.batch);
        Ok(MatmulPlan {
            batches: ai.into_iter().zip(bi).collect(),
            shape,
        })
    }

    /// The products, row-major over `out_dims`, accumulated in `A`'s arithmetic.
    fn run<A: Num>(&self, a: &[A], b: &[A]) -> Result<Vec<A>, EvalError> {
        let (m, k, n) = (self.shape.m, self.shape.k, self.shape.n);
        let (a_mat, b_mat) = (m * k, k * n);
        let mut out = Vec::with_capacity(self.batches.len() * m * n);
        for &(ab, bb) in &self.batches {
            let a = a
                .get(ab * a_mat..(ab + 1) * a_mat)
                .ok_or_else(|| EvalError::invalid("matmul operand a is short"))?;
            let b = b
                .get(bb * b_mat..(bb + 1) * b_mat)
                .ok_or_else(|| EvalError::invalid("matmul operand b is short"))?;
            for i in 0..m {
                for j in 0..n {
                    let mut acc = A::zero();
                    for p in 0..k {
                        acc = acc.add(a[i * k + p].mul(b[p * n + j]));
                    }
                    out.push(acc);
                }
            }
        }
        Ok(out)
    }
}

fn matmul(a: &Tensor, b: &Tensor, ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let dt = a.dtype();
    if b.dtype() != dt {
        return Err(EvalError::invalid(format!(
            "MatMul of {dt} and {}",
            b.dtype()
        )));
    }
    let plan = MatmulPlan::new(a.dims(), b.dims(), dt, ctx)?;
    dispatch_num!(dt, T => {
        let (av, bv) = (typed::<T>(a)?, typed::<T>(b)?);
        let out: Vec<T> = if T::IS_FLOAT {
            let wide = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
            plan.run(&wide(&av), &wide(&bv))?.into_iter().map(T::from_f64).collect()
        } else {
            plan.run(&av, &bv)?
        };
        Ok(Tensor::from_vec(plan.shape.out_dims, out))
    }, else Err(EvalError::unsupported(format!("MatMul on {dt}"))))
}

/// The elements of `t` as its storage type `T` (the dispatch guarantees they agree).
fn typed<T: shrink_ir::tensor::Element>(t: &Tensor) -> Result<Vec<T>, EvalError> {
    t.to_vec::<T>().ok_or_else(|| {
        EvalError::invalid(format!("a {} tensor was read as {}", t.dtype(), T::DTYPE))
    })
}

struct Gemm {
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    fn eval(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: Option<&Tensor>,
        ctx: &EvalCtx,
    ) -> Result<Tensor, EvalError> {
        let dt = a.dtype();
        if b.dtype() != dt || c.is_some_and(|c| c.dtype() != dt) {
            return Err(EvalError::invalid("Gemm inputs must share one dtype"));
        }
        let (&[ar, ac], &[br, bc]) = (a.dims(), b.dims()) else {
            return Err(EvalError::invalid(format!(
                "Gemm needs 2-D A and B, got {:?} and {:?}",
                a.dims(),
                b.dims()
            )));
        };
        let (m, k) = if self.trans_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if self.trans_b { (bc, br) } else { (br, bc) };
        if k != k2 {
            return Err(EvalError::invalid(format!(
                "Gemm inner dimensions differ: {k} vs {k2}"
            )));
        }
        ctx.check_alloc(dt, &[m, n])?;
        // C broadcasts unidirectionally to [M, N].
        let c_index = match c {
            None => None,
            Some(c) => {
                let cd = c.dims();
                let fits = cd.len() <= 2
                    && cd
                        .iter()
                        .rev()
                        .zip([n, m])
                        .all(|(&d, want)| d == 1 || d == want);
                if !fits {
                    return Err(EvalError::invalid(format!(
                        "Gemm C of shape {cd:?} does not broadcast to [{m}, {n}]"
                    )));
                }
                Some(broadcast_indices(cd, &[m, n]))
            }
        };
        let a_at = |i: usize, p: usize| if self.trans_a { p * ac + i } else { i * ac + p };
        let b_at = |p: usize, j: usize| if self.trans_b { j * bc + p } else { p * bc + j };
        dispatch_num!(dt, T => {
            let (av, bv) = (typed::<T>(a)?, typed::<T>(b)?);
            let cv = c.map(typed::<T>).transpose()?;
            let mut out = Vec::with_capacity(m * n);
            for i in 0..m {
                for j in 0..n {
                    let c_val = match (&cv, &c_index) {
                        (Some(cv), Some(ci)) => Some(cv[ci[i * n + j]]),
                        _ => None,
                    };
                    out.push(self.element(k, |p| (av[a_at(i, p)], bv[b_at(p, j)]), c_val));
                }
            }
            Ok(Tensor::from_vec(vec![m, n], out))
        }, else Err(EvalError::unsupported(format!("Gemm on {dt}"))))
    }

    /// `alpha * sum_p a(p) * b(p) + beta * c` for one output element.
    fn element<T: Num>(&self, k: usize, ab: impl Fn(usize) -> (T, T), c: Option<T>) -> T {
        if T::IS_FLOAT {
            let acc: f64 = (0..k).map(&ab).map(|(x, y)| x.to_f64() * y.to_f64()).sum();
            let c = c.map_or(0.0, |c| self.beta * c.to_f64());
            return T::from_f64(self.alpha * acc + c);
        }
        let acc = (0..k).map(ab).fold(T::zero(), |s, (x, y)| s.add(x.mul(y)));
        // Integer Gemm with unit coefficients stays exact (wrapping); other coefficients scale
        // through f64 and truncate, as a float multiply followed by a cast would.
        if self.alpha == 1.0 && (self.beta == 1.0 || c.is_none()) {
            return c.map_or(acc, |c| acc.add(c));
        }
        T::from_f64(self.alpha * acc.to_f64() + c.map_or(0.0, |c| self.beta * c.to_f64()))
    }
}

/// Which operand a quantization parameter belongs to: `a`'s parameters are per row (constant
/// along K), `b`'s per column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Row,
    Col,
}

/// A quantization parameter of `side` broadcast over the operand's dims with K collapsed to 1
/// (`[.., M, 1]` for a, `[.., 1, N]` for b). A scalar or one-element tensor is per tensor; a 1-D
/// parameter of length M is a's per-row form; otherwise numpy broadcasting applies.
fn operand_param(
    p: &Tensor,
    promoted: &[usize],
    side: Side,
) -> Result<(Vec<usize>, Vec<usize>), EvalError> {
    let r = promoted.len();
    let mut target = promoted.to_vec();
    target[if side == Side::Row { r - 1 } else { r - 2 }] = 1;
    let p_dims: Vec<usize> = match p.dims() {
        _ if p.len() == 1 => vec![],
        &[len] if side == Side::Row => vec![len, 1],
        d => d.to_vec(),
    };
    let fits = broadcast_shapes(&[&p_dims, &target]).is_ok_and(|s| s == target);
    if !fits {
        return Err(EvalError::invalid(format!(
            "quantization parameter of shape {:?} does not fit an operand of shape {promoted:?}",
            p.dims()
        )));
    }
    Ok((broadcast_indices(&p_dims, &target), target))
}

/// `x - zero_point` as i32 for a u8/i8 operand, with the zero point laid out per `side`.
fn centered(
    x: &Tensor,
    zp: Option<&Tensor>,
    promoted: &[usize],
    side: Side,
) -> Result<Vec<i32>, EvalError> {
    if !matches!(x.dtype(), DType::U8 | DType::I8) {
        return Err(EvalError::unsupported(format!(
            "quantized matmul operand of type {}",
            x.dtype()
        )));
    }
    let mut v: Vec<i32> = (0..x.len()).map(|i| x.get_i64(i) as i32).collect();
    let Some(zp) = zp else { return Ok(v) };
    if zp.dtype() != x.dtype() {
        return Err(EvalError::invalid(format!(
            "zero point of type {} for a {} operand",
            zp.dtype(),
            x.dtype()
        )));
    }
    let (idx, _) = operand_param(zp, promoted, side)?;
    let r = promoted.len();
    let (rows, cols) = (promoted[r - 2], promoted[r - 1]);
    for (flat, e) in v.iter_mut().enumerate() {
        // Map the element to its slot in the K-collapsed parameter layout.
        let (outer, row, col) = (flat / (rows * cols), flat / cols % rows, flat % cols);
        let slot = match side {
            Side::Row => outer * rows + row,
            Side::Col => outer * cols + col,
        };
        *e -= zp.get_i64(idx[slot]) as i32;
    }
    Ok(v)
}

fn matmul_integer(ins: &[Option<&Tensor>], ctx: &EvalCtx) -> Result<Tensor, EvalError> {
    let (a, b) = (required(ins, 0)?, required(ins, 1)?);
    let plan = MatmulPlan::new(a.dims(), b.dims(), DType::I32, ctx)?;
    let av = centered(a, optional(ins, 2), &plan.shape.a_dims, Side::Row)?;
    let bv = centered(b, optional(ins, 3), &plan.shape.b_dims, Side::Col)?;
    let out = plan.run(&av, &bv)?;
    Ok(Tensor::from_vec(plan.shape.out_dims, out))
}

/// `v` rounded to the scale dtype `dt`, so scale arithmetic rounds after each operation as it
/// would in that type.
pub(crate) fn round_to_scale(dt: DType, v: f64) -> f64 {
    match dt {
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// The values of a float scale tensor, checking its dtype.
pub(crate) fn scale_values(t: &Tensor, what: &str) -> Result<Vec<f64>, EvalError> {
    dispatch_float!(t.dtype(), T => Ok(typed::<T>(t)?.into_iter().map(|x| x.to_f64()).collect()),
        else Err(EvalError::invalid(format!("{what} must be a float tensor, got {}", t.dtype()))))
}

/// Requantizes an i32 accumulator: `saturate(round_half_even(acc * multiplier) + zero_point)`.
/// The product is exact in f64, so the only rounding is the final one.
pub(crate) fn requantize(acc: i32, multiplier: f64, zero_point: i64, lo: f64, hi: f64) -> i64 {
    let v = (acc as f64 * multiplier).round_ties_even() + zero_point as f64;
    if v.is_nan() {
        0
    } else {
        v.clamp(lo, hi) as i64
    }
}

/// The saturation range of an integer output dtype.
pub(crate) fn int_range(dt: DType) -> Result<(f64, f64), EvalError> {
    dispatch_num!(dt, T => {
        if T::IS_FLOAT {
            Err(EvalError::unsupported(format!("quantized output of type {dt}")))
        } else {
            Ok((<T as Num>::min_value().to_f64(), <T as Num>::max_value().to_f64()))
        }
    }, else Err(EvalError::unsupported(format!("quantized output of type {dt}"))))
}

/// Builds an integer tensor of `dt` from in-range values.
pub(crate) fn int_tensor(dt: DType, dims: Vec<usize>, v: Vec<i64>) -> Result<Tensor, EvalError> {
    dispatch_num!(dt, T => Ok(Tensor::from_vec(dims, v.into_iter().map(T::from_i64).collect::<Vec<T>>())),
        else Err(EvalError::unsupported(format!("quantized output of type {dt}"))))
}

fn qlinear_matmul(
    ins: &[Option<&Tensor>],
    outs: &[ValueType],
    ctx: &EvalCtx,
) -> Result<Tensor, EvalError> {
    let (a, a_scale, a_zp) = (required(ins, 0)?, required(ins, 1)?, optional(ins, 2));
    let (b, b_scale, b_zp) = (required(ins, 3)?, required(ins, 4)?, optional(ins, 5));
    let (y_scale, y_zp) = (required(ins, 6)?, optional(ins, 7));
    let out_dt = outs
        .first()
        .map(|o| o.dtype)
        .or(y_zp.map(|z| z.dtype()))
        .unwrap_or(a.dtype());
    let (lo, hi) = int_range(out_dt)?;
    let plan = MatmulPlan::new(a.dims(), b.dims(), out_dt, ctx)?;
    let av = centered(a, a_zp, &plan.shape.a_dims, Side::Row)?;
    let bv = centered(b, b_zp, &plan.shape.b_dims, Side::Col)?;
    let acc = plan.run(&av, &bv)?;

    let sdt = y_scale.dtype();
    if a_scale.dtype() != sdt || b_scale.dtype() != sdt {
        return Err(EvalError::invalid(
            "QLinearMatMul scales must share one dtype",
        ));
    }
    let (asv, bsv, ysv) = (
        scale_values(a_scale, "a_scale")?,
        scale_values(b_scale, "b_scale")?,
        scale_values(y_scale, "y_scale")?,
    );
    let (a_si, _) = operand_param(a_scale, &plan.shape.a_dims, Side::Row)?;
    let (b_si, _) = operand_param(b_scale, &plan.shape.b_dims, Side::Col)?;
    // y's parameters broadcast over the output.
    let y_param = |p: &Tensor| -> Result<Vec<usize>, EvalError> {
        let d = if p.len() == 1 { &[][..] } else { p.dims() };
        match broadcast_shapes(&[d, &plan.shape.out_dims]) {
            Ok(s) if s == plan.shape.out_dims => Ok(broadcast_indices(d, &plan.shape.out_dims)),
            _ => Err(EvalError::invalid(format!(
                "y quantization parameter of shape {:?} does not fit the output",
                p.dims()
            ))),
        }
    };
    let y_si = y_param(y_scale)?;
    let y_zi = y_zp.map(y_param).transpose()?;
    let (m, n) = (plan.shape.m, plan.shape.n);
    let mut out = Vec::with_capacity(acc.len());
    for (flat, &acc) in acc.iter().enumerate() {
        let (batch, i, j) = (flat / (m * n), flat / n % m, flat % n);
        let (ab, bb) = plan.batches[batch];
        let prod = round_to_scale(sdt, asv[a_si[ab * m + i]] * bsv[b_si[bb * n + j]]);
        let mult = round_to_scale(sdt, prod / ysv[y_si[flat]]);
        let zp = match (y_zp, &y_zi) {
            (Some(z), Some(zi)) => z.get_i64(zi[flat]),
            _ => 0,
        };
        out.push(requantize(acc, mult, zp, lo, hi));
    }
    int_tensor(out_dt, plan.shape.out_dims, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Linear, ins: &[Option<&Tensor>], out: DType) -> Result<Tensor, EvalError> {
        let outs = [ValueType::new(out, None)];
        eval(&op, ins, &outs, &EvalCtx::default()).map(|mut v| v.remove(0))
    }

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims.to_vec(), v.to_vec())
    }

    #[test]
    fn matmul_promotes_vectors_and_broadcasts_batches() {
        let a = f32s(&[2], &[1.0, 2.0]);
        let b = f32s(&[2, 2, 1], &[3.0, 4.0, 5.0, 6.0]);
        let y = run(Linear::MatMul, &[Some(&a), Some(&b)], DType::F32).unwrap();
        assert_eq!(y.dims(), &[2, 1]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![11.0, 17.0]);

        let a = f32s(&[2, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = f32s(&[3, 2, 1], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let y = run(Linear::MatMul, &[Some(&a), Some(&b)], DType::F32).unwrap();
        assert_eq!(y.dims(), &[2, 3, 1, 1]);
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 3.0, 4.0, 7.0]
        );

        let v = f32s(&[3], &[1.0, 2.0, 3.0]);
        let y = run(Linear::MatMul, &[Some(&v), Some(&v)], DType::F32).unwrap();
        assert_eq!(y.dims(), &[] as &[usize]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![14.0]);
    }

    #[test]
    fn matmul_int_wraps_and_rejects_bad_shapes() {
        let a = Tensor::from_vec(vec![1, 2], vec![i32::MAX, 1]);
        let b = Tensor::from_vec(vec![2, 1], vec![2i32, 2]);
        let y = run(Linear::MatMul, &[Some(&a), Some(&b)], DType::I32).unwrap();
        assert_eq!(
            y.to_vec::<i32>().unwrap(),
            vec![i32::MAX.wrapping_mul(2).wrapping_add(2)]
        );
        let c = Tensor::from_vec(vec![3], vec![1i32, 2, 3]);
        assert!(run(Linear::MatMul, &[Some(&a), Some(&c)], DType::I32).is_err());
        let s = Tensor::scalar(1i32);
        assert!(run(Linear::MatMul, &[Some(&s), Some(&c)], DType::I32).is_err());
    }

    #[test]
    fn gemm_transposes_and_broadcasts_c() {
        // A^T = [[1,2],[3,4]] stored as [[1,3],[2,4]]; B = I; C = [10, 20] per column.
        let a = f32s(&[2, 2], &[1.0, 3.0, 2.0, 4.0]);
        let b = f32s(&[2, 2], &[1.0, 0.0, 0.0, 1.0]);
        let c = f32s(&[2], &[10.0, 20.0]);
        let op = Linear::Gemm {
            alpha: 2.0,
            beta: 0.5,
            trans_a: true,
            trans_b: false,
        };
        let y = run(op.clone(), &[Some(&a), Some(&b), Some(&c)], DType::F32).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![7.0, 14.0, 11.0, 18.0]);
        let bad_c = f32s(&[3], &[0.0; 3]);
        assert!(run(op, &[Some(&a), Some(&b), Some(&bad_c)], DType::F32).is_err());
    }

    #[test]
    fn matmul_integer_per_row_and_column_zero_points() {
        let a = Tensor::from_vec(vec![2, 2], vec![10u8, 11, 20, 22]);
        let b = Tensor::from_vec(vec![2, 2], vec![1u8, 5, 2, 7]);
        let azp = Tensor::from_vec(vec![2], vec![10u8, 20]);
        let bzp = Tensor::from_vec(vec![2], vec![1u8, 5]);
        let y = run(
            Linear::MatMulInteger,
            &[Some(&a), Some(&b), Some(&azp), Some(&bzp)],
            DType::I32,
        )
        .unwrap();
        // A' = [[0,1],[0,2]], B' = [[0,0],[1,2]].
        assert_eq!(y.to_vec::<i32>().unwrap(), vec![1, 2, 2, 4]);
    }

    #[test]
    fn qlinear_matmul_rounds_half_to_even_and_saturates() {
        let a = Tensor::from_vec(vec![1, 2], vec![1u8, 4]);
        let b = Tensor::from_vec(vec![2, 3], vec![1u8, 1, 255, 0, 1, 255]);
        let one = Tensor::from_vec(vec![], vec![1.0f32]);
        let half = Tensor::from_vec(vec![], vec![0.5f32]);
        let zp0 = Tensor::from_vec(vec![], vec![0u8]);
        let yzp = Tensor::from_vec(vec![], vec![1u8]);
        let ins = [
            Some(&a),
            Some(&half),
            Some(&zp0),
            Some(&b),
            Some(&one),
            Some(&zp0),
            Some(&one),
            Some(&yzp),
        ];
        let y = run(Linear::QLinearMatMul, &ins, DType::U8).unwrap();
        // acc = [1, 5, 1275]; * 0.5 = [0.5, 2.5, 637.5] -> [0, 2, 638] + 1, saturated.
        assert_eq!(y.to_vec::<u8>().unwrap(), vec![1, 3, 255]);
    }
}
