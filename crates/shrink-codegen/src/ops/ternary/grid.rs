//! Activations the graph itself puts on an int8 grid: proves, from the nodes that produce a
//! ternary layer's input `y`, that every batch row is `y[n, c] ≈ q[n, c] · t[n]` with integer
//! `q`, and says how the `packed` kernel recovers `q` and the step exactly at run time ([`Grid`]).
//!
//! The proof walks producers (the optimized graph, as [`of`] receives it):
//! - the *dequantization*: from `y` down, a chain of at most [`MAX_OPS`] f32 products and
//!   quotients `a · f`, `f · a`, `a / f`, whose factor `f` is a one-element constant or a
//!   *per-row* value (its last dim 1, so constant along each batch row), or a per-tensor
//!   `DequantizeLinear` of an 8-bit integer with a constant scale and zero point;
//! - the *integers*: where that chain ends, `Round(u)` and `Clip(·, lo, hi)` with constant
//!   integral bounds in either order, `Cast` from a small integer type, or the dequantized
//!   integer itself; each gives an integral interval `[lo, hi]`;
//! - the *absmax scale* (BitNet b1.58's quantizer): `u = X · K / m` written as any product and
//!   quotient of `X`, one-element constants and `m`, where `m` is `ReduceMax(Abs(X))` over the
//!   last axis with `keepdims`, optionally clamped from below by a positive constant (`Max`,
//!   `Clip(min)`, `Add`): then `|u| ≤ K` up to rounding, and on every row whose absmax the clamp
//!   did not replace, `max |u|` rounds to `K`.
//!
//! Exactness: each f32 operation rounds by a relative `δ`, `|δ| ≤ 2⁻²⁴`, so a dequantization of
//! `k ≤ MAX_OPS` operations gives `y = q · t · (1 + ε_q)` with `|ε_q| ≤ k · 2⁻²⁴ (1 + 2⁻²⁰)`,
//! where `ε_q` depends only on `q` and the row (the same operations on the same operands).
//! - [`Grid::Fixed`]: every factor is a constant, so `t` is known at compile time:
//!   `y / t = q (1 + ε_q)` is within `128 · MAX_OPS · 2⁻²⁴ < 2⁻¹³` of `q`, so rounding it gives
//!   `q` back exactly, on every row.
//! - [`Grid::RowAbsmax`]: `t` is a run-time per-row value. Each operation is monotone and odd in
//!   `q`, so the row's absmax is `A = max |y| = K' · |t| (1 + ε_K')` with `K' = max |q|`, and
//!   `y · K / A = q (K / K') (1 + ε_q) / (1 + ε_K')`. On a row where `K' = K` (the clamp did
//!   not act) that is within `2 · K · MAX_OPS · 2⁻²⁴ < 2⁻¹²` of the integer `q`: rounding gives
//!   `q` (up to the sign of `t`, which the step `A / K` then carries as `|t|`; the product is the
//!   same). On other rows `q K / K'` need not be an integer: the kernel checks every element's
//!   distance to the nearest integer against [`TOLERANCE`] and recomputes a row that fails in
//!   f64 from `y` itself. A row that passes has `q K / K'` integral for every element (a
//!   non-integer `q K / K'` is at least `1/K'` from every integer, far beyond the tolerance), so
//!   its digits are `q · K / K'` exactly and the step `A / K` is `t · K' / K` to within the same
//!   `ε`: the product is the graph's to the same bound.
//!
//! Either way the kernel's sum `step · Σ w q` differs from the exact sum of the graph's own f32
//! values `Σ w y` by at most `2 · MAX_OPS · 2⁻²⁴ · Σ |w y|` (the graph's `y` carries `ε_q`, the
//! step `ε_K`), against the faithful three-limb mode's `Σ |w| · A · 2⁻²⁴`.
//!
//! Not recognised: `DynamicQuantizeLinear` → `DequantizeLinear`. Its step is per tensor and
//! computed at run time from the tensor's min and max, its integers `q − zp` span 256 levels
//! anywhere in `[−255, 255]`, and neither the step nor the span can be read back from `y` alone
//! (a row's max `|q − zp|` varies with the data, and the tensor's `max − min` is 254 or 255
//! steps depending on rounding); the scale output could be, but the layer's kernel sees only
//! its own inputs. Such layers keep the faithful limbs.
use shrink_ir::op::{Binary, Convert, Quant, Reduce, Ternary, Unary, Variadic};
use shrink_ir::{DType, Graph, NodeId, Op, Value};

/// Most f32 operations in the dequantization chain (and in the absmax scale): bounds the
/// relative rounding `ε` the exactness argument allows for.
pub const MAX_OPS: usize = 8;

/// How far from an integer `y · K / A` (or `y / t`) may be for a row to count as on the grid:
/// above every proven rounding (`2 · 127 · MAX_OPS · 2⁻²⁴ ≈ 2⁻¹³`), far below the `1/127`
/// of an off-grid value.
pub const TOLERANCE: f64 = 1.0 / 4096.0;

/// How the `packed` kernel recovers the graph's integers from its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Grid {
    /// `y = q · step` (up to f32 rounding) with a compile-time `step` and integer `q` in
    /// `[-128, 127]`: the digits are `round(y / step)`.
    Fixed { step: f64 },
    /// Per batch row, `y = q · t` with a run-time `t` and `max |q| = full` on rows the absmax
    /// clamp did not touch: the digits are `round(y · full / A)` on the row's absmax `A`, the
    /// step `A / full`; a row whose values are not all within [`TOLERANCE`] of that grid is
    /// recomputed in f64.
    RowAbsmax { full: u8 },
}

/// The grid `y` (a ternary layer's activation input) lies on, if the graph proves one.
pub fn of(g: &Graph, y: Value) -> Option<Grid> {
    let dims = f32_dims(g, y)?;
    let (ints, step) = dequantization(g, y, &dims)?;
    match step {
        Some(step) if ints.lo >= -128.0 && ints.hi <= 127.0 && step.is_finite() && step != 0.0 => {
            Some(Grid::Fixed { step })
        }
        Some(_) => None,
        None => {
            let full = ints.full?;
            (1.0..=127.0)
                .contains(&full)
                .then_some(Grid::RowAbsmax { full: full as u8 })
        }
    }
}

/// What the walk proved of the integers a dequantization starts from.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Range {
    lo: f64,
    hi: f64,
    /// Every value is an integer (or NaN, which the kernel detects and recomputes).
    integral: bool,
    /// `Some(K)`: `|v| ≤ K` up to rounding, and `max |v|` is `K` up to rounding on every row
    /// whose absmax the clamp did not replace (see the module doc).
    full: Option<f64>,
}

/// The integers under `y`'s dequantization and the compile-time step (`None` if a factor is a
/// run-time value).
fn dequantization(g: &Graph, y: Value, dims: &[usize]) -> Option<(Range, Option<f64>)> {
    let (mut v, mut step, mut runtime) = (y, 1.0f64, false);
    // At most MAX_OPS operations in all, a DequantizeLinear included.
    for _ in 0..MAX_OPS {
        if let Some(r) = integers(g, v, dims, 0).filter(|r| r.integral) {
            return Some((r, (!runtime).then_some(step)));
        }
        let id = producer(g, v)?;
        let (main, factor, divide) = match &g.node(id).op {
            Op::Binary(Binary::Mul) => {
                let (a, b) = (input(g, id, 0)?, input(g, id, 1)?);
                if f32_dims(g, a).as_deref() == Some(dims) {
                    (a, b, false)
                } else {
                    (b, a, false)
                }
            }
            Op::Binary(Binary::Div) => (input(g, id, 0)?, input(g, id, 1)?, true),
            Op::Quant(Quant::DequantizeLinear {
                block_size: 0,
                output_dtype: None | Some(DType::F32),
                ..
            }) => {
                let (r, scale) = dequantize_linear(g, id, dims)?;
                let step = step * scale;
                return Some((r, (!runtime).then_some(step)));
            }
            _ => return None,
        };
        if f32_dims(g, main).as_deref() != Some(dims) {
            return None;
        }
        if let Some(c) = scalar_const(g, factor) {
            if !c.is_finite() || c == 0.0 {
                return None;
            }
            step = if divide { step / c } else { step * c };
        } else if per_row(g, factor, dims) {
            runtime = true;
        } else {
            return None;
        }
        v = main;
    }
    None
}

/// `DequantizeLinear(q, scale, zp)` per tensor: the integers `q − zp` and the constant scale.
fn dequantize_linear(g: &Graph, id: NodeId, dims: &[usize]) -> Option<(Range, f64)> {
    let q = input(g, id, 0)?;
    let (lo, hi) = int_range(g.dtype(q))?;
    let scale = input(g, id, 1)?;
    if g.dtype(scale) != DType::F32 || fixed_dims(g, q).as_deref() != Some(dims) {
        return None;
    }
    let scale = scalar_const(g, scale)?;
    let zp = match input(g, id, 2) {
        Some(z) => scalar_const(g, z)?,
        None => 0.0,
    };
    let r = Range {
        lo: lo - zp,
        hi: hi - zp,
        integral: true,
        full: None,
    };
    (scale.is_finite() && scale != 0.0).then_some((r, scale))
}

/// The values of a small integer type, as f64.
fn int_range(d: DType) -> Option<(f64, f64)> {
    Some(match d {
        DType::I8 => (-128.0, 127.0),
        DType::U8 => (0.0, 255.0),
        DType::I4 => (-8.0, 7.0),
        DType::U4 => (0.0, 15.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::U16 => (0.0, 65535.0),
        _ => return None,
    })
}

/// What is known of `v`'s values: Round, Clip, an integer Cast, or the absmax scale.
fn integers(g: &Graph, v: Value, dims: &[usize], depth: usize) -> Option<Range> {
    if depth > MAX_OPS || f32_dims(g, v).as_deref() != Some(dims) {
        return None;
    }
    let id = producer(g, v)?;
    match &g.node(id).op {
        Op::Unary(Unary::Round) => {
            let r = operand(g, input(g, id, 0)?, dims, depth);
            Some(Range {
                lo: r.lo.round_ties_even(),
                hi: r.hi.round_ties_even(),
                integral: true,
                // max |u| is K (1 + ε): it rounds to K when K is within a quarter of an integer.
                full: r
                    .full
                    .filter(|k| (k - k.round()).abs() <= 0.25)
                    .map(f64::round),
            })
        }
        Op::Ternary(Ternary::Clip) => {
            let r = operand(g, input(g, id, 0)?, dims, depth);
            let bound = |slot: usize, none: f64| match input(g, id, slot) {
                None => Some(none),
                Some(b) => scalar_const(g, b),
            };
            let (lo, hi) = (bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?);
            let integral_bound = |b: f64| b.is_infinite() || b == b.round();
            if lo.is_nan() || hi.is_nan() || lo > hi {
                return None;
            }
            Some(Range {
                lo: r.lo.max(lo),
                hi: r.hi.min(hi),
                integral: r.integral && integral_bound(lo) && integral_bound(hi),
                // A bound inside [-K, K] would cut the row's largest value; one outside is a
                // no-op for the row (rounding the clipped value as Round then does).
                full: r.full.filter(|&k| {
                    lo.round_ties_even() <= -k.round() && hi.round_ties_even() >= k.round()
                }),
            })
        }
        Op::Convert(Convert::Cast { to: DType::F32, .. }) => {
            let (lo, hi) = int_range(g.dtype(input(g, id, 0)?))?;
            Some(Range {
                lo,
                hi,
                integral: true,
                full: None,
            })
        }
        _ => {
            let k = absmax_scale(g, v, dims)?;
            let slack = k * MAX_OPS as f64 * f64::powi(2.0, -23);
            Some(Range {
                lo: -k - slack,
                hi: k + slack,
                integral: false,
                full: Some(k),
            })
        }
    }
}

/// What is known of an operand of Round or Clip: [`integers`], else any real.
fn operand(g: &Graph, v: Value, dims: &[usize], depth: usize) -> Range {
    integers(g, v, dims, depth + 1).unwrap_or(Range {
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
        integral: false,
        full: None,
    })
}

/// `v` as a product of powers: `c · X^ex · m^em` over one full-shaped leaf `X` and the clamped
/// absmax `m` of some value.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Monomial {
    c: f64,
    x: Option<Value>,
    ex: i32,
    /// The value whose clamped absmax `m` is, and `m`'s exponent.
    m_of: Option<Value>,
    em: i32,
    ops: usize,
}

impl Monomial {
    fn times(self, o: Monomial, sign: i32) -> Option<Monomial> {
        let join = |a: Option<Value>, b: Option<Value>| match (a, b) {
            (Some(a), Some(b)) if a != b => Err(()),
            (a, b) => Ok(a.or(b)),
        };
        Some(Monomial {
            c: if sign > 0 { self.c * o.c } else { self.c / o.c },
            x: join(self.x, o.x).ok()?,
            ex: self.ex + sign * o.ex,
            m_of: join(self.m_of, o.m_of).ok()?,
            em: self.em + sign * o.em,
            ops: self.ops + o.ops + 1,
        })
    }
}

/// `K` when `u = X · K / m` with `m` the clamped absmax of `X` over the last axis.
fn absmax_scale(g: &Graph, u: Value, dims: &[usize]) -> Option<f64> {
    let m = monomial(g, u, dims, 0)?;
    let ok = m.ex == 1
        && m.em == -1
        && m.x.is_some()
        && m.x == m.m_of
        && m.c.is_finite()
        && m.c > 0.0
        && m.ops <= MAX_OPS;
    ok.then_some(m.c)
}

fn monomial(g: &Graph, v: Value, dims: &[usize], depth: usize) -> Option<Monomial> {
    if depth > MAX_OPS || g.dtype(v) != DType::F32 {
        return None;
    }
    let unit = Monomial {
        c: 1.0,
        x: None,
        ex: 0,
        m_of: None,
        em: 0,
        ops: 0,
    };
    if let Some(c) = scalar_const(g, v) {
        return (c.is_finite() && c != 0.0).then_some(Monomial { c, ..unit });
    }
    if let Some(x) = clamped_absmax(g, v, dims) {
        return Some(Monomial {
            m_of: Some(x),
            em: 1,
            ..unit
        });
    }
    let leaf = || {
        (f32_dims(g, v).as_deref() == Some(dims)).then_some(Monomial {
            x: Some(v),
            ex: 1,
            ..unit
        })
    };
    let Some(id) = producer(g, v) else {
        return leaf();
    };
    let sub = |slot: usize| monomial(g, input(g, id, slot)?, dims, depth + 1);
    match &g.node(id).op {
        Op::Binary(Binary::Mul) => sub(0)?.times(sub(1)?, 1),
        Op::Binary(Binary::Div) => sub(0)?.times(sub(1)?, -1),
        Op::Unary(Unary::Reciprocal) => unit.times(sub(0)?, -1),
        _ => leaf(),
    }
}

/// The value `X` when `v` is `ReduceMax(Abs(X))` over `X`'s last axis with `keepdims`, as is or
/// clamped from below by a positive constant (`Max`, `Clip` without an upper bound, `Add`).
fn clamped_absmax(g: &Graph, v: Value, dims: &[usize]) -> Option<Value> {
    let id = producer(g, v)?;
    let positive = |c: Value| scalar_const(g, c).is_some_and(|c| c > 0.0 && c.is_finite());
    let inner = match &g.node(id).op {
        Op::Variadic(Variadic::Max) | Op::Binary(Binary::Add) if g.node(id).num_inputs == 2 => {
            let (a, b) = (input(g, id, 0)?, input(g, id, 1)?);
            if positive(b) {
                a
            } else if positive(a) {
                b
            } else {
                return None;
            }
        }
        Op::Ternary(Ternary::Clip) => {
            let unbounded = input(g, id, 2)
                .is_none_or(|h| scalar_const(g, h).is_some_and(|h| h == f64::INFINITY));
            if !(positive(input(g, id, 1)?) && unbounded) {
                return None;
            }
            input(g, id, 0)?
        }
        _ => v,
    };
    absmax_of(g, inner, dims)
}

/// `X` when `v = ReduceMax(Abs(X), axes = [last], keepdims = 1)` with `X` of `dims`.
fn absmax_of(g: &Graph, v: Value, dims: &[usize]) -> Option<Value> {
    let id = producer(g, v)?;
    let Op::Reduce(Reduce::ReduceMax { keepdims: true, .. }) = g.node(id).op else {
        return None;
    };
    let abs = producer(g, input(g, id, 0)?)?;
    if g.node(abs).op != Op::Unary(Unary::Abs) {
        return None;
    }
    let x = input(g, abs, 0)?;
    let rank = dims.len() as i64;
    let axes = g.const_value(input(g, id, 1)?)?;
    let last =
        axes.dtype().is_int() && axes.len() == 1 && [rank - 1, -1].contains(&axes.to_i64_vec()[0]);
    (last && f32_dims(g, x).as_deref() == Some(dims)).then_some(x)
}

/// Whether `f` is constant along each batch row of a tensor of `dims`: fixed dims, last dim 1,
/// every other dim 1 or the tensor's (right-aligned), no more dims than the tensor.
fn per_row(g: &Graph, f: Value, dims: &[usize]) -> bool {
    let Some(fd) = f32_dims(g, f) else {
        return false;
    };
    if fd.len() > dims.len() || fd.last().is_some_and(|&d| d != 1) {
        return false;
    }
    let skip = dims.len() - fd.len();
    fd.iter()
        .zip(&dims[skip..])
        .all(|(&a, &b)| a == 1 || a == b)
}

// ---- Small graph helpers (as shrink-opt's fusion uses, which codegen does not depend on). ----

fn input(g: &Graph, id: NodeId, slot: usize) -> Option<Value> {
    g.inputs_of(id).get(slot).copied().flatten()
}

/// The node producing `v` when it is a single-output node.
fn producer(g: &Graph, v: Value) -> Option<NodeId> {
    (v.slot == 0 && g.node(v.node).outputs.len() == 1).then_some(v.node)
}

/// The value of a constant with exactly one element.
fn scalar_const(g: &Graph, v: Value) -> Option<f64> {
    let t = g.const_value(v)?;
    (t.len() == 1).then(|| t.get_f64(0))
}

fn fixed_dims(g: &Graph, v: Value) -> Option<Vec<usize>> {
    g.node(v.node)
        .outputs
        .get(v.slot as usize)?
        .shape
        .as_ref()?
        .as_fixed()
}

/// The fixed dims of an f32 value.
fn f32_dims(g: &Graph, v: Value) -> Option<Vec<usize>> {
    (g.node(v.node).outputs.get(v.slot as usize)?.dtype == DType::F32)
        .then(|| fixed_dims(g, v))
        .flatten()
}

#[cfg(test)]
mod tests;
