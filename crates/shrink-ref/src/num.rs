//! Element arithmetic for the interpreter: the `Num` trait over every numeric storage type, and
//! the `dispatch_*!` macros that instantiate generic op code for a runtime dtype.
//!
//! Integer arithmetic wraps (two's complement, as ONNX Runtime and numpy do); float arithmetic is
//! done in the type itself for f32/f64 and through f32 for f16/bf16 (numpy's behaviour), rounding
//! once per op.
use half::{bf16, f16};
use shrink_ir::Element;
use std::fmt::Debug;

/// A numeric element type (every dtype except bool and the bit-pattern formats).
pub trait Num: Element + PartialOrd + Debug + Default {
    const IS_FLOAT: bool;
    const IS_SIGNED: bool;
    fn to_f64(self) -> f64;
    /// From f64: floats round to nearest; integers truncate toward zero and saturate (NaN → 0).
    fn from_f64(v: f64) -> Self;
    /// Exact for integers up to 64 bits (u64 wraps into i64's range for values ≥ 2^63).
    fn to_i64(self) -> i64;
    /// Wrapping conversion from i64 (two's complement truncation for integers).
    fn from_i64(v: i64) -> Self;
    fn zero() -> Self;
    fn one() -> Self;
    fn min_value() -> Self;
    fn max_value() -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Division; integers truncate toward zero and `None` means division by zero.
    fn div(self, o: Self) -> Option<Self>;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! int_num {
    ($($t:ty, $signed:expr);* $(;)?) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = false;
            const IS_SIGNED: bool = $signed;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            fn from_i64(v: i64) -> Self { v as $t }
            fn zero() -> Self { 0 }
            fn one() -> Self { 1 }
            fn min_value() -> Self { <$t>::MIN }
            fn max_value() -> Self { <$t>::MAX }
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Option<Self> { if o == 0 { None } else { Some(self.wrapping_div(o)) } }
            fn neg(self) -> Self { (0 as $t).wrapping_sub(self) }
            #[allow(unused_comparisons)]
            fn abs(self) -> Self { if self < 0 { self.neg() } else { self } }
            fn is_nan(self) -> bool { false }
        }
    )*};
}
int_num!(u8, false; i8, true; u16, false; i16, true; u32, false; i32, true; u64, false; i64, true);

macro_rules! float_num {
    ($($t:ty);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            const IS_SIGNED: bool = true;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            fn from_i64(v: i64) -> Self { v as $t }
            fn zero() -> Self { 0.0 }
            fn one() -> Self { 1.0 }
            fn min_value() -> Self { <$t>::NEG_INFINITY }
            fn max_value() -> Self { <$t>::INFINITY }
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Option<Self> { Some(self / o) }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { <$t>::abs(self) }
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    )*};
}
float_num!(f32; f64);

macro_rules! half_num {
    ($($t:ty);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            const IS_SIGNED: bool = true;
            fn to_f64(self) -> f64 { <$t>::to_f64(self) }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn to_i64(self) -> i64 { <$t>::to_f64(self) as i64 }
            fn from_i64(v: i64) -> Self { <$t>::from_f64(v as f64) }
            fn zero() -> Self { <$t>::ZERO }
            fn one() -> Self { <$t>::ONE }
            fn min_value() -> Self { <$t>::NEG_INFINITY }
            fn max_value() -> Self { <$t>::INFINITY }
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn sub(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() - o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn div(self, o: Self) -> Option<Self> { Some(<$t>::from_f32(self.to_f32() / o.to_f32())) }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { <$t>::from_f32(self.to_f32().abs()) }
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    )*};
}
half_num!(f16; bf16);

/// Runs `$body` with `$T` bound to the storage type of `$dt` for every numeric dtype
/// (f16, bf16, f32, f64, all 8–64-bit integers); evaluates `$other` for any other dtype.
#[macro_export]
macro_rules! dispatch_num {
    ($dt:expr, $T:ident => $body:expr, else $other:expr) => {{
        use shrink_ir::DType as __D;
        match $dt {
            __D::F32 => {
                type $T = f32;
                $body
            }
            __D::F64 => {
                type $T = f64;
                $body
            }
            __D::F16 => {
                type $T = half::f16;
                $body
            }
            __D::BF16 => {
                type $T = half::bf16;
                $body
            }
            __D::I8 => {
                type $T = i8;
                $body
            }
            __D::U8 => {
                type $T = u8;
                $body
            }
            __D::I16 => {
                type $T = i16;
                $body
            }
            __D::U16 => {
                type $T = u16;
                $body
            }
            __D::I32 => {
                type $T = i32;
                $body
            }
            __D::U32 => {
                type $T = u32;
                $body
            }
            __D::I64 => {
                type $T = i64;
                $body
            }
            __D::U64 => {
                type $T = u64;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    }};
}

/// Like [`dispatch_num!`] but only for f16, bf16, f32 and f64.
#[macro_export]
macro_rules! dispatch_float {
    ($dt:expr, $T:ident => $body:expr, else $other:expr) => {{
        use shrink_ir::DType as __D;
        match $dt {
            __D::F32 => {
                type $T = f32;
                $body
            }
            __D::F64 => {
                type $T = f64;
                $body
            }
            __D::F16 => {
                type $T = half::f16;
                $body
            }
            __D::BF16 => {
                type $T = half::bf16;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    }};
}

/// Like [`dispatch_num!`] plus `bool` and the one-byte bit-pattern dtypes (as `u8`): for ops
/// that only move elements (Reshape, Gather, Concat, Transpose, ...).
#[macro_export]
macro_rules! dispatch_any {
    ($dt:expr, $T:ident => $body:expr) => {{
        use shrink_ir::DType as __D;
        match $dt {
            __D::F32 => {
                type $T = f32;
                $body
            }
            __D::F64 => {
                type $T = f64;
                $body
            }
            __D::F16 => {
                type $T = half::f16;
                $body
            }
            __D::BF16 => {
                type $T = half::bf16;
                $body
            }
            __D::I16 => {
                type $T = i16;
                $body
            }
            __D::U16 => {
                type $T = u16;
                $body
            }
            __D::I32 => {
                type $T = i32;
                $body
            }
            __D::U32 => {
                type $T = u32;
                $body
            }
            __D::I64 => {
                type $T = i64;
                $body
            }
            __D::U64 => {
                type $T = u64;
                $body
            }
            __D::Bool => {
                type $T = bool;
                $body
            }
            _ => {
                type $T = u8;
                $body
            }
        }
    }};
}
