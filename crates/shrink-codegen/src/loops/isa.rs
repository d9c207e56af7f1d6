//! What code generation needs to know of the target ISA ([`IsaFacts`], copied out of Cranelift's
//! `TargetIsa` flags: SIMD, rounding, VNNI, the widest x86 vector the machine-code pieces may
//! use) and the signatures generated functions share.
use cranelift_codegen::ir::{AbiParam, Signature, Type, types};
use cranelift_codegen::isa::TargetIsa;

/// What the emitter needs to know of the target ISA (copied out, so the module stays free to
/// be borrowed mutably while functions are built).
#[derive(Clone, Copy)]
pub struct IsaFacts {
    pub pointer: Type,
    pub call_conv: cranelift_codegen::isa::CallConv,
    pub frontend: cranelift_codegen::isa::TargetFrontendConfig,
    /// Native floor/ceil/trunc/nearest (else they are emulated, never libcalls).
    pub has_round: bool,
    /// 128-bit SIMD is available: innermost contiguous loops get a vector main loop
    /// ([`super::vectorize`]). Always on x86-64 and AArch64; on RISC-V only with the V extension
    /// (without it Cranelift panics on any vector type).
    pub simd: bool,
    /// x86-64: its scalar and vector `fmin`/`fmax` lowerings make different NaN bits, which the
    /// vectorizer evens out.
    pub x86: bool,
    /// x86-64 with a VNNI dot product on 128-bit vectors (AVX-VNNI, or AVX-512 VNNI with VL):
    /// native kernels then shape their integer dot products as the tree Cranelift lowers to
    /// `vpdpbusd`.
    pub vnni: bool,
    /// A native fused multiply-add (scalar and 128-bit vectors): float kernels use `fma` only
    /// then, since without it Cranelift calls `fmaf` (an import).
    pub fma: bool,
    /// Native byte shuffles (`pshufb`/`tbl`/`vrgather`): everywhere but x86 without SSSE3.
    pub shuffle: bool,
    /// x86-64 vectors wider than Cranelift's 128 bits that native pieces may use through machine
    /// code of their own ([`NativeCx::call_machine`]); None elsewhere.
    pub wide: Option<Wide>,
    /// The same for float kernels (fused multiply-adds): `Zmm` with AVX-512 F, `YmmVex` with AVX2
    /// and FMA3; None elsewhere.
    pub float_wide: Option<Wide>,
}

/// The widest integer dot-product vectors of an x86-64 target, and their encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wide {
    /// 512-bit EVEX: AVX-512 F and VNNI (32 registers).
    Zmm,
    /// 256-bit EVEX: AVX-512 VNNI and VL (32 registers; Zen 4 has no AVX-VNNI).
    YmmEvex,
    /// 256-bit VEX: AVX-VNNI and AVX2 (16 registers).
    YmmVex,
    /// 256-bit VEX without a VNNI dot product: AVX2's `vpmaddubsw` + `vpmaddwd` in its place
    /// (16 registers; every x86-64-v3 CPU).
    Avx2,
}

impl IsaFacts {
    pub fn of(isa: &dyn TargetIsa) -> IsaFacts {
        IsaFacts {
            pointer: isa.pointer_type(),
            call_conv: isa.default_call_conv(),
            frontend: isa.frontend_config(),
            has_round: isa.has_round(),
            simd: simd_of(isa),
            x86: isa.name() == "x64",
            vnni: vnni_of(isa),
            fma: isa.has_native_fma(),
            shuffle: isa.name() != "x64" || isa_flag(isa, "has_ssse3"),
            wide: wide_of(isa),
            float_wide: float_wide_of(isa),
        }
    }
}

fn isa_flag(isa: &dyn TargetIsa, name: &str) -> bool {
    isa.isa_flags()
        .iter()
        .any(|f| f.name == name && f.as_bool() == Some(true))
}

/// Every instruction the wide kernels use, by CPUID feature: VEX forms (`vpand`, `vpaddd`,
/// `vextracti128`, `vpshufd`, `vmovd`, `vpbroadcastd` from xmm) need AVX and AVX2; the zmm forms
/// (`vpandd`, `vpxord`, `vpsrld`, `vpsrad`, `vpaddd`, `vextracti64x4`, `vpbroadcastd` from a
/// GPR) need AVX-512 F, `vpdpbusd` zmm AVX-512 VNNI; the EVEX ymm forms add AVX-512 VL; VEX
/// `vpdpbusd` ymm is AVX-VNNI; without it `vpmaddubsw` and `vpmaddwd` (AVX2) take its place.
/// The EVEX kernels use no byte or word instruction, so AVX-512 BW is not needed.
fn wide_of(isa: &dyn TargetIsa) -> Option<Wide> {
    let on = |name: &str| isa_flag(isa, name);
    if isa.name() != "x64" || !(on("has_avx") && on("has_avx2")) {
        return None;
    }
    if on("has_avx512f") && on("has_avx512vnni") {
        Some(Wide::Zmm)
    } else if on("has_avx512vnni") && on("has_avx512vl") {
        Some(Wide::YmmEvex)
    } else if on("has_avx_vnni") {
        Some(Wide::YmmVex)
    } else {
        Some(Wide::Avx2)
    }
}

/// The float kernels' `vfmadd231ps`, `vbroadcastss`, `vmovups` and `vpxord` on zmm are all
/// AVX-512 F; their ymm VEX forms (`vxorps` for zeroing) are AVX with FMA3 for the multiply-add
/// (AVX2 asked too, as the x86-64-v3 level has both: the ymm path is for v3 and newer).
fn float_wide_of(isa: &dyn TargetIsa) -> Option<Wide> {
    let on = |name: &str| isa_flag(isa, name);
    if isa.name() != "x64" || !on("has_avx") {
        None
    } else if on("has_avx512f") {
        Some(Wide::Zmm)
    } else if on("has_avx2") && on("has_fma") {
        Some(Wide::YmmVex)
    } else {
        None
    }
}

/// The signature of [`MachineCode`] with `args` pointer arguments: System V (the register
/// convention of x86-64 Linux and macOS), no result.
pub fn machine_signature(pointer: Type, args: usize) -> Signature {
    let mut sig = Signature::new(cranelift_codegen::isa::CallConv::SystemV);
    for _ in 0..args {
        sig.params.push(AbiParam::new(pointer));
    }
    sig
}

fn vnni_of(isa: &dyn TargetIsa) -> bool {
    let on = |name: &str| isa_flag(isa, name);
    isa.name() == "x64"
        && on("has_avx")
        && (on("has_avx_vnni") || (on("has_avx512vnni") && on("has_avx512vl")))
}

fn simd_of(isa: &dyn TargetIsa) -> bool {
    match isa.name() {
        "x64" | "aarch64" => true,
        "riscv64" => isa
            .isa_flags()
            .iter()
            .any(|f| f.name == "has_v" && f.as_bool() == Some(true)),
        _ => false,
    }
}

/// The kernel ABI signature: three pointers in, an i32 status out.
pub fn kernel_signature(isa: &IsaFacts) -> Signature {
    let mut sig = Signature::new(isa.call_conv);
    let ptr = isa.pointer;
    for _ in 0..3 {
        sig.params.push(AbiParam::new(ptr));
    }
    sig.returns.push(AbiParam::new(types::I32));
    sig
}
