//! shrink's facade: one place that ties import, interpretation and (later) compilation together,
//! used by the `shrink` CLI, the integration tests and benches.
//!
//! The layers below are re-exported so that a host needs one dependency.
pub mod build;
pub mod compare;
pub mod compiler;
pub mod dataset;
pub mod demo;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod harness;
pub mod inspect;
pub mod npy;
pub mod op_table;
pub mod per_layer;
pub mod report;

pub use shrink_aot as aot;
pub use shrink_codegen as codegen;
pub use shrink_ir as ir;
pub use shrink_jit as jit;

pub use compiler::{AotOutput, CompileOptions, Compiler, Error, Model};
pub use shrink_jit::Kernel;
pub use shrink_onnx as onnx;
pub use shrink_ref as interp;
pub use shrink_target as target;

use shrink_ir::{Dim, Graph, Tensor};

/// Orders user-supplied tensors as the graph's inputs: by name when every tensor is named after
/// an input, else by position. Checks dtype and every fixed dimension against the declared type.
pub fn bind_inputs(g: &Graph, given: &[(String, Tensor)]) -> Result<Vec<Tensor>, String> {
    let names: Vec<&str> = g
        .inputs
        .iter()
        .map(|&id| g.node(id).name.as_str())
        .collect();
    if given.len() != names.len() {
        return Err(format!(
            "the model has {} inputs ({}), {} were given",
            names.len(),
            names.join(", "),
            given.len()
        ));
    }
    let by_name = given.iter().all(|(n, _)| names.contains(&n.as_str()));
    let mut out = Vec::with_capacity(names.len());
    for (i, &id) in g.inputs.iter().enumerate() {
        let name = names[i];
        let t = if by_name {
            &given
                .iter()
                .find(|(n, _)| n == name)
                .expect("checked above")
                .1
        } else {
            &given[i].1
        };
        let ty = &g.node(id).outputs[0];
        if t.dtype() != ty.dtype {
            return Err(format!(
                "input '{name}' is {} but the model expects {}",
                t.dtype(),
                ty.dtype
            ));
        }
        if let Some(shape) = &ty.shape {
            let fits = shape.rank() == t.rank()
                && shape
                    .0
                    .iter()
                    .zip(t.dims())
                    .all(|(d, &n)| !matches!(d, Dim::Fixed(f) if *f != n));
            if !fits {
                return Err(format!(
                    "input '{name}' has shape {:?} but the model expects {shape}",
                    t.dims()
                ));
            }
        }
        out.push(t.clone());
    }
    Ok(out)
}

pub use shrink_opt as opt;

/// How to optimize a graph before running or compiling it.
#[derive(Clone, Debug)]
pub struct OptOptions {
    /// `false` = `--no-opt`: the graph runs as imported.
    pub enabled: bool,
    /// `--passes a,b,c`: an explicit pipeline instead of the default.
    pub passes: Option<Vec<String>>,
    /// `--dim NAME=VALUE` bindings.
    pub dims: Vec<(String, usize)>,
    /// `--freeze NAME=FILE` values.
    pub freeze: Vec<(String, Tensor)>,
    pub ctx: shrink_opt::Ctx,
}

impl OptOptions {
    /// The default pipeline with the verifier on and every allocation of the optimizer (folded
    /// constants, interpreter tensors) capped at `cap` bytes: for untrusted models.
    pub fn verified_within(cap: usize) -> OptOptions {
        OptOptions {
            ctx: shrink_opt::Ctx {
                verify: true,
                fold_budget: cap,
                eval: shrink_ref::EvalCtx { max_bytes: cap },
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

impl Default for OptOptions {
    fn default() -> OptOptions {
        OptOptions {
            enabled: true,
            passes: None,
            dims: vec![],
            freeze: vec![],
            ctx: shrink_opt::Ctx::default(),
        }
    }
}

/// Specializes `g` to the data it will run on ([`shrink_opt::specialize::specialize_to_data`]):
/// input shapes from the tensors, and inputs whose *values* shapes depend on (runtime axes, pads,
/// reshape targets) replaced by constants. Returns those inputs as code generation value guards
/// (index, value): a kernel compiled from `g` refuses any other value of them.
pub fn specialize_to_values(
    g: &mut Graph,
    inputs: &[Tensor],
) -> Result<Vec<(usize, Tensor)>, String> {
    let names = shrink_opt::specialize::specialize_to_data(g, inputs, &shrink_opt::Ctx::default())?;
    Ok(g.inputs
        .iter()
        .enumerate()
        .filter(|(_, id)| names.contains(&g.node(**id).name))
        .map(|(i, _)| (i, inputs[i].clone()))
        .collect())
}

/// Sets each graph input's declared shape to the shape of the tensor that will be fed to it, so
/// that symbolic dims are specialized to the data at hand.
pub fn specialize_to(g: &mut Graph, inputs: &[Tensor]) {
    for (&id, t) in g.inputs.clone().iter().zip(inputs) {
        let ty = &mut g.node_mut(id).outputs[0];
        if ty.dtype == t.dtype() {
            ty.shape = Some(shrink_ir::Shape::fixed(t.dims()));
        }
    }
}

/// Applies `--freeze` and `--dim`, then runs the pipeline (unless disabled). Returns each pass's
/// stats.
pub fn optimize(g: &mut Graph, opts: &OptOptions) -> Result<Vec<shrink_opt::Stats>, String> {
    for (name, t) in &opts.freeze {
        shrink_opt::specialize::freeze(g, name, t.clone())?;
    }
    for (name, v) in &opts.dims {
        shrink_opt::specialize::bind_dim(g, name, *v)?;
    }
    if !opts.enabled {
        return Ok(vec![]);
    }
    let names: Vec<&str> = match &opts.passes {
        Some(p) => p.iter().map(String::as_str).collect(),
        None => shrink_opt::default_pipeline(),
    };
    shrink_opt::run_passes(g, &names, &opts.ctx).map_err(|e| e.to_string())
}

/// The graph at the two points `inspect` reports on: just before sparsity elimination (weights as
/// the model defines them, after folding) and at the end of the pipeline.
pub struct Staged {
    pub before_sparsity: Graph,
    pub optimized: Graph,
    pub stats: Vec<shrink_opt::Stats>,
}

/// Like [`optimize`], keeping a snapshot of the graph before the first `sparsity` pass.
pub fn optimize_staged(g: &Graph, opts: &OptOptions) -> Result<Staged, String> {
    let mut first = g.clone();
    let names: Vec<String> = match &opts.passes {
        Some(p) => p.clone(),
        None => shrink_opt::default_pipeline()
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let split = names
        .iter()
        .position(|p| p == "sparsity")
        .unwrap_or(names.len());
    let head = OptOptions {
        passes: Some(names[..split].to_vec()),
        ..opts.clone()
    };
    let mut stats = optimize(&mut first, &head)?;
    let mut optimized = first.clone();
    if opts.enabled && split < names.len() {
        let tail = OptOptions {
            passes: Some(names[split..].to_vec()),
            freeze: vec![],
            dims: vec![],
            ..opts.clone()
        };
        stats.extend(optimize(&mut optimized, &tail)?);
    }
    Ok(Staged {
        before_sparsity: first,
        optimized,
        stats,
    })
}

/// Compiles an optimized graph (static shapes) to native code for this machine, with the default
/// code generation options.
pub fn compile_jit(g: &Graph) -> Result<shrink_jit::Kernel, shrink_jit::JitError> {
    compile_jit_with(g, &shrink_codegen::CodegenOptions::default())
}

/// [`compile_jit`] with explicit code generation options (strategies, stream cap).
///
/// Options with the built-in cost model get this CPU's measured one ([`host_cost_model`]).
pub fn compile_jit_with(
    g: &Graph,
    options: &shrink_codegen::CodegenOptions,
) -> Result<shrink_jit::Kernel, shrink_jit::JitError> {
    let g = with_static_shapes(g).map_err(shrink_codegen::CodegenError::new)?;
    let host;
    let options = if options.cost == shrink_codegen::CostModel::default() {
        host = shrink_codegen::CodegenOptions {
            cost: host_cost_model(),
            ..options.clone()
        };
        &host
    } else {
        options
    };
    let program = shrink_codegen::lower(&g, options)?;
    shrink_jit::Kernel::compile(&program)
}

/// The cost model of the CPU this process runs on, for the JIT: the measured `[cost]` table of
/// the x86-64 level it has (`x86_64-v4`: AVX-512 with VNNI; `x86_64-v3`: AVX2 and FMA), since
/// which kernel is fastest depends on the vectors the machine code gets (the v4 figures put the
/// zmm tiles ahead of `packed` at batch 8; with ymm tiles `packed` is 2.6× faster there). Other
/// CPUs get the built-in figures. Never used for a static library, whose code must not depend
/// on the machine that compiles it ([`options_for_target`]).
pub fn host_cost_model() -> shrink_codegen::CostModel {
    host_level()
        .and_then(|name| shrink_target::find(name).ok())
        .filter(|p| !p.cost.is_empty())
        .and_then(|p| shrink_codegen::CostModel::from_table(&p.cost).ok())
        .unwrap_or_default()
}

/// The x86-64 level profile this CPU meets, by the features its machine code uses.
fn host_level() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Some("x86_64-v4");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some("x86_64-v3");
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// `g` itself when every value has a static shape, else a copy after shape inference (the one
/// pass code generation cannot do without, also under `--no-opt` or a custom `--passes`).
pub fn with_static_shapes(g: &Graph) -> Result<std::borrow::Cow<'_, Graph>, String> {
    let fixed = g.node_ids().iter().all(|&id| {
        g.node(id)
            .outputs
            .iter()
            .all(|t| t.shape.as_ref().is_some_and(|s| s.as_fixed().is_some()))
    });
    if fixed {
        return Ok(std::borrow::Cow::Borrowed(g));
    }
    let mut g = g.clone();
    shrink_opt::run_passes(&mut g, &["shapes"], &shrink_opt::Ctx::default())
        .map_err(|e| e.to_string())?;
    Ok(std::borrow::Cow::Owned(g))
}

/// Lowers an optimized graph (static shapes) with explicit code generation options: the program
/// both the JIT and the AOT writer place.
/// `options` for compiling to `profile`: its measured cost model when the profile has one.
pub fn options_for_target(
    options: &shrink_codegen::CodegenOptions,
    profile: &shrink_target::TargetProfile,
) -> Result<shrink_codegen::CodegenOptions, String> {
    let mut o = options.clone();
    // A static library's entry point is single-threaded (the ABI has no threads): splitting its
    // layers would only add calls.
    o.threads = 1;
    // The profile's measured model, else the built-in one: never the compiling host's.
    o.cost = if profile.cost.is_empty() {
        shrink_codegen::CostModel::default()
    } else {
        shrink_codegen::CostModel::from_table(&profile.cost)
            .map_err(|e| format!("target {}: {e}", profile.name))?
    };
    Ok(o)
}

pub fn lower_with(
    g: &Graph,
    options: &shrink_codegen::CodegenOptions,
) -> Result<shrink_codegen::Program, shrink_codegen::CodegenError> {
    let g = with_static_shapes(g).map_err(shrink_codegen::CodegenError::new)?;
    shrink_codegen::lower(&g, options)
}

#[cfg(test)]
mod tests {
    /// Every built-in profile's `[cost]` table is a complete, valid cost model (or absent), and
    /// a profile with one hands it to the code generator.
    #[test]
    fn every_profile_cost_table_is_a_valid_cost_model() {
        let defaults = shrink_codegen::CodegenOptions::default();
        let mut measured = 0;
        for p in shrink_target::profiles() {
            let o = super::options_for_target(&defaults, p).unwrap();
            if !p.cost.is_empty() {
                measured += 1;
                assert_eq!(o.cost.packed_weight, p.cost["packed_weight"], "{}", p.name);
            }
        }
        assert!(measured >= 1, "no profile carries measured constants");
    }

    /// The JIT compiles with the measured model of this CPU's level; a static library with its
    /// profile's model or the built-in one, never the compiling host's.
    #[test]
    fn the_jit_takes_the_hosts_cost_model_and_a_static_library_never_does() {
        use shrink_codegen::CostModel;
        let host = super::host_cost_model();
        match super::host_level() {
            Some(level) => {
                let p = shrink_target::find(level).unwrap();
                assert_eq!(host, CostModel::from_table(&p.cost).unwrap(), "{level}");
            }
            None => assert_eq!(host, CostModel::default()),
        }
        let mut o = shrink_codegen::CodegenOptions::default();
        o.cost.packed_weight = 123.0;
        let unmeasured = shrink_target::find("aarch64-unknown-linux-gnu").unwrap();
        assert!(unmeasured.cost.is_empty());
        let aot = super::options_for_target(&o, &unmeasured).unwrap();
        assert_eq!(aot.cost, CostModel::default());
    }
}
