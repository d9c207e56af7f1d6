//! [`Compiler`]: the one-call API from a model (a path, bytes or an IR graph) to a kernel
//! running in this process ([`Compiler::compile_jit`]) or to an object file and C header for a
//! target ([`Compiler::compile_aot`]).
//!
//! ```
//! use shrink::{Compiler, CompileOptions};
//! # fn main() -> Result<(), shrink::Error> {
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/models/ternary_mlp/model.onnx");
//! let kernel = Compiler::new(CompileOptions::default()).compile_jit(std::path::Path::new(path))?;
//! let spec = &kernel.inputs()[0];
//! let x = shrink::ir::Tensor::from_vec(spec.dims.clone(), vec![0.5f32; spec.dims.iter().product()]);
//! let y = kernel.run(&[x])?;
//! assert_eq!(y[0].dims(), kernel.outputs()[0].dims.as_slice());
//! # Ok(()) }
//! ```
use crate::OptOptions;
use shrink_ir::{Dim, Graph, Shape};
use shrink_jit::Kernel;
use std::path::Path;

/// Any failure on the way from a model to its outputs, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl From<shrink_aot::AotError> for Error {
    fn from(e: shrink_aot::AotError) -> Error {
        Error(e.to_string())
    }
}

impl From<shrink_jit::JitError> for Error {
    fn from(e: shrink_jit::JitError) -> Error {
        Error(e.to_string())
    }
}

/// Where a model comes from.
pub enum Model<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
    Graph(&'a Graph),
}

impl<'a> From<&'a Path> for Model<'a> {
    fn from(p: &'a Path) -> Model<'a> {
        Model::Path(p)
    }
}
impl<'a> From<&'a [u8]> for Model<'a> {
    fn from(b: &'a [u8]) -> Model<'a> {
        Model::Bytes(b)
    }
}
impl<'a> From<&'a Graph> for Model<'a> {
    fn from(g: &'a Graph) -> Model<'a> {
        Model::Graph(g)
    }
}

/// How to compile.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub opt: OptOptions,
    /// `--input-shape NAME=D0,D1,…`: every dim of an input fixed at once.
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// Largest tensor the importer may load, and the most data code generation may lay out
    /// (with [`shrink_codegen::CodegenOptions::max_memory`], the smaller of the two).
    pub max_memory: usize,
    pub codegen: shrink_codegen::CodegenOptions,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            opt: OptOptions::default(),
            input_shapes: vec![],
            max_memory: 4 << 30,
            codegen: Default::default(),
        }
    }
}

/// Compiles models with one set of options.
#[derive(Clone, Debug, Default)]
pub struct Compiler {
    pub options: CompileOptions,
}

impl Compiler {
    pub fn new(options: CompileOptions) -> Compiler {
        Compiler { options }
    }

    /// Imports (if needed), fixes input shapes, optimizes: the graph code generation sees.
    pub fn optimized_graph<'a>(&self, model: impl Into<Model<'a>>) -> Result<Graph, Error> {
        let (mut g, label) = match model.into() {
            Model::Path(p) => {
                let opts = shrink_onnx::ImportOptions {
                    max_memory: self.options.max_memory,
                };
                let imp = shrink_onnx::load_model(p, &opts).map_err(|e| Error(e.to_string()))?;
                (imp.graph, p.display().to_string())
            }
            Model::Bytes(b) => {
                let opts = shrink_onnx::ImportOptions {
                    max_memory: self.options.max_memory,
                };
                let imp = shrink_onnx::load_model_bytes(
                    "<model bytes>",
                    bytes::Bytes::copy_from_slice(b),
                    &opts,
                )
                .map_err(|e| Error(e.to_string()))?;
                (imp.graph, "<model bytes>".to_string())
            }
            Model::Graph(g) => (g.clone(), "<graph>".to_string()),
        };
        let at = |e: String| Error(format!("{label}: {e}"));
        for (name, dims) in &self.options.input_shapes {
            set_input_shape(&mut g, name, dims).map_err(at)?;
        }
        crate::optimize(&mut g, &self.options.opt).map_err(at)?;
        require_static_inputs(&g).map_err(at)?;
        Ok(g)
    }

    /// Compiles to native code for this machine.
    pub fn compile_jit<'a>(&self, model: impl Into<Model<'a>>) -> Result<Kernel, Error> {
        let g = self.optimized_graph(model)?;
        Ok(crate::compile_jit_with(&g, &self.codegen())?)
    }

    /// The code generation options, bounded by [`CompileOptions::max_memory`] too.
    fn codegen(&self) -> shrink_codegen::CodegenOptions {
        let mut o = self.options.codegen.clone();
        o.max_memory = o.max_memory.min(self.options.max_memory);
        o
    }

    /// Compiles ahead of time for `target` (a profile name, a triple or `host`): an object
    /// whose one global symbol is `{prefix}_run`, and its C header.
    pub fn compile_aot<'a>(
        &self,
        model: impl Into<Model<'a>>,
        target: &str,
        prefix: &str,
    ) -> Result<AotOutput, Error> {
        let profile = shrink_target::find(target).map_err(Error)?;
        shrink_aot::check_prefix(prefix)?;
        let g = self.optimized_graph(model)?;
        let codegen = crate::options_for_target(&self.codegen(), &profile).map_err(Error)?;
        let program = crate::lower_with(&g, &codegen).map_err(|e| Error(e.to_string()))?;
        AotOutput::new(&program, profile, prefix)
    }
}

/// An ahead-of-time compile: the object file, its C header, and what they were made for.
#[derive(Clone, Debug)]
pub struct AotOutput {
    pub profile: shrink_target::TargetProfile,
    pub prefix: String,
    pub object: Vec<u8>,
    pub header: String,
    /// What the object holds (code and data sizes).
    pub facts: shrink_aot::ObjectFacts,
    /// The kernel's inputs and outputs, in header order.
    pub inputs: Vec<shrink_codegen::IoSpec>,
    pub outputs: Vec<shrink_codegen::IoSpec>,
    pub scratch_bytes: usize,
}

impl AotOutput {
    /// Writes and validates the object and header of a lowered program.
    pub fn new(
        program: &shrink_codegen::Program,
        profile: shrink_target::TargetProfile,
        prefix: &str,
    ) -> Result<AotOutput, Error> {
        let c = shrink_aot::compile(program, &profile, prefix, Default::default())?;
        let (object, facts) = (c.object, c.facts);
        let header = shrink_aot::header(program, prefix)?;
        Ok(AotOutput {
            profile,
            prefix: prefix.to_string(),
            object,
            header,
            facts,
            inputs: program.inputs.clone(),
            outputs: program.outputs.clone(),
            scratch_bytes: program.scratch_bytes,
        })
    }

    /// The object as a static library (one member, `{prefix}.o`).
    pub fn archive(&self) -> Result<Vec<u8>, Error> {
        Ok(shrink_aot::archive(&[(
            format!("{}.o", self.prefix),
            self.object.clone(),
        )])?)
    }
}

/// Fixes every dim of graph input `name` (`--input-shape`). The rank must match a declared shape,
/// and declared fixed dims must agree.
pub fn set_input_shape(g: &mut Graph, name: &str, dims: &[usize]) -> Result<(), String> {
    let id = g
        .inputs
        .iter()
        .copied()
        .find(|&id| g.node(id).name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = g.inputs.iter().map(|&i| g.node(i).name.as_str()).collect();
            format!(
                "--input-shape: the model has no input '{name}' (inputs: {})",
                names.join(", ")
            )
        })?;
    let ty = &mut g.node_mut(id).outputs[0];
    if let Some(s) = &ty.shape {
        if s.rank() != dims.len() {
            return Err(format!(
                "--input-shape {name}: the model declares rank {} ({s}), {} dims were given",
                s.rank(),
                dims.len()
            ));
        }
        for (i, (d, &n)) in s.0.iter().zip(dims).enumerate() {
            if let Dim::Fixed(f) = d
                && *f != n
            {
                return Err(format!(
                    "--input-shape {name}: dim {i} is fixed to {f} by the model, {n} was given"
                ));
            }
        }
    }
    ty.shape = Some(Shape::fixed(dims));
    Ok(())
}

/// Every graph input must have a fully fixed shape before code generation (the check
/// [`shrink_ir::prepare`] starts with, for callers that stop short of lowering).
pub fn require_static_inputs(g: &Graph) -> Result<(), String> {
    shrink_ir::prepare::check_static_inputs(g).map_err(|e| e.to_string())
}
