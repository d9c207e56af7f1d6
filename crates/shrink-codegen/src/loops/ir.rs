//! The loop-nest language every op is defined in: scalar expressions over typed buffers inside
//! loops with static extents, plus the few statements a kernel needs (store, set a variable,
//! branch, fail with a status code).
//!
//! It is deliberately small: the emitter ([`super::emit`]) lowers it to Cranelift for any ISA,
//! proves array indices in bounds where it can and checks the rest at run time, so an op written
//! in it cannot read or write outside its buffers. Expressions are immutable trees shared by `Rc`;
//! a value used more than once should be bound with [`super::Builder::let_`] so it is computed
//! once.
use shrink_ir::DType;
use shrink_ir::op::ConstId;
use std::rc::Rc;

/// A scalar type of the language. Bool is a byte holding 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

impl Ty {
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F32 | Ty::F64)
    }
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64 | Ty::F32 | Ty::F64
        )
    }
    pub fn is_int(self) -> bool {
        !self.is_float() && self != Ty::Bool
    }
    pub fn bytes(self) -> usize {
        match self {
            Ty::Bool | Ty::I8 | Ty::U8 => 1,
            Ty::I16 | Ty::U16 => 2,
            Ty::I32 | Ty::U32 | Ty::F32 => 4,
            Ty::I64 | Ty::U64 | Ty::F64 => 8,
        }
    }
    /// The unsigned integer type of the same width (for bit manipulation).
    pub fn bits_ty(self) -> Ty {
        match self.bytes() {
            1 => Ty::U8,
            2 => Ty::U16,
            4 => Ty::U32,
            _ => Ty::U64,
        }
    }
    /// How elements of storage dtype `d` are held in memory, as raw scalars: narrow floats and
    /// f16/bf16 as their bit patterns, sub-byte integers as one (sign-extended) byte each.
    /// `None` for strings, which generated code does not handle.
    pub fn storage(d: DType) -> Option<Ty> {
        Some(match d {
            DType::F32 => Ty::F32,
            DType::F64 => Ty::F64,
            DType::Bool => Ty::Bool,
            DType::I8 | DType::I4 | DType::I2 => Ty::I8,
            DType::U8 | DType::U4 | DType::U2 => Ty::U8,
            DType::I16 => Ty::I16,
            DType::U16 | DType::F16 | DType::BF16 => Ty::U16,
            DType::I32 => Ty::I32,
            DType::U32 => Ty::U32,
            DType::I64 => Ty::I64,
            DType::U64 => Ty::U64,
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1 => Ty::U8,
            DType::String => return None,
        })
    }
    /// The type arithmetic on dtype `d` is done in (what [`super::Builder::load`] yields): f16,
    /// bf16 and the narrow floats compute in f32, like the interpreter.
    pub fn compute(d: DType) -> Option<Ty> {
        if d == DType::F16 || d == DType::BF16 || d.is_narrow_float() {
            return Some(Ty::F32);
        }
        Ty::storage(d)
    }
}

/// A buffer of the kernel (index into [`Kernel::bufs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// A scalar variable (index into [`Kernel::vars`]). Loop counters are `I64` variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// Where a buffer lives, relative to the three pointers of the kernel ABI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// `inputs[i]`.
    Input(usize),
    /// `outputs[k]`.
    Output(usize),
    /// `scratch + offset` (bytes).
    Scratch(usize),
    /// Private working memory of one kernel, `offset` bytes into the workspace: the program puts
    /// every kernel's workspace at one address past the memory plan's arena (kernels run one at
    /// a time, so they share it) and rewrites this to `Scratch`. Contents do not survive between
    /// kernels.
    Workspace(usize),
    /// A graph constant in read-only data.
    Const(ConstId),
    /// A read-only table owned by the kernel (decode tables, folded parameters), by index into
    /// [`Kernel::tables`].
    Table(usize),
}

/// A buffer: `len` raw elements of type `ty` at `place`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BufDecl {
    pub place: Place,
    pub ty: Ty,
    pub len: usize,
}

impl BufDecl {
    pub fn writable(&self) -> bool {
        matches!(
            self.place,
            Place::Output(_) | Place::Scratch(_) | Place::Workspace(_)
        )
    }
}

/// A literal, stored exactly for its type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lit {
    /// Any integer or bool type: the value (unsigned types keep their bit pattern in 64 bits).
    Int(i64),
    F32(f32),
    F64(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Abs,
    Sqrt,
    Floor,
    Ceil,
    Trunc,
    /// Round half to even.
    Nearest,
    /// Bitwise not (logical not on Bool).
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// Integer arithmetic wraps.
    Add,
    Sub,
    Mul,
    /// Floats: IEEE division. Integers: truncating; never traps (the emitter guards a zero
    /// divisor, which then yields 0, and MIN / -1 wraps) — ops that must report a zero divisor
    /// check it themselves.
    Div,
    /// Integers only: remainder with the sign of the dividend (x - trunc(x/y)·y), 0 for y == 0.
    Rem,
    /// Floats: NaN if either operand is NaN, -0 below +0.
    Min,
    Max,
    And,
    Or,
    Xor,
    /// Shift by the low bits of the second operand (as Cranelift: modulo the width).
    Shl,
    /// Arithmetic for signed types, logical for unsigned.
    Shr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    /// True when either float operand is NaN.
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An expression; `ty` is its result type.
#[derive(Clone, Debug)]
pub struct Expr {
    pub ty: Ty,
    pub kind: Rc<ExprKind>,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Lit(Lit),
    Var(VarId),
    /// Element `index` (an I64 expression) of a buffer, as its raw storage type.
    Load {
        buf: BufId,
        index: Expr,
    },
    Unary(UnOp, Expr),
    Binary(BinOp, Expr, Expr),
    /// Result type Bool.
    Cmp(CmpOp, Expr, Expr),
    /// `if cond { a } else { b }` (both evaluated).
    Select(Expr, Expr, Expr),
    /// Numeric conversion to `ty`: int→int wraps (sign- or zero-extends by the source type),
    /// float→int truncates and saturates (NaN → 0), int→float and float→float round to nearest,
    /// anything→Bool is `!= 0`, Bool→anything is 0 or 1.
    Cast(Expr),
    /// Reinterprets the bits as `ty` (same width).
    Bitcast(Expr),
}

/// A statement.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `for var in 0..extent { body }`.
    Loop {
        var: VarId,
        extent: usize,
        body: Vec<Stmt>,
    },
    /// Assigns a variable (defining it on first use).
    Set { var: VarId, value: Expr },
    /// Writes element `index` of a writable buffer (value of the buffer's raw type).
    Store {
        buf: BufId,
        index: Expr,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        otherwise: Vec<Stmt>,
    },
    /// Returns `code` (nonzero) from the kernel at once: the input data is invalid.
    Fail { code: i32 },
    /// A hand-scheduled piece emitted straight to Cranelift IR (see [`Native`]).
    Native(Native),
}

/// What a [`Native`] piece gets to emit itself: the function being built and the base address
/// of every buffer of the kernel (by [`BufId`]).
pub struct NativeCx<'a, 'f> {
    pub fb: &'a mut cranelift_frontend::FunctionBuilder<'f>,
    pub bases: &'a [cranelift_codegen::ir::Value],
    pub pointer: cranelift_codegen::ir::Type,
    /// See [`super::emit::IsaFacts::x86`].
    pub x86: bool,
    /// See [`super::emit::IsaFacts::vnni`].
    pub vnni: bool,
    /// See [`super::emit::IsaFacts::fma`].
    pub fma: bool,
    /// See [`super::emit::IsaFacts::wide`].
    pub wide: Option<super::emit::Wide>,
    /// See [`super::emit::IsaFacts::float_wide`].
    pub float_wide: Option<super::emit::Wide>,
    /// Where [`NativeCx::call_machine`] puts machine code (None: the module takes none, and the
    /// piece emits Cranelift IR).
    pub machine: Option<&'a mut dyn MachineSink>,
}

impl NativeCx<'_, '_> {
    /// Places `code` in the module as a function of its own and emits a call to it with `args`
    /// (pointers). False when there is no sink or it refused (the piece then emits IR instead).
    pub fn call_machine(
        &mut self,
        code: MachineCode,
        args: &[cranelift_codegen::ir::Value],
    ) -> bool {
        use cranelift_codegen::ir::InstBuilder;
        assert_eq!(
            code.args,
            args.len(),
            "machine function '{}' arguments",
            code.name
        );
        let Some(f) = self.place_machine(code) else {
            return false;
        };
        self.fb.ins().call(f, args);
        true
    }

    /// Places `code` in the module and returns the reference calls to it take (for a piece that
    /// calls it inside loops of its own, with `code.args` pointers); None when there is no sink
    /// or it refused.
    pub fn place_machine(&mut self, code: MachineCode) -> Option<cranelift_codegen::ir::FuncRef> {
        let sink = self.machine.as_deref_mut()?;
        sink.place(code, self.fb.func)
    }
}

/// Machine code of one function written outside Cranelift (an x86 microkernel assembled by
/// iced-x86): position independent, no relocations, `args` pointer arguments in the System V
/// registers, no result. It may use only the caller-saved registers and must leave the upper
/// vector state clean (`vzeroupper`) before it returns.
#[derive(Clone, Debug)]
pub struct MachineCode {
    /// What it is, for the listing.
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// Its disassembly, one instruction a line (shown by `--emit asm`).
    pub listing: String,
    pub args: usize,
}

/// What places [`MachineCode`] in a module and imports it into the kernel being built
/// ([`crate::define::MachineFunctions`] for every module shrink defines kernels in).
pub trait MachineSink {
    /// Defines `code` as a local function and returns its reference in `func`; None when it
    /// cannot (the error is kept for the caller of the emitter).
    fn place(
        &mut self,
        code: MachineCode,
        func: &mut cranelift_codegen::ir::Function,
    ) -> Option<cranelift_codegen::ir::FuncRef>;
}

/// A hand-scheduled kernel piece: code the loop language cannot express well (mixed-width
/// SIMD, lane masks from packed bits), written directly as Cranelift IR against the static
/// shapes of the buffers it names. It owns its memory safety: every access it emits must be
/// inside the buffers by construction (the guard-page tests run it). On an ISA without 128-bit
/// SIMD the emitter runs `fallback`, plain loop-language statements computing the same thing.
#[derive(Clone)]
pub struct Native {
    pub name: &'static str,
    /// Every buffer `emit` reads or writes.
    pub bufs: Vec<BufId>,
    pub emit: std::rc::Rc<dyn Fn(&mut NativeCx)>,
    pub fallback: Vec<Stmt>,
    /// `emit` uses byte shuffles (`pshufb`, `tbl`): on x86 without SSSE3, where Cranelift would
    /// call a helper for them, the fallback runs instead.
    pub shuffles: bool,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native")
            .field("name", &self.name)
            .field("bufs", &self.bufs)
            .finish_non_exhaustive()
    }
}

/// Status codes a generated `run` returns. 0 is success; the rest say why the data was refused.
pub mod status {
    pub const OK: i32 = 0;
    /// An index input (Gather, …) is outside its axis.
    pub const BAD_INDEX: i32 = 1;
    /// An index the emitter could not prove in bounds was out of bounds at run time.
    pub const OUT_OF_BOUNDS: i32 = 2;
    /// An integer division by zero.
    pub const DIV_BY_ZERO: i32 = 3;
    /// Any other invalid input value (a bad shape tensor, …).
    pub const BAD_VALUE: i32 = 4;

    /// What a status code means, for error messages.
    pub fn describe(code: i32) -> &'static str {
        match code {
            OK => "ok",
            BAD_INDEX => "an index input is out of range",
            OUT_OF_BOUNDS => "a computed index was out of bounds",
            DIV_BY_ZERO => "integer division by zero",
            BAD_VALUE => "an input value is invalid for the op",
            _ => "unknown error",
        }
    }
}

/// One kernel: a function of the kernel ABI computing (part of) a node.
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<BufDecl>,
    pub vars: Vec<Ty>,
    pub body: Vec<Stmt>,
    /// Read-only tables (bytes, little-endian) referenced by `Place::Table`.
    pub tables: Vec<Vec<u8>>,
    /// Bytes of working memory `Place::Workspace` buffers take (see [`Place::Workspace`]).
    pub workspace_bytes: usize,
    /// This function is one part of a layer split across threads ([`super::Builder::parallel`])
    /// and may run at the same time as the function before it, which is another part of the
    /// same split: the parts write disjoint memory and read only what earlier functions wrote.
    pub concurrent: bool,
}

impl Kernel {
    /// The buffers the body reads or writes: a declared buffer nobody touches (a dense weight a
    /// ternary kernel replaced) needs no address and no data object.
    pub fn used_bufs(&self) -> std::collections::BTreeSet<BufId> {
        fn expr(e: &Expr, used: &mut std::collections::BTreeSet<BufId>) {
            match &*e.kind {
                ExprKind::Lit(_) | ExprKind::Var(_) => {}
                ExprKind::Load { buf, index } => {
                    used.insert(*buf);
                    expr(index, used);
                }
                ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) => expr(a, used),
                ExprKind::Binary(_, a, b) | ExprKind::Cmp(_, a, b) => {
                    expr(a, used);
                    expr(b, used);
                }
                ExprKind::Select(c, a, b) => {
                    expr(c, used);
                    expr(a, used);
                    expr(b, used);
                }
            }
        }
        fn stmts(body: &[Stmt], used: &mut std::collections::BTreeSet<BufId>) {
            for s in body {
                match s {
                    Stmt::Loop { body, .. } => stmts(body, used),
                    Stmt::Set { value, .. } => expr(value, used),
                    Stmt::Store { buf, index, value } => {
                        used.insert(*buf);
                        expr(index, used);
                        expr(value, used);
                    }
                    Stmt::If {
                        cond,
                        then,
                        otherwise,
                    } => {
                        expr(cond, used);
                        stmts(then, used);
                        stmts(otherwise, used);
                    }
                    Stmt::Fail { .. } => {}
                    Stmt::Native(n) => {
                        used.extend(n.bufs.iter().copied());
                        stmts(&n.fallback, used);
                    }
                }
            }
        }
        let mut used = std::collections::BTreeSet::new();
        stmts(&self.body, &mut used);
        used
    }
}
