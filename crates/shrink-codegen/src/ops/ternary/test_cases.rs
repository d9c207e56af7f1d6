//! What the packed and lut tests share: the ternary layer they run (weights, activations) and
//! the faithful mode's proven error bound, checked against an exact f64 sum.
use super::packed::max_fixed;

pub(super) struct Case {
    pub(super) batch: usize,
    pub(super) cols: usize,
    pub(super) rows: usize,
    /// Column-first dense weight `[cols, rows]`: ternary values times a scale per row
    /// (`per_row`) or one scale.
    pub(super) wv: Vec<f32>,
    pub(super) x: Vec<f32>,
}

/// About a third of the weights zero, activations in [-2, 2), both deterministic.
pub(super) fn case(batch: usize, cols: usize, rows: usize, per_row: bool) -> Case {
    let digit = |i: usize| ((i * 2654435761) >> 7) % 3;
    let mut wv = vec![0f32; cols * rows];
    for c in 0..cols {
        for r in 0..rows {
            let s = if per_row {
                0.25 * (1 + r % 3) as f32
            } else {
                0.5
            };
            wv[c * rows + r] = [0.0, s, -s][digit(c * rows + r)];
        }
    }
    let x = (0..batch * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    Case {
        batch,
        cols,
        rows,
        wv,
        x,
    }
}

pub(super) fn absmax(x: &[f32]) -> f64 {
    x.iter().fold(0f64, |m, v| m.max(v.abs() as f64))
}

/// Three limbs: every output of `got` within `scale · nonzeros · a / 2Q` (plus the f32 rounding
/// of the output) of the exact f64 sum.
pub(super) fn assert_within_faithful_bound(c: &Case, got: &[f32]) {
    let q = max_fixed(3) as f64;
    let (batch, cols, rows) = (c.batch, c.cols, c.rows);
    for n in 0..batch {
        let xs = &c.x[n * cols..(n + 1) * cols];
        let a = absmax(xs);
        for r in 0..rows {
            let col = |k: usize| c.wv[k * rows + r] as f64;
            let exact: f64 = (0..cols).map(|k| xs[k] as f64 * col(k)).sum();
            let bound: f64 = (0..cols).map(|k| col(k).abs()).sum::<f64>() * a / (2.0 * q);
            let g = got[n * rows + r] as f64;
            let tol = bound * 1.0001 + exact.abs() * f32::EPSILON as f64;
            assert!(
                (g - exact).abs() <= tol,
                "{batch}x{cols}x{rows} [{n},{r}]: {g} vs {exact} (bound {tol})"
            );
        }
    }
}
