//! The sign map of one layer: its weight seen as [outputs × inputs] (the view `inspect` counts
//! in), every weight drawn as +1, 0 or −1, downsampled to at most [`MAX_CELLS`] cells a side, and
//! drawn as inline SVG with the removed (dead) rows and columns marked in gutters beside it.
//!
//! Downsampling rule: a side of `n` weights is cut into blocks of `ceil(n / MAX_CELLS)` weights
//! (the last block may be shorter); a cell shows the **majority sign** of its block, ties going
//! to 0 first, then to +1 (so a block that is as much zero as anything reads as zero). A gutter
//! cell is marked when **any** weight line it covers was removed, so a single dead row stays
//! visible in a large layer.
use super::escape;
use shrink_ir::{Tensor, WeightLayout};
use std::fmt::Write;

/// Cells a side of the map at most: bounds a layer's SVG whatever the weight's size.
pub const MAX_CELLS: usize = 256;
/// Colours of the map (the rendering test looks for these exact values).
pub const POS_COLOUR: &str = "#2b6cb0";
pub const ZERO_COLOUR: &str = "#e2e8f0";
pub const NEG_COLOUR: &str = "#c53030";
pub const DEAD_COLOUR: &str = "#ed8936";
/// Width of a dead-line gutter and the gap between it and the matrix, in pixels.
pub const GUTTER_PX: usize = 8;
const GAP_PX: usize = 2;
/// The side the larger dimension of a map aims at, in pixels (cells are whole pixels).
const TARGET_PX: usize = 512;
const MAX_CELL_PX: usize = 24;

/// The view (row, col) of element `i` (row-major in the tensor's own dims).
pub fn view_index(i: usize, rows: usize, cols: usize, layout: WeightLayout) -> (usize, usize) {
    match layout {
        WeightLayout::RowsFirst => (i / cols.max(1), i % cols.max(1)),
        WeightLayout::ColsFirst => (i % rows.max(1), i / rows.max(1)),
    }
}

/// The sign of a weight: exact zero (either sign) is 0; NaN is a nonzero and draws as +1.
pub fn sign_of(v: f64) -> i8 {
    if v == 0.0 {
        0
    } else if v < 0.0 {
        -1
    } else {
        1
    }
}

/// Weights per block along a side of `n` weights.
pub fn block_len(n: usize) -> usize {
    n.div_ceil(MAX_CELLS).max(1)
}

/// The sign a block with `counts` = [−1, 0, +1] weights shows: the majority, ties to 0 then +1.
pub fn majority(counts: [usize; 3]) -> i8 {
    let [neg, zero, pos] = counts;
    if zero >= neg && zero >= pos {
        0
    } else if pos >= neg {
        1
    } else {
        -1
    }
}

/// A downsampled sign map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignGrid {
    /// The weight view's rows and columns.
    pub rows: usize,
    pub cols: usize,
    /// Weights per cell along each side.
    pub block_rows: usize,
    pub block_cols: usize,
    pub grid_rows: usize,
    pub grid_cols: usize,
    /// Row-major, `grid_rows × grid_cols`, each −1, 0 or +1.
    pub cells: Vec<i8>,
}

impl SignGrid {
    /// The grid of a `rows × cols` view whose element signs `sign(row, col)` gives.
    pub fn from_fn(rows: usize, cols: usize, mut sign: impl FnMut(usize, usize) -> i8) -> SignGrid {
        let mut acc = Accumulator::new(rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                acc.add(r, c, sign(r, c));
            }
        }
        acc.finish()
    }

    /// The grid of a layer's weight tensor with `layout`.
    pub fn of_weight(w: &Tensor, layout: WeightLayout) -> SignGrid {
        let (rows, cols) = crate::inspect::view_dims(w, layout);
        let mut acc = Accumulator::new(rows, cols);
        w.try_for_each_f64(|i, v| {
            let (r, c) = view_index(i, rows, cols, layout);
            acc.add(r, c, sign_of(v));
            true
        });
        acc.finish()
    }

    /// How many cells show −1, 0, +1.
    pub fn counts(&self) -> [usize; 3] {
        let mut n = [0; 3];
        for &s in &self.cells {
            n[(s + 1) as usize] += 1;
        }
        n
    }

    /// Pixels a cell takes on the page (square, whole pixels).
    pub fn cell_px(&self) -> usize {
        (TARGET_PX / self.grid_rows.max(self.grid_cols).max(1)).clamp(1, MAX_CELL_PX)
    }

    /// Which grid lines cover at least one of `removed` (sorted or not) lines of the view, for a
    /// side of `grid` cells of `block` lines each.
    pub fn marked(removed: &[usize], block: usize, grid: usize) -> Vec<bool> {
        let mut m = vec![false; grid];
        for &i in removed {
            if let Some(x) = m.get_mut(i / block) {
                *x = true;
            }
        }
        m
    }
}

struct Accumulator {
    rows: usize,
    cols: usize,
    br: usize,
    bc: usize,
    gr: usize,
    gc: usize,
    counts: Vec<[usize; 3]>,
}

impl Accumulator {
    fn new(rows: usize, cols: usize) -> Accumulator {
        let (br, bc) = (block_len(rows), block_len(cols));
        let (gr, gc) = (rows.div_ceil(br), cols.div_ceil(bc));
        Accumulator {
            rows,
            cols,
            br,
            bc,
            gr,
            gc,
            counts: vec![[0; 3]; gr * gc],
        }
    }

    fn add(&mut self, r: usize, c: usize, s: i8) {
        if let Some(cell) = self.counts.get_mut((r / self.br) * self.gc + c / self.bc) {
            cell[(s + 1) as usize] += 1;
        }
    }

    fn finish(self) -> SignGrid {
        SignGrid {
            rows: self.rows,
            cols: self.cols,
            block_rows: self.br,
            block_cols: self.bc,
            grid_rows: self.gr,
            grid_cols: self.gc,
            cells: self.counts.into_iter().map(majority).collect(),
        }
    }
}

/// Runs of `true` in `m` as (start, len).
fn runs(m: &[bool]) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut i = 0;
    while i < m.len() {
        if m[i] {
            let s = i;
            while i < m.len() && m[i] {
                i += 1;
            }
            out.push((s, i - s));
        } else {
            i += 1;
        }
    }
    out
}

/// The removed lines of a layer, when they could be located (see `super::dead`).
pub struct DeadLines<'a> {
    pub rows: &'a [usize],
    pub cols: &'a [usize],
}

/// The SVG of `grid` with gutters marking `dead` lines. Its `data-*` attributes state what it
/// draws (cell counts per sign, cell and gutter pixels) so a test can check a rendering of it.
pub fn svg(grid: &SignGrid, dead: Option<&DeadLines>, title: &str) -> String {
    let s = grid.cell_px();
    let (w, h) = (grid.grid_cols * s, grid.grid_rows * s);
    let x0 = GUTTER_PX + GAP_PX;
    let (dead_rows, dead_cols) = match dead {
        Some(d) => (
            SignGrid::marked(d.rows, grid.block_rows, grid.grid_rows),
            SignGrid::marked(d.cols, grid.block_cols, grid.grid_cols),
        ),
        None => (vec![false; grid.grid_rows], vec![false; grid.grid_cols]),
    };
    let marked = |m: &[bool]| m.iter().filter(|&&b| b).count();
    let dead_px = 2 * (marked(&dead_rows) + marked(&dead_cols)) * s * GUTTER_PX;
    let [neg, zero, pos] = grid.counts();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"signmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{tw}\" height=\"{th}\" \
         viewBox=\"0 0 {tw} {th}\" shape-rendering=\"crispEdges\" role=\"img\" \
         data-cell-px=\"{s}\" data-grid-rows=\"{gr}\" data-grid-cols=\"{gc}\" \
         data-block-rows=\"{br}\" data-block-cols=\"{bc}\" data-cells-pos=\"{pos}\" \
         data-cells-zero=\"{zero}\" data-cells-neg=\"{neg}\" data-dead-rows=\"{dr}\" \
         data-dead-cols=\"{dc}\" data-dead-px=\"{dead_px}\"><title>{t}</title>",
        tw = 2 * x0 + w,
        th = 2 * x0 + h,
        gr = grid.grid_rows,
        gc = grid.grid_cols,
        br = grid.block_rows,
        bc = grid.block_cols,
        dr = dead.map_or(0, |d| d.rows.len()),
        dc = dead.map_or(0, |d| d.cols.len()),
        t = escape(title),
    );
    let _ = write!(
        out,
        "<rect x=\"{x0}\" y=\"{x0}\" width=\"{w}\" height=\"{h}\" fill=\"{ZERO_COLOUR}\"/>"
    );
    // One stroked path per nonzero sign: each run of equal cells in a row is one `h` segment,
    // which keeps a layer's SVG to about 8 bytes per run (at most MAX_CELLS² runs).
    for (sign, colour) in [(1i8, POS_COLOUR), (-1, NEG_COLOUR)] {
        let mut d = String::new();
        for r in 0..grid.grid_rows {
            let row = &grid.cells[r * grid.grid_cols..(r + 1) * grid.grid_cols];
            let mut pen: Option<usize> = None;
            let mut c = 0;
            while c < row.len() {
                if row[c] != sign {
                    c += 1;
                    continue;
                }
                let start = c;
                while c < row.len() && row[c] == sign {
                    c += 1;
                }
                match pen {
                    None => {
                        let _ = write!(d, "M{start} {r}.5h{}", c - start);
                    }
                    Some(end) => {
                        let _ = write!(d, "m{} 0h{}", start - end, c - start);
                    }
                }
                pen = Some(c);
            }
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                "<path transform=\"translate({x0} {x0}) scale({s})\" fill=\"none\" \
                 stroke=\"{colour}\" stroke-width=\"1\" d=\"{d}\"/>"
            );
        }
    }
    // A gutter on each side of the matrix: a removed line is marked at both of its ends.
    let far = x0 + GAP_PX;
    for (start, len) in runs(&dead_rows) {
        for x in [0, far + w] {
            let _ = write!(
                out,
                "<rect class=\"dead-rows\" x=\"{x}\" y=\"{}\" width=\"{GUTTER_PX}\" height=\"{}\" fill=\"{DEAD_COLOUR}\"/>",
                x0 + start * s,
                len * s
            );
        }
    }
    for (start, len) in runs(&dead_cols) {
        for y in [0, far + h] {
            let _ = write!(
                out,
                "<rect class=\"dead-cols\" x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{GUTTER_PX}\" fill=\"{DEAD_COLOUR}\"/>",
                x0 + start * s,
                len * s
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The legend: one swatch per colour; `data-swatch-px` is each swatch's pixel area.
pub fn legend() -> String {
    const SW: usize = 14;
    let mut out = format!(
        "<svg class=\"legend\" xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"{SW}\" \
         viewBox=\"0 0 720 {SW}\" shape-rendering=\"crispEdges\" data-swatch-px=\"{}\">",
        SW * SW
    );
    let items = [
        (POS_COLOUR, "+1 (positive weight)"),
        (ZERO_COLOUR, "0 (zero weight)"),
        (NEG_COLOUR, "−1 (negative weight)"),
        (DEAD_COLOUR, "removed row / column"),
    ];
    for (i, (colour, label)) in items.iter().enumerate() {
        let x = i * 180;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"0\" width=\"{SW}\" height=\"{SW}\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"11\" font-size=\"11\">{label}</text>",
            x + SW + 4
        );
    }
    out.push_str("</svg>");
    out
}
