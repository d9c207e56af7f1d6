//! Rules of the `Reduce` family: which reduction an op is, which axes it reduces, the output
//! dims.
use super::{RuleError, norm_axis};
use crate::DType;
use crate::op::Reduce;

/// The reductions with an axes input (ArgMax/ArgMin, with a single axis attribute, are apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    SumSquare,
    L2,
}

impl ReduceKind {
    /// `op`'s reduction, or `None` for ArgMax/ArgMin.
    pub fn of(op: &Reduce) -> Option<ReduceKind> {
        Some(match op {
            Reduce::ArgMax { .. } | Reduce::ArgMin { .. } => return None,
            Reduce::ReduceSum { .. } => ReduceKind::Sum,
            Reduce::ReduceMean { .. } => ReduceKind::Mean,
            Reduce::ReduceMax { .. } => ReduceKind::Max,
            Reduce::ReduceMin { .. } => ReduceKind::Min,
            Reduce::ReduceSumSquare { .. } => ReduceKind::SumSquare,
            Reduce::ReduceL2 { .. } => ReduceKind::L2,
        })
    }
}

/// The axes reductions keep the input's dtype.
pub fn check_output_dtype(input: DType, output: DType) -> Result<(), RuleError> {
    if output != input {
        return Err(RuleError::invalid(format!(
            "output declared {output} but the input is {input}"
        )));
    }
    Ok(())
}

/// ArgMax/ArgMin produce int64 indices along one axis: the axis, normalized.
pub fn arg_axis(rank: usize, axis: i64, output: DType) -> Result<usize, RuleError> {
    if output != DType::I64 {
        return Err(RuleError::invalid(format!(
            "output declared {output} but ArgMax/ArgMin produce int64"
        )));
    }
    norm_axis(axis, rank)
}

/// Which axes of a rank-`rank` input are reduced. Empty axes mean all of them, unless `noop`
/// (`noop_with_empty_axes`): then none, so each output element is the reduction of one input
/// element (identity for Sum/Max/Min/Mean, x² for SumSquare, |x| for L2, as the spec's reference
/// computes).
pub fn reduced_axes(rank: usize, axes: &[i64], noop: bool) -> Result<Vec<bool>, RuleError> {
    if axes.is_empty() {
        return Ok(vec![!noop; rank]);
    }
    let mut reduced = vec![false; rank];
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if reduced[a] {
            return Err(RuleError::invalid(format!(
                "axis {a} appears twice in the reduction axes"
            )));
        }
        reduced[a] = true;
    }
    Ok(reduced)
}

/// The output dims: reduced axes become 1 (`keepdims`) or are dropped.
pub fn reduced_dims(dims: &[usize], reduced: &[bool], keepdims: bool) -> Vec<usize> {
    dims.iter()
        .zip(reduced)
        .filter_map(|(&d, &r)| match (r, keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_and_dims() {
        assert_eq!(reduced_axes(3, &[], false), Ok(vec![true; 3]));
        assert_eq!(reduced_axes(3, &[], true), Ok(vec![false; 3]));
        assert_eq!(
            reduced_axes(3, &[-1, 0], false),
            Ok(vec![true, false, true])
        );
        assert!(reduced_axes(3, &[1, -2], false).is_err());
        assert!(reduced_axes(3, &[3], false).is_err());
        let r = [true, false, true];
        assert_eq!(reduced_dims(&[2, 3, 4], &r, true), [1, 3, 1]);
        assert_eq!(reduced_dims(&[2, 3, 4], &r, false), [3]);
    }
}
