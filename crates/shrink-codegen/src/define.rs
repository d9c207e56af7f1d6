//! The program layer, second half: a lowered [`Program`] placed into any Cranelift `Module`
//! (the JIT's or an object file's) behind one exported entry point:
//!
//! ```c
//! int32_t PREFIX_run(const void *const *inputs, void *const *outputs, void *scratch);
//! ```
//!
//! `run` calls each node's kernel in order and returns the first nonzero status. Functions are
//! built in order, compiled in parallel (rayon), and defined in order again, so the module's
//! contents do not depend on the number of threads. Nothing is imported: every function and
//! data object is defined in the module, and a relocation to a libcall is refused as an error.
use crate::caps::CodeBudget;
use crate::loops::Place;
use crate::loops::emit::{IsaFacts, emit_kernel_with, kernel_signature, machine_signature};
use crate::loops::ir::{MachineCode, MachineSink};
use crate::program::{CodegenError, Program};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{Function, InstBuilder, UserFuncName, types};
use cranelift_codegen::{Context, FinalizedRelocTarget};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module, ModuleReloc};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// A text listing [`define`] can capture while it compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Cranelift IR of every function, before optimization.
    Clif,
    /// The machine code of every function, disassembled by Cranelift (VCode form).
    Asm,
}

/// Options of [`define`].
#[derive(Clone, Copy, Default)]
pub struct DefineOptions<'a> {
    pub listing: Option<Listing>,
    /// Called as `progress(functions_compiled, total)` from the compile threads.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

/// What [`define`] placed in the module.
#[derive(Clone, Debug)]
pub struct Defined {
    /// The exported entry point `PREFIX_run`.
    pub run: FuncId,
    /// Each node kernel's function (same order as [`Program::kernels`], the kernel ABI
    /// signature): a host that runs [`Program::steps`] itself (the JIT's thread pool) calls them.
    pub kernels: Vec<FuncId>,
    /// Machine-code bytes of each node kernel (same order as [`Program::kernels`]).
    pub kernel_code_bytes: Vec<usize>,
    /// Code bytes of `run` itself.
    pub run_code_bytes: usize,
    /// Bytes of read-only data (constants and tables).
    pub rodata_bytes: usize,
    /// The requested listing (empty when none was asked for).
    pub listing: String,
    /// Symbols the module declares but does not define (always empty: [`define`] refuses to
    /// finish otherwise; kept so tests can assert it for every model).
    pub imports: Vec<String>,
}

fn module_err(e: impl std::fmt::Display) -> CodegenError {
    CodegenError::new(format!("code generation: {e}"))
}

/// One function between building and defining.
struct Pending {
    id: FuncId,
    ctx: Context,
    /// (node name, op) for errors; the listing title.
    node: String,
    op: String,
    title: String,
    /// The kernel's machine functions: their listing and code bytes.
    machine_listing: String,
    machine_bytes: usize,
}

/// One compiled function.
struct Compiled {
    bytes: Vec<u8>,
    alignment: u64,
    relocs: Vec<ModuleReloc>,
    listing: String,
}

/// Places `p` in `module` with every symbol prefixed by `prefix`: `{prefix}_run` exported (with
/// `run_linkage`), everything else local.
pub fn define<M: Module>(
    module: &mut M,
    p: &Program,
    prefix: &str,
    run_linkage: Linkage,
    options: DefineOptions,
) -> Result<Defined, CodegenError> {
    let listing = options.listing;
    let mut rodata_bytes = 0;
    let mut data_object = |module: &mut M, name: String, bytes: &[u8]| {
        let id = module
            .declare_data(&name, Linkage::Local, false, false)
            .map_err(module_err)?;
        let mut desc = DataDescription::new();
        // Never empty: a zero-length object has no address to point at.
        let mut contents = bytes.to_vec();
        if contents.is_empty() {
            contents.push(0);
        }
        rodata_bytes += contents.len();
        desc.define(contents.into_boxed_slice());
        desc.set_align(16);
        module.define_data(id, &desc).map_err(module_err)?;
        Ok::<DataId, CodegenError>(id)
    };
    let mut const_ids = BTreeMap::new();
    for (c, t) in &p.consts {
        let id = data_object(module, format!("{prefix}_const{}", c.0), t.bytes())?;
        const_ids.insert(*c, id);
    }
    // Tables are deduplicated by content, named in order of first use (deterministic).
    let mut table_ids: HashMap<Vec<u8>, DataId> = HashMap::new();
    let isa = IsaFacts::of(module.isa());
    let sig = kernel_signature(&isa);
    let mut fctx = FunctionBuilderContext::new();
    let mut pending = vec![];
    for (i, nk) in p.kernels.iter().enumerate() {
        let k = &nk.kernel;
        let name = format!("{prefix}_k{i}");
        let id = module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(module_err)?;
        let mut ctx = Context::new();
        ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig.clone());
        let mut gvs = vec![];
        let used = k.used_bufs();
        for (bi, d) in k.bufs.iter().enumerate() {
            if !used.contains(&crate::loops::ir::BufId(bi as u32)) {
                gvs.push(None);
                continue;
            }
            let data = match &d.place {
                Place::Const(c) => Some(const_ids[c]),
                Place::Table(t) => {
                    let bytes = &k.tables[*t];
                    let id = match table_ids.get(bytes) {
                        Some(id) => *id,
                        None => {
                            let n = table_ids.len();
                            let id = data_object(module, format!("{prefix}_table{n}"), bytes)?;
                            table_ids.insert(bytes.clone(), id);
                            id
                        }
                    };
                    Some(id)
                }
                _ => None,
            };
            gvs.push(data.map(|id| module.declare_data_in_func(id, &mut ctx.func)));
        }
        let mut machine = MachineFunctions::new(module, &name, listing == Some(Listing::Asm));
        emit_kernel_with(k, &mut ctx.func, &mut fctx, &isa, &gvs, Some(&mut machine));
        if let Some(e) = machine.error {
            return Err(CodegenError::at(&nk.node_name, nk.op, e));
        }
        pending.push(Pending {
            id,
            ctx,
            node: nk.node_name.clone(),
            op: nk.op.to_string(),
            title: format!("; {name}: node '{}' (op {})\n", nk.node_name, nk.op),
            machine_listing: machine.listing,
            machine_bytes: machine.bytes,
        });
    }
    let kernel_ids: Vec<FuncId> = pending.iter().map(|f| f.id).collect();
    let needs_clean_entry = clears_upper_vector_state(module.isa());
    let run = module
        .declare_function(&format!("{prefix}_run"), run_linkage, &sig)
        .map_err(module_err)?;
    // With an entry stub, the body Cranelift compiles is a local function behind it.
    let body = if needs_clean_entry {
        module
            .declare_function(&format!("{prefix}_run_body"), Linkage::Local, &sig)
            .map_err(module_err)?
    } else {
        run
    };
    let mut ctx = Context::new();
    ctx.func = Function::with_name_signature(UserFuncName::user(0, body.as_u32()), sig.clone());
    let refs: Vec<_> = kernel_ids
        .iter()
        .map(|&f| module.declare_func_in_func(f, &mut ctx.func))
        .collect();
    build_run(&mut ctx.func, &mut fctx, &refs, &isa);
    pending.push(Pending {
        id: body,
        ctx,
        node: prefix.to_string(),
        op: "run".into(),
        title: format!(
            "; {prefix}_run{}\n",
            if needs_clean_entry { "_body" } else { "" }
        ),
        machine_listing: String::new(),
        machine_bytes: 0,
    });
    // Compiled a group at a time, each group's real sizes added to the code cap in program
    // order before the next starts: a program over the cap stops within a group of crossing it,
    // and the function named is the one whose code crosses it whatever the thread count.
    let mut compiled = Vec::with_capacity(pending.len());
    let mut budget = CodeBudget::new(p.max_code_bytes);
    {
        let target = module.isa();
        let (done, total) = (std::sync::atomic::AtomicUsize::new(0), pending.len());
        for group in pending.chunks_mut(COMPILE_GROUP) {
            let group_compiled = group
                .par_iter_mut()
                .map(|f| {
                    let c = compile_one(target, f, listing);
                    if let Some(report) = options.progress {
                        report(
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                            total,
                        );
                    }
                    c
                })
                .collect::<Result<Vec<_>, _>>()?;
            for (f, c) in group.iter().zip(&group_compiled) {
                budget
                    .add("this function compiled to", c.bytes.len() + f.machine_bytes)
                    .map_err(|e| CodegenError::at(&f.node, &f.op, e))?;
            }
            compiled.extend(group_compiled);
        }
    }
    let (min_align, sym_align) = (
        module.isa().function_alignment().minimum as u64,
        module.isa().symbol_alignment(),
    );
    let mut text = String::new();
    let mut sizes = vec![];
    for (f, c) in pending.iter().zip(&compiled) {
        let align = c.alignment.max(min_align).max(sym_align);
        module
            .define_function_bytes(f.id, align, &c.bytes, &c.relocs)
            .map_err(|e| CodegenError::at(&f.node, &f.op, format!("code generation: {e}")))?;
        text.push_str(&c.listing);
        text.push_str(&f.machine_listing);
        sizes.push(c.bytes.len() + f.machine_bytes);
    }
    let mut run_code_bytes = sizes.pop().unwrap_or(0);
    if needs_clean_entry {
        let (bytes, relocs) = vzeroupper_stub(body);
        budget
            .add("the entry point compiled to", bytes.len())
            .map_err(|e| CodegenError::at(prefix, "run", e))?;
        module
            .define_function_bytes(run, min_align.max(sym_align), &bytes, &relocs)
            .map_err(module_err)?;
        if listing == Some(Listing::Asm) {
            text.push_str(&format!(
                "; {prefix}_run\n  vzeroupper\n  jmp {prefix}_run_body\n"
            ));
        }
        run_code_bytes += bytes.len();
    }
    let imports = imported_symbols(module);
    if !imports.is_empty() {
        return Err(CodegenError::new(format!(
            "the generated code would import {}",
            imports.join(", ")
        )));
    }
    Ok(Defined {
        run,
        kernels: kernel_ids,
        kernel_code_bytes: sizes,
        run_code_bytes,
        rodata_bytes,
        listing: text,
        imports,
    })
}

/// Functions compiled at once between two checks of the code cap.
const COMPILE_GROUP: usize = 64;

/// Alignment of machine functions: a cache line, so their loops' placement (and speed) does not
/// depend on what was defined before them.
const MACHINE_ALIGN: u64 = 64;

/// The [`MachineSink`] of every module shrink defines kernels in (programs here, single kernels
/// in `loops::testing`): each piece of machine code becomes a local function
/// `{kernel}_m{n}`, numbered in emission order (so names and bytes are deterministic), defined
/// from its bytes with no relocations (the kernel passes every address as an argument).
pub struct MachineFunctions<'m, M: Module> {
    module: &'m mut M,
    kernel: String,
    count: usize,
    /// The listing of what was placed, when asked for.
    want_listing: bool,
    pub listing: String,
    /// Code bytes placed.
    pub bytes: usize,
    /// The first definition that failed (nothing is placed after it).
    pub error: Option<String>,
}

impl<'m, M: Module> MachineFunctions<'m, M> {
    pub fn new(module: &'m mut M, kernel: &str, want_listing: bool) -> Self {
        MachineFunctions {
            module,
            kernel: kernel.to_string(),
            count: 0,
            want_listing,
            listing: String::new(),
            bytes: 0,
            error: None,
        }
    }
}

impl<M: Module> MachineSink for MachineFunctions<'_, M> {
    fn place(
        &mut self,
        code: MachineCode,
        func: &mut Function,
    ) -> Option<cranelift_codegen::ir::FuncRef> {
        if self.error.is_some() {
            return None;
        }
        let name = format!("{}_m{}", self.kernel, self.count);
        self.count += 1;
        let sig = machine_signature(self.module.isa().pointer_type(), code.args);
        let defined = match self.module.declare_function(&name, Linkage::Local, &sig) {
            Ok(id) => self
                .module
                .define_function_bytes(id, MACHINE_ALIGN, &code.bytes, &[])
                .map(|()| id),
            Err(e) => Err(e),
        };
        match defined {
            Ok(id) => {
                self.bytes += code.bytes.len();
                if self.want_listing {
                    self.listing
                        .push_str(&format!("; {name}: {} (machine code)\n", code.name));
                    self.listing.push_str(&code.listing);
                    self.listing.push('\n');
                }
                Some(self.module.declare_func_in_func(id, func))
            }
            Err(e) => {
                self.error = Some(format!("code generation: {e}"));
                None
            }
        }
    }
}

/// Whether the entry point clears the upper halves of the vector registers first. On x86 with AVX,
/// a host that leaves them dirty (hand-written AVX/AVX-512 code without `vzeroupper`, as some
/// inference libraries do) makes every legacy-SSE instruction Cranelift still emits wait on a
/// merge with the upper bits: measured here (Xeon, bitnet_block) 58 µs → 595 µs per call after
/// one dirtying `vpternlogd zmm1`. One `vzeroupper` at entry costs a cycle and removes it; the
/// code itself uses 128-bit VEX forms, which keep the state clean until it returns. Without AVX
/// the instruction does not exist (and no host can dirty the state).
fn clears_upper_vector_state(isa: &dyn cranelift_codegen::isa::TargetIsa) -> bool {
    isa.name() == "x64"
        && isa
            .isa_flags()
            .iter()
            .any(|f| f.name == "has_avx" && f.as_bool() == Some(true))
}

/// `PREFIX_run` on x86 with AVX: `vzeroupper; jmp PREFIX_run_body` (the body has the same
/// signature, so a tail jump passes the arguments and the return address through untouched).
fn vzeroupper_stub(body: FuncId) -> (Vec<u8>, Vec<ModuleReloc>) {
    // C5 F8 77 = vzeroupper; E9 rel32 = jmp, its displacement patched by the relocation
    // (relative to the end of the instruction, hence the addend -4).
    let bytes = vec![0xC5, 0xF8, 0x77, 0xE9, 0, 0, 0, 0];
    let relocs = vec![ModuleReloc {
        offset: 4,
        kind: cranelift_codegen::binemit::Reloc::X86CallPCRel4,
        name: cranelift_module::ModuleRelocTarget::user(0, body.as_u32()),
        addend: -4,
    }];
    (bytes, relocs)
}

/// The entry point: call each kernel in order, stop at the first nonzero status.
fn build_run(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    refs: &[cranelift_codegen::ir::FuncRef],
    isa: &IsaFacts,
) {
    let mut fb = FunctionBuilder::new(func, fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let args = fb.block_params(entry).to_vec();
    let fail = fb.create_block();
    fb.append_block_param(fail, types::I32);
    for &r in refs {
        let call = fb.ins().call(r, &args);
        let status = fb.inst_results(call)[0];
        let next = fb.create_block();
        fb.ins().brif(
            status,
            fail,
            &[cranelift_codegen::ir::BlockArg::Value(status)],
            next,
            &[],
        );
        fb.switch_to_block(next);
    }
    let zero = fb.ins().iconst(types::I32, 0);
    fb.ins().return_(&[zero]);
    fb.switch_to_block(fail);
    let s = fb.block_params(fail)[0];
    fb.ins().return_(&[s]);
    fb.seal_all_blocks();
    fb.finalize(isa.frontend);
}

/// Compiles one function, refusing any relocation to a symbol the module does not define
/// (libcalls: `fmaf`, `memcpy`, …).
fn compile_one(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    f: &mut Pending,
    listing: Option<Listing>,
) -> Result<Compiled, CodegenError> {
    let mut text = String::new();
    match listing {
        Some(Listing::Clif) => {
            text.push_str(&f.title);
            text.push_str(&f.ctx.func.display().to_string());
            text.push('\n');
        }
        Some(Listing::Asm) => {
            text.push_str(&f.title);
            f.ctx.set_disasm(true);
        }
        None => {}
    }
    let at = |m: String| CodegenError::at(&f.node, &f.op, m);
    let code = f
        .ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| at(format!("code generation: {:?}", e.inner)))?;
    let mut relocs = vec![];
    for r in code.buffer.relocs() {
        if let FinalizedRelocTarget::ExternalName(cranelift_codegen::ir::ExternalName::LibCall(
            lc,
        )) = &r.target
        {
            return Err(at(format!(
                "the generated code would call the library function {lc:?}"
            )));
        }
    }
    let alignment = code.buffer.alignment as u64;
    let bytes = code.code_buffer().to_vec();
    if listing == Some(Listing::Asm)
        && let Some(v) = &code.vcode
    {
        text.push_str(v);
        text.push('\n');
    }
    for r in f.ctx.compiled_code().expect("compiled").buffer.relocs() {
        relocs.push(ModuleReloc::from_mach_reloc(r, &f.ctx.func, f.id));
    }
    Ok(Compiled {
        bytes,
        alignment,
        relocs,
        listing: text,
    })
}

/// Every function or data object of `module` declared with import linkage.
pub fn imported_symbols<M: Module>(module: &M) -> Vec<String> {
    let d = module.declarations();
    let funcs = d
        .get_functions()
        .filter(|(_, f)| f.linkage == Linkage::Import)
        .map(|(_, f)| {
            f.name
                .clone()
                .unwrap_or_else(|| "<anonymous function>".into())
        });
    let data = d
        .get_data_objects()
        .filter(|(_, o)| o.linkage == Linkage::Import)
        .map(|(_, o)| o.name.clone().unwrap_or_else(|| "<anonymous data>".into()));
    funcs.chain(data).collect()
}
