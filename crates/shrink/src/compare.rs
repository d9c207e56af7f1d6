//! Output comparison with explicit tolerances: integers, bools, bit-pattern types and strings
//! exactly, floats within `atol + rtol·|expected|` with NaN equal to NaN.
use shrink_ir::Tensor;

/// Float tolerance: `|a - e| <= atol + rtol * |e|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// The conformance default for the interpreter.
    pub const INTERP: Tolerance = Tolerance {
        rtol: 1e-4,
        atol: 1e-5,
    };
}

/// The result of comparing one output.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Largest absolute difference over all elements (0 for exact types that match).
    pub max_abs_err: f64,
    /// First mismatch, if any, as a readable sentence.
    pub mismatch: Option<String>,
}

/// Compares `actual` against `expected`.
pub fn compare(actual: &Tensor, expected: &Tensor, tol: Tolerance) -> Comparison {
    if actual.dtype() != expected.dtype() {
        return Comparison {
            max_abs_err: f64::INFINITY,
            mismatch: Some(format!(
                "dtype {} but expected {}",
                actual.dtype(),
                expected.dtype()
            )),
        };
    }
    if actual.dims() != expected.dims() {
        return Comparison {
            max_abs_err: f64::INFINITY,
            mismatch: Some(format!(
                "shape {:?} but expected {:?}",
                actual.dims(),
                expected.dims()
            )),
        };
    }
    if let (Some(a), Some(e)) = (actual.strings(), expected.strings()) {
        let first = a.iter().zip(e).position(|(x, y)| x != y);
        return Comparison {
            max_abs_err: if first.is_some() { f64::INFINITY } else { 0.0 },
            mismatch: first.map(|i| {
                format!(
                    "element {i}: got {:?}, expected {:?}",
                    String::from_utf8_lossy(&a[i]),
                    String::from_utf8_lossy(&e[i])
                )
            }),
        };
    }
    let d = actual.dtype();
    let exact = !d.is_float() || d.is_narrow_float();
    let mut max_err = 0f64;
    let mut mismatch = None;
    for i in 0..actual.len() {
        let (a, e) = (actual.get_f64(i), expected.get_f64(i));
        let bad = if exact {
            let same = if d.is_narrow_float() {
                actual.bytes()[i] == expected.bytes()[i] || (a.is_nan() && e.is_nan())
            } else {
                actual.get_i64(i) == expected.get_i64(i)
            };
            if !same {
                max_err = max_err.max((a - e).abs());
            }
            !same
        } else if a.is_nan() || e.is_nan() {
            a.is_nan() != e.is_nan()
        } else if a.is_infinite() || e.is_infinite() {
            a != e
        } else {
            let err = (a - e).abs();
            max_err = max_err.max(err);
            err > tol.atol + tol.rtol * e.abs()
        };
        if bad && mismatch.is_none() {
            mismatch = Some(format!("element {i}: got {a}, expected {e}"));
        }
    }
    if mismatch.is_some() && max_err == 0.0 {
        max_err = f64::INFINITY;
    }
    Comparison {
        max_abs_err: max_err,
        mismatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shrink_ir::Bytes;

    #[test]
    fn strings_compare_exactly() {
        let s = |v: &[&'static str]| {
            let b = v.iter().map(|s| Bytes::from_static(s.as_bytes())).collect();
            Tensor::from_strings(vec![v.len()], b).unwrap()
        };
        let c = compare(&s(&["a", "b"]), &s(&["a", "b"]), Tolerance::INTERP);
        assert_eq!((c.max_abs_err, c.mismatch), (0.0, None));
        let c = compare(&s(&["a", "b"]), &s(&["a", "b "]), Tolerance::INTERP);
        assert_eq!(
            c.mismatch.as_deref(),
            Some("element 1: got \"b\", expected \"b \"")
        );
        let n = Tensor::from_vec(vec![2], vec![0u8, 0]);
        assert!(
            compare(&s(&["a", "b"]), &n, Tolerance::INTERP)
                .mismatch
                .is_some()
        );
    }
}
