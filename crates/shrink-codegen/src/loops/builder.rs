//! [`Builder`]: how op lowerings write kernels. It owns the kernel under construction and a stack
//! of open statement lists, so loops and branches nest with closures:
//!
//! ```text
//! b.nest(&dims, |b, idx| {
//!     let x = b.load(&input, linear(idx, &in_strides));
//!     b.store(&output, linear(idx, &out_strides), x.max(Expr::f32(0.0)));
//! });
//! ```
//!
//! [`Builder::load`] and [`Builder::store`] work in the compute type of a tensor's dtype (f32 for
//! f16/bf16/float8/float4) and convert to and from the stored bits; the `_raw` forms do not.
use super::convert;
use super::ir::{BufDecl, BufId, Expr, ExprKind, Kernel, Place, Stmt, Ty, VarId};
use shrink_ir::DType;

/// A tensor as a lowering sees it: a buffer with its dtype and dims (dense, row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    pub buf: BufId,
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// The type [`Builder::load`] yields for this tensor.
    pub fn compute_ty(&self) -> Ty {
        Ty::compute(self.dtype).expect("strings never reach codegen")
    }
}

pub struct Builder {
    kernel: Kernel,
    open: Vec<Vec<Stmt>>,
    unsupported: Option<String>,
    /// Bodies closed by [`Builder::next_function`], each to become a function of its own, with
    /// whether it may run at the same time as the one before it ([`Builder::parallel`]).
    done: Vec<(Vec<Stmt>, bool)>,
    /// The kernel strategy a layer lowering chose (for reports).
    strategy: Option<&'static str>,
    /// The cost model's predicted nanoseconds per call of this lowering, when it priced it.
    predicted_ns: Option<f64>,
    /// How a layer lowering represents its activations (for reports).
    activations: Option<&'static str>,
    /// Which kernel of its strategy a layer lowering emitted (for reports).
    form: Option<&'static str>,
}

impl Builder {
    pub fn new(name: &str) -> Builder {
        Builder {
            kernel: Kernel {
                name: name.to_string(),
                ..Kernel::default()
            },
            open: vec![vec![]],
            unsupported: None,
            done: vec![],
            strategy: None,
            predicted_ns: None,
            activations: None,
            form: None,
        }
    }

    /// Declares a buffer of `len` raw elements of storage dtype `dtype` at `place`.
    pub fn buffer(&mut self, place: Place, dtype: DType, dims: &[usize]) -> TensorRef {
        let ty = Ty::storage(dtype).expect("strings never reach codegen");
        let id = BufId(self.kernel.bufs.len() as u32);
        self.kernel.bufs.push(BufDecl {
            place,
            ty,
            len: dims.iter().product(),
        });
        TensorRef {
            buf: id,
            dtype,
            dims: dims.to_vec(),
        }
    }

    /// Private working memory of `dims` elements of `dtype` for this kernel (all its
    /// functions), 64-byte aligned: for intermediate layouts such as a transposed copy of an
    /// input. Its contents are undefined until the kernel writes them.
    pub fn workspace(&mut self, dtype: DType, dims: &[usize]) -> TensorRef {
        let bytes = dims.iter().product::<usize>() * dtype.size();
        let at = self.kernel.workspace_bytes;
        self.kernel.workspace_bytes = at + bytes.div_ceil(64) * 64;
        self.buffer(Place::Workspace(at), dtype, dims)
    }

    /// A read-only table of raw elements (little-endian `bytes`) owned by this kernel.
    pub fn table(&mut self, dtype: DType, dims: &[usize], bytes: Vec<u8>) -> TensorRef {
        let ty = Ty::storage(dtype).expect("strings never reach codegen");
        assert_eq!(bytes.len(), dims.iter().product::<usize>() * ty.bytes());
        let index = self.kernel.tables.len();
        self.kernel.tables.push(bytes);
        self.buffer(Place::Table(index), dtype, dims)
    }

    /// A table of f32 values.
    pub fn table_f32(&mut self, values: &[f32]) -> TensorRef {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.table(DType::F32, &[values.len()], bytes)
    }

    /// A table of i64 values.
    pub fn table_i64(&mut self, values: &[i64]) -> TensorRef {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.table(DType::I64, &[values.len()], bytes)
    }

    /// Records that this kernel cannot be built (the first reason wins); [`Builder::finish`]
    /// then fails with it.
    pub fn unsupported(&mut self, why: impl Into<String>) {
        self.unsupported.get_or_insert(why.into());
    }

    /// Records which kernel strategy this lowering used (`stream`, `packed`, `dense`).
    pub fn note_strategy(&mut self, s: &'static str) {
        self.strategy = Some(s);
    }

    /// Records the cost model's predicted time of this lowering (for reports).
    pub fn note_predicted_ns(&mut self, ns: f64) {
        self.predicted_ns = Some(ns);
    }

    /// The prediction recorded with [`Builder::note_predicted_ns`].
    pub fn predicted_ns(&self) -> Option<f64> {
        self.predicted_ns
    }

    /// The strategy recorded with [`Builder::note_strategy`].
    pub fn strategy(&self) -> Option<&'static str> {
        self.strategy
    }

    /// Records how this lowering represents its activations (`packed`: `f32` for the faithful
    /// limbs, `int8-graph` for the graph's own int8 grid, `int8-flag` for `--activations int8`).
    pub fn note_activations(&mut self, a: &'static str) {
        self.activations = Some(a);
    }

    /// The mode recorded with [`Builder::note_activations`].
    pub fn activations(&self) -> Option<&'static str> {
        self.activations
    }

    /// Records which kernel of its strategy a dense layer runs on: `tiles` (the SIMD register
    /// tiles), `sparse` (the nonzeros of a mostly-zero weight), `int8` (8-bit dot products).
    pub fn note_form(&mut self, f: &'static str) {
        self.form = Some(f);
    }

    /// The kernel recorded with [`Builder::note_form`].
    pub fn form(&self) -> Option<&'static str> {
        self.form
    }

    /// A fresh variable of type `ty`.
    pub fn var(&mut self, ty: Ty) -> VarId {
        self.kernel.vars.push(ty);
        VarId(self.kernel.vars.len() as u32 - 1)
    }

    fn push(&mut self, s: Stmt) {
        self.open.last_mut().expect("open list").push(s);
    }

    fn scoped(&mut self, f: impl FnOnce(&mut Builder)) -> Vec<Stmt> {
        self.open.push(vec![]);
        f(self);
        self.open.pop().expect("scope")
    }

    /// Assigns `var`.
    pub fn set(&mut self, var: VarId, value: Expr) {
        assert_eq!(
            self.kernel.vars[var.0 as usize], value.ty,
            "set of a {:?} variable",
            value.ty
        );
        self.push(Stmt::Set { var, value });
    }

    /// Binds `value` to a new variable and returns it as an expression (computed once).
    /// Literals and variables are returned as they are.
    pub fn let_(&mut self, value: Expr) -> Expr {
        if matches!(&*value.kind, ExprKind::Lit(_) | ExprKind::Var(_)) {
            return value;
        }
        let ty = value.ty;
        let v = self.var(ty);
        self.set(v, value);
        Expr::var(v, ty)
    }

    /// A mutable variable initialised to `init` (accumulators).
    pub fn mutable(&mut self, init: Expr) -> VarId {
        let v = self.var(init.ty);
        self.set(v, init);
        v
    }

    /// The current value of `var`.
    pub fn get(&self, var: VarId) -> Expr {
        Expr::var(var, self.kernel.vars[var.0 as usize])
    }

    /// `for i in 0..extent { f(i) }`, `i` an I64 expression.
    pub fn for_(&mut self, extent: usize, f: impl FnOnce(&mut Builder, Expr)) {
        let var = self.var(Ty::I64);
        let body = self.scoped(|b| f(b, Expr::var(var, Ty::I64)));
        self.push(Stmt::Loop { var, extent, body });
    }

    /// Nested loops over the index space `dims` (outermost first).
    pub fn nest(&mut self, dims: &[usize], f: impl FnOnce(&mut Builder, &[Expr])) {
        fn go(
            b: &mut Builder,
            dims: &[usize],
            idx: &mut Vec<Expr>,
            f: &mut dyn FnMut(&mut Builder, &[Expr]),
        ) {
            match dims.split_first() {
                None => f(b, idx),
                Some((&n, rest)) => b.for_(n, |b, i| {
                    idx.push(i);
                    go(b, rest, idx, f);
                    idx.pop();
                }),
            }
        }
        let mut f = Some(f);
        let mut call = |b: &mut Builder, idx: &[Expr]| (f.take().expect("called once"))(b, idx);
        go(self, dims, &mut vec![], &mut call);
    }

    /// `if cond { then }`.
    pub fn if_(&mut self, cond: Expr, then: impl FnOnce(&mut Builder)) {
        self.if_else(cond, then, |_| {});
    }

    pub fn if_else(
        &mut self,
        cond: Expr,
        then: impl FnOnce(&mut Builder),
        otherwise: impl FnOnce(&mut Builder),
    ) {
        assert_eq!(cond.ty, Ty::Bool, "if condition must be Bool");
        let then = self.scoped(then);
        let otherwise = self.scoped(otherwise);
        self.push(Stmt::If {
            cond,
            then,
            otherwise,
        });
    }

    /// A hand-scheduled piece (see [`super::ir::Native`]): `emit` writes Cranelift IR touching
    /// only `bufs`; `fallback` builds the loop-language statements that compute the same thing
    /// on an ISA without 128-bit SIMD.
    pub fn native(
        &mut self,
        name: &'static str,
        bufs: &[&TensorRef],
        emit: impl Fn(&mut super::ir::NativeCx) + 'static,
        fallback: impl FnOnce(&mut Builder),
    ) {
        self.native_piece(name, bufs, emit, fallback, false);
    }

    /// [`Builder::native`] for a piece that uses byte shuffles ([`super::ir::Native::shuffles`]).
    pub fn native_shuffling(
        &mut self,
        name: &'static str,
        bufs: &[&TensorRef],
        emit: impl Fn(&mut super::ir::NativeCx) + 'static,
        fallback: impl FnOnce(&mut Builder),
    ) {
        self.native_piece(name, bufs, emit, fallback, true);
    }

    fn native_piece(
        &mut self,
        name: &'static str,
        bufs: &[&TensorRef],
        emit: impl Fn(&mut super::ir::NativeCx) + 'static,
        fallback: impl FnOnce(&mut Builder),
        shuffles: bool,
    ) {
        let fallback = self.scoped(fallback);
        self.push(Stmt::Native(super::ir::Native {
            name,
            bufs: bufs.iter().map(|t| t.buf).collect(),
            emit: std::rc::Rc::new(emit),
            fallback,
            shuffles,
        }));
    }

    /// Returns status `code` from the kernel when `cond` holds.
    pub fn fail_if(&mut self, cond: Expr, code: i32) {
        self.if_(cond, |b| b.push(Stmt::Fail { code }));
    }

    /// Element `index` as stored (f16 as its u16 bits, …).
    pub fn load_raw(&self, t: &TensorRef, index: Expr) -> Expr {
        let ty = self.kernel.bufs[t.buf.0 as usize].ty;
        assert_eq!(index.ty, Ty::I64, "index must be I64");
        Expr {
            ty,
            kind: std::rc::Rc::new(ExprKind::Load { buf: t.buf, index }),
        }
    }

    /// Element `index` in the tensor's compute type.
    pub fn load(&mut self, t: &TensorRef, index: Expr) -> Expr {
        let raw = self.load_raw(t, index);
        convert::decode(self, t.dtype, raw)
    }

    /// Stores a raw (storage-type) value.
    pub fn store_raw(&mut self, t: &TensorRef, index: Expr, value: Expr) {
        let decl = &self.kernel.bufs[t.buf.0 as usize];
        assert!(
            decl.writable(),
            "store to read-only buffer {:?}",
            decl.place
        );
        assert_eq!(
            decl.ty, value.ty,
            "store of {:?} into {:?}",
            value.ty, decl.ty
        );
        assert_eq!(index.ty, Ty::I64, "index must be I64");
        self.push(Stmt::Store {
            buf: t.buf,
            index,
            value,
        });
    }

    /// Stores a compute-type value, converting to the tensor's dtype (rounding to nearest even for
    /// f16/bf16; float8/float4 saturate as ONNX Cast's default does).
    pub fn store(&mut self, t: &TensorRef, index: Expr, value: Expr) {
        let raw = convert::encode(self, t.dtype, value, true);
        self.store_raw(t, index, raw);
    }

    /// Ends the current function here: what follows goes into a new function that runs after it
    /// (same buffers and tables). Keeps huge straight-line kernels (ternary streams) in pieces
    /// Cranelift compiles in linear time. Only at the top level, outside any loop or branch.
    pub fn next_function(&mut self) {
        assert_eq!(self.open.len(), 1, "next_function inside a loop or branch");
        let body = std::mem::take(&mut self.open[0]);
        if !body.is_empty() {
            self.done.push((body, false));
        }
    }

    /// Emits `parts` functions, part `i` built by `f(self, i)`, that may run at the same time
    /// (the JIT runs them on its thread pool; a static library one after another): each must
    /// write memory no other part reads or writes, and read only what earlier code wrote. What
    /// follows starts a new function that runs after all of them. With one part this is just
    /// `f(self, 0)` in the current function. Only at the top level, like
    /// [`Builder::next_function`].
    pub fn parallel(&mut self, parts: usize, mut f: impl FnMut(&mut Builder, usize)) {
        if parts <= 1 {
            f(self, 0);
            return;
        }
        self.next_function();
        for i in 0..parts {
            f(self, i);
            assert_eq!(self.open.len(), 1, "parallel part left a scope open");
            let body = std::mem::take(&mut self.open[0]);
            // An empty part still has its place, so part numbers stay what the caller meant.
            self.done.push((body, i > 0));
        }
    }

    /// The finished kernel (one function), or why it could not be built.
    pub fn finish(self) -> Result<Kernel, String> {
        let mut all = self.finish_all()?;
        assert_eq!(all.len(), 1, "finish() on a kernel split into functions");
        Ok(all.remove(0))
    }

    /// The finished kernel as one or more functions (see [`Builder::next_function`]), in order.
    pub fn finish_all(mut self) -> Result<Vec<Kernel>, String> {
        if let Some(why) = self.unsupported {
            return Err(why);
        }
        assert_eq!(self.open.len(), 1, "unclosed scope");
        let last = self.open.pop().expect("root");
        let mut bodies = std::mem::take(&mut self.done);
        if !last.is_empty() || bodies.is_empty() {
            bodies.push((last, false));
        }
        Ok(bodies
            .into_iter()
            .map(|(body, concurrent)| Kernel {
                body,
                concurrent,
                ..self.kernel.clone()
            })
            .collect())
    }
}
