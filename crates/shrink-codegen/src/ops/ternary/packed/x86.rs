//! The `packed` dot products as x86-64 machine code with vectors wider than Cranelift's 128 bits
//! (zmm, or ymm in EVEX or VEX form), assembled with iced-x86 for one static shape and placed in
//! the module beside the kernel that calls it ([`crate::loops::ir::NativeCx::call_machine`]).
//! Without VNNI (AVX2 only, [`Wide::Avx2`]) each `vpdpbusd` becomes `vpmaddubsw` (code byte ×
//! digit, adjacent pairs summed to i16), `vpmaddwd` by ones (pairs of those to i32) and
//! `vpaddd`: a field is at most `2·4^3 = 128` and a digit in `[-128, 127]`, so a pair lies in
//! `[-32768, 32512]` and the i16 step never saturates; the sums are the same integers. The
//! narrow form (chosen where it takes fewer instructions, which on 1 or 3 limbs is always)
//! halves the multiplies, which is what bounds that form (two multiply ports): fields shifted
//! to scale 1 (or 4), each `vpmaddubsw` pair added in i16 by `vpaddw`, and those i16 sums
//! widened into i32 accumulators (`vpmaddwd` by ones) every few groups, before a lane could
//! pass ±32767 ([`Plan::step_groups`] has the bound). Measured on a Zen 3 EPYC: 1024² at batch
//! 1 with three limbs 38.6 → 32.4 µs, 2048² 145.6 → 107 µs.
//!
//! It computes exactly what `emit_dots` does — `dots[(r·batch + n)·limbs + p] = Σ_c u[r][c] ·
//! d_p[n][c]` in i32 — with the same no-shift accumulators (field `j` kept in place as `4^j·u`,
//! its accumulator shifted right by `2j` once at the end), so the sums, being integers, are
//! bit-identical whatever the order. One vector covers 64 (zmm) or 32 (ymm) code bytes of a
//! group, and the digits one field needs across those blocks are contiguous in the same order
//! (the field-major group layout of the module doc of `packed`): each `vpdpbusd` takes its
//! digits straight from memory.
//!
//! Shape: for each weight row, for each block of batch rows (their accumulators all in
//! registers), one loop over the row's groups; the digits stay in cache across rows, the codes
//! stream once per block of batch rows. Every address is in range by construction: a row's code
//! pointer walks its `groups` groups of 64 bytes, the digit pointer the same groups of 256
//! bytes inside the block's limb rows, and the dot pointer writes each `(r, n, p)` once, in
//! order. Only caller-saved registers are used (rax, rcx, rdx, rsi, rdi, r8–r11 and vectors,
//! none callee-saved in System V), nothing touches the stack, and `vzeroupper` precedes `ret`.
use super::{GROUP, Shape};
use crate::loops::emit::Wide;
use crate::loops::ir::MachineCode;
use crate::loops::native::{xmm, ymm, zmm};
use iced_x86::IcedError;
use iced_x86::code_asm::*;

/// Bytes of codes (and of one field's digits) per group.
const GROUP_CODES: i32 = 16 * GROUP as i32;
/// Bytes of one limb row's digits per group.
const GROUP_DIGITS: i32 = 4 * GROUP_CODES;

/// Digit bytes (all batch rows and limbs) up to which every row reads all of them from cache;
/// beyond, the loops swap (each batch block re-reads every row's codes). The digits need not fit
/// L1: streamed from L2 (1–2 MiB on the x86 CPUs with VNNI) they still beat re-reading the codes,
/// measured here 8% faster at 2048² and 22% at 4096² (batch 8, three limbs: 49 and 98 KiB of
/// digits) than with a 32 KiB bound.
const CACHED_DIGITS: usize = 512 * 1024;

/// Most batch rows sharing one pass over a weight row's codes.
const BATCH_BLOCK: usize = 8;

/// Most groups in one narrow loop step (fewer widens, a longer unrolled body).
const NARROW_STEP_GROUPS: usize = 4;

/// Independent accumulator chains the loop aims for at least on long rows: `vpdpbusd` has a
/// latency of about five cycles and issues once or twice a cycle.
const MIN_CHAINS: usize = 16;

/// Dot products per weight row from which a row is long enough for [`MIN_CHAINS`] to matter
/// (on shorter rows the out-of-order core overlaps consecutive rows' chains).
const LONG_ROW_DOTS: usize = 96;

/// How one block of batch rows keeps its accumulators.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// The dot product is `vpmaddubsw` + `vpmaddwd` + `vpaddd` (AVX2), which needs two more
    /// registers: the i16 ones and the products.
    madd: bool,
    /// i16 accumulators (`madd` plans only): each dot product is `vpmaddubsw` + `vpaddw`, and
    /// every loop step ends by widening the i16 sums into i32 accumulators (`vpmaddwd` by
    /// ones) before any lane can leave i16 (see [`Plan::step_groups`]). Half the multiplies of
    /// the i32 form, which is what bounds it: the multiply ports issue two a cycle.
    narrow: bool,
    /// Batch rows in the block.
    rows: usize,
    /// Accumulators per (batch row, limb) across the four fields: 4 keeps every field in place
    /// (`q & 3 << 2j`, no shift in the loop); 2 shifts the code once by 4 bits so fields `j`
    /// and `j + 2` share a scale; 1 shifts each field down to `u`.
    fields: usize,
    /// Accumulator sets consecutive vectors of a row rotate through (more independent chains).
    sets: usize,
}

impl Plan {
    /// Vector registers besides the accumulators: the four epilogue temporaries (two field
    /// temporaries, the code and the code shifted by 4 in the loop) and the masks.
    fn fixed(self) -> usize {
        Plan::fixed_of(self.fields, self.madd)
    }

    fn fixed_of(fields: usize, madd: bool) -> usize {
        let masks = match fields {
            4 => 4,
            2 => 2,
            _ => 1,
        };
        4 + masks + if madd { 2 } else { 0 }
    }

    /// The register of the i16 ones and of the products (`madd` plans).
    fn ones(self) -> u32 {
        (4 + self.masks().len()) as u32
    }
    fn products(self) -> u32 {
        self.ones() + 1
    }

    /// The cheapest (fields, sets) for `rows` batch rows, or None when even one accumulator
    /// per (batch row, limb) does not fit. `units`: vectors of codes per weight row.
    fn of(regs: usize, rows: usize, limbs: usize, units: usize, wide: Wide) -> Option<Plan> {
        let zmm = wide == Wide::Zmm;
        let madd = wide == Wide::Avx2;
        let mut best: Option<(usize, Plan)> = None;
        let forms: &[bool] = if madd { &[false, true] } else { &[false] };
        for (&narrow, fields) in forms.iter().flat_map(|n| [(n, 4), (n, 2), (n, 1)]) {
            let room = regs - Plan::fixed_of(fields, madd);
            for sets in [1, 2, 4] {
                let plan = Plan {
                    madd,
                    narrow,
                    rows,
                    fields,
                    sets,
                };
                // Narrow plans keep one i16 and one i32 accumulator per (row, limb, field); a
                // field kept in place at scale 64 would overflow i16 in one step, and the
                // i16 adds' one-cycle latency needs no extra sets.
                let chains = rows * limbs * fields * sets * if narrow { 2 } else { 1 };
                if narrow && (fields == 4 || sets > 1) {
                    continue;
                }
                // More accumulator sets than vectors per row add only epilogue work; fewer
                // chains than the dot product's latency needs matter only on long rows.
                if chains > room || (sets > 1 && sets > units) {
                    continue;
                }
                let starved =
                    !narrow && chains < MIN_CHAINS && units * rows * limbs * 4 >= LONG_ROW_DOTS;
                let cost = plan.instructions(limbs, units, zmm) + if starved { 1 << 20 } else { 0 };
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((cost, plan));
                }
            }
        }
        best.map(|(_, p)| p)
    }

    /// Instructions one weight row takes with this plan (the loop and the epilogue): the
    /// measure the plans are chosen by, since a row of a matrix-vector product is short and
    /// the out-of-order core overlaps consecutive rows' dependency chains.
    fn instructions(self, limbs: usize, units: usize, zmm: bool) -> usize {
        let per_dot = match (self.madd, self.narrow) {
            (true, true) => 2,
            (true, false) => 3,
            _ => 1,
        };
        let dots = self.rows * limbs * 4 * per_dot;
        let fields = match self.fields {
            4 => 4,
            2 => 5,
            _ => 7,
        };
        let per = self.rows * limbs;
        let accs = per * self.fields * self.sets;
        let shifts = per * self.sets * (self.fields - 1).min(if self.fields == 2 { 1 } else { 3 });
        let reduce = per * if zmm { 4 } else { 2 } + self.rows * (limbs + 2);
        // Each narrow step ends with a widen, an add and a zeroing per accumulator.
        let per_group = if zmm { 1 } else { 2 };
        let flushes = if self.narrow {
            3 * accs * units.div_ceil(per_group * self.step_groups(per_group))
        } else {
            0
        };
        units * (1 + fields + dots) + 2 * accs + shifts + (accs - per) + reduce + flushes
    }

    /// Groups per loop step: a narrow plan's step adds at most 63 products of a field at
    /// scale 1 (or 15 at scale 4) to each i16 lane, and one such pair sum is at most
    /// `2 · (2 · scale) · 128` in magnitude (codes up to 2 in place, digits in [-128, 127]), so
    /// a lane stays within ±32767 until the step's widen; other plans step by one group, or
    /// as many as their accumulator sets need to rotate through.
    fn step_groups(self, per_group: usize) -> usize {
        if !self.narrow {
            return (self.sets / per_group).max(1);
        }
        let (budget, dots_per_unit) = if self.fields == 1 { (63, 4) } else { (15, 2) };
        (budget / (per_group * dots_per_unit)).clamp(1, NARROW_STEP_GROUPS)
    }

    /// The block of at most `batch` rows with its cheapest plan: the largest block whose
    /// accumulators fit (sharing a decode of the codes among more rows), except without VNNI,
    /// where fewer rows can take the narrow form: there the fewest instructions per batch row.
    fn best(regs: usize, batch: usize, limbs: usize, units: usize, wide: Wide) -> Plan {
        let mut fits = (1..=batch.min(BATCH_BLOCK))
            .rev()
            .filter_map(|rows| Plan::of(regs, rows, limbs, units, wide));
        if wide != Wide::Avx2 {
            return fits.next().expect("one batch row always fits");
        }
        let zmm = false;
        fits.min_by_key(|p| p.instructions(limbs, units, zmm).div_ceil(p.rows))
            .expect("one batch row always fits")
    }

    fn masks(self) -> &'static [u32] {
        match self.fields {
            4 => &[0x0303_0303, 0x0C0C_0C0C, 0x3030_3030, 0xC0C0_C0C0],
            2 => &[0x0303_0303, 0x0C0C_0C0C],
            _ => &[0x0303_0303],
        }
    }

    /// Register of the accumulator of (batch row `k`, limb `p`, field `j`, set `t`).
    fn acc(self, limbs: usize, k: usize, p: usize, j: usize, t: usize) -> u32 {
        let i = ((k * limbs + p) * self.sets + t) * self.fields + j % self.fields;
        (self.fixed() + i) as u32
    }

    /// Register of the i32 accumulator a narrow plan widens (batch row `k`, limb `p`, field
    /// `j`)'s i16 sums into; the accumulator itself for other plans.
    fn wide_acc(self, limbs: usize, k: usize, p: usize, j: usize, t: usize) -> u32 {
        if !self.narrow {
            return self.acc(limbs, k, p, j, t);
        }
        let narrow = self.rows * limbs * self.fields;
        self.acc(limbs, k, p, j, 0) + narrow as u32
    }

    /// The right shift that brings accumulator field slot `j` back to scale 1.
    fn shift(self, j: usize) -> u32 {
        match self.fields {
            4 => 2 * j as u32,
            2 => 2 * (j % 2) as u32,
            _ => 0,
        }
    }
}

// Fixed vector registers (see `Plan::fixed`): field temporaries, code, shifted code (all four
// free in the epilogue, where they hold one batch row's limb sums), masks.
const T: [u32; 2] = [0, 1];
const Q: u32 = 2;
const Q4: u32 = 3;
const SUMS: [u32; 4] = [0, 1, 2, 3];
fn mask_reg(_fields: usize, i: usize) -> u32 {
    (4 + i) as u32
}

/// The CodeAssembler with the vector forms of one [`Wide`] kind.
struct Asm {
    a: CodeAssembler,
    wide: Wide,
}

type R = Result<(), IcedError>;

impl Asm {
    fn new(wide: Wide) -> Result<Asm, IcedError> {
        let mut a = CodeAssembler::new(64)?;
        // EVEX kinds: every instruction with both forms takes the EVEX one (the VEX form of
        // `vpdpbusd` is AVX-VNNI, which Zen 4 lacks, and registers 16–31 need EVEX anyway).
        a.set_prefer_vex(!Asm::evex_of(wide));
        Ok(Asm { a, wide })
    }
    fn width(&self) -> i32 {
        if self.wide == Wide::Zmm { 64 } else { 32 }
    }
    fn regs(&self) -> usize {
        if self.evex() { 32 } else { 16 }
    }
    fn evex(&self) -> bool {
        Asm::evex_of(self.wide)
    }
    fn evex_of(wide: Wide) -> bool {
        matches!(wide, Wide::Zmm | Wide::YmmEvex)
    }
    fn mem(&self, base: AsmRegister64, disp: i32) -> AsmMemoryOperand {
        if self.wide == Wide::Zmm {
            zmmword_ptr(base + disp)
        } else {
            ymmword_ptr(base + disp)
        }
    }
    fn zero(&mut self, d: u32) -> R {
        match self.wide {
            Wide::Zmm => self.a.vpxord(zmm(d), zmm(d), zmm(d)),
            Wide::YmmEvex => self.a.vpxord(ymm(d), ymm(d), ymm(d)),
            Wide::YmmVex | Wide::Avx2 => self.a.vpxor(ymm(d), ymm(d), ymm(d)),
        }
    }
    fn load(&mut self, d: u32, base: AsmRegister64, disp: i32) -> R {
        let m = self.mem(base, disp);
        match self.wide {
            Wide::Zmm => self.a.vmovdqu32(zmm(d), m),
            Wide::YmmEvex => self.a.vmovdqu32(ymm(d), m),
            Wide::YmmVex | Wide::Avx2 => self.a.vmovdqu(ymm(d), m),
        }
    }
    fn and(&mut self, d: u32, x: u32, y: u32) -> R {
        match self.wide {
            Wide::Zmm => self.a.vpandd(zmm(d), zmm(x), zmm(y)),
            Wide::YmmEvex => self.a.vpandd(ymm(d), ymm(x), ymm(y)),
            Wide::YmmVex | Wide::Avx2 => self.a.vpand(ymm(d), ymm(x), ymm(y)),
        }
    }
    fn add(&mut self, d: u32, x: u32, y: u32) -> R {
        match self.wide {
            Wide::Zmm => self.a.vpaddd(zmm(d), zmm(x), zmm(y)),
            _ => self.a.vpaddd(ymm(d), ymm(x), ymm(y)),
        }
    }
    fn srld(&mut self, d: u32, x: u32, bits: u32) -> R {
        match self.wide {
            Wide::Zmm => self.a.vpsrld(zmm(d), zmm(x), bits),
            _ => self.a.vpsrld(ymm(d), ymm(x), bits),
        }
    }
    fn srad(&mut self, d: u32, x: u32, bits: u32) -> R {
        match self.wide {
            Wide::Zmm => self.a.vpsrad(zmm(d), zmm(x), bits),
            _ => self.a.vpsrad(ymm(d), ymm(x), bits),
        }
    }
    /// `acc += Σ u·d` per i32 lane: `u` unsigned bytes (the field), `d` signed (the digits).
    /// Without VNNI through the plan's products and ones registers (see the module doc).
    fn dot(&mut self, plan: Plan, acc: u32, u: u32, base: AsmRegister64, disp: i32) -> R {
        let m = self.mem(base, disp);
        match self.wide {
            Wide::Zmm => self.a.vpdpbusd(zmm(acc), zmm(u), m),
            Wide::Avx2 => {
                let t = plan.products();
                self.a.vpmaddubsw(ymm(t), ymm(u), m)?;
                if plan.narrow {
                    return self.a.vpaddw(ymm(acc), ymm(acc), ymm(t));
                }
                self.a.vpmaddwd(ymm(t), ymm(t), ymm(plan.ones()))?;
                self.a.vpaddd(ymm(acc), ymm(acc), ymm(t))
            }
            _ => self.a.vpdpbusd(ymm(acc), ymm(u), m),
        }
    }
    /// A narrow plan's i16 sums of batch rows and limbs into their i32 accumulators; `zero`
    /// clears them for the next step.
    fn widen(&mut self, plan: Plan, limbs: usize, zero: bool) -> R {
        let t = plan.products();
        for k in 0..plan.rows {
            for p in 0..limbs {
                for j in 0..plan.fields {
                    let narrow = plan.acc(limbs, k, p, j, 0);
                    self.a.vpmaddwd(ymm(t), ymm(narrow), ymm(plan.ones()))?;
                    let wide = plan.wide_acc(limbs, k, p, j, 0);
                    self.a.vpaddd(ymm(wide), ymm(wide), ymm(t))?;
                    if zero {
                        self.zero(narrow)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every dword of vector `d` set to `value` (through ecx and temporary `T[0]`).
    fn broadcast(&mut self, d: u32, value: u32) -> R {
        self.a.mov(ecx, value)?;
        self.a.vmovd(xmm(T[0]), ecx)?;
        match self.wide {
            Wide::Zmm => self.a.vpbroadcastd(zmm(d), xmm(T[0])),
            _ => self.a.vpbroadcastd(ymm(d), xmm(T[0])),
        }
    }
    /// The field masks of `plan` into their registers.
    fn masks(&mut self, plan: Plan) -> R {
        for (i, &mask) in plan.masks().iter().enumerate() {
            self.broadcast(mask_reg(plan.fields, i), mask)?;
        }
        if plan.madd {
            self.broadcast(plan.ones(), 0x0001_0001)?;
        }
        Ok(())
    }

    /// `reg += value` for a 64-bit register.
    fn add_imm(&mut self, reg: AsmRegister64, value: usize) -> R {
        self.add_signed(reg, value as i64)
    }
    /// `reg -= value` for a 64-bit register.
    fn sub_imm(&mut self, reg: AsmRegister64, value: usize) -> R {
        self.add_signed(reg, -(value as i64))
    }
    /// `reg += delta`, through rcx when `delta` does not fit an instruction's 32-bit immediate.
    fn add_signed(&mut self, reg: AsmRegister64, delta: i64) -> R {
        match i32::try_from(delta) {
            Ok(v) => self.a.add(reg, v),
            Err(_) => {
                self.a.mov(rcx, delta as u64)?;
                self.a.add(reg, rcx)
            }
        }
    }
    /// Adds the halves of accumulator `v` (clobbered) down to 128 bits, into `SUMS[slot]`.
    fn fold_to_xmm(&mut self, v: u32, slot: usize) -> R {
        let d = SUMS[slot];
        if self.wide == Wide::Zmm {
            self.a.vextracti64x4(ymm(d), zmm(v), 1)?;
            self.a.vpaddd(ymm(v), ymm(v), ymm(d))?;
        }
        if self.evex() {
            self.a.vextracti32x4(xmm(d), ymm(v), 1)?;
        } else {
            self.a.vextracti128(xmm(d), ymm(v), 1)?;
        }
        self.a.vpaddd(xmm(d), xmm(d), xmm(v))
    }

    /// Stores the lane sums of `SUMS[..limbs]` (clobbered) as consecutive i32s at
    /// `[rdx + disp]`: horizontal adds pair them up, so one batch row's limbs take two or three
    /// `vphaddd` instead of a shuffle-and-add tree each. (`vphaddd` has VEX forms only; the
    /// sums are in registers 0–3, which VEX reaches.)
    fn store_limb_sums(&mut self, limbs: usize, disp: i32) -> R {
        // VEX forms throughout (EVEX `vpextrd` would need AVX-512 DQ).
        self.a.set_prefer_vex(true);
        self.limb_sums(limbs, disp)?;
        self.a.set_prefer_vex(!self.evex());
        Ok(())
    }

    fn limb_sums(&mut self, limbs: usize, disp: i32) -> R {
        let x = |i: usize| xmm(SUMS[i]);
        match limbs {
            1 => {
                self.a.vphaddd(x(0), x(0), x(0))?;
                self.a.vphaddd(x(0), x(0), x(0))?;
                self.a.vmovd(dword_ptr(rdx + disp), x(0))
            }
            2 => {
                self.a.vphaddd(x(0), x(0), x(1))?;
                self.a.vphaddd(x(0), x(0), x(0))?;
                self.a.vmovq(qword_ptr(rdx + disp), x(0))
            }
            3 => {
                self.a.vphaddd(x(0), x(0), x(1))?;
                self.a.vphaddd(x(2), x(2), x(2))?;
                self.a.vphaddd(x(0), x(0), x(2))?;
                self.a.vmovq(qword_ptr(rdx + disp), x(0))?;
                self.a.vpextrd(dword_ptr(rdx + disp + 8), x(0), 2)
            }
            _ => unreachable!("packed has one or three limbs"),
        }
    }
}

/// The machine code of the dot products of `s` with `wide` vectors, with its listing. None for
/// an empty shape (the Cranelift loop handles those).
pub(super) fn dots(wide: Wide, s: Shape) -> Option<MachineCode> {
    if s.rows == 0 || s.batch == 0 || s.blocks == 0 {
        return None;
    }
    let bytes = assemble(wide, s).expect("the packed microkernel assembles");
    let listing = crate::loops::native::x86_listing(&bytes);
    Some(MachineCode {
        name: "packed ternary dot products",
        bytes,
        listing,
        args: 3,
    })
}

/// Arguments (System V): rdi = codes, rsi = digits, rdx = dots. Registers: rdi walks the rows'
/// codes, rdx the dots, r8 the digit rows of the current batch block, r9 and rax the codes and
/// digits of the current group, rcx counts groups, r10 batch blocks, r11 rows.
fn assemble(wide: Wide, s: Shape) -> Result<Vec<u8>, IcedError> {
    let mut m = Asm::new(wide)?;
    let units = s.blocks / GROUP * (GROUP_CODES / m.width()) as usize;
    let full = Plan::best(m.regs(), s.batch, s.limbs, units, wide);
    let rest = s.batch % full.rows;
    let rest_plan = (rest > 0)
        .then(|| Plan::of(m.regs(), rest, s.limbs, units, wide).expect("a smaller block fits"));
    // The masks stay in their registers across rows when every block uses the same ones.
    let shared_masks = rest_plan.is_none_or(|p| p.fields == full.fields);
    if shared_masks {
        m.masks(full)?;
    }
    let masks = !shared_masks;
    if s.batch * s.limbs * s.padded() > CACHED_DIGITS {
        return assemble_batch_outer(m, s, full, rest_plan, masks);
    }
    let blocks = s.batch / full.rows;
    let digit_block = full.rows * s.limbs * s.padded();
    m.a.mov(r11d, s.rows as u32)?;
    let mut row = m.a.create_label();
    m.a.set_label(&mut row)?;
    m.a.mov(r8, rsi)?;
    if blocks > 1 {
        m.a.mov(r10d, blocks as u32)?;
        let mut block = m.a.create_label();
        m.a.set_label(&mut block)?;
        batch_block(&mut m, s, full, masks)?;
        m.add_imm(r8, digit_block)?;
        m.a.dec(r10)?;
        m.a.jne(block)?;
    } else {
        batch_block(&mut m, s, full, masks)?;
        if rest > 0 {
            m.add_imm(r8, digit_block)?;
        }
    }
    if let Some(plan) = rest_plan {
        batch_block(&mut m, s, plan, masks)?;
    }
    m.add_imm(rdi, s.blocks * 16)?;
    m.a.dec(r11)?;
    m.a.jne(row)?;
    m.a.vzeroupper()?;
    m.a.ret()?;
    m.a.assemble(0)
}

/// [`assemble`] with the batch blocks outside the rows: when all the digits do not fit in L1,
/// one batch block's digits stay cached across every row, and the codes are read once per
/// batch block instead (streaming them again costs less than reading every digit from L2 for
/// every row: measured 14.7 → 35 G weights/s at 4096² with 8 batch rows and 3 limbs).
fn assemble_batch_outer(
    mut m: Asm,
    s: Shape,
    full: Plan,
    rest_plan: Option<Plan>,
    masks: bool,
) -> Result<Vec<u8>, IcedError> {
    let blocks = s.batch / full.rows;
    let row_codes = s.blocks * 16;
    let row_dots = s.batch * s.limbs * 4;
    m.a.mov(r8, rsi)?;
    let one_block = |m: &mut Asm, plan: Plan| -> R {
        m.a.mov(r11d, s.rows as u32)?;
        let mut row = m.a.create_label();
        m.a.set_label(&mut row)?;
        batch_block(m, s, plan, masks)?;
        // batch_block advanced rdx past this block's results: on to the same block's next row.
        m.add_imm(rdx, row_dots - plan.rows * s.limbs * 4)?;
        m.add_imm(rdi, row_codes)?;
        m.a.dec(r11)?;
        m.a.jne(row)?;
        // Back to the first row, on to the next block's first results and digits.
        m.sub_imm(rdi, s.rows * row_codes)?;
        m.sub_imm(rdx, s.rows * row_dots - plan.rows * s.limbs * 4)?;
        m.add_imm(r8, plan.rows * s.limbs * s.padded())
    };
    if blocks > 1 {
        m.a.mov(r10d, blocks as u32)?;
        let mut block = m.a.create_label();
        m.a.set_label(&mut block)?;
        one_block(&mut m, full)?;
        m.a.dec(r10)?;
        m.a.jne(block)?;
    } else {
        one_block(&mut m, full)?;
    }
    if let Some(plan) = rest_plan {
        one_block(&mut m, plan)?;
    }
    m.a.vzeroupper()?;
    m.a.ret()?;
    m.a.assemble(0)
}

/// One row's dot products with the batch rows of one block: the digits at r8, the codes at rdi,
/// the results to rdx (advanced past them). `masks`: load the plan's field masks first (else
/// they are in their registers already).
fn batch_block(m: &mut Asm, s: Shape, plan: Plan, masks: bool) -> R {
    if masks {
        m.masks(plan)?;
    }
    let accs = plan.rows * s.limbs * plan.fields * plan.sets * if plan.narrow { 2 } else { 1 };
    for i in 0..accs {
        m.zero(plan.fixed() as u32 + i as u32)?;
    }
    let per_group = (GROUP_CODES / m.width()) as usize;
    let groups_per_step = plan.step_groups(per_group);
    let groups = s.blocks / GROUP;
    let (steps, tail) = (groups / groups_per_step, groups % groups_per_step);
    m.a.mov(r9, rdi)?;
    m.a.mov(rax, r8)?;
    if steps > 0 {
        m.a.mov(ecx, steps as u32)?;
        let mut top = m.a.create_label();
        m.a.set_label(&mut top)?;
        for g in 0..groups_per_step {
            group(m, s, plan, g)?;
        }
        if plan.narrow {
            m.widen(plan, s.limbs, steps > 1 || tail > 0)?;
        }
        m.a.add(r9, GROUP_CODES * groups_per_step as i32)?;
        m.a.add(rax, GROUP_DIGITS * groups_per_step as i32)?;
        m.a.dec(rcx)?;
        m.a.jne(top)?;
    }
    for g in 0..tail {
        group(m, s, plan, g)?;
    }
    if plan.narrow && tail > 0 {
        m.widen(plan, s.limbs, false)?;
    }
    for k in 0..plan.rows {
        for p in 0..s.limbs {
            let first = plan.wide_acc(s.limbs, k, p, 0, 0);
            for t in 0..plan.sets {
                for j in 0..plan.fields {
                    let a = plan.wide_acc(s.limbs, k, p, j, t);
                    if plan.shift(j) > 0 {
                        // Every term of this accumulator is a multiple of 4^j: exact.
                        m.srad(a, a, plan.shift(j))?;
                    }
                    if a != first {
                        m.add(first, first, a)?;
                    }
                }
            }
            m.fold_to_xmm(first, p)?;
        }
        m.store_limb_sums(s.limbs, (k * s.limbs * 4) as i32)?;
    }
    m.add_imm(rdx, plan.rows * s.limbs * 4)
}

/// The vectors of group `g` (counted from r9 / rax) for every batch row and limb of the block.
fn group(m: &mut Asm, s: Shape, plan: Plan, g: usize) -> R {
    let w = m.width();
    let per_group = GROUP_CODES / w;
    let padded = s.padded();
    for h in 0..per_group {
        let unit = g * per_group as usize + h as usize;
        let set = unit % plan.sets;
        m.load(Q, r9, GROUP_CODES * g as i32 + w * h)?;
        if plan.fields == 2 {
            m.srld(Q4, Q, 4)?;
        }
        for j in 0..4 {
            let t = T[j % 2];
            match plan.fields {
                4 => m.and(t, Q, mask_reg(4, j))?,
                2 => m.and(t, if j < 2 { Q } else { Q4 }, mask_reg(2, j % 2))?,
                _ => {
                    if j == 0 {
                        m.and(t, Q, mask_reg(1, 0))?
                    } else {
                        // Bits shifted in from the next byte are masked off.
                        m.srld(t, Q, 2 * j as u32)?;
                        m.and(t, t, mask_reg(1, 0))?
                    }
                }
            }
            for k in 0..plan.rows {
                for p in 0..s.limbs {
                    let at = (k * s.limbs + p) * padded;
                    let disp = at as i32 + GROUP_DIGITS * g as i32 + GROUP_CODES * j as i32 + w * h;
                    m.dot(plan, plan.acc(s.limbs, k, p, j, set), t, rax, disp)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accumulators never overlap the fixed registers nor run past the register file.
    #[test]
    fn plans_fit_their_register_files() {
        for (regs, wide) in [(16, Wide::YmmVex), (16, Wide::Avx2), (32, Wide::Zmm)] {
            for limbs in [1, 3] {
                for batch in 1..=12 {
                    let p = Plan::best(regs, batch, limbs, 4, wide);
                    let last = p.wide_acc(limbs, p.rows - 1, limbs - 1, p.fields - 1, p.sets - 1);
                    assert!((last as usize) < regs, "{regs} {limbs} {batch}: {p:?}");
                    let masks = p.masks().len();
                    let top = if p.madd {
                        p.products()
                    } else {
                        mask_reg(p.fields, masks - 1)
                    };
                    assert_eq!(top as usize + 1, p.fixed(), "{wide:?}");
                }
            }
        }
    }
}
