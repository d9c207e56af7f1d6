//! The f32 tiles as x86-64 machine code, assembled with iced-x86 for one matrix (or one window
//! of its panels) of a static shape and placed beside the kernel that calls it once per batch
//! ([`crate::loops::ir::NativeCx::call_machine`]): AVX-512 (zmm, 32 registers) where the CPU has
//! it, else AVX2 with FMA3 (ymm, VEX, 16 registers; every x86-64 CPU since Haswell and Zen 1).
//!
//! It computes what the 128-bit tiles do — each output one sequential fused multiply-add chain
//! over `k`, in order — so its sums are bit-identical to theirs. A tile is up to [`MAX_ROWS`]
//! rows × one whole panel (4 or 8 zmm vectors of 16 columns): per `k` step it loads the panel's
//! vectors, broadcasts one element of A per row (`vbroadcastss`) and issues one `vfmadd231ps`
//! per (row, vector), the accumulator being the destination — the form Cranelift's lowering
//! never picks, which is why its tiles copy registers every step.
//!
//! With 16 ymm registers a tile takes a strip of the panel, not all of it: up to
//! [`YMM_ROWS`] rows × 2 vectors (12 accumulators, the strip's 2 vectors, a broadcast, a
//! product), or at one row 8 vectors multiplied straight from memory (`vfmadd231ps` with a
//! memory source: the panel is read once either way). A's rows are re-read per strip, from L1.
//!
//! Arguments (System V): rdi = A, rsi = the panels, rdx = C of this matrix. Registers: rsi
//! walks the panels and rdx C's panel columns; rdi walks A's row tiles (and is walked back
//! after each panel); r11 walks C's row tiles; rax and rcx walk A and the panel along `k`; r8,
//! r9 and r10 count panels, row tiles and `k` steps. Only caller-saved registers are used,
//! nothing touches the stack, and `vzeroupper` precedes `ret`. Every address is in range by
//! construction: rows `< m`, `k` steps `< k`, panel columns `< padded`, exactly the extents the
//! buffers were made with.
use super::Geometry;
use crate::loops::emit::Wide;
use crate::loops::ir::MachineCode;
use crate::loops::native::x86_listing;
use crate::loops::native::{ymm, zmm};
use iced_x86::IcedError;
use iced_x86::code_asm::*;

/// Most rows per tile: 6 rows × 4 vectors = 24 accumulators, beside 4 panel vectors, 2
/// broadcasts and a product, of 32 registers.
pub(super) const MAX_ROWS: usize = 6;

/// f32 lanes per zmm.
const LANES: usize = 16;

/// Most rows per ymm tile: 6 rows × 2 vectors = 12 accumulators, beside the strip's 2 vectors,
/// a broadcast and a product, of 16 registers.
pub(super) const YMM_ROWS: usize = 6;

/// f32 lanes per ymm.
const YMM_LANES: usize = 8;

type R = Result<(), IcedError>;

/// The machine code of one matrix of `g` (f32), with its listing; None when a displacement
/// does not fit an instruction (the 128-bit tiles take the product then).
pub(super) fn matrix(g: &Geometry, fuse: bool, wide: Wide) -> Option<MachineCode> {
    // Every displacement and immediate is a few rows or `k` steps of A, C or a panel.
    let largest = 4 * (MAX_ROWS + 1) * (g.a_outer + g.a_inner + g.padded() + 2 * g.width);
    if i32::try_from(largest).is_err() {
        return None;
    }
    let bytes = assemble(g, fuse, wide).expect("the f32 microkernel assembles");
    Some(MachineCode {
        name: "f32 matrix product tiles",
        listing: x86_listing(&bytes),
        bytes,
        args: 3,
    })
}

struct Asm<'a> {
    a: CodeAssembler,
    g: &'a Geometry,
    /// `vfmadd231ps`; else `vmulps` into a temporary and `vaddps` (two roundings).
    fuse: bool,
    /// zmm (EVEX) or ymm (VEX).
    zmm: bool,
}

/// A byte count as a displacement or immediate (in range: see [`matrix`]).
fn disp(bytes: usize) -> i32 {
    bytes as i32
}

fn assemble(g: &Geometry, fuse: bool, wide: Wide) -> Result<Vec<u8>, IcedError> {
    let zmm = wide == Wide::Zmm;
    let mut m = Asm {
        a: CodeAssembler::new(64)?,
        g,
        fuse,
        zmm,
    };
    m.a.set_prefer_vex(!zmm);
    // The caller points rsi and rdx at the window's first panel.
    let (full, last) = g.window_panels();
    if full > 0 {
        m.a.mov(r8d, full as u32)?;
        let mut panel = m.a.create_label();
        m.a.set_label(&mut panel)?;
        m.panel(g.width)?;
        m.a.dec(r8)?;
        m.a.jne(panel)?;
    }
    if last > 0 {
        m.panel(last)?;
    }
    m.a.vzeroupper()?;
    m.a.ret()?;
    m.a.assemble(0)
}

impl Asm<'_> {
    /// Every row tile times the panel at rsi (`width` columns) into C's columns at rdx; then
    /// rsi and rdx step to the next panel and rdi is back at A's first row.
    fn panel(&mut self, width: usize) -> R {
        if self.zmm {
            self.row_tiles(width, 0, width / LANES)?;
        } else {
            // Strips of the panel's ymm vectors, each over every row tile.
            let vectors = width / YMM_LANES;
            let per = if self.g.m == 1 { 8 } else { 2 };
            let mut v0 = 0;
            while v0 < vectors {
                let sv = per.min(vectors - v0);
                self.row_tiles(width, v0, sv)?;
                v0 += sv;
            }
        }
        let g = self.g;
        self.a.mov(rax, (4 * g.k * width) as u64)?;
        self.a.add(rsi, rax)?;
        self.a.add(rdx, disp(4 * width))?;
        Ok(())
    }

    /// Every row tile times vectors `v0 .. v0 + sv` of the panel at rsi (`width` columns) into
    /// C's columns at rdx; rdi is back at A's first row after.
    fn row_tiles(&mut self, width: usize, v0: usize, sv: usize) -> R {
        let g = self.g;
        let mr = g.m.min(if self.zmm { MAX_ROWS } else { YMM_ROWS });
        let (tiles, rest) = (g.m / mr, g.m % mr);
        let a_tile = disp(4 * mr * g.a_outer);
        let c_tile = disp(4 * mr * g.padded());
        self.a.mov(r11, rdx)?;
        if tiles > 1 {
            self.a.mov(r9d, tiles as u32)?;
            let mut row = self.a.create_label();
            self.a.set_label(&mut row)?;
            self.tile(mr, width, v0, sv)?;
            self.a.add(rdi, a_tile)?;
            self.a.add(r11, c_tile)?;
            self.a.dec(r9)?;
            self.a.jne(row)?;
        } else {
            self.tile(mr, width, v0, sv)?;
            self.a.add(rdi, a_tile)?;
            self.a.add(r11, c_tile)?;
        }
        if rest > 0 {
            self.tile(rest, width, v0, sv)?;
        }
        // Back to A's first row (the rest tile did not move rdi).
        self.a.mov(rax, (tiles as i64 * a_tile as i64) as u64)?;
        self.a.sub(rdi, rax)
    }

    /// The loop over `k` of a tile (nothing when `k == 0`): rax walks A's row tile from rdi,
    /// rcx the panel from rsi (`width` columns a step), r10 counts; `step` emits one step.
    fn k_steps(&mut self, width: usize, step: impl Fn(&mut Self) -> R) -> R {
        let g = self.g;
        if g.k == 0 {
            return Ok(());
        }
        self.a.mov(rax, rdi)?;
        self.a.mov(rcx, rsi)?;
        self.a.mov(r10d, g.k as u32)?;
        let mut top = self.a.create_label();
        self.a.set_label(&mut top)?;
        step(self)?;
        self.a.add(rax, disp(4 * g.a_inner))?;
        self.a.add(rcx, disp(4 * width))?;
        self.a.dec(r10)?;
        self.a.jne(top)
    }

    fn tile(&mut self, rows: usize, width: usize, v0: usize, sv: usize) -> R {
        if self.zmm {
            self.tile_zmm(rows, width)
        } else {
            self.tile_ymm(rows, width, v0, sv)
        }
    }

    /// `rows` rows of A at rdi times vectors `v0 .. v0 + sv` of the panel at rsi (`width`
    /// columns) in ymm, stored to C at r11. At one row the accumulators take the products
    /// straight from memory; at several the strip's vectors are loaded once per `k` step.
    fn tile_ymm(&mut self, rows: usize, width: usize, v0: usize, sv: usize) -> R {
        let g = self.g;
        let from_memory = rows == 1;
        let loaded = if from_memory { 0 } else { sv };
        let bcast = ymm(loaded);
        let acc = |r: usize, v: usize| ymm(loaded + 1 + r * sv + v);
        let product = ymm(loaded + 1 + rows * sv);
        debug_assert!(loaded + 2 + rows * sv <= 16);
        let panel_at = |v: usize| disp(4 * YMM_LANES * (v0 + v));
        for r in 0..rows {
            for v in 0..sv {
                self.a.vxorps(acc(r, v), acc(r, v), acc(r, v))?;
            }
        }
        self.k_steps(width, |m| {
            for v in 0..loaded {
                m.a.vmovups(ymm(v), ymmword_ptr(rcx + panel_at(v)))?;
            }
            for r in 0..rows {
                let at = disp(4 * r * g.a_outer);
                m.a.vbroadcastss(bcast, dword_ptr(rax + at))?;
                for v in 0..sv {
                    match (m.fuse, from_memory) {
                        (true, true) => {
                            m.a.vfmadd231ps(acc(r, v), bcast, ymmword_ptr(rcx + panel_at(v)))?
                        }
                        (true, false) => m.a.vfmadd231ps(acc(r, v), ymm(v), bcast)?,
                        (false, true) => {
                            m.a.vmulps(product, bcast, ymmword_ptr(rcx + panel_at(v)))?;
                            m.a.vaddps(acc(r, v), acc(r, v), product)?;
                        }
                        (false, false) => {
                            m.a.vmulps(product, bcast, ymm(v))?;
                            m.a.vaddps(acc(r, v), acc(r, v), product)?;
                        }
                    }
                }
            }
            Ok(())
        })?;
        for r in 0..rows {
            for v in 0..sv {
                let at = disp(4 * (r * g.padded() + YMM_LANES * (v0 + v)));
                self.a.vmovups(ymmword_ptr(r11 + at), acc(r, v))?;
            }
        }
        Ok(())
    }

    /// `rows` rows of A at rdi times the panel at rsi (`width` columns) in zmm, stored to C at
    /// r11.
    fn tile_zmm(&mut self, rows: usize, width: usize) -> R {
        let g = self.g;
        let vectors = width / LANES;
        // Registers: the panel's vectors, two broadcasts, the accumulators, a product.
        let bcast = |r: usize| zmm(vectors + r % 2);
        let acc = |r: usize, v: usize| zmm(vectors + 2 + r * vectors + v);
        let product = zmm(vectors + 2 + rows * vectors);
        debug_assert!(vectors + 3 + rows * vectors <= 32);
        for r in 0..rows {
            for v in 0..vectors {
                self.a.vpxord(acc(r, v), acc(r, v), acc(r, v))?;
            }
        }
        self.k_steps(width, |m| {
            for v in 0..vectors {
                m.a.vmovups(zmm(v), zmmword_ptr(rcx + disp(64 * v)))?;
            }
            for r in 0..rows {
                let at = disp(4 * r * g.a_outer);
                m.a.vbroadcastss(bcast(r), dword_ptr(rax + at))?;
                for v in 0..vectors {
                    if m.fuse {
                        m.a.vfmadd231ps(acc(r, v), zmm(v), bcast(r))?;
                    } else {
                        m.a.vmulps(product, bcast(r), zmm(v))?;
                        m.a.vaddps(acc(r, v), acc(r, v), product)?;
                    }
                }
            }
            Ok(())
        })?;
        for r in 0..rows {
            for v in 0..vectors {
                let at = disp(4 * (r * g.padded() + v * LANES));
                self.a.vmovups(zmmword_ptr(r11 + at), acc(r, v))?;
            }
        }
        Ok(())
    }
}
