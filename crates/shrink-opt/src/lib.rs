//! shrink's optimizer. Every pass is a `fn(&mut Graph, &Ctx) -> Result<Stats, OptError>` listed
//! once in the registry below; [`run_passes`] runs a pipeline, times each pass, and runs the IR
//! verifier after every pass when `Ctx::verify` is set (tests and debug builds always set it), so
//! a pass that breaks an invariant is named in the error.
pub mod cse;
pub mod dce;
pub mod fold;
pub mod fusion;
pub mod layers;
pub mod memory;
pub mod simplify;
pub mod sparsity;
pub mod specialize;
pub mod ternary;

use shrink_ir::{Graph, NodeId};
use std::time::Instant;

/// Settings shared by all passes.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Run the verifier after every pass (and check the memory plan). On by default in debug
    /// builds, in this crate's unit tests, and with feature `verify` (which every test crate
    /// enables, since `cfg!(test)` is false for a dependency).
    pub verify: bool,
    /// Total bytes of new constants constant folding may create (default 1 GiB).
    pub fold_budget: usize,
    /// Limits for the interpreter when folding.
    pub eval: shrink_ref::EvalCtx,
    /// Require every value to have a static shape (code generation needs it). The interpreter
    /// does not, so graphs whose shapes depend on input values still optimize for it.
    pub require_static: bool,
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx {
            verify: cfg!(debug_assertions) || cfg!(test) || cfg!(feature = "verify"),
            fold_budget: 1 << 30,
            eval: Default::default(),
            require_static: false,
        }
    }
}

/// What a pass did: named counters (in a fixed order) and its wall time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub pass: &'static str,
    pub counters: Vec<(&'static str, usize)>,
    pub nanos: u128,
}

impl Stats {
    pub fn new(pass: &'static str) -> Stats {
        Stats {
            pass,
            ..Default::default()
        }
    }

    /// Adds `n` to counter `name` (creating it in order of first use).
    pub fn add(&mut self, name: &'static str, n: usize) {
        match self.counters.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v += n,
            None => self.counters.push((name, n)),
        }
    }

    pub fn get(&self, name: &str) -> usize {
        self.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }
}

/// A pass failure, naming the pass and (where there is one) the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{msg} (in pass {pass})", node.as_ref().map(|(n, op)| format!("node '{n}' (op {op}): ")).unwrap_or_default())]
pub struct OptError {
    pub pass: &'static str,
    pub node: Option<(String, String)>,
    pub msg: String,
}

impl OptError {
    pub fn new(pass: &'static str, msg: impl Into<String>) -> OptError {
        OptError {
            pass,
            node: None,
            msg: msg.into(),
        }
    }

    pub fn at(pass: &'static str, g: &Graph, id: NodeId, msg: impl Into<String>) -> OptError {
        let n = g.node(id);
        OptError {
            pass,
            node: Some((n.name.clone(), n.op.name().to_string())),
            msg: msg.into(),
        }
    }
}

/// A registered pass.
pub struct Pass {
    pub name: &'static str,
    pub doc: &'static str,
    pub run: fn(&mut Graph, &Ctx) -> Result<Stats, OptError>,
}

/// Declares the pass registry once: name, one-line doc, entry point — in default pipeline order.
macro_rules! passes {
    ($($name:literal => $f:path, $doc:literal;)*) => {
        /// Every pass, in the order of the default pipeline.
        pub const PASSES: &[Pass] = &[$(Pass { name: $name, doc: $doc, run: $f }),*];
    };
}

passes! {
    "shapes" => specialize::infer_static_shapes, "infer every value's shape; fail naming any dim left unknown";
    "simplify" => simplify::remove_identities, "remove ops that compute their input (Identity, no-op Cast/Reshape/Transpose, x*1, x+0, ...)";
    "const-fold" => fold::fold_constants, "evaluate nodes whose inputs are all constants with the interpreter";
    "sparsity" => sparsity::eliminate_sparsity, "delete dead hidden units across layers, all-zero input columns and zero biases";
    "ternary" => ternary::detect_ternary, "annotate layer weights that are exactly {-s,0,+s} per tensor or per row";
    "fusion" => fusion::fuse, "fuse Conv+BatchNorm, QDQ MatMul/Conv into QLinear ops, and decomposed LayerNorm/RMSNorm/GELU/Softmax";
    "cse" => cse::eliminate_common, "merge nodes with the same op, attributes and inputs, and identical constants";
    "dce" => dce::remove_dead, "delete nodes no output depends on and unreferenced constants";
    "memory-plan" => memory::plan_pass, "assign every intermediate value an aligned offset in one scratch arena";
}

/// A tensor of float `dtype` from f64 values, each rounded once; `None` for non-float dtypes.
pub(crate) fn float_tensor(
    dtype: shrink_ir::DType,
    dims: Vec<usize>,
    vals: &[f64],
) -> Option<shrink_ir::Tensor> {
    use shrink_ir::{DType, Tensor};
    if dims.iter().product::<usize>() != vals.len() {
        return None;
    }
    Some(match dtype {
        DType::F32 => Tensor::from_vec(dims, vals.iter().map(|&v| v as f32).collect()),
        DType::F64 => Tensor::from_vec(dims, vals.to_vec()),
        DType::F16 => {
            Tensor::from_vec(dims, vals.iter().map(|&v| half::f16::from_f64(v)).collect())
        }
        DType::BF16 => Tensor::from_vec(
            dims,
            vals.iter().map(|&v| half::bf16::from_f64(v)).collect(),
        ),
        _ => return None,
    })
}

/// The graph's nodes in topological order, or the pass's error naming a node on a cycle.
pub(crate) fn topo_order(g: &Graph, pass: &'static str) -> Result<Vec<NodeId>, OptError> {
    g.topo_order()
        .map_err(|n| OptError::at(pass, g, n, "the graph has a cycle"))
}

/// The default pipeline. Simplification runs again after folding because folding turns shape
/// computations into constants that make more ops recognisably no-ops.
pub fn default_pipeline() -> Vec<&'static str> {
    vec![
        "shapes",
        "simplify",
        "const-fold",
        "simplify",
        "sparsity",
        "simplify",
        "fusion",
        "cse",
        "dce",
        "ternary",
        "memory-plan",
    ]
}

/// Runs `names` in order; verifies after each when `ctx.verify`.
pub fn run_passes(g: &mut Graph, names: &[&str], ctx: &Ctx) -> Result<Vec<Stats>, OptError> {
    let mut all = Vec::with_capacity(names.len());
    for name in names {
        let pass = PASSES.iter().find(|p| p.name == *name).ok_or_else(|| {
            let known: Vec<_> = PASSES.iter().map(|p| p.name).collect();
            OptError::new(
                "pipeline",
                format!("unknown pass '{name}' (known: {})", known.join(", ")),
            )
        })?;
        let t = Instant::now();
        let mut stats = (pass.run)(g, ctx)?;
        stats.pass = pass.name;
        stats.nanos = t.elapsed().as_nanos();
        tracing::debug!(
            target: "shrink::opt",
            pass = pass.name,
            us = stats.nanos / 1000,
            nodes = g.node_count(),
            counters = ?stats.counters,
            "pass done"
        );
        if ctx.verify {
            shrink_ir::verify(g).map_err(|e| OptError {
                pass: pass.name,
                node: e
                    .node
                    .filter(|n| g.contains(*n))
                    .map(|n| (g.node(n).name.clone(), g.node(n).op.name().to_string())),
                msg: format!("the graph is invalid after this pass: {}", e.msg),
            })?;
        }
        all.push(stats);
    }
    Ok(all)
}
