//! The numpy matmul rule (MatMul, MatMulInteger, QLinearMatMul and the fused DenseAct): 1-D
//! promotion of either operand, broadcast batch dims, the output dims.
use super::{RuleError, broadcast_dims};

/// A matmul problem `[.., M, K] x [.., K, N]` after 1-D promotion, with batch broadcasting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The broadcast batch dims of the output.
    pub batch: Vec<usize>,
    /// Output dims (promoted 1-D axes dropped again).
    pub out_dims: Vec<usize>,
    /// Operand dims after promotion (`[K]` is `[1, K]` for a, `[K, 1]` for b).
    pub a_dims: Vec<usize>,
    pub b_dims: Vec<usize>,
    pub a_1d: bool,
    pub b_1d: bool,
}

impl MatmulShape {
    /// numpy matmul of operands of dims `a` and `b`.
    pub fn matmul(a: &[usize], b: &[usize]) -> Result<MatmulShape, RuleError> {
        if a.is_empty() || b.is_empty() {
            return Err(RuleError::invalid("matmul operands must have rank >= 1"));
        }
        let a_dims = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let b_dims = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (ar, br) = (a_dims.len(), b_dims.len());
        let (m, k, k2, n) = (
            a_dims[ar - 2],
            a_dims[ar - 1],
            b_dims[br - 2],
            b_dims[br - 1],
        );
        if k != k2 {
            return Err(RuleError::invalid(format!(
                "matmul of {a:?} and {b:?}: inner dimensions differ"
            )));
        }
        let batch = broadcast_dims(&[&a_dims[..ar - 2], &b_dims[..br - 2]])?;
        let mut out_dims = batch.clone();
        if a.len() > 1 {
            out_dims.push(m);
        }
        if b.len() > 1 {
            out_dims.push(n);
        }
        Ok(MatmulShape {
            m,
            k,
            n,
            batch,
            out_dims,
            a_dims,
            b_dims,
            a_1d: a.len() == 1,
            b_1d: b.len() == 1,
        })
    }

    /// A plain 2-D problem (Gemm after its transposes).
    pub fn flat(m: usize, k: usize, n: usize) -> MatmulShape {
        MatmulShape {
            m,
            k,
            n,
            batch: vec![],
            out_dims: vec![m, n],
            a_dims: vec![m, k],
            b_dims: vec![k, n],
            a_1d: false,
            b_1d: false,
        }
    }

    /// The batch dims of operand a (its dims before the matrix axes, after promotion).
    pub fn a_batch(&self) -> &[usize] {
        &self.a_dims[..self.a_dims.len() - 2]
    }

    /// The batch dims of operand b.
    pub fn b_batch(&self) -> &[usize] {
        &self.b_dims[..self.b_dims.len() - 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotes_and_broadcasts() {
        let p = MatmulShape::matmul(&[2, 1, 3, 4], &[5, 4, 6]).unwrap();
        assert_eq!((p.m, p.k, p.n), (3, 4, 6));
        assert_eq!(p.batch, [2, 5]);
        assert_eq!(p.out_dims, [2, 5, 3, 6]);
        let v = MatmulShape::matmul(&[4], &[4]).unwrap();
        assert!(v.out_dims.is_empty() && v.a_1d && v.b_1d);
        assert_eq!(v.a_batch(), [] as [usize; 0]);
        assert!(MatmulShape::matmul(&[2, 3], &[4, 5]).is_err());
        assert!(MatmulShape::matmul(&[], &[4]).is_err());
        assert!(MatmulShape::matmul(&[2, 1, 3], &[3, 3, 1]).is_err());
    }
}
