//! ONNX file → verified [`Graph`]. The model is memory-mapped and decoded by prost; initializer
//! bytes stay views of the mapping. Nodes are ordered by their data dependencies (files need not be
//! sorted; a cycle is an error), every op goes through the registry in [`crate::ops`], and all
//! unsupported ops are reported at once.
use crate::attrs::Attrs;
use crate::error::ImportError;
use crate::ops::{self, Input, NodeIn};
use crate::proto::{ModelProto, NodeProto, TypeProto, ValueInfoProto, type_proto};
use crate::tensor::{ExternalData, tensor_from_proto};
use bytes::Bytes;
use prost::Message;
use shrink_ir::op::infer_dtypes;
use shrink_ir::{DType, Dim, Graph, Shape, Tensor, Value, ValueType};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Import settings.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Largest tensor, in bytes, the importer will decode or accept (default 4 GiB).
    pub max_memory: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            max_memory: 4 << 30,
        }
    }
}

/// An imported model.
#[derive(Debug)]
pub struct Imported {
    pub graph: Graph,
    /// The default-domain opset version.
    pub opset: i64,
    pub producer: String,
}

/// Loads and imports a model file.
pub fn load_model(path: &Path, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let file_name = path.display().to_string();
    let file =
        std::fs::File::open(path).map_err(|e| ImportError::new(&file_name, e.to_string()))?;
    // SAFETY: read-only mapping of a model file shrink does not modify (see ExternalData::load).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| ImportError::new(&file_name, e.to_string()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    import_bytes(&file_name, Bytes::from_owner(map), Some(dir), opts)
}

/// Imports a model from bytes (external data is then refused).
pub fn load_model_bytes(
    name: &str,
    bytes: Bytes,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    import_bytes(name, bytes, None, opts)
}

/// The newest default-domain (ai.onnx) opset whose op definitions the importer knows. A model
/// declaring a newer one is refused rather than read with older semantics.
pub const NEWEST_OPSET: i64 = 28;

fn import_bytes(
    file: &str,
    bytes: Bytes,
    dir: Option<&Path>,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| ImportError::new(file, format!("not a valid ONNX model: {e}")))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            ImportError::new(file, "the model imports no default-domain (ai.onnx) opset")
        })?;
    if opset > NEWEST_OPSET {
        return Err(ImportError::new(
            file,
            format!(
                "the model uses ai.onnx opset {opset}, newer than the newest shrink knows \
                 ({NEWEST_OPSET}); its ops may mean something else there — convert the model to \
                 opset {NEWEST_OPSET} or older"
            ),
        ));
    }
    if opset < 1 {
        return Err(ImportError::new(
            file,
            format!("the model declares ai.onnx opset {opset}; opsets start at 1"),
        ));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::new(file, "the model has no graph"))?;
    let ext = dir.map(ExternalData::new);
    let mut imp = Importer {
        file,
        opts,
        opset,
        g: Graph::new(),
        names: HashMap::new(),
        types: HashMap::new(),
    };
    for vi in graph.value_info.iter().chain(&graph.output) {
        if let Some(t) = value_type(vi).map_err(|e| ImportError::new(file, e))? {
            imp.types.insert(vi.name.clone(), t);
        }
    }
    for init in &graph.initializer {
        let t = tensor_from_proto(init, ext.as_ref(), opts.max_memory)
            .map_err(|e| ImportError::new(file, format!("initializer '{}': {e}", init.name)))?;
        if imp.names.contains_key(&init.name) {
            return Err(ImportError::new(
                file,
                format!("initializer '{}' is defined twice", init.name),
            ));
        }
        let id = imp.g.add_const(&init.name, Arc::new(t));
        imp.names.insert(init.name.clone(), id.into());
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(ImportError::new(
            file,
            "sparse initializers are not supported",
        ));
    }
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for vi in &graph.input {
        // A graph input that is also an initializer takes the initializer as its (fixed) value.
        if initializers.contains(vi.name.as_str()) {
            continue;
        }
        if imp.names.contains_key(&vi.name) {
            return Err(ImportError::new(
                file,
                format!("graph input '{}' is declared twice", vi.name),
            ));
        }
        let ty = value_type(vi)
            .map_err(|e| ImportError::new(file, e))?
            .ok_or_else(|| {
                ImportError::new(
                    file,
                    format!("graph input '{}' has no tensor type", vi.name),
                )
            })?;
        let id = imp.g.add_input(&vi.name, ty);
        imp.names.insert(vi.name.clone(), id.into());
    }
    let order = node_order(file, &graph.node, &imp.names)?;
    let mut unsupported = Vec::new();
    for i in order {
        // Unnamed nodes (common in exported models) are known by their first output, which is
        // unique in the graph, so errors and `inspect` rows can tell them apart.
        let renamed;
        let node = if graph.node[i].name.is_empty() {
            let label = graph.node[i]
                .output
                .iter()
                .find(|o| !o.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("#{i}"));
            renamed = NodeProto {
                name: label,
                ..graph.node[i].clone()
            };
            &renamed
        } else {
            &graph.node[i]
        };
        if !(node.domain.is_empty() || node.domain == "ai.onnx")
            || ops::lookup(&node.op_type).is_none() && node.op_type != "Constant"
        {
            let domain = if node.domain.is_empty() {
                String::new()
            } else {
                format!("{}.", node.domain)
            };
            unsupported.push(format!("'{}' ({domain}{})", node.name, node.op_type));
            // Keep importing so that every unsupported op is reported; outputs stay undefined.
            continue;
        }
        if !unsupported.is_empty() {
            continue;
        }
        imp.node(node)
            .map_err(|msg| ImportError::at_node(file, &node.name, &node.op_type, msg))?;
    }
    if !unsupported.is_empty() {
        return Err(ImportError::new(
            file,
            format!("unsupported ops: {}", unsupported.join(", ")),
        ));
    }
    for vi in &graph.output {
        let v = *imp.names.get(&vi.name).ok_or_else(|| {
            ImportError::new(
                file,
                format!("graph output '{}' is not produced by any node", vi.name),
            )
        })?;
        if let Some(t) = imp.types.get(&vi.name)
            && t.dtype != imp.g.dtype(v)
        {
            return Err(ImportError::new(
                file,
                format!(
                    "graph output '{}' is declared {} but computes {}",
                    vi.name,
                    t.dtype,
                    imp.g.dtype(v)
                ),
            ));
        }
        imp.g.outputs.push((vi.name.clone(), v));
    }
    shrink_ir::verify(&imp.g).map_err(|e| match e.node {
        Some(n) => {
            let node = imp.g.node(n);
            ImportError::at_node(file, &node.name, node.op.name(), e.msg)
        }
        None => ImportError::new(file, e.msg),
    })?;
    Ok(Imported {
        graph: imp.g,
        opset,
        producer: model.producer_name.clone(),
    })
}

struct Importer<'a> {
    file: &'a str,
    opts: &'a ImportOptions,
    opset: i64,
    g: Graph,
    /// ONNX value name → IR value.
    names: HashMap<String, Value>,
    /// Declared types from value_info / graph outputs.
    types: HashMap<String, ValueType>,
}

impl Importer<'_> {
    fn node(&mut self, node: &NodeProto) -> Result<(), String> {
        let _ = self.file;
        let attrs = Attrs::new(&node.attribute);
        let num_outputs = node
            .output
            .iter()
            .rposition(|o| !o.is_empty())
            .map_or(0, |p| p + 1);
        if num_outputs == 0 {
            return Err("the node has no outputs".into());
        }
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if self.names.contains_key(o) {
                return Err(format!("value '{o}' is produced twice"));
            }
        }
        if node.op_type == "Constant" {
            let t = constant_value(&attrs, self.opts.max_memory)?;
            let id = self.g.add_const(&node.name, Arc::new(t));
            self.names.insert(node.output[0].clone(), id.into());
            return Ok(());
        }
        let mut inputs = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
            } else {
                let v = self
                    .names
                    .get(name)
                    .ok_or_else(|| format!("input '{name}' is not defined"))?;
                inputs.push(Some(*v));
            }
        }
        let input_types = inputs.iter().map(|v| v.map(|v| self.g.dtype(v))).collect();
        let builder = ops::lookup(&node.op_type).ok_or("unsupported op")?;
        let nin = NodeIn {
            proto: node,
            attrs,
            opset: self.opset,
            inputs,
            input_types,
            cap: self.opts.max_memory,
        };
        let built = builder(&nin)?;
        let mut wired = Vec::with_capacity(built.inputs.len());
        for (slot, i) in built.inputs.into_iter().enumerate() {
            wired.push(match i {
                Input::Value(v) => Some(v),
                Input::Absent => None,
                Input::Const(t) => Some(
                    self.g
                        .add_const(&format!("{}:in{slot}", node.name), Arc::new(t))
                        .into(),
                ),
            });
        }
        let dtypes: Vec<Option<DType>> = wired.iter().map(|v| v.map(|v| self.g.dtype(v))).collect();
        let out_dtypes =
            infer_dtypes(&built.op, &dtypes, num_outputs).map_err(|e| e.to_string())?;
        if out_dtypes.len() < num_outputs {
            return Err(format!(
                "the op has {} outputs, the node declares {num_outputs}",
                out_dtypes.len()
            ));
        }
        let outputs: Vec<ValueType> = (0..num_outputs)
            .map(|k| {
                let declared = node.output.get(k).and_then(|n| self.types.get(n));
                let shape = declared
                    .filter(|t| t.dtype == out_dtypes[k])
                    .and_then(|t| t.shape.clone());
                ValueType::new(out_dtypes[k], shape)
            })
            .collect();
        let id = self.g.add_node(built.op, &node.name, &wired, outputs);
        for (k, name) in node.output.iter().enumerate() {
            if !name.is_empty() {
                self.names.insert(name.clone(), Value::new(id, k as u32));
            }
        }
        Ok(())
    }
}

/// The value of a Constant node, in any of its attribute forms.
fn constant_value(a: &Attrs<'_>, cap: usize) -> Result<Tensor, String> {
    let names: Vec<&str> = a.names().collect();
    if names.len() != 1 {
        return Err(format!(
            "Constant needs exactly one value attribute, found {names:?}"
        ));
    }
    if let Some(t) = a.tensor("value", cap)? {
        return Ok(t);
    }
    if let Some(f) = a.get("value_float") {
        return Ok(Tensor::scalar(a.float("value_float", f.f)?));
    }
    if let Some(v) = a.floats("value_floats")? {
        return Ok(Tensor::from_vec(vec![v.len()], v));
    }
    if let Some(i) = a.opt_int("value_int")? {
        return Ok(Tensor::scalar(i));
    }
    if let Some(v) = a.ints("value_ints")? {
        return Ok(Tensor::from_vec(vec![v.len()], v));
    }
    if a.get("sparse_value").is_some() {
        return Err("sparse Constant values are not supported".into());
    }
    Err(format!(
        "Constant attribute '{}' is not supported",
        names[0]
    ))
}

/// The IR type of a graph value's declared type, `None` if it declares none.
fn value_type(vi: &ValueInfoProto) -> Result<Option<ValueType>, String> {
    let Some(TypeProto { value: Some(v), .. }) = &vi.r#type else {
        return Ok(None);
    };
    let type_proto::Value::TensorType(t) = v else {
        return Err(format!(
            "value '{}' is not a tensor (sequences, maps and optionals are not supported)",
            vi.name
        ));
    };
    let dtype = match t.elem_type {
        0 => return Ok(None),
        c => DType::from_onnx(c)
            .ok_or_else(|| format!("value '{}' has unsupported element type {c}", vi.name))?,
    };
    let shape = t.shape.as_ref().map(|s| {
        Shape(
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(crate::proto::tensor_shape_proto::dimension::Value::DimValue(n))
                        if *n >= 0 =>
                    {
                        Dim::Fixed(*n as usize)
                    }
                    Some(crate::proto::tensor_shape_proto::dimension::Value::DimParam(p))
                        if !p.is_empty() =>
                    {
                        Dim::Sym(p.clone())
                    }
                    _ => Dim::Unknown,
                })
                .collect(),
        )
    });
    Ok(Some(ValueType::new(dtype, shape)))
}

/// Orders nodes so that every input is produced before use (Kahn's algorithm, stable in file
/// order). Errors name a node whose input nothing produces, or a node on a cycle.
fn node_order(
    file: &str,
    nodes: &[NodeProto],
    known: &HashMap<String, Value>,
) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut indeg = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for name in n.input.iter().filter(|s| !s.is_empty()) {
            match producer.get(name.as_str()) {
                Some(&p) => {
                    deps[p].push(i);
                    indeg[i] += 1;
                }
                None if known.contains_key(name) => {}
                None => {
                    return Err(ImportError::at_node(
                        file,
                        &n.name,
                        &n.op_type,
                        format!(
                            "input '{name}' is not a graph input, an initializer or any node's output"
                        ),
                    ));
                }
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &deps[i] {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if let Some(i) = (0..nodes.len()).find(|&i| indeg[i] > 0) {
        return Err(ImportError::at_node(
            file,
            &nodes[i].name,
            &nodes[i].op_type,
            "the node is on a cycle",
        ));
    }
    Ok(order)
}
