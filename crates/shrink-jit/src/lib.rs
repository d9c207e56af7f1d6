//! shrink-jit: places a lowered [`Program`] into a `cranelift_jit::JITModule` for the host CPU
//! (features detected at run time by `cranelift_native`) and wraps the entry point in a safe API.
//!
//! [`Kernel::run_into`] checks every buffer's size before calling the generated code, so the
//! code's own guarantee (it touches nothing outside the buffers it is given) is all that safety
//! needs. A program lowered for several threads ([`shrink_codegen::CodegenOptions::threads`])
//! gets a thread pool owned by its `Kernel` ([`pool`]): the parts of each split layer run on it
//! at once, everything else on the calling thread, in order. The JIT module refuses to resolve any symbol, so a stray import is a compile error, not
//! a call into the host process.
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, default_libcall_names};
use shrink_codegen::loops::status;
use shrink_codegen::{CodegenError, DefineOptions, IoSpec, Listing, Program};
use shrink_ir::Tensor;

mod pool;

/// Why compiling or running a kernel failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error("JIT: {0}")]
    Jit(String),
    /// The caller's tensors or buffers do not match the kernel's inputs/outputs.
    #[error("{0}")]
    Mismatch(String),
    /// The kernel refused its input data (status code from `run`).
    #[error("the kernel returned status {code}: {}", status::describe(*code))]
    Status { code: i32 },
}

type RunFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8) -> i32;

/// Sizes of the generated code, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeStats {
    /// Symbols the module imports (none, ever: kept for tests to assert).
    pub imports: Vec<String>,
    /// Machine code of each node kernel, in program order.
    pub kernel_code_bytes: Vec<usize>,
    /// All machine code (kernels plus the entry point).
    pub code_bytes: usize,
    pub rodata_bytes: usize,
}

/// A compiled model in this process's memory.
pub struct Kernel {
    module: Option<JITModule>,
    run: RunFn,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    scratch_bytes: usize,
    stats: CodeStats,
    /// The steps and their pool, when the program has layers split across threads.
    parallel: Option<Parallel>,
}

/// How a program with split layers runs: its steps in order, the parts of a step at once (the
/// calling thread takes the first, the pool the others).
struct Parallel {
    steps: Vec<Vec<RunFn>>,
    pool: pool::Pool,
}

/// The kernel ABI arguments of one call, shared by the parts of a step.
#[derive(Clone, Copy)]
struct Args(*const *const u8, *const *mut u8, *mut u8);

// SAFETY: the pointers are only dereferenced by the generated parts of one step, which write
// disjoint memory (the split's contract, `Builder::parallel`), while `run_into` holds the
// buffers borrowed and waits for every part.
unsafe impl Send for Args {}
unsafe impl Sync for Args {}

impl Args {
    /// # Safety
    /// The pointers must be valid kernel ABI buffers for `f`'s program.
    unsafe fn call(self, f: RunFn) -> i32 {
        unsafe { f(self.0, self.1, self.2) }
    }
}

/// One part of a step: a kernel function and the call's arguments.
struct Call(RunFn, Args);

impl pool::Part for Call {
    unsafe fn run(&self) -> i32 {
        unsafe { self.1.call(self.0) }
    }
}

impl Parallel {
    /// # Safety
    /// `args` must be valid kernel ABI buffers for the program the steps come from.
    unsafe fn run(&self, args: Args) -> i32 {
        for step in &self.steps {
            let status = match step.as_slice() {
                [] => 0,
                [f] => unsafe { args.call(*f) },
                parts => {
                    let calls: Vec<Call> = parts.iter().map(|&f| Call(f, args)).collect();
                    let refs: Vec<&dyn pool::Part> =
                        calls.iter().map(|c| c as &dyn pool::Part).collect();
                    // SAFETY: the parts of one split write disjoint memory.
                    unsafe { self.pool.run(&refs) }
                }
            };
            if status != 0 {
                return status;
            }
        }
        0
    }
}

/// What the module's entry stub does before the kernels run (`vzeroupper` on x86 with AVX: see
/// shrink-codegen's `define`), for kernels called one by one from here.
pub(crate) fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        fn zero_upper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked).
            unsafe { zero_upper() }
        }
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("scratch_bytes", &self.scratch_bytes)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

// SAFETY: after `finalize_definitions` the module is never used again except to free its
// memory on drop, and the generated code writes no global state (kernel ABI: everything lives in
// the caller's buffers), so calls from several threads at once are sound.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

/// The host ISA with every feature the CPU has, and the flags shrink's code relies on.
fn host_module() -> Result<JITModule, JitError> {
    let mut fb = settings::builder();
    let set = |fb: &mut settings::Builder, k: &str, v: &str| {
        fb.set(k, v)
            .map_err(|e| JitError::Jit(format!("flag {k}: {e}")))
    };
    set(&mut fb, "opt_level", "speed")?;
    set(&mut fb, "is_pic", "false")?;
    set(&mut fb, "enable_probestack", "false")?;
    set(&mut fb, "use_colocated_libcalls", "false")?;
    let ib = cranelift_native::builder().map_err(|e| JitError::Jit(e.to_string()))?;
    let isa = ib
        .finish(settings::Flags::new(fb))
        .map_err(|e| JitError::Jit(e.to_string()))?;
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    // Generated code imports nothing; resolving any name would mean calling into this process.
    jb.symbol_lookup_fn(Box::new(|_| None));
    Ok(JITModule::new(jb))
}

impl Kernel {
    /// JIT-compiles a lowered program.
    pub fn compile(p: &Program) -> Result<Kernel, JitError> {
        Kernel::compile_with_progress(p, None)
    }

    /// [`Kernel::compile`], reporting `(functions compiled, total)` as it goes.
    pub fn compile_with_progress(
        p: &Program,
        progress: Option<&(dyn Fn(usize, usize) + Sync)>,
    ) -> Result<Kernel, JitError> {
        let mut module = host_module()?;
        let options = DefineOptions {
            listing: None,
            progress,
        };
        let d = match shrink_codegen::define(&mut module, p, "shrink", Linkage::Export, options) {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: nothing of this module was handed out.
                unsafe { module.free_memory() };
                return Err(e.into());
            }
        };
        if let Err(e) = module.finalize_definitions() {
            unsafe { module.free_memory() };
            return Err(JitError::Jit(e.to_string()));
        }
        let function = |id| {
            let ptr = module.get_finalized_function(id);
            // SAFETY: every kernel and `run` were defined with the kernel ABI signature, which
            // is this type.
            unsafe { std::mem::transmute::<*const u8, RunFn>(ptr) }
        };
        let run = function(d.run);
        let steps = p.steps();
        let parallel = if p.threads > 1 && steps.len() < p.kernels.len() {
            let pool = pool::Pool::new(p.threads - 1)
                .map_err(|e| JitError::Jit(format!("thread pool: {e}")));
            let pool = match pool {
                Ok(pool) => pool,
                Err(e) => {
                    unsafe { module.free_memory() };
                    return Err(e);
                }
            };
            let steps = steps
                .into_iter()
                .map(|r| d.kernels[r].iter().map(|&id| function(id)).collect())
                .collect();
            Some(Parallel { steps, pool })
        } else {
            None
        };
        let code_bytes = d.kernel_code_bytes.iter().sum::<usize>() + d.run_code_bytes;
        Ok(Kernel {
            module: Some(module),
            run,
            inputs: p.inputs.clone(),
            outputs: p.outputs.clone(),
            scratch_bytes: p.scratch_bytes,
            stats: CodeStats {
                imports: d.imports,
                kernel_code_bytes: d.kernel_code_bytes,
                code_bytes,
                rodata_bytes: d.rodata_bytes,
            },
            parallel,
        })
    }

    /// The Cranelift IR or the disassembly of `p` as compiled for this machine.
    pub fn listing(p: &Program, kind: Listing) -> Result<String, JitError> {
        let mut module = host_module()?;
        let options = DefineOptions {
            listing: Some(kind),
            progress: None,
        };
        let d = shrink_codegen::define(&mut module, p, "shrink", Linkage::Export, options);
        // SAFETY: the module was never finalized; no code of it runs.
        unsafe { module.free_memory() };
        Ok(d?.listing)
    }

    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }
    /// Bytes of scratch [`Kernel::run_into`] needs.
    pub fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }
    pub fn stats(&self) -> &CodeStats {
        &self.stats
    }
    /// Threads a call runs on: 1, or the pool's size plus the calling thread when the program
    /// has layers split across threads.
    pub fn threads(&self) -> usize {
        self.parallel.as_ref().map_or(1, |p| p.pool.threads())
    }

    /// Runs on caller-owned buffers without allocating: `inputs[i]` and `outputs[k]` hold the
    /// dense little-endian bytes of each tensor, `scratch` at least [`Kernel::scratch_bytes`].
    pub fn run_into(
        &self,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        scratch: &mut [u8],
    ) -> Result<(), JitError> {
        check_buffers("input", &self.inputs, inputs.iter().map(|b| b.len()))?;
        check_buffers("output", &self.outputs, outputs.iter().map(|b| b.len()))?;
        if scratch.len() < self.scratch_bytes {
            return Err(JitError::Mismatch(format!(
                "scratch has {} bytes, the kernel needs {}",
                scratch.len(),
                self.scratch_bytes
            )));
        }
        // Small models need no heap for the pointer arrays.
        const STACK: usize = 16;
        let mut in_stack = [std::ptr::null::<u8>(); STACK];
        let mut out_stack = [std::ptr::null_mut::<u8>(); STACK];
        let mut in_heap = vec![];
        let mut out_heap = vec![];
        let in_ptrs: &mut [*const u8] = if inputs.len() <= STACK {
            &mut in_stack[..inputs.len()]
        } else {
            in_heap.resize(inputs.len(), std::ptr::null());
            &mut in_heap
        };
        for (p, b) in in_ptrs.iter_mut().zip(inputs) {
            *p = b.as_ptr();
        }
        let out_ptrs: &mut [*mut u8] = if outputs.len() <= STACK {
            &mut out_stack[..outputs.len()]
        } else {
            out_heap.resize(outputs.len(), std::ptr::null_mut());
            &mut out_heap
        };
        for (p, b) in out_ptrs.iter_mut().zip(outputs.iter_mut()) {
            *p = b.as_mut_ptr();
        }
        let args = Args(in_ptrs.as_ptr(), out_ptrs.as_ptr(), scratch.as_mut_ptr());
        // SAFETY: every buffer has exactly the size the code was generated for (checked above),
        // and the code stays inside them (bounds proven or checked by the emitter).
        let code = match &self.parallel {
            None => unsafe { args.call(self.run) },
            Some(p) => {
                clear_upper_vector_state();
                unsafe { p.run(args) }
            }
        };
        if code != 0 {
            return Err(JitError::Status { code });
        }
        Ok(())
    }

    /// Runs on tensors, allocating the outputs and scratch.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        if inputs.len() != self.inputs.len() {
            return Err(JitError::Mismatch(format!(
                "the kernel has {} inputs, {} were given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for (t, s) in inputs.iter().zip(&self.inputs) {
            if t.dtype() != s.dtype || t.dims() != s.dims.as_slice() {
                return Err(JitError::Mismatch(format!(
                    "input '{}' is {}{:?}, the kernel expects {}{:?}",
                    s.name,
                    t.dtype(),
                    t.dims(),
                    s.dtype,
                    s.dims
                )));
            }
        }
        let ins: Vec<&[u8]> = inputs.iter().map(|t| t.bytes().as_ref()).collect();
        let mut outs: Vec<Vec<u8>> = self.outputs.iter().map(|s| vec![0; s.bytes()]).collect();
        let mut scratch = vec![0u8; self.scratch_bytes];
        {
            let mut views: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            self.run_into(&ins, &mut views, &mut scratch)?;
        }
        Ok(outs
            .into_iter()
            .zip(&self.outputs)
            .map(|(bytes, s)| {
                Tensor::from_bytes(s.dtype, s.dims.clone(), bytes.into())
                    .expect("sized from the spec")
            })
            .collect())
    }
}

fn check_buffers(
    what: &str,
    specs: &[IoSpec],
    lens: impl ExactSizeIterator<Item = usize>,
) -> Result<(), JitError> {
    if lens.len() != specs.len() {
        return Err(JitError::Mismatch(format!(
            "the kernel has {} {what}s, {} buffers were given",
            specs.len(),
            lens.len()
        )));
    }
    for (s, n) in specs.iter().zip(lens) {
        if n != s.bytes() {
            return Err(JitError::Mismatch(format!(
                "{what} '{}' ({}{:?}) needs {} bytes, the buffer has {n}",
                s.name,
                s.dtype,
                s.dims,
                s.bytes()
            )));
        }
    }
    Ok(())
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `run` dies with `self`; no pointer into the code outlives the kernel.
            unsafe { m.free_memory() };
        }
    }
}
