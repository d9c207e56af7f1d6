//! Rules of the `Norm` family (BatchNormalization, Layer-, RMS- and InstanceNormalization,
//! Softmax, LogSoftmax) and of RotaryEmbedding/SwiGLU's float inputs: the accepted dtypes, the
//! parameter shapes, and how the input splits into normalized groups.
use super::{RuleError, norm_axis};
use crate::DType;

/// The dtypes these ops read (each is widened to f64 and the result rounded once).
pub fn check_float(d: DType, what: &str) -> Result<(), RuleError> {
    match d {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Ok(()),
        d => Err(RuleError::unsupported(format!(
            "{what} has dtype {d}; only float types are supported"
        ))),
    }
}

/// `stash_type` must name a float dtype (f32, f16, f64, bf16). It only asks for *at least* that
/// compute precision, so both engines satisfy every value with f64.
pub fn check_stash_type(stash_type: i64) -> Result<(), RuleError> {
    match stash_type {
        1 | 10 | 11 | 16 => Ok(()),
        s => Err(RuleError::invalid(format!(
            "stash_type {s} is not a float dtype code"
        ))),
    }
}

/// Splits an [N, C, spatial...] shape into (N, C, spatial size).
pub fn split_nc(dims: &[usize], op: &str) -> Result<(usize, usize, usize), RuleError> {
    match dims {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        _ => Err(RuleError::invalid(format!(
            "{op} needs an input of rank >= 2, got shape {dims:?}"
        ))),
    }
}

/// A per-channel parameter (scale, bias, mean, var) must hold exactly `c` values in at most one
/// dimension.
pub fn check_channel_param(dims: &[usize], c: usize, what: &str) -> Result<(), RuleError> {
    if dims.len() > 1 || dims.iter().product::<usize>() != c {
        return Err(RuleError::invalid(format!(
            "{what} has shape {dims:?}; expected [{c}]"
        )));
    }
    Ok(())
}

/// A Scale or B parameter of LayerNormalization/RMSNormalization must broadcast
/// (unidirectionally) to `dims`.
pub fn check_param_broadcast(p: &[usize], dims: &[usize], what: &str) -> Result<(), RuleError> {
    let lead = dims.len().checked_sub(p.len());
    let fits = lead.is_some_and(|lead| {
        p.iter()
            .enumerate()
            .all(|(d, &n)| n == 1 || n == dims[lead + d])
    });
    if !fits {
        return Err(RuleError::invalid(format!(
            "{what} of shape {p:?} does not broadcast to {dims:?}"
        )));
    }
    Ok(())
}

/// Softmax/LogSoftmax groups as `(outer, n, inner)`: element `(o, k, i)` of the group `o, i`
/// sits at `(o * n + k) * inner + i`. With `coerce_2d` (opset < 13) the input is `[outer, n]`
/// split at `axis`, which may then equal the rank (groups of one element).
pub fn softmax_groups(
    dims: &[usize],
    axis: i64,
    coerce_2d: bool,
) -> Result<(usize, usize, usize), RuleError> {
    let rank = dims.len();
    if coerce_2d {
        let axis = if axis == rank as i64 {
            rank
        } else {
            norm_axis(axis, rank)?
        };
        return Ok((
            dims[..axis].iter().product(),
            dims[axis..].iter().product(),
            1,
        ));
    }
    let axis = norm_axis(axis, rank)?;
    Ok((
        dims[..axis].iter().product(),
        dims[axis],
        dims[axis + 1..].iter().product(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_rules() {
        assert!(check_float(DType::BF16, "X").is_ok());
        assert!(matches!(
            check_float(DType::I32, "X"),
            Err(RuleError::Unsupported(_))
        ));
        assert!(check_stash_type(1).is_ok() && check_stash_type(7).is_err());
        assert_eq!(split_nc(&[2, 3, 4, 5], "op"), Ok((2, 3, 20)));
        assert!(split_nc(&[2], "op").is_err());
        assert!(check_channel_param(&[3], 3, "scale").is_ok());
        assert!(check_channel_param(&[1, 3], 3, "scale").is_err());
        assert!(check_param_broadcast(&[1, 4], &[2, 3, 4], "B").is_ok());
        assert!(check_param_broadcast(&[3, 4, 1], &[3, 4], "B").is_err());
    }

    #[test]
    fn softmax_grouping() {
        assert_eq!(softmax_groups(&[2, 3, 4], 1, false), Ok((2, 3, 4)));
        assert_eq!(softmax_groups(&[2, 3, 4], 1, true), Ok((2, 12, 1)));
        assert_eq!(softmax_groups(&[2, 3], 2, true), Ok((6, 1, 1)));
        assert!(softmax_groups(&[2, 3], 2, false).is_err());
    }
}
