//! Conversions between a dtype's stored bits and its compute type, written in the loop language
//! so they become inline integer code on every ISA (Cranelift's f16 conversions are not supported
//! on x86 or AArch64 and would otherwise be libcalls).
//!
//! - f16 ↔ f32 and bf16 ↔ f32: exact decode; encode rounds to nearest, ties to even, NaN stays
//!   NaN (quiet), overflow becomes infinity — what `half::f16::from_f32` does, which the
//!   interpreter uses.
//! - float8 / float4 decode through a 256- (or 16-) entry f32 table in read-only data, built from
//!   `shrink_ir::narrow::decode` so it agrees with the interpreter bit for bit.
use super::builder::Builder;
use super::ir::{Expr, Ty};
use shrink_ir::DType;

fn u32k(v: u32) -> Expr {
    Expr::int(Ty::U32, v as i64)
}

/// The compute-type value of a raw stored element `raw` of dtype `d`.
pub fn decode(b: &mut Builder, d: DType, raw: Expr) -> Expr {
    match d {
        DType::F16 => {
            let h = b.let_(raw.cast(Ty::U32));
            f16_bits_to_f32(b, h)
        }
        DType::BF16 => raw.cast(Ty::U32).shl(u32k(16)).bitcast(Ty::F32),
        _ if d.is_narrow_float() => {
            let n = if d == DType::F4E2M1 { 16 } else { 256 };
            let values: Vec<f32> = (0..n)
                .map(|bits| shrink_ir::narrow::decode(d, bits as u8))
                .collect();
            let table = b.table_f32(&values);
            let index = raw.and(Expr::int(Ty::U8, n as i64 - 1)).cast(Ty::I64);
            b.load_raw(&table, index)
        }
        _ => raw,
    }
}

/// The raw stored element of dtype `d` for compute value `value`. Narrow floats saturate when
/// `saturate` (ONNX Cast's default).
pub fn encode(b: &mut Builder, d: DType, value: Expr, saturate: bool) -> Expr {
    match d {
        DType::F16 => {
            let x = b.let_(value.cast(Ty::F32));
            f32_to_f16_bits(b, x)
        }
        DType::BF16 => {
            let x = value.cast(Ty::F32);
            let bits = b.let_(x.bitcast(Ty::U32));
            let is_nan = b.let_(bits.clone().and(u32k(0x7fff_ffff)).gt(u32k(0x7f80_0000)));
            let odd = bits.clone().shr(u32k(16)).and(u32k(1));
            let rounded = bits.clone().add(u32k(0x7fff)).add(odd).shr(u32k(16));
            let quiet = bits.shr(u32k(16)).or(u32k(0x40));
            Expr::select(is_nan, quiet, rounded).cast(Ty::U16)
        }
        _ if d.is_narrow_float() => {
            let _ = saturate;
            b.unsupported(format!("storing {d} values"));
            Expr::int(Ty::U8, 0)
        }
        _ => value,
    }
}

/// f16 bits (as U32) to f32.
pub fn f16_bits_to_f32(b: &mut Builder, h: Expr) -> Expr {
    let sign = b.let_(h.clone().and(u32k(0x8000)).shl(u32k(16)));
    let exp = b.let_(h.clone().shr(u32k(10)).and(u32k(0x1f)));
    let man = b.let_(h.and(u32k(0x3ff)));
    let normal = sign
        .clone()
        .or(exp.clone().add(u32k(112)).shl(u32k(23)))
        .or(man.clone().shl(u32k(13)));
    let special = sign
        .clone()
        .or(u32k(0x7f80_0000))
        .or(man.clone().shl(u32k(13)));
    // Zero and subnormals: man · 2^-24 is exact in f32.
    let tiny = man
        .clone()
        .cast(Ty::F32)
        .mul(Expr::f32(f32::from_bits(0x3380_0000)))
        .bitcast(Ty::U32)
        .or(sign);
    let bits = Expr::select(
        exp.clone().eq(u32k(0)),
        tiny,
        Expr::select(exp.eq(u32k(31)), special, normal),
    );
    bits.bitcast(Ty::F32)
}

/// f32 to f16 bits (U16), round to nearest even.
pub fn f32_to_f16_bits(b: &mut Builder, x: Expr) -> Expr {
    let bits = b.let_(x.clone().bitcast(Ty::U32));
    let sign = b.let_(bits.clone().shr(u32k(16)).and(u32k(0x8000)));
    let a = b.let_(bits.and(u32k(0x7fff_ffff)));
    let nan = sign
        .clone()
        .or(u32k(0x7e00))
        .or(a.clone().shr(u32k(13)).and(u32k(0x1ff)));
    let inf = sign.clone().or(u32k(0x7c00));
    // Below 2^-14: adding 0.5 makes the FPU round |x| to a multiple of 2^-24 (ties to even).
    let sub = x
        .abs()
        .add(Expr::f32(0.5))
        .bitcast(Ty::U32)
        .sub(u32k(0x3f00_0000))
        .or(sign.clone());
    let odd = a.clone().shr(u32k(13)).and(u32k(1));
    let normal = a
        .clone()
        .add(u32k(0xc800_0fff))
        .add(odd)
        .shr(u32k(13))
        .or(sign);
    let r = Expr::select(
        a.clone().gt(u32k(0x7f80_0000)),
        nan,
        Expr::select(
            a.clone().ge(u32k(0x477f_f000)),
            inf,
            Expr::select(a.lt(u32k(0x3880_0000)), sub, normal),
        ),
    );
    r.cast(Ty::U16)
}
