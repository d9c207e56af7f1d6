//! Axis normalization and numpy broadcasting of static dims, as every op rule uses them.
use super::RuleError;

/// `axis` in `-rank..rank` as a dimension index.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, RuleError> {
    let out_of_range =
        || RuleError::invalid(format!("axis {axis} is out of range for rank {rank}"));
    let r = i64::try_from(rank).map_err(|_| out_of_range())?;
    if axis < -r || axis >= r {
        return Err(out_of_range());
    }
    // In range, so the sum is in `0..rank`.
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// A list of axes normalized, each at most once.
pub fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, RuleError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if out.contains(&a) {
            return Err(RuleError::invalid(format!("axis {a} is listed twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// The numpy (multidirectional) broadcast of `shapes`.
pub fn broadcast_dims(shapes: &[&[usize]]) -> Result<Vec<usize>, RuleError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(RuleError::invalid(format!(
                    "shapes {shapes:?} cannot broadcast"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_normalize_and_reject_repeats() {
        assert_eq!(norm_axis(-1, 3), Ok(2));
        assert!(norm_axis(3, 3).is_err());
        assert!(norm_axis(i64::MIN, 3).is_err());
        assert_eq!(norm_axes(&[0, -1], 2), Ok(vec![0, 1]));
        assert!(norm_axes(&[1, -1], 2).is_err());
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_dims(&[&[2, 1, 3], &[4, 1]]), Ok(vec![2, 4, 3]));
        assert_eq!(broadcast_dims(&[]), Ok(vec![]));
        assert!(broadcast_dims(&[&[2], &[3]]).is_err());
    }
}
