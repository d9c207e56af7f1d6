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
//! With 16 ymm registers a tile takes a strip of the panel, not all of it: `r` rows × `v`
//! vectors with `r·v` accumulators beside the strip's `v` vectors, a broadcast and (unfused) a
//! product — 6 × 2, 4 × 3, 2 × 5, … chosen per matrix by [`ymm_shape`] so that every row tile
//! keeps both FMA pipes busy —, or at one row 8 vectors multiplied straight from memory
//! (`vfmadd231ps` with a memory source: the panel is read once either way). A's rows are
//! re-read per strip, from L1. The strips go over `k` in blocks ([`YMM_K_BLOCK`]) so that a
//! panel's block stays in L2 for all of its strips; a block resumes the sums in C.
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

/// f32 lanes per ymm.
const YMM_LANES: usize = 8;

/// Cycles of a ymm tile's `k` step, as the tile's shape decides them: two FMA pipes, two loads
/// a cycle, and each accumulator's chain waiting out one multiply-add's latency (4–5 cycles on
/// Haswell to Zen 4; 5 taken). Only ratios between shapes matter.
fn ymm_step_cycles(rows: usize, vectors: usize) -> f64 {
    let fmas = (rows * vectors) as f64 / 2.0;
    let loads = (rows + vectors) as f64 / 2.0;
    fmas.max(loads).max(5.0)
}

/// The ymm tile shape `(rows, vectors)` for a matrix of `m > 1` rows whose full panels have
/// `panel` vectors: of the shapes whose registers fit (accumulators, the strip's vectors, a
/// broadcast, a product without fusion), the one with the fewest predicted cycles per panel
/// `k` step over all of `m`'s row tiles and the panel's strips (the last strip and row tile
/// may be narrower).
fn ymm_shape(m: usize, panel: usize, fuse: bool) -> (usize, usize) {
    let spare = 16 - 1 - usize::from(!fuse);
    let mut best = (f64::INFINITY, (1, 1));
    for vectors in 1..=panel {
        for rows in 1..=m {
            if rows * vectors + vectors > spare {
                continue;
            }
            // A rest tile or strip of zero rows or vectors costs nothing.
            let step = |r: usize, v: usize| {
                if r * v == 0 {
                    0.0
                } else {
                    ymm_step_cycles(r, v)
                }
            };
            let strip = |v: usize| (m / rows) as f64 * step(rows, v) + step(m % rows, v);
            let cycles = (panel / vectors) as f64 * strip(vectors) + strip(panel % vectors);
            // Ties go to more rows (fewer re-reads of the panel).
            if cycles < best.0 - 1e-9 {
                best = (cycles, (rows, vectors));
            }
        }
    }
    best.1
}

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
    /// The ymm tiles' rows and strip vectors ([`ymm_shape`]; one row: 1 × 8 from memory).
    ymm: (usize, usize),
    /// The `k` steps the tiles now emit: from `k0`, `steps` of them; `first`: the block at
    /// `k0 = 0`, whose accumulators start at zero (later ones resume C's partial sums).
    k0: usize,
    steps: usize,
    first: bool,
}

/// Most `k` steps of one ymm block: 256 steps of a 64-column panel are 64 KiB, so the strips of
/// a block find the panel in L2 however long `k` is (a whole 2048-step panel is 512 KiB, all of
/// a Zen 2/3 L2: each strip would read it from memory again).
const YMM_K_BLOCK: usize = 256;

/// Most blocks a panel's code is unrolled into (longer `k`: longer blocks).
const YMM_MAX_BLOCKS: usize = 8;

/// A byte count as a displacement or immediate (in range: see [`matrix`]).
fn disp(bytes: usize) -> i32 {
    bytes as i32
}

fn assemble(g: &Geometry, fuse: bool, wide: Wide) -> Result<Vec<u8>, IcedError> {
    let zmm = wide == Wide::Zmm;
    let ymm = if g.m == 1 {
        (1, 8)
    } else {
        ymm_shape(g.m, g.width / YMM_LANES, fuse)
    };
    let mut m = Asm {
        a: CodeAssembler::new(64)?,
        g,
        fuse,
        zmm,
        ymm,
        k0: 0,
        steps: g.k,
        first: true,
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
            // Blocks of `k`, each: strips of the panel's ymm vectors, each over every row tile.
            // Each output's sum stays one sequential chain: a block resumes the sums the
            // previous one stored to C.
            let vectors = width / YMM_LANES;
            let per = self.ymm.1;
            let block = YMM_K_BLOCK.max(self.g.k.div_ceil(YMM_MAX_BLOCKS));
            let mut start = 0;
            loop {
                (self.k0, self.steps, self.first) =
                    (start, block.min(self.g.k - start), start == 0);
                let mut v0 = 0;
                while v0 < vectors {
                    let sv = per.min(vectors - v0);
                    self.row_tiles(width, v0, sv)?;
                    v0 += sv;
                }
                start += block;
                if start >= self.g.k {
                    break;
                }
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
        let mr = if self.zmm {
            g.m.min(MAX_ROWS)
        } else {
            self.ymm.0
        };
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
        if self.steps == 0 {
            return Ok(());
        }
        if self.k0 == 0 {
            self.a.mov(rax, rdi)?;
            self.a.mov(rcx, rsi)?;
        } else {
            // 64-bit offsets: a block may start further into A or the panel than a
            // displacement reaches.
            self.a.mov(rax, (4 * self.k0 * g.a_inner) as u64)?;
            self.a.add(rax, rdi)?;
            self.a.mov(rcx, (4 * self.k0 * width) as u64)?;
            self.a.add(rcx, rsi)?;
        }
        self.a.mov(r10d, self.steps as u32)?;
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
    /// columns) in ymm, stored to C at r11 (`rows · sv` accumulators: see [`ymm_shape`]). At one row the accumulators take the products
    /// straight from memory; at several the strip's vectors are loaded once per `k` step.
    fn tile_ymm(&mut self, rows: usize, width: usize, v0: usize, sv: usize) -> R {
        let g = self.g;
        let from_memory = rows == 1;
        let loaded = if from_memory { 0 } else { sv };
        let bcast = ymm(loaded);
        let acc = |r: usize, v: usize| ymm(loaded + 1 + r * sv + v);
        // The unfused product's register (past the accumulators: only used without fusion).
        let product = ymm((loaded + 1 + rows * sv).min(15));
        debug_assert!(loaded + 1 + rows * sv + usize::from(!self.fuse) <= 16);
        let panel_at = |v: usize| disp(4 * YMM_LANES * (v0 + v));
        let c_at = |r: usize, v: usize| disp(4 * (r * g.padded() + YMM_LANES * (v0 + v)));
        for r in 0..rows {
            for v in 0..sv {
                if self.first {
                    self.a.vxorps(acc(r, v), acc(r, v), acc(r, v))?;
                } else {
                    self.a.vmovups(acc(r, v), ymmword_ptr(r11 + c_at(r, v)))?;
                }
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
                self.a.vmovups(ymmword_ptr(r11 + c_at(r, v)), acc(r, v))?;
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

#[cfg(test)]
mod shape_tests {
    use super::ymm_shape;

    /// The shapes fit the 16 registers, and batches of 2 to 8 get tiles whose accumulators
    /// cover the multiply-add latency (the 6 × 2 + 2 × 2 split of 8 rows left a tile of 4).
    #[test]
    fn ymm_shapes_fit_and_keep_the_pipes_busy() {
        for fuse in [true, false] {
            for m in 2..=40 {
                for panel in [2, 4, 6, 8] {
                    let (r, v) = ymm_shape(m, panel, fuse);
                    assert!(
                        r * v + v + 1 + usize::from(!fuse) <= 16,
                        "m {m} panel {panel}"
                    );
                    assert!(r <= m && v <= panel, "m {m} panel {panel}");
                }
            }
        }
        assert_eq!(ymm_shape(8, 8, true), (4, 3));
        assert_eq!(ymm_shape(2, 8, true).0, 2);
        assert!(ymm_shape(2, 8, true).1 >= 4);
        assert_eq!(ymm_shape(12, 8, false), (6, 2));
    }
}
