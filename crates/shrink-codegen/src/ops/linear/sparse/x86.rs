//! The sparse kernel as x86-64 machine code, assembled with iced-x86 for one layer's static
//! shape and called once from the kernel ([`crate::loops::ir::NativeCx::call_machine`]): AVX-512
//! F (zmm, 32 registers) where the CPU has it, else AVX2 with FMA3 (ymm, VEX, 16 registers).
//!
//! It computes what the 128-bit IR does — each column one sequential multiply-add chain over
//! its chunks — so its sums are bit-identical to it. Batch 1: per chunk `vpmovzxwd` (or a load
//! of u32 indices), `vgatherdps` of the 16 activations (two of 8 in ymm; the destination zeroed
//! first, so no gather waits on the previous one), one `vfmadd231ps` with the values from memory
//! into the block's accumulator (two in ymm). Batch ≥ 2: x is copied transposed into
//! `xT[pass][k][width]` (zmm: one masked `vgatherdps` per `k` step; ymm: a scalar move per
//! element; rows past the batch zero); per chunk and lane, the index (`movzx`, `shl`: to a byte
//! offset of xT's rows), `vbroadcastss` of the weight and `vfmadd231ps` of xT's row into that
//! lane's column accumulator (a 16-row pass in ymm: two accumulators per lane, four sweeps of 4
//! lanes); a pass's sums are stored per column, its rows contiguous. The finiteness flags are
//! `Σ (x − x)` over the row (batch 1) or over xT (a lane per row), in four chains.
//!
//! Split across threads, each part's code covers its window of blocks (the tables' pointers
//! start at its first block), transposes x into its own xT, and only part 0 writes the flags.
//!
//! Arguments (System V): rdi = x, rsi = the indices, rdx = the values, rcx = the chunk counts
//! (u32 per block), r8 = the workspace (CT, flags, xT). rax, r9, r10, r11 are the scratch
//! registers; only caller-saved registers are used, nothing touches the stack, `vzeroupper`
//! precedes `ret`. Every address is in range by construction: rows `< rows`, `k` steps `< k`,
//! indices `< k` (the layout's), chunks within the tables, CT slots `< blocks · 16 · m_pad`.
use super::{Geometry, LANES, machine_fits};
use crate::loops::ir::MachineCode;
use crate::loops::native::x86_listing;
use crate::loops::native::{xmm, ymm, zmm};
use iced_x86::IcedError;
use iced_x86::code_asm::asm_traits::{CodeAsmVaddps, CodeAsmVsubps};
use iced_x86::code_asm::*;

type R = Result<(), IcedError>;

/// The vectors a flag step reads.
#[derive(Clone, Copy)]
enum Flags {
    Zmm,
    /// zmm with only mask k1's lanes loaded (the rest zero).
    ZmmMasked,
    Ymm,
}

/// `acc += t − t` in any vector width: NaN lanes where `t` is infinite or NaN.
fn flag_term<V: Copy>(a: &mut CodeAssembler, t: V, acc: V) -> R
where
    CodeAssembler: CodeAsmVsubps<V, V, V> + CodeAsmVaddps<V, V, V>,
{
    a.vsubps(t, t, t)?;
    a.vaddps(acc, acc, t)
}

/// `v[0] = v[0] + v[1] + v[2] + v[3]` as a tree, in any vector width.
fn join_four<V: Copy>(a: &mut CodeAssembler, v: [V; 4]) -> R
where
    CodeAssembler: CodeAsmVaddps<V, V, V>,
{
    a.vaddps(v[0], v[0], v[1])?;
    a.vaddps(v[2], v[2], v[3])?;
    a.vaddps(v[0], v[0], v[2])
}

/// The machine code of the kernel of `g` in zmm (else ymm), with its listing; None when `g` is
/// beyond what it addresses ([`machine_fits`]).
pub(super) fn kernel(g: &Geometry, fuse: bool, zmm: bool) -> Option<MachineCode> {
    if !machine_fits(g) {
        return None;
    }
    let bytes = assemble(g, fuse, zmm).expect("the sparse kernel assembles");
    Some(MachineCode {
        name: "f32 sparse product",
        listing: x86_listing(&bytes),
        bytes,
        args: 5,
    })
}

/// A byte count as a displacement or immediate (in range: see [`machine_fits`]).
fn disp(bytes: usize) -> i32 {
    bytes as i32
}

struct Asm<'a> {
    a: CodeAssembler,
    g: &'a Geometry,
    fuse: bool,
    /// AVX-512 (zmm, EVEX); else AVX2 (ymm, VEX).
    zmm: bool,
}

fn assemble(g: &Geometry, fuse: bool, zmm: bool) -> Result<Vec<u8>, IcedError> {
    let mut m = Asm {
        a: CodeAssembler::new(64)?,
        g,
        fuse,
        zmm,
    };
    m.a.set_prefer_vex(!zmm);
    // A part starts at its window's first block of the tables (64-bit offsets).
    let (before, _) = g.window_chunks();
    for (reg, bytes) in [
        (rsi, before * LANES * g.idx_bytes),
        (rdx, before * LANES * 4),
        (rcx, 4 * g.first),
    ] {
        if bytes > 0 {
            m.a.mov(rax, bytes as u64)?;
            m.a.add(reg, rax)?;
        }
    }
    // Only part 0 writes the flags (every part's xT holds the same rows).
    let flags = g.part == 0;
    if g.rows == 1 && zmm {
        if flags {
            m.row_flag(Flags::Zmm)?;
        }
        m.gathers()?;
    } else if g.rows == 1 {
        if flags {
            m.row_flag(Flags::Ymm)?;
        }
        m.gathers_ymm()?;
    } else {
        for q in 0..g.passes() {
            if zmm {
                m.transpose(q)?;
            } else {
                m.transpose_scalar(q)?;
            }
            match (flags, zmm) {
                (false, _) => {}
                (true, true) => m.pass_flags(q)?,
                (true, false) => m.pass_flags_ymm(q)?,
            }
        }
        for q in 0..g.passes() {
            m.broadcasts(q)?;
        }
    }
    m.a.vzeroupper()?;
    m.a.ret()?;
    m.a.assemble(0)
}

impl Asm<'_> {
    /// `r = r + imm` (any 32-bit immediate).
    fn add_imm(&mut self, r: AsmRegister64, imm: usize) -> R {
        if imm != 0 {
            self.a.add(r, disp(imm))?;
        }
        Ok(())
    }

    /// A counted loop of `n` iterations on r10 (nothing when `n == 0`).
    fn times(&mut self, n: usize, counter: AsmRegister64, body: impl Fn(&mut Self) -> R) -> R {
        if n == 0 {
            return Ok(());
        }
        self.a.mov(counter, n as u64)?;
        let mut top = self.a.create_label();
        self.a.set_label(&mut top)?;
        body(self)?;
        self.a.dec(counter)?;
        self.a.jne(top)
    }

    /// `acc += x − x` for the vector at `at`: 16 floats (`Flags::ZmmMasked`: only k1's lanes)
    /// or 8 (`Flags::Ymm`).
    fn flag_step(&mut self, acc: usize, at: AsmMemoryOperand, v: Flags) -> R {
        match v {
            Flags::Zmm => self.a.vmovups(zmm(4), at)?,
            Flags::ZmmMasked => self.a.vmovups(zmm(4).k1().z(), at)?,
            Flags::Ymm => {
                self.a.vmovups(ymm(4), at)?;
                return flag_term(&mut self.a, ymm(4), ymm(acc));
            }
        }
        flag_term(&mut self.a, zmm(4), zmm(acc))
    }

    /// Vector 0 = the sum of vectors 0–3 (the four flag chains), in zmm or ymm.
    fn join_flags(&mut self, v: Flags) -> R {
        match v {
            Flags::Ymm => join_four(&mut self.a, [0, 1, 2, 3].map(ymm)),
            _ => join_four(&mut self.a, [0, 1, 2, 3].map(zmm)),
        }
    }

    /// Four chains of `acc += x − x` (vectors 0–3) over the `floats` floats at rax: vectors
    /// of 16 (zmm) or 8 (ymm) in turn, the tail into chain 3 (zmm: a k1-masked load; ymm: one
    /// xmm of 4, then single floats, each load zeroing the lanes above it, which add 0).
    fn flag_chains(&mut self, floats: usize, v: Flags) -> R {
        let lanes = if matches!(v, Flags::Ymm) { 8 } else { LANES };
        let bytes = 4 * lanes as i32;
        let at = |c: usize| disp(bytes as usize * c);
        for r in 0..4 {
            match v {
                Flags::Ymm => self.a.vxorps(ymm(r), ymm(r), ymm(r))?,
                _ => self.a.vpxord(zmm(r), zmm(r), zmm(r))?,
            }
        }
        let (vectors, rest) = (floats / lanes, floats % lanes);
        let memory = |c: usize| match v {
            Flags::Ymm => ymmword_ptr(rax + at(c)),
            _ => zmmword_ptr(rax + at(c)),
        };
        self.times(vectors / 4, r10, |m| {
            for c in 0..4 {
                m.flag_step(c, memory(c), v)?;
            }
            m.a.add(rax, 4 * bytes)
        })?;
        let single = vectors % 4;
        for c in 0..single {
            self.flag_step(c, memory(c), v)?;
        }
        if rest == 0 {
            return Ok(());
        }
        if !matches!(v, Flags::Ymm) {
            self.a.mov(r10d, (1u32 << rest) - 1)?;
            self.a.kmovw(k1, r10d)?;
            return self.flag_step(3, memory(single), Flags::ZmmMasked);
        }
        let tail = 4 * (8 * single);
        if rest >= 4 {
            self.a.vmovups(xmm(4), xmmword_ptr(rax + disp(tail)))?;
            flag_term(&mut self.a, ymm(4), ymm(3))?;
        }
        for i in 4 * (rest / 4)..rest {
            self.a.vmovss(xmm(4), dword_ptr(rax + disp(tail + 4 * i)))?;
            flag_term(&mut self.a, ymm(4), ymm(3))?;
        }
        Ok(())
    }

    /// Batch 1: the flag of x's one row, as 0 or a NaN's bits.
    fn row_flag(&mut self, v: Flags) -> R {
        let g = self.g;
        self.a.mov(rax, rdi)?;
        self.flag_chains(g.k, v)?;
        self.join_flags(v)?;
        // Any NaN lane → the flag is a quiet NaN's bits, else +0.
        if matches!(v, Flags::Ymm) {
            self.a.vcmpps(ymm(0), ymm(0), ymm(0), 3)?;
            self.a.vmovmskps(eax, ymm(0))?;
        } else {
            self.a.vcmpps(k2, zmm(0), zmm(0), 3)?;
            self.a.kmovw(eax, k2)?;
        }
        self.a.neg(eax)?;
        self.a.sbb(eax, eax)?;
        self.a.and(eax, 0x7fc0_0000)?;
        self.a.mov(dword_ptr(r8 + disp(4 * g.flags_at)), eax)
    }

    /// Batch 1: every block's sums, one gather and multiply-add per chunk.
    fn gathers(&mut self) -> R {
        let g = self.g;
        let ib = g.idx_bytes;
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * g.first * LANES)?;
        self.times(g.window_blocks(), r10, |m| {
            m.a.vpxord(zmm(0), zmm(0), zmm(0))?;
            m.a.mov(r11d, dword_ptr(rcx))?;
            let mut store = m.a.create_label();
            m.a.test(r11d, r11d)?;
            m.a.je(store)?;
            let mut chunk = m.a.create_label();
            m.a.set_label(&mut chunk)?;
            if ib == 2 {
                m.a.vpmovzxwd(zmm(1), ymmword_ptr(rsi))?;
            } else {
                m.a.vmovdqu32(zmm(1), zmmword_ptr(rsi))?;
            }
            m.a.kxnorw(k1, k1, k1)?;
            m.a.vpxord(zmm(2), zmm(2), zmm(2))?;
            m.a.vgatherdps(zmm(2).k1(), ptr(rdi + zmm(1) * 4))?;
            if m.fuse {
                m.a.vfmadd231ps(zmm(0), zmm(2), zmmword_ptr(rdx))?;
            } else {
                m.a.vmulps(zmm(3), zmm(2), zmmword_ptr(rdx))?;
                m.a.vaddps(zmm(0), zmm(0), zmm(3))?;
            }
            m.a.add(rsi, disp(LANES * ib))?;
            m.a.add(rdx, disp(LANES * 4))?;
            m.a.dec(r11d)?;
            m.a.jne(chunk)?;
            m.a.set_label(&mut store)?;
            m.a.vmovups(zmmword_ptr(r9), zmm(0))?;
            m.a.add(r9, disp(64))?;
            m.a.add(rcx, 4)
        })
    }

    /// Pass `q` of x copied transposed into xT: per `k` step one masked `vgatherdps` of the
    /// pass's rows (the lanes past the batch zero) and one store of `width` floats.
    fn transpose(&mut self, q: usize) -> R {
        let g = self.g;
        let w = g.width;
        let rows = w.min(g.rows - q * w);
        // zmm5 = the rows' offsets (l · a_outer), built lane by lane.
        self.a.vpxord(zmm(5), zmm(5), zmm(5))?;
        for l in 1..rows {
            self.a.mov(eax, 1u32 << l)?;
            self.a.kmovw(k1, eax)?;
            self.a.mov(eax, (l * g.a_outer) as u32)?;
            self.a.vpbroadcastd(zmm(5).k1(), eax)?;
        }
        self.a.mov(r11d, (1u32 << rows) - 1)?;
        self.a.mov(rax, rdi)?;
        self.add_imm(rax, 4 * q * w * g.a_outer)?;
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * (g.xt_of_part() + q * g.k * w))?;
        self.times(g.k, r10, |m| {
            m.a.kmovw(k1, r11d)?;
            m.a.vpxord(zmm(0), zmm(0), zmm(0))?;
            m.a.vgatherdps(zmm(0).k1(), ptr(rax + zmm(5) * 4))?;
            match w {
                4 => m.a.vmovups(xmmword_ptr(r9), xmm0)?,
                8 => m.a.vmovups(ymmword_ptr(r9), ymm0)?,
                _ => m.a.vmovups(zmmword_ptr(r9), zmm(0))?,
            }
            m.add_imm(rax, 4 * m.g.a_inner)?;
            m.a.add(r9, disp(4 * w))
        })
    }

    /// The flags of pass `q`'s rows, from its xT rows (`k · width` floats): four chains of
    /// zmm sums, folded to `width` lanes (lane `i` of a zmm holds row `i mod width`).
    fn pass_flags(&mut self, q: usize) -> R {
        let g = self.g;
        let w = g.width;
        self.a.mov(rax, r8)?;
        self.add_imm(rax, 4 * (g.xt_of_part() + q * g.k * w))?;
        self.flag_chains(g.k * w, Flags::Zmm)?;
        self.join_flags(Flags::Zmm)?;
        let at = 4 * (g.flags_at + q * w);
        if w <= 8 {
            self.a.vextractf64x4(ymm1, zmm(0), 1)?;
            self.a.vaddps(ymm0, ymm0, ymm1)?;
        }
        if w == 4 {
            self.a.vextractf128(xmm1, ymm0, 1)?;
            self.a.vaddps(xmm0, xmm0, xmm1)?;
        }
        match w {
            4 => self.a.vmovups(xmmword_ptr(r8 + disp(at)), xmm0),
            8 => self.a.vmovups(ymmword_ptr(r8 + disp(at)), ymm0),
            _ => self.a.vmovups(zmmword_ptr(r8 + disp(at)), zmm(0)),
        }
    }

    /// Pass `q` at batch ≥ 2: every block's sums for the pass's rows, a broadcast weight times
    /// an xT row per nonzero. zmm rows: the 16 lanes at once (accumulators zmm0–15, weights
    /// zmm16–31). xmm/ymm rows: VEX (16 registers, no AVX-512 VL needed), so two sweeps of 8
    /// lanes over the block's chunks (accumulators 0–7, weights 8–15). 16 rows in ymm: two
    /// halves of 8 rows per lane, so four sweeps of 4 lanes (accumulators 0–7, weights 8–11,
    /// products 12–15 without fusion).
    fn broadcasts(&mut self, q: usize) -> R {
        let g = self.g;
        let (ib, w) = (g.idx_bytes, g.width);
        let (_, total) = g.window_chunks();
        let (sweeps, lanes, halves) = match (w, self.zmm) {
            (LANES, true) => (1, LANES, 1),
            (LANES, false) => (4, 4, 2),
            _ => (2, 8, 1),
        };
        let shift = (4 * w).trailing_zeros();
        self.a.mov(rdi, r8)?;
        self.add_imm(rdi, 4 * (g.xt_of_part() + q * g.k * w))?;
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * (q * w + g.first * LANES * g.m_pad))?;
        self.times(g.window_blocks(), r10, |m| {
            for s in 0..sweeps {
                for r in 0..lanes * halves {
                    m.zero(r)?;
                }
                m.a.mov(r11d, dword_ptr(rcx))?;
                let mut store = m.a.create_label();
                m.a.test(r11d, r11d)?;
                m.a.je(store)?;
                let mut chunk = m.a.create_label();
                m.a.set_label(&mut chunk)?;
                for l in 0..lanes {
                    let e = s * lanes + l;
                    if ib == 2 {
                        m.a.movzx(eax, word_ptr(rsi + disp(2 * e)))?;
                    } else {
                        m.a.mov(eax, dword_ptr(rsi + disp(4 * e)))?;
                    }
                    m.a.shl(eax, shift)?;
                    let t = lanes * halves + l;
                    // Unfused, the broadcast is the product's register unless two halves share it.
                    let product = if halves == 1 { t } else { t + lanes };
                    m.term(l * halves, halves, t, product, dword_ptr(rdx + disp(4 * e)))?;
                }
                m.a.add(rsi, disp(LANES * ib))?;
                m.a.add(rdx, disp(LANES * 4))?;
                m.a.dec(r11d)?;
                m.a.jne(chunk)?;
                if s + 1 < sweeps {
                    // Back to the block's first chunk for the next sweep.
                    m.a.mov(eax, dword_ptr(rcx))?;
                    m.a.imul_3(eax, eax, disp(LANES * ib))?;
                    m.a.sub(rsi, rax)?;
                    m.a.mov(eax, dword_ptr(rcx))?;
                    m.a.shl(eax, 6)?;
                    m.a.sub(rdx, rax)?;
                }
                m.a.set_label(&mut store)?;
                for l in 0..lanes {
                    for h in 0..halves {
                        let at = r9 + disp(4 * ((s * lanes + l) * m.g.m_pad + 8 * h));
                        let acc = l * halves + h;
                        match (w, m.zmm) {
                            (4, _) => m.a.vmovups(xmmword_ptr(at), xmm(acc))?,
                            (LANES, true) => m.a.vmovups(zmmword_ptr(at), zmm(acc))?,
                            _ => m.a.vmovups(ymmword_ptr(at), ymm(acc))?,
                        }
                    }
                }
            }
            m.add_imm(r9, 4 * LANES * m.g.m_pad)?;
            m.a.add(rcx, 4)
        })?;
        // Back to the tables' starts for the next pass.
        self.a.mov(rax, (total * LANES * ib) as u64)?;
        self.a.sub(rsi, rax)?;
        self.a.mov(rax, (total * LANES * 4) as u64)?;
        self.a.sub(rdx, rax)?;
        self.a.mov(rax, (4 * g.window_blocks()) as u64)?;
        self.a.sub(rcx, rax)
    }

    /// Zeroes accumulator `r` at the pass's width (a ymm per 8 rows of a 16-row pass in ymm).
    fn zero(&mut self, r: usize) -> R {
        match (self.g.width, self.zmm) {
            (4, _) => self.a.vxorps(xmm(r), xmm(r), xmm(r)),
            (LANES, true) => self.a.vpxord(zmm(r), zmm(r), zmm(r)),
            _ => self.a.vxorps(ymm(r), ymm(r), ymm(r)),
        }
    }

    /// `acc + h += broadcast(weight) · [rdi + rax + 32h]` for each of `halves` halves, at the
    /// pass's width (`t` the weight's register, `product` the unfused product's).
    fn term(
        &mut self,
        acc: usize,
        halves: usize,
        t: usize,
        product: usize,
        weight: AsmMemoryOperand,
    ) -> R {
        macro_rules! at {
            ($reg:ident, $ptr:ident) => {{
                self.a.vbroadcastss($reg(t), weight)?;
                for h in 0..halves {
                    let x = $ptr(rdi + rax + disp(32 * h));
                    if self.fuse {
                        self.a.vfmadd231ps($reg(acc + h), $reg(t), x)?;
                    } else {
                        self.a.vmulps($reg(product), $reg(t), x)?;
                        self.a.vaddps($reg(acc + h), $reg(acc + h), $reg(product))?;
                    }
                }
                Ok(())
            }};
        }
        match (self.g.width, self.zmm) {
            (4, _) => at!(xmm, xmmword_ptr),
            (LANES, true) => at!(zmm, zmmword_ptr),
            _ => at!(ymm, ymmword_ptr),
        }
    }

    /// Batch 1 in ymm: every block's sums, per chunk two gathers of 8 and two multiply-adds
    /// into the block's two accumulators (ymm0: lanes 0–7, ymm4: lanes 8–15). Each half has
    /// its own index, mask and gathered registers so the two gathers overlap.
    fn gathers_ymm(&mut self) -> R {
        let g = self.g;
        let ib = g.idx_bytes;
        // Per half: accumulator, indices, mask, gathered, product.
        const HALF: [[usize; 5]; 2] = [[0, 1, 2, 3, 5], [4, 6, 7, 8, 9]];
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * g.first * LANES)?;
        self.times(g.window_blocks(), r10, |m| {
            for [acc, ..] in HALF {
                m.a.vxorps(ymm(acc), ymm(acc), ymm(acc))?;
            }
            m.a.mov(r11d, dword_ptr(rcx))?;
            let mut store = m.a.create_label();
            m.a.test(r11d, r11d)?;
            m.a.je(store)?;
            let mut chunk = m.a.create_label();
            m.a.set_label(&mut chunk)?;
            for (h, [acc, index, mask, got, product]) in HALF.into_iter().enumerate() {
                if ib == 2 {
                    m.a.vpmovzxwd(ymm(index), xmmword_ptr(rsi + disp(16 * h)))?;
                } else {
                    m.a.vmovdqu(ymm(index), ymmword_ptr(rsi + disp(32 * h)))?;
                }
                m.a.vpcmpeqd(ymm(mask), ymm(mask), ymm(mask))?;
                m.a.vxorps(ymm(got), ymm(got), ymm(got))?;
                m.a.vgatherdps_3(ymm(got), ptr(rdi + ymm(index) * 4), ymm(mask))?;
                let values = ymmword_ptr(rdx + disp(32 * h));
                if m.fuse {
                    m.a.vfmadd231ps(ymm(acc), ymm(got), values)?;
                } else {
                    m.a.vmulps(ymm(product), ymm(got), values)?;
                    m.a.vaddps(ymm(acc), ymm(acc), ymm(product))?;
                }
            }
            m.a.add(rsi, disp(LANES * ib))?;
            m.a.add(rdx, disp(LANES * 4))?;
            m.a.dec(r11d)?;
            m.a.jne(chunk)?;
            m.a.set_label(&mut store)?;
            m.a.vmovups(ymmword_ptr(r9), ymm(0))?;
            m.a.vmovups(ymmword_ptr(r9 + 32), ymm(4))?;
            m.a.add(r9, disp(64))?;
            m.a.add(rcx, 4)
        })
    }

    /// Pass `q` of x copied transposed into xT in ymm: per `k` step one scalar move per row of
    /// the pass (a zero for the rows past the batch).
    fn transpose_scalar(&mut self, q: usize) -> R {
        let g = self.g;
        let w = g.width;
        let rows = w.min(g.rows - q * w);
        self.a.mov(rax, rdi)?;
        self.add_imm(rax, 4 * q * w * g.a_outer)?;
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * (g.xt_of_part() + q * g.k * w))?;
        self.times(g.k, r10, |m| {
            for l in 0..w {
                if l < rows {
                    m.a.mov(r11d, dword_ptr(rax + disp(4 * l * m.g.a_outer)))?;
                    m.a.mov(dword_ptr(r9 + disp(4 * l)), r11d)?;
                } else {
                    m.a.mov(dword_ptr(r9 + disp(4 * l)), 0)?;
                }
            }
            m.add_imm(rax, 4 * m.g.a_inner)?;
            m.a.add(r9, disp(4 * w))
        })
    }

    /// The flags of pass `q`'s rows in ymm, from its xT rows (`k · width` floats, a multiple
    /// of 4): four chains over consecutive vectors of 8, so at 16 rows chains 0 and 2 hold rows
    /// 0–7 and chains 1 and 3 rows 8–15; at 4 rows each half of a vector holds rows 0–3.
    fn pass_flags_ymm(&mut self, q: usize) -> R {
        let g = self.g;
        let w = g.width;
        self.a.mov(rax, r8)?;
        self.add_imm(rax, 4 * (g.xt_of_part() + q * g.k * w))?;
        // `k · width` is a multiple of 4: a tail is one xmm, rows 0–3 of a 4-row pass.
        self.flag_chains(g.k * w, Flags::Ymm)?;
        let at = 4 * (g.flags_at + q * w);
        if w == LANES {
            self.a.vaddps(ymm(0), ymm(0), ymm(2))?;
            self.a.vaddps(ymm(1), ymm(1), ymm(3))?;
            self.a.vmovups(ymmword_ptr(r8 + disp(at)), ymm(0))?;
            return self.a.vmovups(ymmword_ptr(r8 + disp(at + 32)), ymm(1));
        }
        self.join_flags(Flags::Ymm)?;
        if w == 8 {
            return self.a.vmovups(ymmword_ptr(r8 + disp(at)), ymm(0));
        }
        self.a.vextractf128(xmm(1), ymm(0), 1)?;
        self.a.vaddps(xmm(0), xmm(0), xmm(1))?;
        self.a.vmovups(xmmword_ptr(r8 + disp(at)), xmm(0))
    }
}
