//! The program layer, first half: a whole graph as kernels in topological order ([`lower`]).
//! Graph inputs are read through `inputs[i]`, graph outputs written through `outputs[k]`,
//! intermediates live at their memory-plan offsets in `scratch`, constants are graph constants
//! in read-only data. [`crate::define`] places the result in a module.
use crate::CodegenOptions;
use crate::caps::{self, CodeBudget};
use crate::loops::fuse::{Producer, inline};
use crate::loops::{Builder, Kernel, Place, TensorRef};
use crate::ops::{NodeCtx, lower_node};
use shrink_ir::op::ConstId;
use shrink_ir::{DType, Graph, NodeId, Op, Prepared, Tensor, Value};
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
    /// The cost model's predicted nanoseconds per call (ternary layers; the node's first
    /// kernel carries it).
    pub predicted_ns: Option<f64>,
    /// How a ternary `packed` layer represents its activations: `f32` (three faithful limbs),
    /// `int8-graph` (the graph's own int8 grid, one limb), `int8-flag` (`--activations int8`);
    /// `None` for every other kernel.
    pub activations: Option<&'static str>,
    /// Which kernel of a `dense` layer's strategy runs it ([`Builder::note_form`]): `tiles`,
    /// `sparse` or `int8`; `None` for the loop nest and every other strategy.
    pub form: Option<&'static str>,
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
    /// Threads the large layers were split for ([`CodegenOptions::threads`]): kernels marked
    /// [`Kernel::concurrent`] may run beside the one before them.
    pub threads: usize,
    /// The cap on its machine code ([`CodegenOptions::max_code_bytes`]), which
    /// [`crate::define`] enforces as it compiles (for the JIT and object files alike).
    pub max_code_bytes: Option<usize>,
}

impl Program {
    /// The kernels grouped into the steps that run one after another: each step is a run of
    /// kernel indices that may run at the same time (one kernel, or the parts of a split layer).
    pub fn steps(&self) -> Vec<std::ops::Range<usize>> {
        let mut steps: Vec<std::ops::Range<usize>> = vec![];
        for (i, nk) in self.kernels.iter().enumerate() {
            match steps.last_mut() {
                Some(last) if nk.kernel.concurrent => last.end = i + 1,
                _ => steps.push(i..i + 1),
            }
        }
        steps
    }
}

/// A kernel that returns BAD_VALUE unless graph input `i` holds exactly `value` (bit for bit).
fn value_guard(p: &Prepared, i: usize, value: &Tensor) -> Result<NodeKernel, CodegenError> {
    let g = p.graph();
    let name = g
        .inputs
        .get(i)
        .map(|&id| g.node(id).name.clone())
        .ok_or_else(|| {
            CodegenError::new(format!("value guard on input {i}, which does not exist"))
        })?;
    if value.dtype() != g.dtype(g.inputs[i].into()) || value.dims() != p.dims(g.inputs[i].into()) {
        return Err(CodegenError::new(format!(
            "value guard on input '{name}' does not match its type"
        )));
    }
    let mut b = Builder::new(&format!("guard_{name}"));
    let input = b.buffer(Place::Input(i), value.dtype(), value.dims());
    let want = b.table(value.dtype(), value.dims(), value.bytes().to_vec());
    b.for_(value.len(), |b, k| {
        let (x, y) = (b.load_raw(&input, k.clone()), b.load_raw(&want, k));
        let ty = x.ty.bits_ty();
        b.fail_if(
            x.bitcast(ty).ne(y.bitcast(ty)),
            crate::loops::status::BAD_VALUE,
        );
    });
    Ok(NodeKernel {
        node_name: name,
        op: "Input",
        strategy: "loops",
        predicted_ns: None,
        activations: None,
        form: None,
        kernel: b.finish().map_err(CodegenError::new)?,
    })
}

/// Lowers every node of `g` (static shapes required) to kernels.
pub fn lower(g: &Graph, options: &CodegenOptions) -> Result<Program, CodegenError> {
    for id in g.node_ids() {
        let n = g.node(id);
        if n.outputs.iter().any(|t| t.dtype == DType::String) {
            let what = if n.op.is_source() {
                format!(
                    "'{}' is a string tensor; generated code handles numeric tensors only",
                    n.name
                )
            } else {
                "string tensors are not supported by generated code".to_string()
            };
            return Err(CodegenError::at(&n.name, n.op.name(), what));
        }
    }
    // The lowering input: the graph verified, every shape static, the memory plan verified.
    let prepared = shrink_ir::prepare(g).map_err(|e| CodegenError::new(e.to_string()))?;
    let (plan, order) = (prepared.plan(), prepared.order());
    let dims = |v: Value| prepared.dims(v).to_vec();
    let io = |name: &str, v: Value| IoSpec {
        name: name.to_string(),
        dtype: g.dtype(v),
        dims: dims(v),
    };
    let inputs: Vec<IoSpec> = g
        .inputs
        .iter()
        .map(|&id| io(&g.node(id).name, id.into()))
        .collect();
    let outputs: Vec<IoSpec> = g.outputs.iter().map(|(n, v)| io(n, *v)).collect();
    check_buffers(g, &inputs, &outputs, options.max_memory)?;
    for (name, _) in &options.per_layer {
        if !order.iter().any(|&id| &g.node(id).name == name) {
            return Err(CodegenError::new(format!(
                "--strategy-for {name}: the optimized graph has no node named '{name}'"
            )));
        }
    }
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
    for (i, value) in &options.value_guards {
        kernels.push(value_guard(&prepared, *i, value)?);
    }
    let fusion = FusionPlan::new(g, order, &place);
    // Every kernel's code is estimated as soon as it is final, before the next node is built.
    let mut code = CodeBudget::new(options.max_code_bytes);
    let mut estimated = 0;
    // Producers fused into a consumer not lowered yet, by the value they would have written.
    let mut pending: HashMap<Value, (Producer, NodeKernel, usize)> = HashMap::new();
    for &id in order {
        estimate_code(&kernels, &mut estimated, &mut code)?;
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
            let dims = dims(v);
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
            strategy: options.for_layer(&node.name),
            options,
        };
        lower_node(&mut b, &node.op, &cx)
            .map_err(|m| CodegenError::at(&node.name, node.op.name(), m))?;
        let predicted_ns = b.predicted_ns();
        let activations = b.activations();
        let form = b.form();
        let strategy = b.strategy().unwrap_or(
            if matches!(node.op, Op::Linear(_) | Op::Fused(_) | Op::Conv(_)) {
                "dense"
            } else {
                "loops"
            },
        );
        let mut parts = b
            .finish_all()
            .map_err(|m| CodegenError::at(&node.name, node.op.name(), m))?;
        // Inline the fused producers of this node's inputs; one that cannot be (memory shared
        // with this node's outputs in a way the inlined reads would see) runs just before it,
        // its inputs still intact.
        let mut group = 1;
        for (j, v) in in_vals.iter().enumerate() {
            let Some((producer, unfused, size)) = v.and_then(|v| pending.remove(&v)) else {
                continue;
            };
            let target = cx.inputs[j].as_ref().expect("fused input").buf;
            let fused: Option<Vec<Kernel>> =
                parts.iter().map(|k| inline(k, target, &producer)).collect();
            match fused {
                Some(f) => {
                    parts = f;
                    group += size;
                    // The producer keeps an entry (an empty kernel) so per-node reports still
                    // list it, as fused.
                    kernels.push(NodeKernel {
                        strategy: "fused",
                        kernel: Kernel {
                            name: unfused.kernel.name.clone(),
                            ..Kernel::default()
                        },
                        ..unfused
                    });
                }
                None => kernels.push(unfused),
            }
        }
        if parts.len() == 1
            && group < MAX_FUSED
            && let Some(v) = fusion.fused_output(id)
        {
            let kernel = parts.pop().expect("one part");
            let unfused = NodeKernel {
                node_name: node.name.clone(),
                op: node.op.name(),
                strategy,
                predicted_ns,
                activations,
                form,
                kernel: kernel.clone(),
            };
            match Producer::of(kernel) {
                Some(p) if fusion.inputs_survive(&p, id) => {
                    pending.insert(v, (p, unfused, group));
                }
                _ => kernels.push(unfused),
            }
            continue;
        }
        for (i, kernel) in parts.into_iter().enumerate() {
            kernels.push(NodeKernel {
                node_name: node.name.clone(),
                op: node.op.name(),
                strategy,
                predicted_ns: predicted_ns.filter(|_| i == 0),
                activations,
                form,
                kernel,
            });
        }
    }
    assert!(pending.is_empty(), "a fused producer without its consumer");
    estimate_code(&kernels, &mut estimated, &mut code)?;
    // Outputs that are graph inputs, constants or repeated values are copied at the end.
    let mut scratch_bytes = plan.total;
    for (k, v) in copies {
        let mut b = Builder::new(&format!("copy_output_{k}"));
        let dims = dims(v);
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
        kernels.push(NodeKernel {
            node_name: g.outputs[k].0.clone(),
            op: "Identity",
            strategy: "loops",
            predicted_ns: None,
            activations: None,
            form: None,
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
    // Kernels run one at a time, so their private workspaces share one region past everything
    // else in the arena.
    let workspace_base = scratch_bytes.div_ceil(64) * 64;
    for nk in &mut kernels {
        let mut used = false;
        for d in &mut nk.kernel.bufs {
            if let Place::Workspace(off) = d.place {
                d.place = Place::Scratch(workspace_base + off);
                used = true;
            }
        }
        if used {
            scratch_bytes = scratch_bytes.max(workspace_base + nk.kernel.workspace_bytes);
        }
    }
    // Only constants some kernel reads become data (a ternary kernel replaces its dense weight).
    let read: std::collections::BTreeSet<ConstId> = kernels
        .iter()
        .flat_map(|nk| {
            let used = nk.kernel.used_bufs();
            nk.kernel
                .bufs
                .iter()
                .enumerate()
                .filter(move |(i, _)| used.contains(&crate::loops::ir::BufId(*i as u32)))
                .filter_map(|(_, d)| match d.place {
                    Place::Const(c) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    consts.retain(|c, _| read.contains(c));
    estimate_code(&kernels, &mut estimated, &mut code)?;
    check_data(&kernels, &consts, scratch_bytes, options.max_memory)?;
    Ok(Program {
        inputs,
        outputs,
        scratch_bytes,
        kernels,
        consts,
        threads: options.threads.max(1),
        max_code_bytes: options.max_code_bytes,
    })
}

/// Adds the estimated code of `kernels[*done..]` to `budget` ([`crate::caps`]): the first
/// kernel that crosses the cap is refused, named by its node.
fn estimate_code(
    kernels: &[NodeKernel],
    done: &mut usize,
    budget: &mut CodeBudget,
) -> Result<(), CodegenError> {
    for nk in &kernels[*done..] {
        budget
            .add(
                "this node needs at least",
                caps::estimated_code_bytes(&nk.kernel),
            )
            .map_err(|e| CodegenError::at(&nk.node_name, nk.op, e))?;
    }
    *done = kernels.len();
    Ok(())
}

/// Each graph input and output (a buffer the caller, or the JIT's `run`, allocates per call)
/// within the memory cap.
fn check_buffers(
    g: &Graph,
    inputs: &[IoSpec],
    outputs: &[IoSpec],
    cap: usize,
) -> Result<(), CodegenError> {
    let bytes = |s: &IoSpec| {
        s.dims
            .iter()
            .try_fold(s.dtype.size(), |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    };
    for (s, &id) in inputs.iter().zip(&g.inputs) {
        caps::check_memory(cap, &format!("input '{}'", s.name), bytes(s))
            .map_err(|e| CodegenError::at(&g.node(id).name, "Input", e))?;
    }
    for (s, (_, v)) in outputs.iter().zip(&g.outputs) {
        let n = g.node(v.node);
        caps::check_memory(cap, &format!("output '{}'", s.name), bytes(s))
            .map_err(|e| CodegenError::at(&n.name, n.op.name(), e))?;
    }
    Ok(())
}

/// The read-only data (constants read, and tables, each distinct table once as
/// [`crate::define`] places them) and the scratch arena within the memory cap; the node named
/// is the one whose data crosses it.
fn check_data(
    kernels: &[NodeKernel],
    consts: &BTreeMap<ConstId, Arc<Tensor>>,
    scratch_bytes: usize,
    cap: usize,
) -> Result<(), CodegenError> {
    use std::hash::{BuildHasher, RandomState};
    let hasher = RandomState::new();
    let (mut seen_consts, mut seen_tables) = (BTreeMap::new(), std::collections::HashSet::new());
    let mut rodata = 0usize;
    let mut scratch_owner: Option<(usize, &NodeKernel)> = None;
    for nk in kernels {
        for d in &nk.kernel.bufs {
            match d.place {
                Place::Const(c) => {
                    if let Some(t) = consts.get(&c)
                        && seen_consts.insert(c, ()).is_none()
                    {
                        rodata = rodata.saturating_add(t.bytes().len());
                    }
                }
                Place::Scratch(off) => {
                    let end = off.saturating_add(d.len.saturating_mul(d.ty.bytes()));
                    if scratch_owner.is_none_or(|(e, _)| end > e) {
                        scratch_owner = Some((end, nk));
                    }
                }
                _ => {}
            }
        }
        for t in &nk.kernel.tables {
            if seen_tables.insert((t.len(), hasher.hash_one(t))) {
                rodata = rodata.saturating_add(t.len());
            }
        }
        caps::check_memory(cap, "read-only data", rodata)
            .map_err(|e| CodegenError::at(&nk.node_name, nk.op, e))?;
    }
    caps::check_memory(cap, "scratch", scratch_bytes).map_err(|e| match scratch_owner {
        Some((_, nk)) => CodegenError::at(&nk.node_name, nk.op, e),
        None => CodegenError::new(e),
    })
}

/// Most nodes fused into one kernel: bounds the inlined expression trees (and the work of
/// re-inlining a growing kernel) on long chains.
const MAX_FUSED: usize = 8;

/// Which elementwise nodes are computed inside their consumer's kernel instead of writing their
/// output to scratch: a Unary/Binary/Ternary/Variadic node whose one output is not a graph
/// output, is read once, by a node of those families with an output of the same shape (so
/// each element is recomputed once, not once per broadcast use).
struct FusionPlan {
    /// Fused node → its output and its consumer's position in the order.
    fused: HashMap<NodeId, (Value, usize)>,
    pos: HashMap<NodeId, usize>,
    /// Scratch byte range each node's outputs occupy, by position.
    writes: Vec<Vec<(usize, usize)>>,
}

fn elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Ternary(_) | Op::Variadic(_)
    )
}

impl FusionPlan {
    fn new(g: &Graph, order: &[NodeId], place: &HashMap<Value, Place>) -> FusionPlan {
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut uses: HashMap<Value, Vec<NodeId>> = HashMap::new();
        for &id in order {
            for v in g.inputs_of(id).into_iter().flatten() {
                uses.entry(v).or_default().push(id);
            }
        }
        let dims = |v: Value| {
            g.value_type(v)
                .shape
                .as_ref()
                .and_then(|s| s.as_fixed())
                .map(|d| d.to_vec())
        };
        let mut fused = HashMap::new();
        for &id in order {
            let node = g.node(id);
            if !elementwise(&node.op) || node.outputs.len() != 1 {
                continue;
            }
            let v = Value::new(id, 0);
            if g.outputs.iter().any(|(_, o)| *o == v) {
                continue;
            }
            let [c] = uses.get(&v).map(|u| u.as_slice()).unwrap_or(&[]) else {
                continue;
            };
            let cn = g.node(*c);
            if elementwise(&cn.op)
                && cn.outputs.len() == 1
                && dims(v).is_some()
                && dims(v) == dims(Value::new(*c, 0))
            {
                fused.insert(id, (v, pos[c]));
            }
        }
        let writes = order
            .iter()
            .map(|&id| {
                (0..g.node(id).outputs.len())
                    .filter_map(|k| {
                        let v = Value::new(id, k as u32);
                        match place.get(&v) {
                            Some(Place::Scratch(off)) => {
                                let bytes = dims(v)?.iter().product::<usize>() * g.dtype(v).size();
                                Some((*off, off + bytes))
                            }
                            _ => None,
                        }
                    })
                    .collect()
            })
            .collect();
        FusionPlan { fused, pos, writes }
    }

    /// The output of `id` when it is to be fused into its consumer.
    fn fused_output(&self, id: NodeId) -> Option<Value> {
        self.fused.get(&id).map(|&(v, _)| v)
    }

    /// Whether nothing the nodes between producer `id` and its consumer write overlaps what the
    /// producer reads (the consumer's own writes are checked when inlining).
    fn inputs_survive(&self, p: &Producer, id: NodeId) -> bool {
        let (from, to) = (self.pos[&id], self.fused[&id].1);
        let reads = p.scratch_reads();
        self.writes[from + 1..to]
            .iter()
            .flatten()
            .all(|w| reads.iter().all(|r| r.1 <= w.0 || w.1 <= r.0))
    }
}
