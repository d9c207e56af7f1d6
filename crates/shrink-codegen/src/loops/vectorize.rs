//! Vectorization of innermost loops, part of the emitter: a loop whose body is straight-line
//! code over contiguous elements gets a main loop of 128-bit vectors plus a scalar remainder,
//! with results identical to the scalar loop in every lane.
//!
//! A body qualifies when it is only `Set`s of variables defined in it (once) and `Store`s, every
//! load or store index is loop-invariant or `invariant + loop_var` (stride 1), and every
//! operation on per-iteration values has a lane-wise Cranelift equivalent of the same meaning:
//! float `+ - × ÷ min max neg abs sqrt` (and rounding where native), integer wrapping
//! `+ - ×`, bit operations, shifts by an invariant amount, comparisons (as lane masks, so
//! `Select` is a `bitselect`), same-width casts and bitcasts, f32 ↔ 32-bit integer conversions.
//! Integer division is never vectorized, nor anything carried across iterations (reductions:
//! reassociating a float sum would change it). All values varying per iteration must have the
//! same width; that width fixes the lane count (f32x4, f64x2, i16x8, i8x16, …).
//!
//! Invariant expressions are computed as scalars and splatted; `invariant + loop_var` indices
//! are computed as scalars for lane 0 (the loop counter steps by the lane count). Vector
//! accesses must be proven inside their buffers for the whole vector, or the loop stays scalar.
//! A loop storing into memory it also reads is vectorized only when every such read is of the
//! element the same iteration writes.
use super::emit::{Emitter, clif_type};
use super::ir::*;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Type, Value, types};
use std::collections::{HashMap, HashSet};

/// How an expression varies with the loop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The same in every iteration: computed as a scalar.
    Uniform,
    /// An I64 `uniform + loop_var`: an index of contiguous elements (computed for lane 0).
    Affine,
    /// One value per lane.
    Varying,
}

/// The result of analysing a loop body.
pub(super) struct Plan {
    lanes: usize,
    /// Width in bytes of every varying value (Bool masks take this width too).
    width: usize,
    classes: HashMap<*const ExprKind, Class>,
    temps: HashMap<VarId, Class>,
}

struct Analysis {
    var: VarId,
    has_round: bool,
    classes: HashMap<*const ExprKind, Class>,
    temps: HashMap<VarId, Class>,
    /// Variables set in the body (a use before their set would carry a value across).
    set_here: HashSet<VarId>,
    widths: HashSet<usize>,
    /// (buffer, index, class of the index) of every load.
    loads: Vec<(BufId, Expr, Class)>,
    stores: Vec<(BufId, Expr)>,
}

impl Analysis {
    fn class(&mut self, e: &Expr) -> Option<Class> {
        let key = Rc::as_ptr(&e.kind);
        if let Some(&c) = self.classes.get(&key) {
            return Some(c);
        }
        let c = self.classify(e)?;
        self.classes.insert(key, c);
        Some(c)
    }

    fn varying(&mut self, ty: Ty) {
        if ty != Ty::Bool {
            self.widths.insert(ty.bytes());
        }
    }

    fn classify(&mut self, e: &Expr) -> Option<Class> {
        use Class::*;
        Some(match &*e.kind {
            ExprKind::Lit(_) => Uniform,
            ExprKind::Var(v) if *v == self.var => Affine,
            ExprKind::Var(v) => match self.temps.get(v) {
                Some(&c) => c,
                None if self.set_here.contains(v) => return None,
                None => Uniform,
            },
            ExprKind::Load { buf, index } => {
                let c = self.class(index)?;
                self.loads.push((*buf, index.clone(), c));
                match c {
                    Uniform => Uniform,
                    Affine => {
                        // A Bool in memory is a byte: only in an all-byte body.
                        self.widths.insert(e.ty.bytes());
                        Varying
                    }
                    Varying => return None,
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (ca, cb) = (self.class(a)?, self.class(b)?);
                match (ca, cb) {
                    (Uniform, Uniform) => Uniform,
                    (Affine, Uniform) | (Uniform, Affine) if e.ty == Ty::I64 => {
                        let one = |x: &Expr| matches!(&*x.kind, ExprKind::Lit(Lit::Int(1)));
                        match op {
                            BinOp::Add => Affine,
                            BinOp::Sub if ca == Affine => Affine,
                            BinOp::Mul if (ca == Affine && one(b)) || (cb == Affine && one(a)) => {
                                Affine
                            }
                            _ => return None,
                        }
                    }
                    (Affine, _) | (_, Affine) => return None,
                    _ => {
                        if !self.binary_ok(*op, a.ty, cb) {
                            return None;
                        }
                        self.varying(a.ty);
                        Varying
                    }
                }
            }
            ExprKind::Unary(op, a) => match self.class(a)? {
                Uniform => Uniform,
                Affine => return None,
                Varying => {
                    let ok = match op {
                        UnOp::Sqrt => a.ty.is_float(),
                        UnOp::Floor | UnOp::Ceil | UnOp::Trunc | UnOp::Nearest => {
                            self.has_round || !a.ty.is_float()
                        }
                        UnOp::Not => !a.ty.is_float(),
                        UnOp::Neg | UnOp::Abs => a.ty != Ty::Bool,
                    };
                    if !ok {
                        return None;
                    }
                    self.varying(a.ty);
                    Varying
                }
            },
            ExprKind::Cmp(_, a, b) => match (self.class(a)?, self.class(b)?) {
                (Uniform, Uniform) => Uniform,
                (Affine, _) | (_, Affine) => return None,
                _ => {
                    self.varying(a.ty);
                    Varying
                }
            },
            ExprKind::Select(c, a, b) => match (self.class(c)?, self.class(a)?, self.class(b)?) {
                (Uniform, Uniform, Uniform) => Uniform,
                (Affine, _, _) | (_, Affine, _) | (_, _, Affine) => return None,
                _ => {
                    self.varying(e.ty);
                    Varying
                }
            },
            ExprKind::Cast(a) => match self.class(a)? {
                Uniform => Uniform,
                Affine => return None,
                Varying => {
                    let (f, t) = (a.ty, e.ty);
                    let ok = f == t
                        || f == Ty::Bool
                        || t == Ty::Bool
                        || (f.is_int() && t.is_int() && f.bytes() == t.bytes())
                        || (f == Ty::F32 && matches!(t, Ty::I32 | Ty::U32))
                        || (t == Ty::F32 && matches!(f, Ty::I32 | Ty::U32));
                    if !ok {
                        return None;
                    }
                    self.varying(f);
                    self.varying(t);
                    Varying
                }
            },
            ExprKind::Bitcast(a) => match self.class(a)? {
                Uniform => Uniform,
                Affine => return None,
                Varying if a.ty != Ty::Bool && e.ty != Ty::Bool => {
                    self.varying(e.ty);
                    Varying
                }
                Varying => return None,
            },
        })
    }

    /// Whether a lane-wise form of `op` on `ty` exists on every SIMD ISA Cranelift supports.
    fn binary_ok(&self, op: BinOp, ty: Ty, rhs: Class) -> bool {
        if ty.is_float() {
            return matches!(
                op,
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Min | BinOp::Max
            );
        }
        if ty == Ty::Bool {
            return matches!(op, BinOp::And | BinOp::Or | BinOp::Xor);
        }
        match op {
            BinOp::Add | BinOp::Sub | BinOp::And | BinOp::Or | BinOp::Xor => true,
            BinOp::Min | BinOp::Max => true,
            // No 8-bit lane multiply or shift on x86.
            BinOp::Mul => ty.bytes() >= 2,
            BinOp::Shl | BinOp::Shr => ty.bytes() >= 2 && rhs == Class::Uniform,
            BinOp::Div | BinOp::Rem => false,
        }
    }
}

/// Structural equality of two expressions.
pub(crate) fn same(a: &Expr, b: &Expr) -> bool {
    if Rc::ptr_eq(&a.kind, &b.kind) {
        return true;
    }
    if a.ty != b.ty {
        return false;
    }
    match (&*a.kind, &*b.kind) {
        (ExprKind::Lit(x), ExprKind::Lit(y)) => x == y,
        (ExprKind::Var(x), ExprKind::Var(y)) => x == y,
        (ExprKind::Load { buf: p, index: i }, ExprKind::Load { buf: q, index: j }) => {
            p == q && same(i, j)
        }
        (ExprKind::Unary(o, x), ExprKind::Unary(p, y)) => o == p && same(x, y),
        (ExprKind::Binary(o, x, y), ExprKind::Binary(p, z, w)) => {
            o == p && same(x, z) && same(y, w)
        }
        (ExprKind::Cmp(o, x, y), ExprKind::Cmp(p, z, w)) => o == p && same(x, z) && same(y, w),
        (ExprKind::Select(c, x, y), ExprKind::Select(d, z, w)) => {
            same(c, d) && same(x, z) && same(y, w)
        }
        (ExprKind::Cast(x), ExprKind::Cast(y)) | (ExprKind::Bitcast(x), ExprKind::Bitcast(y)) => {
            same(x, y)
        }
        _ => false,
    }
}

use std::rc::Rc;

impl Emitter<'_, '_> {
    /// The byte range a buffer occupies when it is in scratch (where buffers may overlap).
    fn scratch_range(&self, b: BufId) -> Option<(usize, usize)> {
        let d = &self.kernel.bufs[b.0 as usize];
        match d.place {
            Place::Scratch(off) => Some((off, off + d.len * d.ty.bytes())),
            _ => None,
        }
    }

    /// Whether buffers `a` and `b` may share memory.
    fn overlap(&self, a: BufId, b: BufId) -> bool {
        if a == b {
            return true;
        }
        match (self.scratch_range(a), self.scratch_range(b)) {
            (Some(x), Some(y)) => x.0 < y.1 && y.0 < x.1,
            _ => false,
        }
    }

    /// Whether element `k` of `a` and of `b` are the same memory for every `k`.
    fn same_elements(&self, a: BufId, b: BufId) -> bool {
        let size = |x: BufId| self.kernel.bufs[x.0 as usize].ty.bytes();
        a == b
            || (size(a) == size(b)
                && matches!((self.scratch_range(a), self.scratch_range(b)), (Some(x), Some(y)) if x.0 == y.0))
    }

    /// Decides whether the loop `for var in 0..extent { body }` can be vectorized.
    fn plan(&mut self, var: VarId, extent: usize, body: &[Stmt]) -> Option<Plan> {
        let mut set_here = HashSet::new();
        for s in body {
            match s {
                Stmt::Set { var: t, .. } if self.set_once[t.0 as usize] && *t != var => {
                    set_here.insert(*t);
                }
                Stmt::Store { .. } => {}
                _ => return None,
            }
        }
        let mut a = Analysis {
            var,
            has_round: self.has_round,
            classes: HashMap::new(),
            temps: HashMap::new(),
            set_here,
            widths: HashSet::new(),
            loads: vec![],
            stores: vec![],
        };
        for s in body {
            match s {
                Stmt::Set { var: t, value } => {
                    let c = a.class(value)?;
                    if c == Class::Varying {
                        a.varying(value.ty);
                    }
                    a.temps.insert(*t, c);
                }
                Stmt::Store { buf, index, value } => {
                    if a.class(index)? != Class::Affine || a.class(value)? == Class::Affine {
                        return None;
                    }
                    a.widths.insert(value.ty.bytes());
                    a.stores.push((*buf, index.clone()));
                }
                _ => unreachable!(),
            }
        }
        let width = match a.widths.len() {
            0 => 1,
            1 => *a.widths.iter().next().expect("one width"),
            _ => return None,
        };
        let lanes = 16 / width;
        if extent < lanes {
            return None;
        }
        // Memory dependences: a store may only meet reads of the very element it writes.
        for (i, (sb, si)) in a.stores.iter().enumerate() {
            for (tb, _) in &a.stores[i + 1..] {
                if self.overlap(*sb, *tb) {
                    return None;
                }
            }
            for (lb, li, c) in &a.loads {
                if self.overlap(*sb, *lb)
                    && !(*c == Class::Affine && self.same_elements(*sb, *lb) && same(si, li))
                {
                    return None;
                }
            }
        }
        // Bounds: every vector access must be proven inside its buffer for all its lanes. The
        // counter's range is that of lane 0 of the vector iterations; affine temporaries get
        // theirs as they would when emitted.
        let (loads, stores, temps, classes) = (a.loads, a.stores, a.temps, a.classes);
        let vec_end = extent / lanes * lanes;
        let saved = self.ranges[var.0 as usize];
        self.ranges[var.0 as usize] = Some((0, (vec_end - lanes) as i64));
        let mut ok = true;
        for s in body {
            if let Stmt::Set { var: t, value } = s
                && t != &var
                && temps.get(t) != Some(&Class::Varying)
            {
                self.ranges[t.0 as usize] = self.range(value);
            }
        }
        let accesses = loads
            .iter()
            .filter(|(_, _, c)| *c == Class::Affine)
            .map(|(b, i, _)| (*b, i))
            .chain(stores.iter().map(|(b, i)| (*b, i)));
        for (b, index) in accesses {
            let len = self.kernel.bufs[b.0 as usize].len as i64;
            match self.range(index) {
                Some((lo, hi)) if lo >= 0 && hi + lanes as i64 - 1 < len => {}
                _ => ok = false,
            }
        }
        self.ranges[var.0 as usize] = saved;
        ok.then_some(Plan {
            lanes,
            width,
            classes,
            temps,
        })
    }

    /// Emits `for var in 0..extent { body }` as a vector loop plus a scalar remainder, if the
    /// body allows it ([`Emitter::plan`]); returns false (having emitted nothing) otherwise.
    pub(super) fn vector_loop(&mut self, var: VarId, extent: usize, body: &[Stmt]) -> bool {
        let Some(plan) = self.plan(var, extent, body) else {
            return false;
        };
        let i = var.0 as usize;
        let lanes = plan.lanes;
        let vec_end = extent / lanes * lanes;
        self.ranges[i] = Some((0, (vec_end - lanes) as i64));
        let cv = self.vars[i];
        let zero = self.fb.ins().iconst(types::I64, 0);
        self.fb.def_var(cv, zero);
        let looping = vec_end > lanes;
        let (head, exit) = (self.fb.create_block(), self.fb.create_block());
        if looping {
            self.fb.ins().jump(head, &[]);
            self.fb.switch_to_block(head);
        }
        let mut vals: HashMap<VarId, Value> = HashMap::new();
        let mut v = VecEmit {
            plan: &plan,
            vals: &mut vals,
        };
        for s in body {
            match s {
                Stmt::Set { var: t, value } if plan.temps[t] == Class::Varying => {
                    let x = self.vexpr(&mut v, value);
                    v.vals.insert(*t, x);
                }
                Stmt::Set { .. } => self.stmt(s),
                Stmt::Store { buf, index, value } => {
                    // Lane 0's address: every lane is proven in bounds by the plan.
                    let (addr, disp) = self.displaced(*buf, index);
                    let mut x = self.vexpr(&mut v, value);
                    if value.ty == Ty::Bool {
                        let one = self.vsplat_int(&plan, 1);
                        x = self.fb.ins().band(x, one);
                    }
                    self.fb.ins().store(vflags(), x, addr, disp);
                }
                _ => unreachable!("checked by plan"),
            }
        }
        if looping {
            let cur = self.fb.use_var(cv);
            let next = self.fb.ins().iadd_imm_s(cur, lanes as i64);
            self.fb.def_var(cv, next);
            let more = self
                .fb
                .ins()
                .icmp_imm_s(IntCC::SignedLessThan, next, vec_end as i64);
            self.fb.ins().brif(more, head, &[], exit, &[]);
        } else {
            self.fb.ins().jump(exit, &[]);
        }
        self.fb.switch_to_block(exit);
        if vec_end < extent {
            self.scalar_range(var, vec_end, extent, body);
        } else {
            let end = self.fb.ins().iconst(types::I64, extent as i64);
            self.fb.def_var(cv, end);
        }
        self.ranges[i] = None;
        true
    }

    /// The integer vector type of the plan's lane width (masks).
    fn mask_type(plan: &Plan) -> Type {
        Type::int_with_byte_size(plan.width as u16)
            .expect("lane width")
            .by(plan.lanes as u32)
            .expect("128-bit vector")
    }

    fn vtype(plan: &Plan, ty: Ty) -> Type {
        if ty == Ty::Bool {
            return Self::mask_type(plan);
        }
        clif_type(ty).by(plan.lanes as u32).expect("128-bit vector")
    }

    fn vsplat_int(&mut self, plan: &Plan, v: i64) -> Value {
        let t = Self::mask_type(plan);
        let s = self.fb.ins().iconst(t.lane_type(), v);
        self.fb.ins().splat(t, s)
    }

    /// A scalar of type `ty` in every lane (a Bool becomes a mask).
    fn vsplat(&mut self, plan: &Plan, ty: Ty, s: Value) -> Value {
        if ty == Ty::Bool {
            let t = Self::mask_type(plan);
            let w = if t.lane_type() == types::I8 {
                s
            } else {
                self.fb.ins().uextend(t.lane_type(), s)
            };
            let m = self.fb.ins().ineg(w);
            return self.fb.ins().splat(t, m);
        }
        self.fb.ins().splat(Self::vtype(plan, ty), s)
    }

    fn vexpr(&mut self, v: &mut VecEmit, e: &Expr) -> Value {
        let plan = v.plan;
        if plan.classes.get(&Rc::as_ptr(&e.kind)) == Some(&Class::Uniform) {
            let s = self.expr(e);
            return self.vsplat(plan, e.ty, s);
        }
        let vt = Self::vtype(plan, e.ty);
        match &*e.kind {
            ExprKind::Lit(_) => unreachable!("literals are uniform"),
            ExprKind::Var(t) => v.vals[t],
            ExprKind::Load { buf, index } => {
                let (addr, disp) = self.displaced(*buf, index);
                let f = if self.kernel.bufs[buf.0 as usize].writable() {
                    vflags()
                } else {
                    vflags().with_readonly()
                };
                let x = self.fb.ins().load(vt, f, addr, disp);
                if e.ty == Ty::Bool {
                    let z = self.vsplat_int(plan, 0);
                    self.fb.ins().icmp(IntCC::NotEqual, x, z)
                } else {
                    x
                }
            }
            ExprKind::Unary(op, a) => {
                let x = self.vexpr(v, a);
                if a.ty == Ty::Bool {
                    return self.fb.ins().bnot(x);
                }
                self.unary(*op, a.ty, x)
            }
            ExprKind::Binary(op, a, b) => {
                let x = self.vexpr(v, a);
                if matches!(op, BinOp::Shl | BinOp::Shr) {
                    // Vector shifts take one scalar amount (checked uniform by the plan).
                    let y = self.expr(b);
                    return self.binary(*op, a.ty, x, y);
                }
                let y = self.vexpr(v, b);
                if self.x86 && a.ty.is_float() && matches!(op, BinOp::Min | BinOp::Max) {
                    // x86's scalar fmin/fmax answer `y + x` when an operand is NaN (that NaN,
                    // quieted); the vector form makes a canonical NaN. Give the lanes the
                    // scalar's bits.
                    let r = self.binary(*op, a.ty, x, y);
                    let nan = self.fb.ins().fcmp(FloatCC::Unordered, x, y);
                    let nan = self.bitcast_to(vt, nan);
                    let sum = self.fb.ins().fadd(y, x);
                    return self.fb.ins().bitselect(nan, sum, r);
                }
                match op {
                    _ if a.ty != Ty::Bool => self.binary(*op, a.ty, x, y),
                    BinOp::And => self.fb.ins().band(x, y),
                    BinOp::Or => self.fb.ins().bor(x, y),
                    _ => self.fb.ins().bxor(x, y),
                }
            }
            ExprKind::Cmp(op, a, b) => {
                let (x, y) = (self.vexpr(v, a), self.vexpr(v, b));
                self.compare(*op, a.ty, x, y)
            }
            ExprKind::Select(c, a, b) => {
                let (x, y) = (self.vexpr(v, a), self.vexpr(v, b));
                if plan.classes.get(&Rc::as_ptr(&c.kind)) == Some(&Class::Uniform) {
                    let c = self.expr(c);
                    return self.fb.ins().select(c, x, y);
                }
                let m = self.vexpr(v, c);
                let m = self.bitcast_to(vt, m);
                self.fb.ins().bitselect(m, x, y)
            }
            ExprKind::Cast(a) => {
                let x = self.vexpr(v, a);
                self.vcast(plan, a.ty, e.ty, x)
            }
            ExprKind::Bitcast(a) => {
                let x = self.vexpr(v, a);
                self.bitcast_to(vt, x)
            }
        }
    }

    fn bitcast_to(&mut self, t: Type, x: Value) -> Value {
        if self.fb.func.dfg.value_type(x) == t {
            return x;
        }
        let f = MemFlagsData::new().with_endianness(Endianness::Little);
        self.fb.ins().bitcast(t, f, x)
    }

    /// The lane-wise form of [`ExprKind::Cast`] for the conversions the plan admits; each
    /// gives what the scalar conversion gives for that lane.
    fn vcast(&mut self, plan: &Plan, from: Ty, to: Ty, x: Value) -> Value {
        let vt = Self::vtype(plan, to);
        if from == to {
            return x;
        }
        if to == Ty::Bool {
            return if from.is_float() {
                let z = self.fb.ins().iconst(Self::mask_type(plan).lane_type(), 0);
                let z = self.fb.ins().splat(Self::mask_type(plan), z);
                let z = self.bitcast_to(Self::vtype(plan, from), z);
                self.fb.ins().fcmp(FloatCC::NotEqual, x, z)
            } else {
                let z = self.vsplat_int(plan, 0);
                self.fb.ins().icmp(IntCC::NotEqual, x, z)
            };
        }
        if from == Ty::Bool {
            // The mask's lanes are 0 or all ones: keep the bits of the value 1.
            let one = match to {
                Ty::F32 => 1f32.to_bits() as i64,
                Ty::F64 => 1f64.to_bits() as i64,
                _ => 1,
            };
            let one = self.vsplat_int(plan, one);
            let r = self.fb.ins().band(x, one);
            return self.bitcast_to(vt, r);
        }
        match (from, to) {
            (Ty::F32, Ty::I32) => self.fb.ins().fcvt_to_sint_sat(vt, x),
            (Ty::F32, Ty::U32) => self.fb.ins().fcvt_to_uint_sat(vt, x),
            (Ty::I32, Ty::F32) => self.fb.ins().fcvt_from_sint(vt, x),
            (Ty::U32, Ty::F32) => self.fb.ins().fcvt_from_uint(vt, x),
            // Integers of one width share one Cranelift type.
            _ => x,
        }
    }
}

/// State of one vector body being emitted.
struct VecEmit<'p> {
    plan: &'p Plan,
    /// The vector value of each varying temporary.
    vals: &'p mut HashMap<VarId, Value>,
}

fn vflags() -> MemFlagsData {
    // Proven in bounds; caller buffers need not be aligned.
    MemFlagsData::new().with_notrap()
}
