//! The sparse kernel as x86-64 AVX-512 F machine code (zmm, 32 registers), assembled with
//! iced-x86 for one layer's static shape and called once from the kernel
//! ([`crate::loops::ir::NativeCx::call_machine`]).
//!
//! It computes what the 128-bit IR does — each column one sequential multiply-add chain over
//! its chunks — so its sums are bit-identical to it. Batch 1: per chunk `vpmovzxwd` (or a
//! `vmovdqu32` of u32 indices), `vgatherdps` of the 16 activations (its destination zeroed
//! first, so no gather waits on the previous one), one `vfmadd231ps` with the values from
//! memory into the block's accumulator. Batch ≥ 2: x is copied transposed into
//! `xT[pass][k][width]` by one masked `vgatherdps` per `k` step (rows past the batch zero); per
//! chunk and lane, the index (`movzx`, `shl`: to a byte offset of xT's rows), `vbroadcastss` of
//! the weight and `vfmadd231ps` of xT's row into that lane's column accumulator; a pass's sums
//! are stored per column, its rows contiguous. The finiteness flags are `Σ (x − x)` over the
//! row (batch 1) or over xT (a lane per row), in four chains.
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
use iced_x86::code_asm::*;

type R = Result<(), IcedError>;

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
        self.add_imm(r9, 4 * (g.xt_at + q * g.k * w))?;
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
        for r in 0..4 {
            self.a.vpxord(zmm(r), zmm(r), zmm(r))?;
        }
        self.a.mov(rax, r8)?;
        self.add_imm(rax, 4 * (g.xt_at + q * g.k * w))?;
        let (vectors, rest) = (g.k * w / LANES, g.k * w % LANES);
        self.times(vectors / 4, r10, |m| {
            for c in 0..4 {
                m.flag_step(c, zmmword_ptr(rax + disp(64 * c)), false)?;
            }
            m.a.add(rax, 256)
        })?;
        for c in 0..vectors % 4 {
            self.flag_step(c, zmmword_ptr(rax + disp(64 * c)), false)?;
        }
        if rest > 0 {
            self.a.mov(r10d, (1u32 << rest) - 1)?;
            self.a.kmovw(k1, r10d)?;
            self.flag_step(3, zmmword_ptr(rax + disp(64 * (vectors % 4))), true)?;
        }
        self.join_flags()?;
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
    /// lanes over the block's chunks (accumulators 0–7, weights 8–15).
    fn broadcasts(&mut self, q: usize) -> R {
        let g = self.g;
        let (ib, w) = (g.idx_bytes, g.width);
        let total = g.chunks.iter().sum::<usize>();
        let (sweeps, lanes) = if w == LANES { (1, LANES) } else { (2, 8) };
        let shift = (4 * w).trailing_zeros();
        self.a.mov(rdi, r8)?;
        self.add_imm(rdi, 4 * (g.xt_at + q * g.k * w))?;
        self.a.mov(r9, r8)?;
        self.add_imm(r9, 4 * q * w)?;
        self.times(g.blocks(), r10, |m| {
            for h in 0..sweeps {
                for l in 0..lanes {
                    m.zero(l)?;
                }
                m.a.mov(r11d, dword_ptr(rcx))?;
                let mut store = m.a.create_label();
                m.a.test(r11d, r11d)?;
                m.a.je(store)?;
                let mut chunk = m.a.create_label();
                m.a.set_label(&mut chunk)?;
                for l in 0..lanes {
                    let e = h * 8 + l;
                    if ib == 2 {
                        m.a.movzx(eax, word_ptr(rsi + disp(2 * e)))?;
                    } else {
                        m.a.mov(eax, dword_ptr(rsi + disp(4 * e)))?;
                    }
                    m.a.shl(eax, shift)?;
                    m.term(l, lanes + l, dword_ptr(rdx + disp(4 * e)), rdi + rax)?;
                }
                m.a.add(rsi, disp(LANES * ib))?;
                m.a.add(rdx, disp(LANES * 4))?;
                m.a.dec(r11d)?;
                m.a.jne(chunk)?;
                if h + 1 < sweeps {
                    // Back to the block's first chunk for the second sweep.
                    m.a.mov(eax, dword_ptr(rcx))?;
                    m.a.imul_3(eax, eax, disp(LANES * ib))?;
                    m.a.sub(rsi, rax)?;
                    m.a.mov(eax, dword_ptr(rcx))?;
                    m.a.shl(eax, 6)?;
                    m.a.sub(rdx, rax)?;
                }
                m.a.set_label(&mut store)?;
                for l in 0..lanes {
                    let at = r9 + disp(4 * (h * 8 + l) * m.g.m_pad);
                    match w {
                        4 => m.a.vmovups(xmmword_ptr(at), xmm(l))?,
                        8 => m.a.vmovups(ymmword_ptr(at), ymm(l))?,
                        _ => m.a.vmovups(zmmword_ptr(at), zmm(l))?,
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
        self.a.mov(rax, (4 * g.blocks()) as u64)?;
        self.a.sub(rcx, rax)
    }

    /// Zeroes accumulator `r` at the pass's width.
    fn zero(&mut self, r: usize) -> R {
        match self.g.width {
            4 => self.a.vxorps(xmm(r), xmm(r), xmm(r)),
            8 => self.a.vxorps(ymm(r), ymm(r), ymm(r)),
            _ => self.a.vpxord(zmm(r), zmm(r), zmm(r)),
        }
    }

    /// `acc += broadcast(weight) · [x]` at the pass's width (`t` the weight's register).
    fn term(&mut self, acc: usize, t: usize, weight: AsmMemoryOperand, x: AsmMemoryOperand) -> R {
        macro_rules! at {
            ($reg:ident, $ptr:ident) => {{
                self.a.vbroadcastss($reg(t), weight)?;
                if self.fuse {
                    self.a.vfmadd231ps($reg(acc), $reg(t), $ptr(x))
                } else {
                    self.a.vmulps($reg(t), $reg(t), $ptr(x))?;
                    self.a.vaddps($reg(acc), $reg(acc), $reg(t))
                }
            }};
        }
        match self.g.width {
            4 => at!(xmm, xmmword_ptr),
            8 => at!(ymm, ymmword_ptr),
            _ => at!(zmm, zmmword_ptr),
        }
    }
}
