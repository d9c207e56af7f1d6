//! Code generation options: the kernel strategy for layers with weights (`--strategy`,
//! `--strategy-for LAYER=S`) and the caps on what a compile may emit ([`crate::caps`]).
use std::fmt;
use std::str::FromStr;

/// How a layer with constant weights is lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Pick per layer: `stream` for small ternary layers, `packed` for larger ones, `dense` for
    /// weights that are not ternary.
    Auto,
    /// Ternary weights folded into straight-line add/subtract code (no weight loads, no
    /// multiplies, zeros emit nothing).
    Stream,
    /// Ternary weights packed 2 bits each in read-only data, decoded in a loop.
    Packed,
    /// Ternary weight pairs as 4-bit indices into tables of partial sums built per call,
    /// looked up 16 at a time with a byte shuffle.
    Lut,
    /// The weights as stored, multiplied in a loop.
    Dense,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Stream => "stream",
            Strategy::Packed => "packed",
            Strategy::Lut => "lut",
            Strategy::Dense => "dense",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Strategy, String> {
        Ok(match s {
            "auto" => Strategy::Auto,
            "stream" => Strategy::Stream,
            "packed" => Strategy::Packed,
            "dense" => Strategy::Dense,
            "lut" => Strategy::Lut,
            _ => {
                return Err(format!(
                    "unknown strategy '{s}' (expected auto, stream, packed, lut or dense)"
                ));
            }
        })
    }
}

/// What ternary kernels do with float activations (`--activations`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activations {
    /// Faithful to the f32 graph: `packed` splits each activation vector into three int8 limbs
    /// (24-bit fixed point on the vector's absmax), which bounds the error of an output row to
    /// `|scale| · nonzeros · absmax · 2⁻²⁴`.
    #[default]
    F32,
    /// BitNet-style: each activation vector is quantized to int8 on its absmax
    /// (`round(x · 127 / absmax)`), one limb; faster, and no longer the graph's arithmetic.
    Int8,
}

impl FromStr for Activations {
    type Err = String;
    fn from_str(s: &str) -> Result<Activations, String> {
        match s {
            "f32" => Ok(Activations::F32),
            "int8" => Ok(Activations::Int8),
            _ => Err(format!("--activations {s}: expected f32 or int8")),
        }
    }
}

/// What `auto` minimizes per layer (`--optimize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Goal {
    /// The cost model's predicted time.
    #[default]
    Speed,
    /// Code plus read-only data bytes.
    Size,
}

/// Options of [`crate::lower`].
#[derive(Clone, Debug, PartialEq)]
pub struct CodegenOptions {
    pub strategy: Strategy,
    /// Per-layer overrides by node name (`--strategy-for`).
    pub per_layer: Vec<(String, Strategy)>,
    /// Most add/subtract terms a forced `stream` layer may emit (about 10 bytes of code each);
    /// beyond it the compile is refused.
    pub max_stream_terms: usize,
    /// Most bytes of machine code the whole program may take (`--max-code`; `None`: no cap),
    /// every strategy and op counted: a layer is refused before it is built when its strategy's
    /// size is known up front, a node before it is compiled from its kernels' size, and the
    /// compile when the real code crosses it ([`crate::caps`]).
    pub max_code_bytes: Option<usize>,
    /// Most bytes of data code generation may lay out (`--max-memory`): read-only data in all,
    /// the scratch arena, and each input and output buffer.
    pub max_memory: usize,
    /// Largest layer (in nonzero weights) `auto` may stream (its code budget: about 7 bytes of
    /// code per term); among the strategies within budget, [`Self::cost`] picks the fastest.
    pub auto_stream_terms: usize,
    /// The measured cost model `auto` compares strategies with.
    pub cost: crate::CostModel,
    /// What `auto` minimizes.
    pub goal: Goal,
    /// How `packed` ternary layers quantize float activations.
    pub activations: Activations,
    /// Float kernels multiply-add with one rounding where the target has a native fused
    /// multiply-add (the default: up to twice the throughput on compute-bound layers). False
    /// (`--no-fma`) multiplies and adds separately on every target, so every ISA and CPU level
    /// gives the same output bits; with it on, outputs are the same bits only among targets
    /// that agree on having FMA (x86-64-v3/v4, AArch64 and RISC-V with V do; baseline x86-64
    /// and scalar RISC-V do not).
    pub fma: bool,
    /// Threads the JIT may run one layer on (`--threads`): a layer with at least
    /// [`PARALLEL_MIN_MACS`] multiply-adds is lowered as this many independent parts, each
    /// computing a contiguous range of its output columns, which the JIT's pool runs at once.
    /// The parts compute exactly what the whole would (same sums in the same order), so the
    /// output bits do not depend on it. A static library runs the parts one after another.
    pub threads: usize,
    /// Graph inputs the graph was specialized on by value (input index, value): shapes depended
    /// on them, so the code is only valid for these values. The kernel compares each of them
    /// first and returns BAD_VALUE for any other value.
    pub value_guards: Vec<(usize, shrink_ir::Tensor)>,
}

impl Default for CodegenOptions {
    fn default() -> CodegenOptions {
        CodegenOptions {
            strategy: Strategy::Auto,
            per_layer: vec![],
            max_stream_terms: 1 << 20,
            max_code_bytes: Some(crate::caps::DEFAULT_MAX_CODE),
            max_memory: crate::caps::DEFAULT_MAX_MEMORY,
            auto_stream_terms: 1 << 16,
            cost: crate::CostModel::default(),
            goal: Goal::Speed,
            activations: Activations::F32,
            fma: true,
            threads: 1,
            value_guards: vec![],
        }
    }
}

/// Fewest multiply-adds (weights × batch rows) a layer needs before it is split across
/// threads: waking a pool thread and joining it costs microseconds, a layer this size takes
/// tens of them on one core.
pub const PARALLEL_MIN_MACS: usize = 1 << 19;

/// [`CodegenOptions::parallel_parts`] for `threads` threads.
pub fn parallel_parts(threads: usize, macs: usize, units: usize) -> usize {
    if macs < PARALLEL_MIN_MACS {
        return 1;
    }
    threads.clamp(1, units.max(1))
}

impl CodegenOptions {
    /// Parts to split a layer of `macs` multiply-adds with `units` independent output blocks
    /// into (1: not split).
    pub fn parallel_parts(&self, macs: usize, units: usize) -> usize {
        parallel_parts(self.threads, macs, units)
    }

    /// The strategy requested for the layer called `name`.
    pub fn for_layer(&self, name: &str) -> Strategy {
        self.per_layer
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(self.strategy, |(_, s)| *s)
    }
}
