//! Constructors for [`Expr`]: literals, arithmetic, comparisons and conversions, with the integer
//! constant folding that keeps index expressions small (`i*1 + 0` is `i`), and the type checks
//! that make a malformed expression a panic at build time in tests instead of bad machine code.
use super::ir::{BinOp, CmpOp, Expr, ExprKind, Lit, Ty, UnOp, VarId};
use std::rc::Rc;

fn mk(ty: Ty, kind: ExprKind) -> Expr {
    Expr {
        ty,
        kind: Rc::new(kind),
    }
}

/// Truncates an integer literal to the value range of `ty` (two's complement).
fn wrap(v: i64, ty: Ty) -> i64 {
    match ty {
        Ty::Bool => (v != 0) as i64,
        Ty::I8 => v as i8 as i64,
        Ty::I16 => v as i16 as i64,
        Ty::I32 => v as i32 as i64,
        Ty::U8 => v as u8 as i64,
        Ty::U16 => v as u16 as i64,
        Ty::U32 => v as u32 as i64,
        _ => v,
    }
}

// Method names follow the operations (`a.add(b)`), which chain better in long formulas than the
// std::ops traits would (those need the traits in scope everywhere and take no `Rc` tricks).
#[allow(clippy::should_implement_trait)]
impl Expr {
    /// An integer (or Bool) literal of type `ty`.
    pub fn int(ty: Ty, v: i64) -> Expr {
        assert!(!ty.is_float(), "int literal of float type {ty:?}");
        mk(ty, ExprKind::Lit(Lit::Int(wrap(v, ty))))
    }
    /// An I64 literal (indices).
    pub fn idx(v: i64) -> Expr {
        Expr::int(Ty::I64, v)
    }
    pub fn bool(v: bool) -> Expr {
        Expr::int(Ty::Bool, v as i64)
    }
    pub fn f32(v: f32) -> Expr {
        mk(Ty::F32, ExprKind::Lit(Lit::F32(v)))
    }
    pub fn f64(v: f64) -> Expr {
        mk(Ty::F64, ExprKind::Lit(Lit::F64(v)))
    }
    /// A float literal of float type `ty`, or an integer literal (truncated) of an integer type.
    pub fn lit(ty: Ty, v: f64) -> Expr {
        match ty {
            Ty::F32 => Expr::f32(v as f32),
            Ty::F64 => Expr::f64(v),
            Ty::U64 => Expr::int(ty, v as u64 as i64),
            _ => Expr::int(ty, v as i64),
        }
    }
    pub fn var(v: VarId, ty: Ty) -> Expr {
        mk(ty, ExprKind::Var(v))
    }

    /// The integer value of a literal.
    pub fn as_int(&self) -> Option<i64> {
        match &*self.kind {
            ExprKind::Lit(Lit::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn unary(op: UnOp, a: Expr) -> Expr {
        if op == UnOp::Not && a.ty == Ty::Bool {
            return a.cmp(CmpOp::Eq, Expr::bool(false));
        }
        mk(a.ty, ExprKind::Unary(op, a))
    }

    pub fn binary(op: BinOp, a: Expr, b: Expr) -> Expr {
        assert_eq!(a.ty, b.ty, "{op:?} of {:?} and {:?}", a.ty, b.ty);
        let ty = a.ty;
        if let (Some(x), Some(y)) = (a.as_int(), b.as_int())
            && ty.is_signed()
            && ty == Ty::I64
        {
            let folded = match op {
                BinOp::Add => Some(x.wrapping_add(y)),
                BinOp::Sub => Some(x.wrapping_sub(y)),
                BinOp::Mul => Some(x.wrapping_mul(y)),
                BinOp::Div if y != 0 => Some(x.wrapping_div(y)),
                BinOp::Rem if y != 0 => Some(x.wrapping_rem(y)),
                BinOp::Min => Some(x.min(y)),
                BinOp::Max => Some(x.max(y)),
                _ => None,
            };
            if let Some(v) = folded {
                return Expr::int(ty, v);
            }
        }
        if ty.is_int() {
            match (op, a.as_int(), b.as_int()) {
                (BinOp::Add, Some(0), _) | (BinOp::Mul, Some(1), _) => return b,
                (BinOp::Add | BinOp::Sub, _, Some(0))
                | (BinOp::Mul | BinOp::Div, _, Some(1))
                | (BinOp::Shl | BinOp::Shr, _, Some(0)) => return a,
                (BinOp::Mul, Some(0), _) | (BinOp::Mul, _, Some(0)) => return Expr::int(ty, 0),
                _ => {}
            }
        }
        mk(ty, ExprKind::Binary(op, a, b))
    }

    pub fn cmp(self, op: CmpOp, b: Expr) -> Expr {
        assert_eq!(self.ty, b.ty, "{op:?} of {:?} and {:?}", self.ty, b.ty);
        mk(Ty::Bool, ExprKind::Cmp(op, self, b))
    }

    /// `if cond { a } else { b }`.
    pub fn select(cond: Expr, a: Expr, b: Expr) -> Expr {
        assert_eq!(cond.ty, Ty::Bool, "select condition must be Bool");
        assert_eq!(a.ty, b.ty, "select arms {:?} and {:?}", a.ty, b.ty);
        match cond.as_int() {
            Some(0) => b,
            Some(_) => a,
            None => mk(a.ty, ExprKind::Select(cond, a, b)),
        }
    }

    /// Numeric conversion (see [`ExprKind::Cast`]).
    pub fn cast(self, ty: Ty) -> Expr {
        if self.ty == ty {
            return self;
        }
        if let Some(v) = self.as_int()
            && !ty.is_float()
            && self.ty != Ty::U64
        {
            return Expr::int(ty, v);
        }
        mk(ty, ExprKind::Cast(self))
    }

    /// Reinterprets the bits (same width).
    pub fn bitcast(self, ty: Ty) -> Expr {
        assert_eq!(
            self.ty.bytes(),
            ty.bytes(),
            "bitcast {:?} to {ty:?}",
            self.ty
        );
        if self.ty == ty {
            return self;
        }
        mk(ty, ExprKind::Bitcast(self))
    }

    /// A literal of this expression's type.
    pub fn same(&self, v: f64) -> Expr {
        Expr::lit(self.ty, v)
    }

    pub fn neg(self) -> Expr {
        Expr::unary(UnOp::Neg, self)
    }
    pub fn abs(self) -> Expr {
        Expr::unary(UnOp::Abs, self)
    }
    pub fn sqrt(self) -> Expr {
        Expr::unary(UnOp::Sqrt, self)
    }
    pub fn floor(self) -> Expr {
        Expr::unary(UnOp::Floor, self)
    }
    pub fn ceil(self) -> Expr {
        Expr::unary(UnOp::Ceil, self)
    }
    pub fn trunc(self) -> Expr {
        Expr::unary(UnOp::Trunc, self)
    }
    pub fn nearest(self) -> Expr {
        Expr::unary(UnOp::Nearest, self)
    }
    pub fn not(self) -> Expr {
        Expr::unary(UnOp::Not, self)
    }
    pub fn add(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Add, self, b)
    }
    pub fn sub(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Sub, self, b)
    }
    pub fn mul(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Mul, self, b)
    }
    pub fn div(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Div, self, b)
    }
    pub fn rem(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Rem, self, b)
    }
    pub fn min(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Min, self, b)
    }
    pub fn max(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Max, self, b)
    }
    pub fn and(self, b: Expr) -> Expr {
        Expr::binary(BinOp::And, self, b)
    }
    pub fn or(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Or, self, b)
    }
    pub fn xor(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Xor, self, b)
    }
    pub fn shl(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Shl, self, b)
    }
    pub fn shr(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Shr, self, b)
    }
    pub fn eq(self, b: Expr) -> Expr {
        self.cmp(CmpOp::Eq, b)
    }
    pub fn ne(self, b: Expr) -> Expr {
        self.cmp(CmpOp::Ne, b)
    }
    pub fn lt(self, b: Expr) -> Expr {
        self.cmp(CmpOp::Lt, b)
    }
    pub fn le(self, b: Expr) -> Expr {
        self.cmp(CmpOp::Le, b)
    }
    pub fn gt(self, b: Expr) -> Expr {
        self.cmp(CmpOp::Gt, b)
    }
    pub fn ge(self, b: Expr) -> Expr {
        self.cmp(CmpOp::Ge, b)
    }
    /// `self + k` for an integer literal `k` of this type.
    pub fn add_k(self, k: i64) -> Expr {
        let t = self.ty;
        self.add(Expr::int(t, k))
    }
    /// `self * k` for an integer literal `k` of this type.
    pub fn mul_k(self, k: i64) -> Expr {
        let t = self.ty;
        self.mul(Expr::int(t, k))
    }
}

/// `Σ idx[d]·strides[d]` as an I64 expression (strides in elements; 0 broadcasts).
pub fn linear(idx: &[Expr], strides: &[usize]) -> Expr {
    assert_eq!(idx.len(), strides.len());
    idx.iter().zip(strides).fold(Expr::idx(0), |acc, (i, &s)| {
        acc.add(i.clone().mul_k(s as i64))
    })
}

/// Row-major strides of `dims` (in elements).
pub fn strides_of(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * dims[d + 1];
    }
    s
}

/// Strides for reading a tensor of `dims` broadcast (numpy rules, right-aligned) to `out_rank`
/// dimensions: 0 where the tensor's dim is 1 or absent.
pub fn broadcast_strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides_of(dims);
    let lead = out.len() - dims.len();
    (0..out.len())
        .map(|d| {
            if d < lead || dims[d - lead] == 1 && out[d] != 1 {
                0
            } else {
                own[d - lead]
            }
        })
        .collect()
}
