//! The `Layout` family as loop nests: ops that move elements without looking at their values
//! (Reshape … Pad) and ops that report shapes or generate values (Shape, ConstantOfShape, Range).
//!
//! Every element-moving op except Gather is one call of [`copy`]: an iteration space, and for the
//! source and the destination an [`Access`] saying how each coordinate of that space addresses
//! the buffer (affine, modulo, or through a per-axis table). Elements are moved as stored bits
//! (`load_raw`/`store_raw`), so every dtype, f16 and float8 included, is copied exactly.
//!
//! Shapes are static, so whatever the interpreter derives from constant inputs (slice bounds,
//! pads) is resolved here at compile time by the same rules; where the output dims already say
//! it all (Split sizes, Expand/Tile/Reshape shapes) the shape inputs are not read at all.
mod movement;
mod pad;
mod shape;
#[cfg(test)]
pub(crate) mod tests;

use super::{LowerResult, NodeCtx};
use crate::loops::{Builder, Expr, TensorRef, Ty, strides_of};
use shrink_ir::Tensor;
use shrink_ir::op::Layout;
use shrink_ir::rules;

pub fn lower(b: &mut Builder, op: &Layout, cx: &NodeCtx) -> LowerResult {
    match op {
        Layout::Reshape { .. } | Layout::Flatten { .. } | Layout::Squeeze | Layout::Unsqueeze => {
            shape::same_bytes(b, cx)
        }
        Layout::Shape { start, end } => shape::shape(b, cx, *start, *end),
        Layout::ConstantOfShape { value } => shape::constant_of_shape(b, cx, value.as_ref()),
        Layout::Range => shape::range(b, cx),
        Layout::Transpose { perm } => movement::transpose(b, cx, perm.as_deref()),
        Layout::Concat { axis } => movement::concat(b, cx, *axis),
        Layout::Gather { axis } => movement::gather(b, cx, *axis),
        Layout::Slice => movement::slice(b, cx),
        Layout::Split { axis, .. } => movement::split(b, cx, *axis),
        Layout::Expand => movement::expand(b, cx),
        Layout::Tile => movement::tile(b, cx),
        Layout::Pad { mode } => pad::pad(b, cx, *mode),
    }
}

/// How one coordinate `i` of the iteration space contributes to a flat buffer index.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Coord {
    /// `i · stride` (0 broadcasts; a negative stride walks backwards).
    Lin(i64),
    /// `(i mod m) · stride` (Tile).
    Mod(usize, i64),
    /// `table[i] · stride`; an entry of -1 means "no source element": the fill value is written.
    Table(Vec<i64>, i64),
}

/// A buffer addressed from the iteration space: `base + Σ_d coord_d(i_d)`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Access {
    pub base: i64,
    pub axes: Vec<Coord>,
}

impl Access {
    /// Row-major dense addressing of a tensor of `dims`, starting at element `base`.
    pub fn dense(dims: &[usize], base: i64) -> Access {
        Access::strided(&signed(&strides_of(dims)), base)
    }
    pub fn strided(strides: &[i64], base: i64) -> Access {
        Access {
            base,
            axes: strides.iter().map(|&s| Coord::Lin(s)).collect(),
        }
    }
}

pub(crate) fn signed(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// Drops unit axes and merges neighbouring axes that are affine and contiguous in both accesses,
/// so a plain copy is one flat loop and a transpose keeps only the loops it needs.
fn coalesce(space: &[usize], src: &Access, dst: &Access) -> (Vec<usize>, Access, Access) {
    let (mut dims, mut sa, mut da): (Vec<usize>, Vec<Coord>, Vec<Coord>) = (vec![], vec![], vec![]);
    for ((&n, s), t) in space.iter().zip(&src.axes).zip(&dst.axes) {
        let (s, t) = (s.clone(), t.clone());
        if n == 1 && matches!(s, Coord::Lin(_)) && matches!(t, Coord::Lin(_)) {
            continue;
        }
        if let (Some(Coord::Lin(ps)), Some(Coord::Lin(pt)), Coord::Lin(qs), Coord::Lin(qt)) =
            (sa.last(), da.last(), &s, &t)
            && *ps == qs * n as i64
            && *pt == qt * n as i64
        {
            *dims.last_mut().expect("nonempty") *= n;
            *sa.last_mut().expect("nonempty") = Coord::Lin(*qs);
            *da.last_mut().expect("nonempty") = Coord::Lin(*qt);
            continue;
        }
        dims.push(n);
        sa.push(s);
        da.push(t);
    }
    (
        dims,
        Access {
            base: src.base,
            axes: sa,
        },
        Access {
            base: dst.base,
            axes: da,
        },
    )
}

/// The flat index of `acc` at coordinates `idx`, and the condition (if any table axis may say
/// "no element") under which it names a real element.
fn address(b: &mut Builder, acc: &Access, idx: &[Expr]) -> (Expr, Option<Expr>) {
    let mut flat = Expr::idx(acc.base);
    let mut valid: Option<Expr> = None;
    for (c, i) in acc.axes.iter().zip(idx) {
        let term = match c {
            Coord::Lin(s) => i.clone().mul_k(*s),
            Coord::Mod(m, s) => i.clone().rem(Expr::idx(*m as i64)).mul_k(*s),
            Coord::Table(t, s) => {
                let table = b.table_i64(t);
                let j = b.load_raw(&table, i.clone());
                if t.contains(&-1) {
                    let j = b.let_(j);
                    let ok = j.clone().ge(Expr::idx(0));
                    valid = Some(match valid {
                        Some(v) => v.and(ok),
                        None => ok,
                    });
                    // Clamped at 0 so the address stays valid where it is not used.
                    j.max(Expr::idx(0)).mul_k(*s)
                } else {
                    j.mul_k(*s)
                }
            }
        };
        flat = flat.add(term);
    }
    (flat, valid)
}

/// `dst[dst(i)] = src[src(i)]` for every `i` of the iteration space `space`, as stored bits.
/// Where a table coordinate of `src` is -1, `fill` (a raw value of the storage type) is written
/// instead; `fill` is required when `src` has such entries.
pub(crate) fn copy(
    b: &mut Builder,
    space: &[usize],
    src: &TensorRef,
    sa: &Access,
    dst: &TensorRef,
    da: &Access,
    fill: Option<&Expr>,
) {
    if space.contains(&0) {
        return;
    }
    let (space, sa, da) = coalesce(space, sa, da);
    b.nest(&space, |b, idx| {
        let (to, _) = address(b, &da, idx);
        if src.numel() == 0 {
            // Only the fill exists (padding an empty tensor).
            let v = fill
                .expect("a source without elements needs a fill")
                .clone();
            b.store_raw(dst, to, v);
            return;
        }
        let (from, valid) = address(b, &sa, idx);
        match valid {
            None => {
                let v = b.load_raw(src, from);
                b.store_raw(dst, to, v);
            }
            Some(ok) => {
                let to = b.let_(to);
                let fill = fill.expect("a table with holes needs a fill").clone();
                b.if_else(
                    ok,
                    |b| {
                        let v = b.load_raw(src, from);
                        b.store_raw(dst, to.clone(), v);
                    },
                    |b| b.store_raw(dst, to.clone(), fill),
                );
            }
        }
    });
}

/// The stored bits of element `i` of a constant tensor as a literal of its storage type.
pub(crate) fn raw_literal(t: &Tensor, i: usize) -> Result<Expr, String> {
    let ty = Ty::storage(t.dtype()).ok_or("string tensors are not supported")?;
    let s = t.dtype().size();
    let bytes = t
        .bytes()
        .get(i * s..(i + 1) * s)
        .ok_or("the value tensor is empty")?;
    let mut word = [0u8; 8];
    word[..s].copy_from_slice(bytes);
    let bits = u64::from_le_bytes(word);
    Ok(match ty {
        Ty::F32 => Expr::f32(f32::from_bits(bits as u32)),
        Ty::F64 => Expr::f64(f64::from_bits(bits)),
        _ => {
            // Sign-extend from the stored width; `Expr::int` truncates to the type again.
            let sh = 64 - 8 * s as u32;
            Expr::int(ty, ((bits << sh) as i64) >> sh)
        }
    })
}

/// A zero of `ty` (the all-zero bit pattern).
pub(crate) fn zero_of(ty: Ty) -> Expr {
    if ty.is_float() {
        Expr::lit(ty, 0.0)
    } else {
        Expr::int(ty, 0)
    }
}

/// The integer values of constant input `i` (`what` names it in the error).
pub(crate) fn const_ints(cx: &NodeCtx, i: usize, what: &str) -> Result<Vec<i64>, String> {
    let t = cx
        .const_input(i)
        .ok_or_else(|| format!("{what} (input {i}) must be a constant for code generation"))?;
    if !t.dtype().is_int() {
        return Err(format!("{what} (input {i}) must be an integer tensor"));
    }
    Ok(t.to_i64_vec())
}

/// Like [`const_ints`] for an optional input: `None` when it is absent.
pub(crate) fn opt_const_ints(
    cx: &NodeCtx,
    i: usize,
    what: &str,
) -> Result<Option<Vec<i64>>, String> {
    match cx.opt_input(i) {
        None => Ok(None),
        Some(_) => const_ints(cx, i, what).map(Some),
    }
}

/// Normalizes a possibly negative axis against `rank` (the shared rule, with a string error).
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    Ok(rules::norm_axis(axis, rank)?)
}

/// The output must have the dims the lowering computed (shape inference and this file agree).
pub(crate) fn check_dims(out: &TensorRef, dims: &[usize]) -> LowerResult {
    if out.dims != dims {
        return Err(format!(
            "output dims {:?} differ from the computed {:?}",
            out.dims, dims
        ));
    }
    Ok(())
}
