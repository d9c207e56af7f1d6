//! The sparse kernel as x86-64 AVX-512 F machine code (zmm, 32 registers), assembled with
//! iced-x86 for one layer's static shape and called once from the kernel
//! ([`crate::loops::ir::NativeCx::call_machine`]).
//!
//! It computes what the 128-bit IR does — each column one sequential multiply-add chain over
//! its chunks — so its sums are bit-identical to it. Batch 1: per chunk `vpmovzxwd` (or a
//! `vmovdqu32` of u32 indices), `vgatherdps` of the 16 activations (its destination zeroed
//! first, so no gather waits on the previous one), one `vfmadd231ps` with the values from
//! memory into the block's accumulator. Batch ≥ 2: x is copied transposed into `xT[pass][k][16]`
//! (rows past the batch zero); per chunk and lane, the index (`movzx`, `shl 6`: 64-byte rows of
//! xT), `vbroadcastss` of the weight and `vfmadd231ps` of xT's row into that lane's column
//! accumulator (zmm0–15); a pass's sums are stored per column, 16 batch rows contiguous.
//! The finiteness flags are `Σ (x − x)` over the row (batch 1) or over xT's rows (16 batch rows
//! per lane), in four chains.
//!
//! Arguments (System V): rdi = x, rsi = the indices, rdx = the values, rcx = the chunk counts
//! (u32 per block), r8 = the workspace (CT, flags, xT). rax, r9, r10, r11 are the scratch
//! registers; only caller-saved registers are used, nothing touches the stack, `vzeroupper`
//! precedes `ret`. Every address is in range by construction: rows `< rows`, `k` steps `< k`,
//! indices `< k` (the layout's), chunks within the tables, CT slots `< blocks · 16 · m_pad`.
use super::{Geometry, LANES, machine_fits};
use crate::loops::ir::MachineCode;
use crate::loops::native::x86_listing;
use iced_x86::code_asm::*;
use iced_x86::{IcedError, Register};

type R = Result<(), IcedError>;

fn zmm(i: usize) -> AsmRegisterZmm {
    registers::zmm::get_zmm(Register::ZMM0 + i as u32).expect("zmm register")
}

/// The machine code of the kernel of `g`, with its listing; None when `g` is beyond what it
/// addresses ([`machine_fits`]).
pub(super) fn kernel(g: &Geometry, fuse: bool) -> Option<MachineCode> {
    if !machine_fits(g) {
        return None;
    }
    let bytes = assemble(g, fuse).expect("the sparse kernel assembles");
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
}

fn assemble(g: &Geometry, fuse: bool) -> Result<Vec<u8>, IcedError> {
    let mut m = Asm {
        a: CodeAssembler::new(64)?,
        g,
        fuse,
    };
    if g.rows == 1 {
        m.row_flag()?;
        m.gathers()?;
    } else {
        for q in 0..g.passes() {
            m.transpose(q)?;
            m.pass_flags(q)?;
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

    /// `acc += x − x` for the 16 floats at `[rax]` (`mask`: the lanes to read, else all).
    fn flag_step(&mut self, acc: usize, at: AsmMemoryOperand, mask: bool) -> R {
        if mask {
            self.a.vmovups(zmm(4).k1().z(), at)?;
        } else {
            self.a.vmovups(zmm(4), at)?;
        }
        self.a.vsubps(zmm(4), zmm(4), zmm(4))?;
        self.a.vaddps(zmm(acc), zmm(acc), zmm(4))
    }

    /// zmm0 = zmm0 + zmm1 + zmm2 + zmm3 (the four flag chains).
    fn join_flags(&mut self) -> R {
        self.a.vaddps(zmm(0), zmm(0), zmm(1))?;
        self.a.vaddps(zmm(2), zmm(2), zmm(3))?;
        self.a.vaddps(zmm(0), zmm(0), zmm(2))
    }

    /// Batch 1: the flag of x's one row, as 0 or a NaN's bits.
    fn row_flag(&mut self) -> R {
        let g = self.g;
        for r in 0..4 {
            self.a.vpxord(zmm(r), zmm(r), zmm(r))?;
        }
        let (vectors, rest) = (g.k / LANES, g.k % LANES);
        self.a.mov(rax, rdi)?;
        let (quads, single) = (vectors / 4, vectors % 4);
        self.times(quads, r10, |m| {
            for c in 0..4 {
                m.flag_step(c, zmmword_ptr(rax + disp(64 * c)), false)?;
            }
            m.a.add(rax, 256)
        })?;
        for c in 0..single {
            self.flag_step(c, zmmword_ptr(rax + disp(64 * c)), false)?;
        }
        if rest > 0 {
            self.a.mov(r10d, (1u32 << rest) - 1)?;
            self.a.kmovw(k1, r10d)?;
            self.flag_step(3, zmmword_ptr(rax + disp(64 * single)), true)?;
        }
        self.join_flags()?;
        // Any NaN lane → the flag is a quiet NaN's bits, else +0.
        self.a.vcmpps(k2, zmm(0), zmm(0), 3)?;
        self.a.kmovw(eax, k2)?;
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
        self.times(g.blocks(), r10, |m| {
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

    /// Pass `q` of x copied transposed into xT (16 batch rows, zero past the batch).
    fn transpose(&mut self, q: usize) -> R {
        let g = self.g;
        for l in 0..LANES {
            let r = q * LANES + l;
            self.a.mov(r9, r8)?;
            self.add_imm(r9, 4 * (g.xt_at + q * g.k * LANES + l))?;
            if r < g.rows {
                self.a.mov(rax, rdi)?;
                self.add_imm(rax, 4 * r * g.a_outer)?;
                self.times(g.k, r10, |m| {
                    m.a.vmovss(xmm0, dword_ptr(rax))?;
                    m.a.vmovss(dword_ptr(r9), xmm0)?;
                    m.add_imm(rax, 4 * m.g.a_inner)?;
                    m.a.add(r9, 64)
                })?;
            } else {
                self.a.vxorps(xmm0, xmm0, xmm0)?;
                self.times(g.k, r10, |m| {
                    m.a.vmovss(dword_ptr(r9), xmm0)?;
                    m.a.add(r9, 64)
                })?;
            }
        }
        Ok(())
    }

    /// The flags of pass `q`'s 16 batch rows, from its xT rows.
    fn pass_flags(&mut self, q: usize) -> R {
        let g = self.g;
        for r in 0..4 {
            self.a.vpxord(zmm(r), zmm(r), zmm(r))?;
        }
        self.a.mov(rax, r8)?;
        self.add_imm(rax, 4 * (g.xt_at + q * g.k * LANES))?;
        self.times(g.k / 4, r10, |m| {
            for c in 0..4 {
                m.flag_step(c, zmmword_ptr(rax + disp(64 * c)), false)?;
            }
            m.a.add(rax, 256)
        })?;
        for c in 0..g.k % 4 {
            self.flag_step(c, zmmword_ptr(rax + disp(64 * c)), false)?;
        }
        self.join_flags()?;
        self.a
            .vmovups(zmmword_ptr(r8 + disp(4 * (g.flags_at + q * LANES))), zmm(0))
    }

    /// Pass `q` at batch ≥ 2: every block's sums for 16 batch rows, a broadcast weight times
    /// an xT row per nonzero.
    fn broadcasts(&mut self, q: usize) -> R {
        let g = self.g;
        let ib = g.idx_bytes;
        let total = g.chunks.iter().sum::<usize>();
        self.a.mov(rdi, r8)?;
        self.add_imm(rdi, 4 * (g.xt_at + q * g.k * LANES))?;
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * q * LANES)?;
        self.times(g.blocks(), r10, |m| {
            for l in 0..LANES {
                m.a.vpxord(zmm(l), zmm(l), zmm(l))?;
            }
            m.a.mov(r11d, dword_ptr(rcx))?;
            let mut store = m.a.create_label();
            m.a.test(r11d, r11d)?;
            m.a.je(store)?;
            let mut chunk = m.a.create_label();
            m.a.set_label(&mut chunk)?;
            for l in 0..LANES {
                if ib == 2 {
                    m.a.movzx(eax, word_ptr(rsi + disp(2 * l)))?;
                } else {
                    m.a.mov(eax, dword_ptr(rsi + disp(4 * l)))?;
                }
                m.a.shl(eax, 6)?;
                let w = zmm(LANES + l);
                m.a.vbroadcastss(w, dword_ptr(rdx + disp(4 * l)))?;
                if m.fuse {
                    m.a.vfmadd231ps(zmm(l), w, zmmword_ptr(rdi + rax))?;
                } else {
                    m.a.vmulps(w, w, zmmword_ptr(rdi + rax))?;
                    m.a.vaddps(zmm(l), zmm(l), w)?;
                }
            }
            m.a.add(rsi, disp(LANES * ib))?;
            m.a.add(rdx, disp(LANES * 4))?;
            m.a.dec(r11d)?;
            m.a.jne(chunk)?;
            m.a.set_label(&mut store)?;
            for l in 0..LANES {
                m.a.vmovups(zmmword_ptr(r9 + disp(4 * l * m.g.m_pad)), zmm(l))?;
            }
            m.add_imm(r9, 4 * LANES * m.g.m_pad)?;
            m.a.add(rcx, 4)
        })?;
        // Back to the tables' starts for the next pass.
        self.a.mov(rax, (total * LANES * ib) as u64)?;
        self.a.sub(rsi, rax)?;
        self.a.mov(rax, (total * LANES * 4) as u64)?;
        self.a.sub(rdx, rax)?;
        self.a.mov(rax, (4 * g.blocks()) as u64)?;
        self.a.sub(rcx, rax)
    }
}
