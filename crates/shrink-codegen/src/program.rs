//! The program layer: a whole graph as kernels in topological order ([`lower`]), and those
//! kernels placed into any Cranelift `Module` behind one exported entry point ([`define`]):
//!
//! ```c
//! int32_t PREFIX_run(const void *const *inputs, void *const *outputs, void *scratch);
//! ```
//!
//! Graph inputs are read through `inputs[i]`, graph outputs written through `outputs[k]`,
//! intermediates live at their memory-plan offsets in `scratch`, constants in read-only data
//! objects. `run` calls each node's kernel in order and returns the first nonzero status.
//! Nothing is imported: every function and data object is defined in the module, and a
//! relocation to a libcall is refused as an error.
use crate::loops::emit::{IsaFacts, emit_kernel, kernel_signature};
use crate::loops::{Builder, Kernel, Place, TensorRef, linear};
use crate::ops::{NodeCtx, lower_node};
use cranelift_codegen::Context;
use cranelift_codegen::FinalizedRelocTarget;
use cranelift_codegen::ir::{Function, InstBuilder, UserFuncName, types};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use shrink_ir::op::ConstId;
use shrink_ir::plan::plan_memory;
use shrink_ir::{DType, Graph, Op, Tensor, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Why a graph could not be compiled; names the node and op when one is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{msg}", where_.as_ref().map(|(n, o)| format!("node '{n}' (op {o}): ")).unwrap_or_default())]
pub struct CodegenError {
    /// (node name, op name)
    pub where_: Option<(String, String)>,
    pub msg: String,
}

impl CodegenError {
    pub fn new(msg: impl Into<String>) -> CodegenError {
        CodegenError {
            where_: None,
            msg: msg.into(),
        }
    }
    pub fn at(node: &str, op: &str, msg: impl Into<String>) -> CodegenError {
        CodegenError {
            where_: Some((node.to_string(), op.to_string())),
            msg: msg.into(),
        }
    }
}

/// A graph input or output as the ABI sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl IoSpec {
    /// Dense byte size.
    pub fn bytes(&self) -> usize {
        self.dims.iter().product::<usize>() * self.dtype.size()
    }
}

/// One node's kernel, with the node it came from (for reports and errors).
#[derive(Clone, Debug)]
pub struct NodeKernel {
    pub node_name: String,
    pub op: &'static str,
    /// How the node was lowered: `loops` (the loop-nest emitter), or a kernel strategy name
    /// (`dense`, `stream`, `packed`) for layers with weights.
    pub strategy: &'static str,
    pub kernel: Kernel,
}

/// A lowered graph, ready to be placed in a module.
#[derive(Clone, Debug)]
pub struct Program {
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    pub scratch_bytes: usize,
    pub kernels: Vec<NodeKernel>,
    /// Constants the kernels read, by id.
    pub consts: BTreeMap<ConstId, Arc<Tensor>>,
}

fn static_dims(g: &Graph, v: Value) -> Result<Vec<usize>, CodegenError> {
    let node = g.node(v.node);
    let t = g.value_type(v);
    t.shape.as_ref().and_then(|s| s.as_fixed()).ok_or_else(|| {
        CodegenError::at(
            &node.name,
            node.op.name(),
            format!(
                "output {} has no static shape (bind its dims with --input-shape or --dim)",
                v.slot
            ),
        )
    })
}

/// Lowers every node of `g` (static shapes required) to kernels.
pub fn lower(g: &Graph) -> Result<Program, CodegenError> {
    let io = |name: &str, v: Value| -> Result<IoSpec, CodegenError> {
        let dtype = g.dtype(v);
        if dtype == DType::String {
            return Err(CodegenError::new(format!(
                "'{name}' is a string tensor; generated code handles numeric tensors only"
            )));
        }
        Ok(IoSpec {
            name: name.to_string(),
            dtype,
            dims: static_dims(g, v)?,
        })
    };
    let inputs = g
        .inputs
        .iter()
        .map(|&id| io(&g.node(id).name, id.into()))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = g
        .outputs
        .iter()
        .map(|(n, v)| io(n, *v))
        .collect::<Result<Vec<_>, _>>()?;
    let order = g
        .topo_order()
        .map_err(|_| CodegenError::new("the graph has a cycle"))?;
    for &id in &order {
        for k in 0..g.node(id).outputs.len() {
            static_dims(g, Value::new(id, k as u32))?;
            if g.node(id).outputs[k].dtype == DType::String {
                let n = g.node(id);
                return Err(CodegenError::at(
                    &n.name,
                    n.op.name(),
                    "string tensors are not supported by generated code",
                ));
            }
        }
    }
    let plan = plan_memory(g).map_err(CodegenError::new)?;
    // Where each value lives. A graph output is written straight into its caller buffer by the
    // node that produces it (its first occurrence, when a value is listed twice).
    let mut place: HashMap<Value, Place> = HashMap::new();
    for (i, &id) in g.inputs.iter().enumerate() {
        place.insert(id.into(), Place::Input(i));
    }
    let mut copies: Vec<(usize, Value)> = vec![];
    for (k, (_, v)) in g.outputs.iter().enumerate() {
        let is_source = g.node(v.node).op.is_source();
        if is_source || place.contains_key(v) {
            copies.push((k, *v));
        } else {
            place.insert(*v, Place::Output(k));
        }
    }
    for (v, &(off, _)) in &plan.slots {
        place.entry(*v).or_insert(Place::Scratch(off));
    }
    let mut consts = BTreeMap::new();
    let mut kernels = vec![];
    for &id in &order {
        let node = g.node(id);
        match node.op {
            Op::Input { .. } => continue,
            Op::Const(c) => {
                place.insert(id.into(), Place::Const(c));
                continue;
            }
            _ => {}
        }
        for k in 0..node.outputs.len() {
            // An output nobody reads (MaxPool's indices, …) still has to be written somewhere:
            // all of them share the space just past the arena, which `scratch_bytes` covers.
            place
                .entry(Value::new(id, k as u32))
                .or_insert(Place::Scratch(plan.total));
        }
        let mut b = Builder::new(&node.name);
        let mut declare = |b: &mut Builder, v: Value| -> Result<TensorRef, CodegenError> {
            let dims = static_dims(g, v)?;
            let p = place.get(&v).cloned().ok_or_else(|| {
                CodegenError::at(
                    &node.name,
                    node.op.name(),
                    format!("value {v} has no place"),
                )
            })?;
            if let Place::Const(c) = p {
                consts.insert(c, g.consts[c.0 as usize].clone());
            }
            Ok(b.buffer(p, g.dtype(v), &dims))
        };
        let in_vals = g.inputs_of(id);
        let mut inputs = vec![];
        let mut const_vals = vec![];
        for v in &in_vals {
            match v {
                Some(v) => {
                    inputs.push(Some(declare(&mut b, *v)?));
                    const_vals.push(g.const_value(*v).cloned());
                }
                None => {
                    inputs.push(None);
                    const_vals.push(None);
                }
            }
        }
        let mut outputs = vec![];
        for k in 0..node.outputs.len() {
            outputs.push(declare(&mut b, Value::new(id, k as u32))?);
        }
        let cx = NodeCtx {
            graph: g,
            node: id,
            inputs,
            outputs,
            consts: const_vals,
        };
        lower_node(&mut b, &node.op, &cx)
            .map_err(|m| CodegenError::at(&node.name, node.op.name(), m))?;
        let kernel = b
            .finish()
            .map_err(|m| CodegenError::at(&node.name, node.op.name(), m))?;
        kernels.push(NodeKernel {
            node_name: node.name.clone(),
            op: node.op.name(),
            strategy: if matches!(node.op, Op::Linear(_) | Op::Fused(_) | Op::Conv(_)) {
                "dense"
            } else {
                "loops"
            },
            kernel,
        });
    }
    // Outputs that are graph inputs, constants or repeated values are copied at the end.
    let mut scratch_bytes = plan.total;
    for (k, v) in copies {
        let mut b = Builder::new(&format!("copy_output_{k}"));
        let dims = static_dims(g, v)?;
        let src_place = place[&v].clone();
        if let Place::Const(c) = src_place {
            consts.insert(c, g.consts[c.0 as usize].clone());
        }
        let src = b.buffer(src_place, g.dtype(v), &dims);
        let dst = b.buffer(Place::Output(k), g.dtype(v), &dims);
        b.for_(src.numel(), |b, i| {
            let x = b.load_raw(&src, i.clone());
            b.store_raw(&dst, i, x);
        });
        let _ = linear;
        kernels.push(NodeKernel {
            node_name: g.outputs[k].0.clone(),
            op: "Identity",
            strategy: "loops",
            kernel: b.finish().map_err(CodegenError::new)?,
        });
    }
    // Unread outputs were given the address just past the arena: widen it to cover the
    // largest of them.
    for nk in &kernels {
        for d in &nk.kernel.bufs {
            if let Place::Scratch(off) = d.place
                && off == plan.total
            {
                let need = (d.len * d.ty.bytes()).div_ceil(64) * 64;
                scratch_bytes = scratch_bytes.max(plan.total + need);
            }
        }
    }
    Ok(Program {
        inputs,
        outputs,
        scratch_bytes,
        kernels,
        consts,
    })
}

/// A text listing [`define`] can capture while it compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Cranelift IR of every function, before optimization.
    Clif,
    /// The machine code of every function, disassembled by Cranelift (VCode form).
    Asm,
}

/// What [`define`] placed in the module.
#[derive(Clone, Debug)]
pub struct Defined {
    /// The exported entry point `PREFIX_run`.
    pub run: FuncId,
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

/// Places `p` in `module` with every symbol prefixed by `prefix`: `{prefix}_run` exported (with
/// `run_linkage`), everything else local.
pub fn define<M: Module>(
    module: &mut M,
    p: &Program,
    prefix: &str,
    run_linkage: Linkage,
    listing: Option<Listing>,
) -> Result<Defined, CodegenError> {
    let mut text = String::new();
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
    let mut table_ids: HashMap<Vec<u8>, DataId> = HashMap::new();
    let isa = IsaFacts::of(module.isa());
    let sig = kernel_signature(&isa);
    let mut ctx = Context::new();
    let mut fctx = FunctionBuilderContext::new();
    let mut funcs = vec![];
    let mut kernel_code_bytes = vec![];
    for (i, nk) in p.kernels.iter().enumerate() {
        let k = &nk.kernel;
        let name = format!("{prefix}_k{i}");
        let id = module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(module_err)?;
        ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig.clone());
        let mut gvs = vec![];
        for d in &k.bufs {
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
        emit_kernel(k, &mut ctx.func, &mut fctx, &isa, &gvs);
        let title = format!("; {name}: node '{}' (op {})\n", nk.node_name, nk.op);
        capture_before(&mut text, listing, &title, &mut ctx);
        define_checked(module, id, &mut ctx, &nk.node_name, nk.op)?;
        capture_after(&mut text, listing, &ctx);
        kernel_code_bytes.push(ctx.compiled_code().map_or(0, |c| c.code_buffer().len()));
        module.clear_context(&mut ctx);
        funcs.push(id);
    }
    // The entry point: call each kernel in order, stop at the first nonzero status.
    let run = module
        .declare_function(&format!("{prefix}_run"), run_linkage, &sig)
        .map_err(module_err)?;
    ctx.func = Function::with_name_signature(UserFuncName::user(0, run.as_u32()), sig.clone());
    {
        let refs: Vec<_> = funcs
            .iter()
            .map(|&f| module.declare_func_in_func(f, &mut ctx.func))
            .collect();
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let args = fb.block_params(entry).to_vec();
        let fail = fb.create_block();
        fb.append_block_param(fail, types::I32);
        for r in refs {
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
    capture_before(&mut text, listing, &format!("; {prefix}_run\n"), &mut ctx);
    define_checked(module, run, &mut ctx, prefix, "run")?;
    capture_after(&mut text, listing, &ctx);
    let run_code_bytes = ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
    module.clear_context(&mut ctx);
    let imports = imported_symbols(module);
    if !imports.is_empty() {
        return Err(CodegenError::new(format!(
            "the generated code would import {}",
            imports.join(", ")
        )));
    }
    Ok(Defined {
        imports,
        run,
        kernel_code_bytes,
        run_code_bytes,
        rodata_bytes,
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

fn capture_before(text: &mut String, listing: Option<Listing>, title: &str, ctx: &mut Context) {
    match listing {
        Some(Listing::Clif) => {
            text.push_str(title);
            text.push_str(&ctx.func.display().to_string());
            text.push('\n');
        }
        Some(Listing::Asm) => {
            text.push_str(title);
            ctx.set_disasm(true);
        }
        None => {}
    }
}

fn capture_after(text: &mut String, listing: Option<Listing>, ctx: &Context) {
    if listing == Some(Listing::Asm)
        && let Some(v) = ctx.compiled_code().and_then(|c| c.vcode.as_ref())
    {
        text.push_str(v);
        text.push('\n');
    }
}

/// Compiles and defines one function, refusing any relocation to a symbol the module does not
/// define (libcalls: `fmaf`, `memcpy`, …).
fn define_checked<M: Module>(
    module: &mut M,
    id: FuncId,
    ctx: &mut Context,
    node: &str,
    op: &str,
) -> Result<(), CodegenError> {
    module
        .define_function(id, ctx)
        .map_err(|e| CodegenError::at(node, op, format!("code generation: {e:?}")))?;
    let code = ctx.compiled_code().expect("just compiled");
    for r in code.buffer.relocs() {
        if let FinalizedRelocTarget::ExternalName(cranelift_codegen::ir::ExternalName::LibCall(
            lc,
        )) = &r.target
        {
            return Err(CodegenError::at(
                node,
                op,
                format!("the generated code would call the library function {lc:?}"),
            ));
        }
    }
    Ok(())
}
