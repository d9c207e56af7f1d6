//! Which rows and columns of each layer's weight view the optimizer removed — `inspect` only
//! counts them (`dead_rows`, `dead_cols`), the sign map shows where they are.
//!
//! The sparsity pass decides from where weights are zero, never from their values (a unit is
//! dead when its weight row or its consumer's column is all zero; an input feature when its
//! column is). So the pass is run once more on the graph just before it (`Staged::before_sparsity`)
//! with every nonzero weight replaced by its row number + 1 (then, in a second run, its column
//! number + 1): the surviving weight then names the original line of each surviving line. A line
//! left all zero (kept, e.g. a unit feeding a graph output) carries no number; it is placed at the
//! first free original lines between its numbered neighbours that are all zero, else the first
//! free ones. The result is checked against the counts `inspect` reports; a layer whose numbers do
//! not fit (a weight that is not f32/f64, one constant shared by two layers) gets an error instead.
use crate::inspect::{Layer, layer_weights, view_dims};
use crate::report::sign_map::view_index;
use shrink_ir::{DType, Graph, Tensor, WeightLayout};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The removed lines of one layer's view, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub rows: Vec<usize>,
    pub cols: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Axis {
    Rows,
    Cols,
}

/// The removed lines of every layer of `report` that `inspect` counted (layers without counts —
/// no pipeline ran — are absent), by layer name.
pub fn removed_lines(
    before: &Graph,
    layers: &[Layer],
    ctx: &shrink_opt::Ctx,
) -> BTreeMap<String, Result<Removed, String>> {
    let mut out = BTreeMap::new();
    let mut wanted = BTreeMap::new();
    for l in layers {
        match (l.dead_rows, l.dead_cols) {
            (Some(0), Some(0)) => {
                out.insert(l.name.clone(), Ok(Removed::default()));
            }
            (Some(r), Some(c)) => {
                wanted.insert(l.name.clone(), (r, c));
            }
            _ => {}
        }
    }
    if wanted.is_empty() {
        return out;
    }
    let rows = locate(before, &wanted, Axis::Rows, ctx);
    let cols = locate(before, &wanted, Axis::Cols, ctx);
    for (name, (nr, nc)) in &wanted {
        let r = match (&rows[name], &cols[name]) {
            (Ok(r), Ok(c)) if r.len() == *nr && c.len() == *nc => Ok(Removed {
                rows: r.clone(),
                cols: c.clone(),
            }),
            (Ok(r), Ok(c)) => Err(format!(
                "located {} rows and {} columns, inspect counts {nr} and {nc}",
                r.len(),
                c.len()
            )),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        out.insert(name.clone(), r);
    }
    out
}

/// `w` with every nonzero element replaced by its view line number + 1 along `axis`.
fn numbered(w: &Tensor, layout: WeightLayout, axis: Axis) -> Option<Tensor> {
    let (rows, cols) = view_dims(w, layout);
    let line = |i: usize| {
        let (r, c) = view_index(i, rows, cols, layout);
        (if axis == Axis::Rows { r } else { c }) + 1
    };
    match w.dtype() {
        // f32 holds every integer up to 2^24 exactly: far more lines than any view has.
        DType::F32 if rows.max(cols) < 1 << 24 => {
            let v: Vec<f32> = (0..w.len())
                .map(|i| {
                    let x = w.get_f64(i);
                    if x == 0.0 { x as f32 } else { line(i) as f32 }
                })
                .collect();
            Some(Tensor::from_vec(w.dims().to_vec(), v))
        }
        DType::F64 => {
            let v: Vec<f64> = (0..w.len())
                .map(|i| {
                    let x = w.get_f64(i);
                    if x == 0.0 { x } else { line(i) as f64 }
                })
                .collect();
            Some(Tensor::from_vec(w.dims().to_vec(), v))
        }
        _ => None,
    }
}

/// For each wanted layer, the original lines along `axis` the sparsity pass removed.
fn locate(
    before: &Graph,
    wanted: &BTreeMap<String, (usize, usize)>,
    axis: Axis,
    ctx: &shrink_opt::Ctx,
) -> BTreeMap<String, Result<Vec<usize>, String>> {
    let mut g = before.clone();
    let layers = layer_weights(before);
    let mut result: BTreeMap<String, Result<Vec<usize>, String>> = BTreeMap::new();
    let mut seen = BTreeMap::new();
    for (_, c, _) in layers.values() {
        *seen.entry(*c).or_insert(0usize) += 1;
    }
    let mut originals = BTreeMap::new();
    for name in wanted.keys() {
        let Some(&(_, c, layout)) = layers.get(name) else {
            result.insert(name.clone(), Err("the layer has no constant weight".into()));
            continue;
        };
        if seen[&c] > 1 {
            result.insert(
                name.clone(),
                Err("its weight is shared with another layer".into()),
            );
            continue;
        }
        let w = before.consts[c.0 as usize].clone();
        match numbered(&w, layout, axis) {
            Some(t) => {
                g.consts[c.0 as usize] = Arc::new(t);
                originals.insert(name.clone(), (w, layout));
            }
            None => {
                result.insert(
                    name.clone(),
                    Err(format!("a {} weight cannot be numbered", w.dtype())),
                );
            }
        }
    }
    if let Err(e) = shrink_opt::run_passes(&mut g, &["sparsity"], ctx) {
        for name in originals.keys() {
            result.insert(name.clone(), Err(e.to_string()));
        }
        return result;
    }
    let after = layer_weights(&g);
    for (name, (w, layout)) in originals {
        let r = match after.get(&name) {
            None => Err("the layer is gone after sparsity elimination".to_string()),
            Some(&(_, c, fl)) => {
                let (n_rows, n_cols) = view_dims(&w, layout);
                let n = if axis == Axis::Rows { n_rows } else { n_cols };
                kept_lines(&g.consts[c.0 as usize], fl, axis, n)
                    .and_then(|numbers| {
                        let zero = zero_lines(&w, layout, axis);
                        place_unnumbered(&numbers, &zero)
                    })
                    .map(|kept| {
                        let kept: BTreeSet<usize> = kept.into_iter().collect();
                        (0..n).filter(|i| !kept.contains(i)).collect()
                    })
            }
        };
        result.insert(name, r);
    }
    result
}

/// The original line number each line of the numbered weight `t` carries along `axis` (`None`
/// for a line with no nonzero); an error when a line carries two numbers or one out of range.
fn kept_lines(
    t: &Tensor,
    layout: WeightLayout,
    axis: Axis,
    n: usize,
) -> Result<Vec<Option<usize>>, String> {
    let (rows, cols) = view_dims(t, layout);
    let mut numbers = vec![None; if axis == Axis::Rows { rows } else { cols }];
    let mut bad = None;
    t.try_for_each_f64(|i, v| {
        if v == 0.0 {
            return true;
        }
        let (r, c) = view_index(i, rows, cols, layout);
        let k = if axis == Axis::Rows { r } else { c };
        let orig = v as usize;
        if v.fract() != 0.0 || orig == 0 || orig > n || numbers[k].is_some_and(|o| o != orig - 1) {
            bad = Some(format!("line {k} carries {v}"));
            return false;
        }
        numbers[k] = Some(orig - 1);
        true
    });
    match bad {
        Some(e) => Err(format!("removed lines not located: {e}")),
        None => Ok(numbers),
    }
}

/// Which original lines along `axis` are all zero.
fn zero_lines(w: &Tensor, layout: WeightLayout, axis: Axis) -> Vec<bool> {
    let (rows, cols) = view_dims(w, layout);
    let mut zero = vec![true; if axis == Axis::Rows { rows } else { cols }];
    w.try_for_each_f64(|i, v| {
        if v != 0.0 {
            let (r, c) = view_index(i, rows, cols, layout);
            zero[if axis == Axis::Rows { r } else { c }] = false;
        }
        true
    });
    zero
}

/// The original line of every surviving line: numbered ones as numbered (strictly increasing,
/// since the pass keeps lines in order), unnumbered ones at the first free all-zero original
/// lines between their numbered neighbours, else the first free ones there.
pub fn place_unnumbered(numbers: &[Option<usize>], zero: &[bool]) -> Result<Vec<usize>, String> {
    let n = zero.len();
    let mut out = Vec::with_capacity(numbers.len());
    let mut i = 0;
    let mut lo = 0; // first original line the next survivor may be
    while i < numbers.len() {
        if let Some(k) = numbers[i] {
            if k < lo {
                return Err("removed lines not located: numbers out of order".into());
            }
            out.push(k);
            lo = k + 1;
            i += 1;
            continue;
        }
        let run = numbers[i..].iter().take_while(|x| x.is_none()).count();
        let hi = numbers.get(i + run).copied().flatten().unwrap_or(n);
        if hi < lo || hi - lo < run {
            return Err("removed lines not located: too few lines for the unnumbered ones".into());
        }
        let mut pick: Vec<usize> = (lo..hi).filter(|&k| zero[k]).take(run).collect();
        let mut k = lo;
        while pick.len() < run {
            if !pick.contains(&k) {
                pick.push(k);
            }
            k += 1;
        }
        pick.sort_unstable();
        out.extend(&pick);
        lo = hi;
        i += run;
    }
    Ok(out)
}
