//! Test support: JIT-compiles one loop-language kernel for the host and runs it on byte buffers,
//! so the emitter, the math library and single ops are tested without the program layer.
use super::emit::{IsaFacts, emit_kernel_with, kernel_signature};
use super::ir::{Kernel, Place};
use cranelift_codegen::Context;
use cranelift_codegen::ir::{Function, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{DataDescription, Linkage, Module, default_libcall_names};

/// Runs `kernel` with the given input buffers and zeroed outputs of the given byte sizes
/// (scratch of `scratch` bytes). Returns the status and the output bytes.
pub fn run_kernel(
    kernel: &Kernel,
    inputs: &[Vec<u8>],
    output_bytes: &[usize],
    scratch: usize,
) -> (i32, Vec<Vec<u8>>) {
    run_kernel_with(kernel, inputs, output_bytes, scratch, true)
}

/// [`run_kernel`] with vectorization allowed (`simd`, when the host has it) or forced off, to
/// compare the vector emission against the scalar one.
pub fn run_kernel_with(
    kernel: &Kernel,
    inputs: &[Vec<u8>],
    output_bytes: &[usize],
    scratch: usize,
    simd: bool,
) -> (i32, Vec<Vec<u8>>) {
    run_kernel_as(kernel, inputs, output_bytes, scratch, |f| f.simd &= simd)
}

/// [`run_kernel`] with the host's ISA facts changed by `tweak` (to run the code paths of a
/// lesser CPU on this one, e.g. without VNNI).
pub fn run_kernel_as(
    kernel: &Kernel,
    inputs: &[Vec<u8>],
    output_bytes: &[usize],
    scratch: usize,
    tweak: impl FnOnce(&mut IsaFacts),
) -> (i32, Vec<Vec<u8>>) {
    let (status, outs, _) = run_kernel_traced(kernel, inputs, output_bytes, scratch, tweak);
    (status, outs)
}

/// [`run_kernel_as`], also returning how many bytes of machine code native pieces placed (so a
/// test can tell the machine-code path ran).
pub fn run_kernel_traced(
    kernel: &Kernel,
    inputs: &[Vec<u8>],
    output_bytes: &[usize],
    scratch: usize,
    tweak: impl FnOnce(&mut IsaFacts),
) -> (i32, Vec<Vec<u8>>, usize) {
    let jitted = Jitted::new(kernel, tweak);
    let mut outs: Vec<Vec<u8>> = output_bytes.iter().map(|&n| vec![0u8; n]).collect();
    let mut scratch = vec![0u8; scratch];
    let ins: Vec<*const u8> = inputs.iter().map(|v| v.as_ptr()).collect();
    let mut outp: Vec<*mut u8> = outs.iter_mut().map(|v| v.as_mut_ptr()).collect();
    // SAFETY: the caller sizes the buffers for the kernel (tests pass its own extents).
    let code = unsafe { jitted.call(&ins, &mut outp, &mut scratch) };
    (code, outs, jitted.machine_bytes)
}

/// Runs the functions of one node (a [`super::Builder::finish_all`] result) on the same
/// buffers, as a program runs them, except that the parts of every split
/// ([`Kernel::concurrent`]) run in reverse order: a part that read what another part writes
/// would then see other values, so comparing the outputs with the unsplit kernel's checks that
/// the parts are independent. Returns the first nonzero status and the outputs.
pub fn run_split_kernels(
    kernels: &[Kernel],
    inputs: &[Vec<u8>],
    output_bytes: &[usize],
    scratch: usize,
    tweak: impl Fn(&mut IsaFacts),
) -> (i32, Vec<Vec<u8>>) {
    let mut outs: Vec<Vec<u8>> = output_bytes.iter().map(|&n| vec![0u8; n]).collect();
    let mut scratch = vec![0u8; scratch];
    let ins: Vec<*const u8> = inputs.iter().map(|v| v.as_ptr()).collect();
    let mut outp: Vec<*mut u8> = outs.iter_mut().map(|v| v.as_mut_ptr()).collect();
    let mut steps: Vec<Vec<&Kernel>> = vec![];
    for k in kernels {
        match steps.last_mut() {
            Some(step) if k.concurrent => step.push(k),
            _ => steps.push(vec![k]),
        }
    }
    for step in steps {
        for k in step.into_iter().rev() {
            let jitted = Jitted::new(k, &tweak);
            // SAFETY: the caller sizes the buffers for the kernels (tests pass their extents).
            let code = unsafe { jitted.call(&ins, &mut outp, &mut scratch) };
            if code != 0 {
                return (code, outs);
            }
        }
    }
    (0, outs)
}

/// The kernel ABI entry point.
type RunFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8) -> i32;

/// One loop-language kernel JIT-compiled for the host (its ISA facts changed by a tweak), to be
/// called any number of times (timing probes call it in loops); its code is freed on drop.
pub struct Jitted {
    module: Option<JITModule>,
    f: RunFn,
    /// Bytes of machine code native pieces placed.
    pub machine_bytes: usize,
}

impl Jitted {
    pub fn new(kernel: &Kernel, tweak: impl FnOnce(&mut IsaFacts)) -> Jitted {
        let mut fb = settings::builder();
        fb.set("opt_level", "speed").unwrap();
        let isa = cranelift_native::builder()
            .unwrap()
            .finish(settings::Flags::new(fb))
            .unwrap();
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        jb.symbol_lookup_fn(Box::new(|_| None));
        let mut module = JITModule::new(jb);
        let mut facts = IsaFacts::of(module.isa());
        tweak(&mut facts);
        let sig = kernel_signature(&facts);
        let id = module.declare_function("k", Linkage::Local, &sig).unwrap();
        let mut ctx = Context::new();
        ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
        let mut gvs = vec![];
        for (i, d) in kernel.bufs.iter().enumerate() {
            let bytes = match &d.place {
                Place::Table(t) => Some(kernel.tables[*t].clone()),
                Place::Const(_) => panic!("run_kernel has no graph constants"),
                _ => None,
            };
            gvs.push(bytes.map(|mut bytes| {
                let did = module
                    .declare_data(&format!("t{i}"), Linkage::Local, false, false)
                    .unwrap();
                let mut desc = DataDescription::new();
                if bytes.is_empty() {
                    bytes.push(0);
                }
                desc.define(bytes.into_boxed_slice());
                module.define_data(did, &desc).unwrap();
                module.declare_data_in_func(did, &mut ctx.func)
            }));
        }
        let mut fctx = FunctionBuilderContext::new();
        // Machine code of native pieces goes where a program's does (`define`), under the same names.
        let mut machine = crate::define::MachineFunctions::new(&mut module, "k", false);
        emit_kernel_with(
            kernel,
            &mut ctx.func,
            &mut fctx,
            &facts,
            &gvs,
            Some(&mut machine),
        );
        if let Some(e) = machine.error {
            panic!("{e}");
        }
        let machine_bytes = machine.bytes;
        module.define_function(id, &mut ctx).unwrap();
        module.finalize_definitions().unwrap();
        // SAFETY: `k` was defined with the kernel ABI signature, which is this type.
        let f =
            unsafe { std::mem::transmute::<*const u8, RunFn>(module.get_finalized_function(id)) };
        Jitted {
            module: Some(module),
            f,
            machine_bytes,
        }
    }

    /// Calls the kernel.
    ///
    /// # Safety
    /// The buffers must have the sizes the kernel was built for (inputs, outputs, workspace).
    pub unsafe fn call(&self, ins: &[*const u8], outs: &mut [*mut u8], scratch: &mut [u8]) -> i32 {
        unsafe { (self.f)(ins.as_ptr(), outs.as_ptr(), scratch.as_mut_ptr()) }
    }
}

impl Drop for Jitted {
    fn drop(&mut self) {
        // SAFETY: the function is not called after this.
        unsafe { self.module.take().expect("freed once").free_memory() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::{Builder, Expr};
    use shrink_ir::DType;

    #[test]
    fn relu_kernel_and_out_of_range_gather_status() {
        let mut b = Builder::new("t");
        let x = b.buffer(Place::Input(0), DType::F32, &[4]);
        let idx = b.buffer(Place::Input(1), DType::I64, &[1]);
        let y = b.buffer(Place::Output(0), DType::F32, &[4]);
        b.for_(4, |b, i| {
            let v = b.load(&x, i.clone());
            b.store(&y, i, v.max(Expr::f32(0.0)));
        });
        // A data-dependent index the emitter cannot prove: it must be checked at run time.
        let j = b.load(&idx, Expr::idx(0));
        let v = b.load(&x, j);
        b.store(&y, Expr::idx(0), v);
        let k = b.finish().unwrap();
        let xs: Vec<u8> = [-1f32, 2.0, -3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (code, outs) = run_kernel(&k, &[xs.clone(), 3i64.to_le_bytes().to_vec()], &[16], 0);
        assert_eq!(code, 0);
        let got: Vec<f32> = outs[0]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, vec![4.0, 2.0, 0.0, 4.0]);
        let (code, _) = run_kernel(&k, &[xs, 4i64.to_le_bytes().to_vec()], &[16], 0);
        assert_eq!(code, crate::loops::status::OUT_OF_BOUNDS);
    }
}
