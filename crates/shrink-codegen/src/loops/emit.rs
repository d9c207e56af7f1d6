//! The one emitter: lowers a [`Kernel`] of the loop language into the body of a Cranelift
//! function with the kernel ABI signature `(inputs, outputs, scratch) -> i32`.
//!
//! Safety is decided here, once for every op: each load and store index is bounded by interval
//! arithmetic over the loop extents; an index not proven inside its buffer gets a run-time check
//! that returns [`status::OUT_OF_BOUNDS`]. Integer division never traps (see [`BinOp::Div`]).
//! Nothing emitted calls out: rounding without native instructions is done with the 2^23 / 2^52
//! trick, and no memcpy/memset helpers are used.
use super::ir::*;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    Block, BlockArg, Function, GlobalValue, InstBuilder, MemFlagsData, Type, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

pub use super::isa::{IsaFacts, Wide, kernel_signature, machine_signature};

/// The Cranelift type holding a scalar of type `ty`.
pub fn clif_type(ty: Ty) -> Type {
    match ty {
        Ty::Bool | Ty::I8 | Ty::U8 => types::I8,
        Ty::I16 | Ty::U16 => types::I16,
        Ty::I32 | Ty::U32 => types::I32,
        Ty::I64 | Ty::U64 => types::I64,
        Ty::F32 => types::F32,
        Ty::F64 => types::F64,
    }
}

fn flags() -> MemFlagsData {
    // Every access is bounds-checked (statically or at run time), so it cannot trap; caller
    // buffers need not be aligned.
    MemFlagsData::new().with_notrap()
}

/// Writes `kernel` into `func` (whose signature must be [`kernel_signature`]). `data[i]` is the
/// global value of buffer `i` when it lives in read-only data (`Place::Const` / `Place::Table`).
/// Native pieces emit Cranelift IR only (no machine code: see [`emit_kernel_with`]).
pub fn emit_kernel(
    kernel: &Kernel,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    isa: &IsaFacts,
    data: &[Option<GlobalValue>],
) {
    emit_kernel_with(kernel, func, fctx, isa, data, None)
}

/// [`emit_kernel`] with a place for the machine code of native pieces.
pub fn emit_kernel_with<'a>(
    kernel: &'a Kernel,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    isa: &IsaFacts,
    data: &[Option<GlobalValue>],
    machine: Option<&'a mut dyn MachineSink>,
) {
    let mut fb = FunctionBuilder::new(func, fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let params = fb.block_params(entry).to_vec();
    let ptr = isa.pointer;
    let fail = fb.create_block();
    fb.append_block_param(fail, types::I32);
    let mut bases = Vec::with_capacity(kernel.bufs.len());
    let used = kernel.used_bufs();
    for (i, decl) in kernel.bufs.iter().enumerate() {
        if !used.contains(&BufId(i as u32)) {
            // Never addressed: no load of its pointer, no data object.
            bases.push(fb.ins().iconst(ptr, 0));
            continue;
        }
        let base = match &decl.place {
            Place::Input(k) => {
                let off = (*k * ptr.bytes() as usize) as i32;
                fb.ins().load(ptr, flags().with_readonly(), params[0], off)
            }
            Place::Output(k) => {
                let off = (*k * ptr.bytes() as usize) as i32;
                fb.ins().load(ptr, flags().with_readonly(), params[1], off)
            }
            // The program resolves workspaces to scratch offsets; a kernel run on its own
            // (unit tests) has its workspace at the start of the scratch buffer.
            Place::Scratch(off) | Place::Workspace(off) => {
                fb.ins().iadd_imm_s(params[2], *off as i64)
            }
            Place::Const(_) | Place::Table(_) => {
                let gv = data[i].expect("data object of a read-only buffer");
                fb.ins().symbol_value(ptr, gv)
            }
        };
        bases.push(base);
    }
    let vars: Vec<Variable> = kernel
        .vars
        .iter()
        .map(|&t| fb.declare_var(clif_type(t)))
        .collect();
    let mut set_count = vec![0u32; kernel.vars.len()];
    count_sets(&kernel.body, &mut set_count);
    let mut e = Emitter {
        fb,
        kernel,
        vars,
        bases,
        ranges: vec![None; kernel.vars.len()],
        set_once: set_count.iter().map(|&c| c == 1).collect(),
        fail,
        has_round: isa.has_round,
        simd: isa.simd,
        x86: isa.x86,
        vnni: isa.vnni,
        fma: isa.fma,
        shuffle: isa.shuffle,
        wide: isa.wide,
        float_wide: isa.float_wide,
        machine,
        ptr,
    };
    e.stmts(&kernel.body);
    let zero = e.fb.ins().iconst(types::I32, 0);
    e.fb.ins().return_(&[zero]);
    e.fb.switch_to_block(fail);
    let code = e.fb.block_params(fail)[0];
    e.fb.ins().return_(&[code]);
    e.fb.seal_all_blocks();
    e.fb.finalize(isa.frontend);
}

/// Loops of at most this many iterations whose body is small are unrolled.
const MAX_UNROLL: usize = 4;
/// Most statements (nested loops counted per iteration) an unrolled loop may expand to.
const UNROLL_BUDGET: usize = 32;

/// Statements `body` executes per run, nested loops counted per iteration (saturating).
fn stmt_weight(body: &[Stmt]) -> usize {
    body.iter().fold(0usize, |acc, s| {
        acc.saturating_add(match s {
            Stmt::Loop { extent, body, .. } => {
                extent.saturating_mul(stmt_weight(body)).saturating_add(1)
            }
            Stmt::If {
                then, otherwise, ..
            } => 1 + stmt_weight(then).saturating_add(stmt_weight(otherwise)),
            _ => 1,
        })
    })
}

fn count_sets(body: &[Stmt], counts: &mut [u32]) {
    for s in body {
        match s {
            Stmt::Set { var, .. } => counts[var.0 as usize] += 1,
            Stmt::Loop { var, body, .. } => {
                counts[var.0 as usize] += 2;
                count_sets(body, counts);
            }
            Stmt::If {
                then, otherwise, ..
            } => {
                count_sets(then, counts);
                count_sets(otherwise, counts);
            }
            Stmt::Store { .. } | Stmt::Fail { .. } => {}
            Stmt::Native(n) => count_sets(&n.fallback, counts),
        }
    }
}

pub(super) struct Emitter<'a, 'f> {
    pub(super) fb: FunctionBuilder<'f>,
    pub(super) kernel: &'a Kernel,
    pub(super) vars: Vec<Variable>,
    pub(super) bases: Vec<Value>,
    /// Known value range of each I64 variable (loop counters, single-assignment indices).
    pub(super) ranges: Vec<Option<(i64, i64)>>,
    pub(super) set_once: Vec<bool>,
    fail: Block,
    pub(super) has_round: bool,
    pub(super) simd: bool,
    pub(super) x86: bool,
    pub(super) vnni: bool,
    fma: bool,
    shuffle: bool,
    wide: Option<Wide>,
    float_wide: Option<Wide>,
    machine: Option<&'a mut dyn MachineSink>,
    pub(super) ptr: Type,
}

impl Emitter<'_, '_> {
    pub(super) fn stmts(&mut self, body: &[Stmt]) {
        for s in body {
            self.stmt(s);
        }
    }

    pub(super) fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Loop { var, extent, body } => self.for_loop(*var, *extent, body),
            Stmt::Set { var, value } => {
                let v = self.expr(value);
                let i = var.0 as usize;
                self.ranges[i] = if self.set_once[i] {
                    self.range(value)
                } else {
                    None
                };
                self.fb.def_var(self.vars[i], v);
            }
            Stmt::Store { buf, index, value } => {
                let (addr, disp) = self.address(*buf, index);
                let v = self.expr(value);
                self.fb.ins().store(flags(), v, addr, disp);
            }
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                let c = self.expr(cond);
                let (tb, eb, join) = (
                    self.fb.create_block(),
                    self.fb.create_block(),
                    self.fb.create_block(),
                );
                self.fb.ins().brif(c, tb, &[], eb, &[]);
                self.fb.switch_to_block(tb);
                self.stmts(then);
                self.fb.ins().jump(join, &[]);
                self.fb.switch_to_block(eb);
                self.stmts(otherwise);
                self.fb.ins().jump(join, &[]);
                self.fb.switch_to_block(join);
            }
            Stmt::Fail { code } => {
                let c = self.fb.ins().iconst(types::I32, *code as i64);
                self.fb.ins().jump(self.fail, &[BlockArg::Value(c)]);
                // Whatever follows in this list is unreachable; give it a block of its own.
                let dead = self.fb.create_block();
                self.fb.switch_to_block(dead);
            }
            Stmt::Native(n) if self.simd && (self.shuffle || !n.shuffles) => {
                let mut cx = NativeCx {
                    fb: &mut self.fb,
                    bases: &self.bases,
                    pointer: self.ptr,
                    x86: self.x86,
                    vnni: self.vnni,
                    fma: self.fma,
                    wide: self.wide,
                    float_wide: self.float_wide,
                    machine: match &mut self.machine {
                        Some(m) => Some(&mut **m),
                        None => None,
                    },
                };
                (n.emit)(&mut cx);
            }
            Stmt::Native(n) => self.stmts(&n.fallback),
        }
    }

    fn for_loop(&mut self, var: VarId, extent: usize, body: &[Stmt]) {
        if extent == 0 {
            return;
        }
        if self.simd && self.vector_loop(var, extent, body) {
            return;
        }
        self.scalar_range(var, 0, extent, body);
    }

    /// `for var in start..end { body }` scalar: unrolled when tiny, else a loop.
    pub(super) fn scalar_range(&mut self, var: VarId, start: usize, end: usize, body: &[Stmt]) {
        let n = end - start;
        if n <= MAX_UNROLL && n * stmt_weight(body) <= UNROLL_BUDGET {
            self.unrolled(var, start, end, body);
        } else {
            self.scalar_loop(var, start, end, body);
        }
        // The loop variable keeps its range only inside the loop body.
        self.ranges[var.0 as usize] = None;
    }

    /// A tiny loop as straight-line copies of its body, the counter a constant in each (so
    /// every index in them is a constant range too).
    fn unrolled(&mut self, var: VarId, start: usize, end: usize, body: &[Stmt]) {
        let i = var.0 as usize;
        for k in start as i64..end as i64 {
            self.ranges[i] = Some((k, k));
            let c = self.fb.ins().iconst(types::I64, k);
            self.fb.def_var(self.vars[i], c);
            self.stmts(body);
        }
        self.ranges[i] = None;
    }

    /// `for var in start..end { body }` one element at a time (`start < end`). Leaves `var`'s
    /// range set; the caller clears it.
    fn scalar_loop(&mut self, var: VarId, start: usize, end: usize, body: &[Stmt]) {
        let i = var.0 as usize;
        self.ranges[i] = Some((start as i64, end as i64 - 1));
        let cv = self.vars[i];
        let first = self.fb.ins().iconst(types::I64, start as i64);
        self.fb.def_var(cv, first);
        if end - start == 1 {
            self.stmts(body);
            return;
        }
        let (head, exit) = (self.fb.create_block(), self.fb.create_block());
        self.fb.ins().jump(head, &[]);
        self.fb.switch_to_block(head);
        self.stmts(body);
        let cur = self.fb.use_var(cv);
        let next = self.fb.ins().iadd_imm_s(cur, 1);
        self.fb.def_var(cv, next);
        let more = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::SignedLessThan, next, end as i64);
        self.fb.ins().brif(more, head, &[], exit, &[]);
        self.fb.switch_to_block(exit);
    }

    /// The address of element `index` of `buf`, checked against its length, as (base, byte
    /// displacement): a constant added to a proven index goes into the instruction's
    /// displacement, so `x[n + k]` for many `k` shares one address register instead of holding
    /// one per `k`.
    fn address(&mut self, buf: BufId, index: &Expr) -> (Value, i32) {
        let decl = &self.kernel.bufs[buf.0 as usize];
        let (len, size) = (decl.len as i64, decl.ty.bytes() as i64);
        let proven = matches!(self.range(index), Some((lo, hi)) if lo >= 0 && hi < len);
        if proven {
            return self.displaced(buf, index);
        }
        let idx = self.expr(index);
        let bad = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, idx, len);
        let ok = self.fb.create_block();
        let code = self
            .fb
            .ins()
            .iconst(types::I32, status::OUT_OF_BOUNDS as i64);
        self.fb
            .ins()
            .brif(bad, self.fail, &[BlockArg::Value(code)], ok, &[]);
        self.fb.switch_to_block(ok);
        (self.scaled(buf, idx, size), 0)
    }

    /// `base + index·size` of an index known to be in bounds, its constant part peeled into the
    /// displacement when that fits an `i32`.
    pub(super) fn displaced(&mut self, buf: BufId, index: &Expr) -> (Value, i32) {
        let size = self.kernel.bufs[buf.0 as usize].ty.bytes() as i64;
        let (rest, k) = split_constant(index);
        let disp = k.checked_mul(size).and_then(|d| i32::try_from(d).ok());
        match (rest, disp) {
            (Some(rest), Some(d)) if k != 0 => {
                let idx = self.expr(&rest);
                (self.scaled(buf, idx, size), d)
            }
            _ => {
                let idx = self.expr(index);
                (self.scaled(buf, idx, size), 0)
            }
        }
    }

    fn scaled(&mut self, buf: BufId, idx: Value, size: i64) -> Value {
        let idx = if self.ptr == types::I64 {
            idx
        } else {
            self.fb.ins().ireduce(self.ptr, idx)
        };
        let off = self.fb.ins().imul_imm_s(idx, size);
        self.fb.ins().iadd(self.bases[buf.0 as usize], off)
    }

    /// Interval of an I64 expression, when it can be bounded.
    pub(super) fn range(&self, e: &Expr) -> Option<(i64, i64)> {
        let int_range = |t: Ty| -> Option<(i64, i64)> {
            Some(match t {
                Ty::Bool => (0, 1),
                Ty::I8 => (i8::MIN as i64, i8::MAX as i64),
                Ty::U8 => (0, u8::MAX as i64),
                Ty::I16 => (i16::MIN as i64, i16::MAX as i64),
                Ty::U16 => (0, u16::MAX as i64),
                Ty::I32 => (i32::MIN as i64, i32::MAX as i64),
                Ty::U32 => (0, u32::MAX as i64),
                _ => return None,
            })
        };
        match &*e.kind {
            ExprKind::Lit(Lit::Int(v)) if e.ty == Ty::I64 => Some((*v, *v)),
            ExprKind::Var(v) if e.ty == Ty::I64 => self.ranges[v.0 as usize],
            ExprKind::Cast(x) if e.ty == Ty::I64 && (x.ty.is_int() || x.ty == Ty::Bool) => {
                int_range(x.ty)
            }
            ExprKind::Select(_, a, b) if e.ty == Ty::I64 => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                Some((a.0.min(b.0), a.1.max(b.1)))
            }
            ExprKind::Binary(op, a, b) if e.ty == Ty::I64 => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                match op {
                    BinOp::Add => Some((a.0.checked_add(b.0)?, a.1.checked_add(b.1)?)),
                    BinOp::Sub => Some((a.0.checked_sub(b.1)?, a.1.checked_sub(b.0)?)),
                    BinOp::Mul => {
                        let c = [
                            a.0.checked_mul(b.0)?,
                            a.0.checked_mul(b.1)?,
                            a.1.checked_mul(b.0)?,
                            a.1.checked_mul(b.1)?,
                        ];
                        Some((*c.iter().min()?, *c.iter().max()?))
                    }
                    BinOp::Min => Some((a.0.min(b.0), a.1.min(b.1))),
                    BinOp::Max => Some((a.0.max(b.0), a.1.max(b.1))),
                    BinOp::Div if b.0 > 0 && a.0 >= 0 => Some((a.0 / b.1, a.1 / b.0)),
                    BinOp::Rem if b.0 > 0 && a.0 >= 0 => Some((0, a.1.min(b.1 - 1))),
                    BinOp::And if b.0 >= 0 && a.0 >= 0 => Some((0, a.1.min(b.1))),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    pub(super) fn expr(&mut self, e: &Expr) -> Value {
        let ct = clif_type(e.ty);
        match &*e.kind {
            ExprKind::Lit(l) => match *l {
                Lit::Int(v) => {
                    let bits = ct.bits();
                    let v = if bits < 64 {
                        v & ((1i64 << bits) - 1)
                    } else {
                        v
                    };
                    self.fb.ins().iconst(ct, v)
                }
                Lit::F32(v) => self.fb.ins().f32const(v),
                Lit::F64(v) => self.fb.ins().f64const(v),
            },
            ExprKind::Var(v) => self.fb.use_var(self.vars[v.0 as usize]),
            ExprKind::Load { buf, index } => {
                let (addr, disp) = self.address(*buf, index);
                let f = if self.kernel.bufs[buf.0 as usize].writable() {
                    flags()
                } else {
                    flags().with_readonly()
                };
                self.fb.ins().load(ct, f, addr, disp)
            }
            ExprKind::Unary(op, a) => {
                let x = self.expr(a);
                self.unary(*op, a.ty, x)
            }
            ExprKind::Binary(op, a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                self.binary(*op, a.ty, x, y)
            }
            ExprKind::Cmp(op, a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                self.compare(*op, a.ty, x, y)
            }
            ExprKind::Select(c, a, b) => {
                let (c, x, y) = (self.expr(c), self.expr(a), self.expr(b));
                self.fb.ins().select(c, x, y)
            }
            ExprKind::Cast(a) => {
                let x = self.expr(a);
                self.cast(a.ty, e.ty, x)
            }
            ExprKind::Bitcast(a) => {
                let x = self.expr(a);
                // Bool and the 8-bit integers share one Cranelift type: nothing to do.
                if clif_type(a.ty) == ct {
                    x
                } else {
                    self.fb.ins().bitcast(ct, MemFlagsData::new(), x)
                }
            }
        }
    }

    pub(super) fn unary(&mut self, op: UnOp, ty: Ty, x: Value) -> Value {
        if ty.is_float() {
            return match op {
                UnOp::Neg => self.fb.ins().fneg(x),
                UnOp::Abs => self.fb.ins().fabs(x),
                UnOp::Sqrt => self.fb.ins().sqrt(x),
                UnOp::Floor | UnOp::Ceil | UnOp::Trunc | UnOp::Nearest if !self.has_round => {
                    self.soft_round(op, ty, x)
                }
                UnOp::Floor => self.fb.ins().floor(x),
                UnOp::Ceil => self.fb.ins().ceil(x),
                UnOp::Trunc => self.fb.ins().trunc(x),
                UnOp::Nearest => self.fb.ins().nearest(x),
                UnOp::Not => unreachable!("bitwise not of a float"),
            };
        }
        match op {
            UnOp::Neg => self.fb.ins().ineg(x),
            UnOp::Abs if ty.is_signed() => self.fb.ins().iabs(x),
            UnOp::Not => self.fb.ins().bnot(x),
            // Unsigned abs and integer rounding are the identity.
            UnOp::Abs | UnOp::Floor | UnOp::Ceil | UnOp::Trunc | UnOp::Nearest => x,
            UnOp::Sqrt => unreachable!("sqrt of an integer"),
        }
    }

    /// floor/ceil/trunc/nearest without SSE4.1-style instructions: |x| ≥ 2^mantissa is already
    /// integral; below it, adding and subtracting 2^mantissa rounds to nearest even, and the
    /// other modes correct that by one.
    fn soft_round(&mut self, op: UnOp, ty: Ty, x: Value) -> Value {
        let ct = clif_type(ty);
        let big = if ty == Ty::F32 {
            self.fb.ins().f32const(8_388_608.0)
        } else {
            self.fb.ins().f64const(4_503_599_627_370_496.0)
        };
        let one = if ty == Ty::F32 {
            self.fb.ins().f32const(1.0)
        } else {
            self.fb.ins().f64const(1.0)
        };
        let ax = self.fb.ins().fabs(x);
        let r0 = self.fb.ins().fadd(ax, big);
        let r0 = self.fb.ins().fsub(r0, big);
        let near = self.fb.ins().fcopysign(r0, x);
        let rounded = match op {
            UnOp::Nearest => near,
            UnOp::Floor => {
                let gt = self.fb.ins().fcmp(FloatCC::GreaterThan, near, x);
                let m = self.fb.ins().fsub(near, one);
                self.fb.ins().select(gt, m, near)
            }
            UnOp::Ceil => {
                let lt = self.fb.ins().fcmp(FloatCC::LessThan, near, x);
                let p = self.fb.ins().fadd(near, one);
                self.fb.ins().select(lt, p, near)
            }
            _ => {
                // trunc: round |x| down, restore the sign.
                let gt = self.fb.ins().fcmp(FloatCC::GreaterThan, r0, ax);
                let m = self.fb.ins().fsub(r0, one);
                let t = self.fb.ins().select(gt, m, r0);
                self.fb.ins().fcopysign(t, x)
            }
        };
        // Keep the sign of zero results (floor(-0.5) is -1, ceil(-0.5) is -0).
        let rounded = self.fb.ins().fcopysign(rounded, x);
        let small = self.fb.ins().fcmp(FloatCC::LessThan, ax, big);
        let _ = ct;
        // NaN compares false: it passes through unchanged, as do the large values.
        self.fb.ins().select(small, rounded, x)
    }

    pub(super) fn binary(&mut self, op: BinOp, ty: Ty, x: Value, y: Value) -> Value {
        let ct = clif_type(ty);
        if ty.is_float() {
            return match op {
                BinOp::Add => self.fb.ins().fadd(x, y),
                BinOp::Sub => self.fb.ins().fsub(x, y),
                BinOp::Mul => self.fb.ins().fmul(x, y),
                BinOp::Div => self.fb.ins().fdiv(x, y),
                BinOp::Min => self.fb.ins().fmin(x, y),
                BinOp::Max => self.fb.ins().fmax(x, y),
                _ => unreachable!("{op:?} of floats"),
            };
        }
        let signed = ty.is_signed();
        match op {
            BinOp::Add => self.fb.ins().iadd(x, y),
            BinOp::Sub => self.fb.ins().isub(x, y),
            BinOp::Mul => self.fb.ins().imul(x, y),
            BinOp::Div | BinOp::Rem => {
                // A zero divisor becomes 1 (the op checks zero itself when it must report it);
                // a signed -1 divisor is done as negation (MIN / -1 would trap).
                let zero = self.fb.ins().iconst(ct, 0);
                let one = self.fb.ins().iconst(ct, 1);
                let is_zero = self.fb.ins().icmp(IntCC::Equal, y, zero);
                let mut d = self.fb.ins().select(is_zero, one, y);
                let minus_one = if signed {
                    let m = self.fb.ins().iconst(ct, mask(ct));
                    let is_m = self.fb.ins().icmp(IntCC::Equal, d, m);
                    d = self.fb.ins().select(is_m, one, d);
                    Some(is_m)
                } else {
                    None
                };
                let r = match (op, signed) {
                    (BinOp::Div, true) => self.fb.ins().sdiv(x, d),
                    (BinOp::Div, false) => self.fb.ins().udiv(x, d),
                    (_, true) => self.fb.ins().srem(x, d),
                    (_, false) => self.fb.ins().urem(x, d),
                };
                match minus_one {
                    Some(is_m) => {
                        let alt = if op == BinOp::Div {
                            self.fb.ins().ineg(x)
                        } else {
                            zero
                        };
                        self.fb.ins().select(is_m, alt, r)
                    }
                    None => r,
                }
            }
            BinOp::Min if signed => self.fb.ins().smin(x, y),
            BinOp::Min => self.fb.ins().umin(x, y),
            BinOp::Max if signed => self.fb.ins().smax(x, y),
            BinOp::Max => self.fb.ins().umax(x, y),
            BinOp::And => self.fb.ins().band(x, y),
            BinOp::Or => self.fb.ins().bor(x, y),
            BinOp::Xor => self.fb.ins().bxor(x, y),
            BinOp::Shl => self.fb.ins().ishl(x, y),
            BinOp::Shr if signed => self.fb.ins().sshr(x, y),
            BinOp::Shr => self.fb.ins().ushr(x, y),
        }
    }

    pub(super) fn compare(&mut self, op: CmpOp, ty: Ty, x: Value, y: Value) -> Value {
        if ty.is_float() {
            let cc = match op {
                CmpOp::Eq => FloatCC::Equal,
                CmpOp::Ne => FloatCC::NotEqual,
                CmpOp::Lt => FloatCC::LessThan,
                CmpOp::Le => FloatCC::LessThanOrEqual,
                CmpOp::Gt => FloatCC::GreaterThan,
                CmpOp::Ge => FloatCC::GreaterThanOrEqual,
            };
            return self.fb.ins().fcmp(cc, x, y);
        }
        let s = ty.is_signed();
        let cc = match op {
            CmpOp::Eq => IntCC::Equal,
            CmpOp::Ne => IntCC::NotEqual,
            CmpOp::Lt if s => IntCC::SignedLessThan,
            CmpOp::Lt => IntCC::UnsignedLessThan,
            CmpOp::Le if s => IntCC::SignedLessThanOrEqual,
            CmpOp::Le => IntCC::UnsignedLessThanOrEqual,
            CmpOp::Gt if s => IntCC::SignedGreaterThan,
            CmpOp::Gt => IntCC::UnsignedGreaterThan,
            CmpOp::Ge if s => IntCC::SignedGreaterThanOrEqual,
            CmpOp::Ge => IntCC::UnsignedGreaterThanOrEqual,
        };
        self.fb.ins().icmp(cc, x, y)
    }

    pub(super) fn cast(&mut self, from: Ty, to: Ty, x: Value) -> Value {
        let (fc, tc) = (clif_type(from), clif_type(to));
        if from == to {
            return x;
        }
        if to == Ty::Bool {
            return if from.is_float() {
                let z = if from == Ty::F32 {
                    self.fb.ins().f32const(0.0)
                } else {
                    self.fb.ins().f64const(0.0)
                };
                self.fb.ins().fcmp(FloatCC::NotEqual, x, z)
            } else {
                self.fb.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
            };
        }
        match (from.is_float(), to.is_float()) {
            (true, true) => {
                if to == Ty::F64 {
                    self.fb.ins().fpromote(tc, x)
                } else {
                    self.fb.ins().fdemote(tc, x)
                }
            }
            (false, true) => {
                // Narrow integers widen first: the conversions take 32/64-bit operands.
                let w = self.int_resize(from, if from.bytes() == 8 { from } else { Ty::I64 }, x);
                if from.is_signed() || from.bytes() < 8 {
                    self.fb.ins().fcvt_from_sint(tc, w)
                } else {
                    self.fb.ins().fcvt_from_uint(tc, w)
                }
            }
            (true, false) => {
                // Saturating conversion to a 64-bit integer, then clamp into the target range,
                // so the result is what Rust's `as` gives (NaN → 0).
                if to.bytes() == 8 {
                    return if to.is_signed() {
                        self.fb.ins().fcvt_to_sint_sat(types::I64, x)
                    } else {
                        self.fb.ins().fcvt_to_uint_sat(types::I64, x)
                    };
                }
                let wide = self.fb.ins().fcvt_to_sint_sat(types::I64, x);
                let (lo, hi) = int_bounds(to);
                let lo = self.fb.ins().iconst(types::I64, lo);
                let hi = self.fb.ins().iconst(types::I64, hi);
                let c = self.fb.ins().smax(wide, lo);
                let c = self.fb.ins().smin(c, hi);
                self.fb.ins().ireduce(tc, c)
            }
            (false, false) => {
                let _ = fc;
                self.int_resize(from, to, x)
            }
        }
    }

    /// Integer (or Bool) to integer: wraps, extending by the source's signedness.
    fn int_resize(&mut self, from: Ty, to: Ty, x: Value) -> Value {
        let (fc, tc) = (clif_type(from), clif_type(to));
        if fc == tc {
            x
        } else if fc.bits() > tc.bits() {
            self.fb.ins().ireduce(tc, x)
        } else if from.is_signed() {
            self.fb.ins().sextend(tc, x)
        } else {
            self.fb.ins().uextend(tc, x)
        }
    }
}

fn mask(t: Type) -> i64 {
    if t.bits() >= 64 {
        -1
    } else {
        (1i64 << t.bits()) - 1
    }
}

fn int_bounds(t: Ty) -> (i64, i64) {
    match t {
        Ty::I8 => (i8::MIN as i64, i8::MAX as i64),
        Ty::U8 => (0, u8::MAX as i64),
        Ty::I16 => (i16::MIN as i64, i16::MAX as i64),
        Ty::U16 => (0, u16::MAX as i64),
        Ty::I32 => (i32::MIN as i64, i32::MAX as i64),
        Ty::U32 => (0, u32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// `index` as `rest + k` for a literal `k` (peeling nested `+ literal` and `literal +`); `rest`
/// is `None` when the whole index is the literal.
fn split_constant(index: &Expr) -> (Option<Expr>, i64) {
    match &*index.kind {
        ExprKind::Lit(Lit::Int(k)) if index.ty == Ty::I64 => (None, *k),
        ExprKind::Binary(BinOp::Add, a, b) if index.ty == Ty::I64 => {
            let (ra, ka) = split_constant(a);
            let (rb, kb) = split_constant(b);
            let rest = match (ra, rb) {
                (Some(x), Some(y)) => Some(x.add(y)),
                (x, y) => x.or(y),
            };
            match ka.checked_add(kb) {
                Some(k) => (rest, k),
                None => (Some(index.clone()), 0),
            }
        }
        _ => (Some(index.clone()), 0),
    }
}
