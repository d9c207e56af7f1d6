//! Rules of the `Transformer` family: RotaryEmbedding's layout of X, its rotated size and the
//! shapes of its caches and position ids, and SwiGLU's operand shapes.
use super::RuleError;

/// Where one (batch, position, head) vector of X lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeLayout {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_size: usize,
    /// X is [batch, seq, heads * head_size] (else [batch, heads, seq, head_size]).
    pub packed_heads: bool,
}

impl RopeLayout {
    /// The layout of an X of `dims`; a 3-D X needs `num_heads`.
    pub fn of(dims: &[usize], num_heads: Option<i64>) -> Result<RopeLayout, RuleError> {
        match *dims {
            [batch, heads, seq, head_size] => Ok(RopeLayout {
                batch,
                seq,
                heads,
                head_size,
                packed_heads: false,
            }),
            [batch, seq, hidden] => {
                let heads = match num_heads.and_then(|h| usize::try_from(h).ok()) {
                    Some(h) if h > 0 => h,
                    _ => {
                        return Err(RuleError::invalid(
                            "RotaryEmbedding on a 3-D input needs num_heads > 0",
                        ));
                    }
                };
                if hidden % heads != 0 {
                    return Err(RuleError::invalid(format!(
                        "hidden size {hidden} is not divisible by num_heads {heads}"
                    )));
                }
                Ok(RopeLayout {
                    batch,
                    seq,
                    heads,
                    head_size: hidden / heads,
                    packed_heads: true,
                })
            }
            _ => Err(RuleError::invalid(format!(
                "RotaryEmbedding needs a 3-D or 4-D input, got shape {dims:?}"
            ))),
        }
    }

    /// How many leading elements of each head rotate (`rotary_embedding_dim`, 0 = all): even
    /// and at most the head size.
    pub fn rotated(&self, rotary_dim: i64) -> Result<usize, RuleError> {
        let rot = match rotary_dim {
            0 => self.head_size,
            r if r > 0 && r as u64 <= self.head_size as u64 && r % 2 == 0 => r as usize,
            r => {
                return Err(RuleError::invalid(format!(
                    "rotary_embedding_dim {r} must be even and at most the head size {}",
                    self.head_size
                )));
            }
        };
        if rot % 2 != 0 {
            return Err(RuleError::invalid(format!(
                "the rotated size {rot} must be even"
            )));
        }
        Ok(rot)
    }

    /// The cos/sin caches (`cos`, `sin` dims) for rotary half-size `half`: with `position_ids`
    /// (dims `ids`) they are [max_position, half] and the ids [batch, seq]; without, they are
    /// [batch, seq, half], one row per (batch, position).
    pub fn check_caches(
        &self,
        cos: &[usize],
        sin: &[usize],
        ids: Option<&[usize]>,
        half: usize,
    ) -> Result<(), RuleError> {
        if cos != sin {
            return Err(RuleError::invalid(format!(
                "cos_cache {cos:?} and sin_cache {sin:?} differ"
            )));
        }
        let bad = || {
            RuleError::invalid(format!(
                "cos/sin cache shape {cos:?} does not fit rotary half-size {half}"
            ))
        };
        match ids {
            Some(ids) => {
                if !matches!(*cos, [_, h] if h == half) {
                    return Err(bad());
                }
                if ids != [self.batch, self.seq] {
                    return Err(RuleError::invalid(format!(
                        "position_ids has shape {ids:?}; expected [{}, {}]",
                        self.batch, self.seq
                    )));
                }
            }
            None => {
                if cos != [self.batch, self.seq, half] {
                    return Err(bad());
                }
            }
        }
        Ok(())
    }
}

/// SwiGLU multiplies its two inputs elementwise, without broadcasting.
pub fn check_swiglu(a: &[usize], b: &[usize]) -> Result<(), RuleError> {
    (a == b).then_some(()).ok_or_else(|| {
        RuleError::invalid(format!("SwiGLU inputs differ in shape: {a:?} and {b:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_caches() {
        let l = RopeLayout::of(&[2, 5, 12], Some(3)).unwrap();
        assert_eq!((l.heads, l.head_size, l.packed_heads), (3, 4, true));
        assert!(RopeLayout::of(&[2, 5, 12], None).is_err());
        assert!(RopeLayout::of(&[2, 5, 12], Some(5)).is_err());
        assert!(RopeLayout::of(&[2, 5], Some(1)).is_err());
        let l = RopeLayout::of(&[2, 3, 5, 8], None).unwrap();
        assert_eq!(l.rotated(0), Ok(8));
        assert_eq!(l.rotated(4), Ok(4));
        assert!(l.rotated(3).is_err() && l.rotated(10).is_err() && l.rotated(-2).is_err());
        assert!(l.check_caches(&[2, 5, 2], &[2, 5, 2], None, 2).is_ok());
        assert!(l.check_caches(&[9, 2], &[9, 2], Some(&[2, 5]), 2).is_ok());
        assert!(l.check_caches(&[9, 2], &[9, 2], Some(&[5, 2]), 2).is_err());
        assert!(l.check_caches(&[9, 3], &[9, 3], Some(&[2, 5]), 2).is_err());
        assert!(l.check_caches(&[9, 2], &[8, 2], Some(&[2, 5]), 2).is_err());
        assert!(check_swiglu(&[2], &[3]).is_err());
    }
}
