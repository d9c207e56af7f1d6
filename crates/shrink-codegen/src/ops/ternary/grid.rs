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
mod tests {
    use super::*;
    use shrink_ir::{Tensor, ValueType};
    use std::sync::Arc;

    /// A graph under construction around an input `x` of `dims`.
    struct B {
        g: Graph,
        dims: Vec<usize>,
    }

    impl B {
        fn new(dims: &[usize]) -> (B, Value) {
            let mut g = Graph::new();
            let x = g.add_input("x", ValueType::fixed(DType::F32, dims));
            let b = B {
                g,
                dims: dims.to_vec(),
            };
            (b, x.into())
        }
        fn k(&mut self, v: f32) -> Value {
            self.g.add_const("k", Arc::new(Tensor::scalar(v))).into()
        }
        fn konst(&mut self, t: Tensor) -> Value {
            self.g.add_const("t", Arc::new(t)).into()
        }
        fn node(&mut self, op: Op, ins: &[Option<Value>], dtype: DType, dims: &[usize]) -> Value {
            let ty = ValueType::fixed(dtype, dims);
            self.g.add_node(op, "n", ins, vec![ty]).into()
        }
        /// An f32 node whose dims are the broadcast of its inputs' (full or per-row).
        fn op(&mut self, op: Op, ins: &[Option<Value>]) -> Value {
            let full = ins
                .iter()
                .flatten()
                .any(|&v| fixed_dims(&self.g, v).as_deref() == Some(&self.dims[..]));
            let dims = self.row_dims(full);
            self.node(op, ins, DType::F32, &dims)
        }
        fn row_dims(&self, full: bool) -> Vec<usize> {
            let mut d = self.dims.clone();
            if !full {
                *d.last_mut().unwrap() = 1;
            }
            d
        }
        fn bin(&mut self, op: Binary, a: Value, b: Value) -> Value {
            self.op(Op::Binary(op), &[Some(a), Some(b)])
        }
        fn un(&mut self, op: Unary, a: Value) -> Value {
            self.op(Op::Unary(op), &[Some(a)])
        }
        fn clip(&mut self, a: Value, lo: Option<f32>, hi: Option<f32>) -> Value {
            let (lo, hi) = (lo.map(|v| self.k(v)), hi.map(|v| self.k(v)));
            self.op(Op::Ternary(Ternary::Clip), &[Some(a), lo, hi])
        }
        /// `ReduceMax(Abs(x), [axis], keepdims)`.
        fn absmax(&mut self, x: Value, axis: i64, keepdims: bool) -> Value {
            let a = self.un(Unary::Abs, x);
            let axes = self.konst(Tensor::from_vec(vec![1], vec![axis]));
            let mut dims = self.dims.clone();
            let at = axis.rem_euclid(dims.len() as i64) as usize;
            if keepdims {
                dims[at] = 1;
            } else {
                dims.remove(at);
            }
            let op = Op::Reduce(Reduce::ReduceMax {
                keepdims,
                noop_with_empty_axes: false,
            });
            self.node(op, &[Some(a), Some(axes)], DType::F32, &dims)
        }
        fn max_eps(&mut self, m: Value) -> Value {
            let eps = self.k(1e-5);
            self.op(Op::Variadic(Variadic::Max), &[Some(m), Some(eps)])
        }
        fn grid(&self, y: Value) -> Option<Grid> {
            of(&self.g, y)
        }
    }

    const ABSMAX: Option<Grid> = Some(Grid::RowAbsmax { full: 127 });

    /// BitNet's quantizer: `s = k / clamp(absmax)`, `y = clip(round(x·s), lo, hi) / s`.
    fn bitnet(dims: &[usize], k: f32, clip: Option<(f32, f32)>) -> (B, Value) {
        let (mut b, x) = B::new(dims);
        let m = b.absmax(x, -1, true);
        let m = b.max_eps(m);
        let kk = b.k(k);
        let s = b.bin(Binary::Div, kk, m);
        let v = b.bin(Binary::Mul, x, s);
        let mut q = b.un(Unary::Round, v);
        if let Some((lo, hi)) = clip {
            q = b.clip(q, Some(lo), Some(hi));
        }
        let y = b.bin(Binary::Div, q, s);
        (b, y)
    }

    #[test]
    fn accepts_bitnet_absmax_spellings() {
        let (b, y) = bitnet(&[4, 64], 127.0, Some((-128.0, 127.0)));
        assert_eq!(b.grid(y), ABSMAX, "Max eps, Div by the scale");
        // Three batch dims, axis 2 (not -1).
        let (mut b, x) = B::new(&[2, 3, 64]);
        let m = b.absmax(x, 2, true);
        let m = b.max_eps(m);
        let k = b.k(127.0);
        let s = b.bin(Binary::Div, k, m);
        let v = b.bin(Binary::Mul, s, x);
        let r = b.un(Unary::Round, v);
        let q = b.clip(r, Some(-128.0), Some(127.0));
        let y = b.bin(Binary::Div, q, s);
        assert_eq!(b.grid(y), ABSMAX, "3-D, scale first");
        // Clip(min = eps) for the epsilon, Round then Clip, y = q · Reciprocal(s).
        for eps in ["clip", "add", "none", "max swapped"] {
            let (mut b, x) = B::new(&[4, 64]);
            let m = b.absmax(x, -1, true);
            let e = b.k(1e-5);
            let m = match eps {
                "clip" => b.op(Op::Ternary(Ternary::Clip), &[Some(m), Some(e), None]),
                "add" => b.bin(Binary::Add, m, e),
                "max swapped" => b.op(Op::Variadic(Variadic::Max), &[Some(e), Some(m)]),
                _ => m,
            };
            let k = b.k(127.0);
            let s = b.bin(Binary::Div, k, m);
            let v = b.bin(Binary::Mul, x, s);
            let r = b.un(Unary::Round, v);
            let q = b.clip(r, Some(-128.0), Some(127.0));
            let si = b.un(Unary::Reciprocal, s);
            let y = b.bin(Binary::Mul, q, si);
            assert_eq!(b.grid(y), ABSMAX, "eps {eps}, Mul by Reciprocal");
        }
        // x / max(absmax, eps) · 127, y = q · (max(absmax, eps) / 127); and Clip before Round.
        let (mut b, x) = B::new(&[4, 64]);
        let m = b.absmax(x, -1, true);
        let m = b.max_eps(m);
        let xn = b.bin(Binary::Div, x, m);
        let k = b.k(127.0);
        let v = b.bin(Binary::Mul, xn, k);
        let c = b.clip(v, Some(-128.0), Some(127.0));
        let q = b.un(Unary::Round, c);
        let st = b.bin(Binary::Div, m, k);
        let y = b.bin(Binary::Mul, q, st);
        assert_eq!(
            b.grid(y),
            ABSMAX,
            "divide by the absmax, then multiply by 127"
        );
        // scale = m / 127, y = round(x / scale) · scale, no Clip.
        let (mut b, x) = B::new(&[4, 64]);
        let m = b.absmax(x, -1, true);
        let m = b.max_eps(m);
        let k = b.k(127.0);
        let st = b.bin(Binary::Div, m, k);
        let v = b.bin(Binary::Div, x, st);
        let q = b.un(Unary::Round, v);
        let y = b.bin(Binary::Mul, st, q);
        assert_eq!(b.grid(y), ABSMAX, "scale = absmax / 127, no Clip");
        // A 4-bit quantizer is a grid of full scale 7.
        let (b, y) = bitnet(&[4, 64], 7.0, Some((-8.0, 7.0)));
        assert_eq!(b.grid(y), Some(Grid::RowAbsmax { full: 7 }));
        // A Clip wider than the absmax scale's reach is a no-op for every row.
        let (b, y) = bitnet(&[4, 64], 127.0, Some((-200.0, 200.0)));
        assert_eq!(b.grid(y), ABSMAX, "Clip [-200, 200] after an absmax of 127");
    }

    /// `DequantizeLinear(q, scale, zp)` of `q` (from QuantizeLinear of `x` when `dtype` is
    /// 8-bit).
    fn qdq(dtype: DType, zp: Option<Tensor>, scale: Option<f32>) -> (B, Value) {
        let (mut b, x) = B::new(&[4, 64]);
        let s = match scale {
            Some(s) => b.k(s),
            None => b.g.add_input("s", ValueType::fixed(DType::F32, &[])).into(),
        };
        let z = zp.map(|t| b.konst(t));
        let dims = b.dims.clone();
        let q = b.node(
            Op::Quant(Quant::QuantizeLinear {
                axis: 1,
                block_size: 0,
                output_dtype: Some(dtype),
                saturate: true,
                precision: None,
            }),
            &[Some(x), Some(s), z],
            dtype,
            &dims,
        );
        let op = Op::Quant(Quant::DequantizeLinear {
            axis: 1,
            block_size: 0,
            output_dtype: None,
        });
        let y = b.node(op, &[Some(q), Some(s), z], DType::F32, &dims);
        (b, y)
    }

    #[test]
    fn accepts_constant_grids() {
        let step = Some(Grid::Fixed {
            step: 0.0125f32 as f64,
        });
        let (b, y) = qdq(DType::I8, Some(Tensor::scalar(0i8)), Some(0.0125));
        assert_eq!(b.grid(y), step, "QDQ int8, zero point 0");
        let (b, y) = qdq(DType::I8, None, Some(0.0125));
        assert_eq!(b.grid(y), step, "QDQ int8 without a zero point");
        let (b, y) = qdq(DType::U8, Some(Tensor::scalar(128u8)), Some(0.0125));
        assert_eq!(
            b.grid(y),
            step,
            "QDQ uint8, zero point 128: q − zp in [-128, 127]"
        );
        // Written as float ops: clip(round(x / 0.05), -128, 127) · 0.05.
        let (mut b, x) = B::new(&[4, 64]);
        let c = b.k(0.05);
        let v = b.bin(Binary::Div, x, c);
        let r = b.un(Unary::Round, v);
        let q = b.clip(r, Some(-128.0), Some(127.0));
        let y = b.bin(Binary::Mul, q, c);
        let want = Some(Grid::Fixed {
            step: 0.05f32 as f64,
        });
        assert_eq!(b.grid(y), want, "float fake-quant with a constant scale");
        // round(clip(x · 20, -127, 127)) / 20.
        let (mut b, x) = B::new(&[4, 64]);
        let c = b.k(20.0);
        let v = b.bin(Binary::Mul, x, c);
        let v = b.clip(v, Some(-127.0), Some(127.0));
        let q = b.un(Unary::Round, v);
        let y = b.bin(Binary::Div, q, c);
        assert_eq!(b.grid(y), Some(Grid::Fixed { step: 1.0 / 20.0 }));
        // BitNet's integers dequantized by a constant: a compile-time step.
        let (mut b, x) = B::new(&[4, 64]);
        let m = b.absmax(x, -1, true);
        let m = b.max_eps(m);
        let k = b.k(127.0);
        let s = b.bin(Binary::Div, k, m);
        let v = b.bin(Binary::Mul, x, s);
        let q = b.un(Unary::Round, v);
        let c = b.k(0.5);
        let y = b.bin(Binary::Mul, q, c);
        assert_eq!(b.grid(y), Some(Grid::Fixed { step: 0.5 }));
    }

    #[test]
    fn rejects_near_misses() {
        // Integers beyond int8: a Clip to [-200, 200] on a constant scale, a quantizer of
        // full scale 200, 16-bit and unsigned 8-bit QDQ with zero point 0.
        let (mut b, x) = B::new(&[4, 64]);
        let c = b.k(0.05);
        let v = b.bin(Binary::Div, x, c);
        let r = b.un(Unary::Round, v);
        let q = b.clip(r, Some(-200.0), Some(200.0));
        let y = b.bin(Binary::Mul, q, c);
        assert_eq!(b.grid(y), None, "Clip [-200, 200], constant scale");
        let (b, y) = bitnet(&[4, 64], 200.0, Some((-200.0, 200.0)));
        assert_eq!(b.grid(y), None, "absmax scale 200");
        let (b, y) = qdq(DType::I16, Some(Tensor::scalar(0i16)), Some(0.0125));
        assert_eq!(b.grid(y), None, "int16 QDQ");
        let (b, y) = qdq(DType::U8, Some(Tensor::scalar(0u8)), Some(0.0125));
        assert_eq!(b.grid(y), None, "uint8 QDQ, zero point 0: [0, 255]");
        // A Clip inside the absmax scale's reach: the rows' largest integer is not 127.
        let (b, y) = bitnet(&[4, 64], 127.0, Some((-100.0, 100.0)));
        assert_eq!(b.grid(y), None, "Clip [-100, 100]");
        // Round missing (Clip alone), or Floor instead.
        for op in [None, Some(Unary::Floor)] {
            let (mut b, x) = B::new(&[4, 64]);
            let m = b.absmax(x, -1, true);
            let m = b.max_eps(m);
            let k = b.k(127.0);
            let s = b.bin(Binary::Div, k, m);
            let mut v = b.bin(Binary::Mul, x, s);
            if let Some(f) = &op {
                v = b.un(f.clone(), v);
            }
            let q = b.clip(v, Some(-128.0), Some(127.0));
            let y = b.bin(Binary::Div, q, s);
            assert_eq!(b.grid(y), None, "{op:?} instead of Round");
        }
        // Non-integral Clip bounds after Round.
        let (b, y) = bitnet(&[4, 64], 127.0, Some((-127.5, 127.5)));
        assert_eq!(b.grid(y), None, "Clip [-127.5, 127.5]");
        // The absmax over another axis, without keepdims, of another tensor, or capped above.
        for case in ["axis 0", "no keepdims", "other tensor", "capped"] {
            let (mut b, x) = B::new(&[4, 64]);
            let other: Value =
                b.g.add_input("x2", ValueType::fixed(DType::F32, &[4, 64]))
                    .into();
            let m = match case {
                "axis 0" => b.absmax(x, 0, true),
                "no keepdims" => b.absmax(x, -1, false),
                "other tensor" => b.absmax(other, -1, true),
                _ => b.absmax(x, -1, true),
            };
            let m = if case == "capped" {
                b.clip(m, Some(1e-5), Some(10.0))
            } else {
                b.max_eps(m)
            };
            let k = b.k(127.0);
            let s = b.bin(Binary::Div, k, m);
            let v = b.bin(Binary::Mul, x, s);
            let r = b.un(Unary::Round, v);
            let q = b.clip(r, Some(-128.0), Some(127.0));
            let y = b.bin(Binary::Div, q, s);
            assert_eq!(b.grid(y), None, "{case}");
        }
        // A QDQ scale that is not a constant, or one scale per column.
        let (b, y) = qdq(DType::I8, Some(Tensor::scalar(0i8)), None);
        assert_eq!(b.grid(y), None, "run-time QDQ scale");
        let (mut b, x) = B::new(&[4, 64]);
        let s = b.konst(Tensor::from_vec(vec![64], vec![0.0125f32; 64]));
        let dq = |b: &mut B, q: Value| {
            let op = Op::Quant(Quant::DequantizeLinear {
                axis: 1,
                block_size: 0,
                output_dtype: None,
            });
            b.node(op, &[Some(q), Some(s)], DType::F32, &[4, 64])
        };
        let qop = Op::Quant(Quant::QuantizeLinear {
            axis: 1,
            block_size: 0,
            output_dtype: None,
            saturate: true,
            precision: None,
        });
        let q = b.node(qop, &[Some(x), Some(s)], DType::I8, &[4, 64]);
        let y = dq(&mut b, q);
        assert_eq!(b.grid(y), None, "per-column QDQ scale");
        // DynamicQuantizeLinear: the scale is a run-time output.
        let (mut b, x) = B::new(&[4, 64]);
        let ty = |d: DType, dims: &[usize]| ValueType::fixed(d, dims);
        let dql = b.g.add_node(
            Op::Quant(Quant::DynamicQuantizeLinear),
            "dql",
            &[Some(x)],
            vec![
                ty(DType::U8, &[4, 64]),
                ty(DType::F32, &[]),
                ty(DType::U8, &[]),
            ],
        );
        let op = Op::Quant(Quant::DequantizeLinear {
            axis: 1,
            block_size: 0,
            output_dtype: None,
        });
        let ins = [0, 1, 2].map(|k| Some(Value::new(dql, k)));
        let y = b.node(op, &ins, DType::F32, &[4, 64]);
        assert_eq!(b.grid(y), None, "DynamicQuantizeLinear");
        // A dequantization factor that varies along the row.
        let (mut b, x) = B::new(&[4, 64]);
        let c = b.k(0.05);
        let v = b.bin(Binary::Div, x, c);
        let r = b.un(Unary::Round, v);
        let q = b.clip(r, Some(-128.0), Some(127.0));
        let per_col = b.konst(Tensor::from_vec(vec![64], vec![0.05f32; 64]));
        let y = b.bin(Binary::Mul, q, per_col);
        assert_eq!(b.grid(y), None, "per-column dequantization");
        // The plain input.
        let (b, x) = B::new(&[4, 64]);
        assert_eq!(b.grid(x), None, "no quantizer");
    }
}
