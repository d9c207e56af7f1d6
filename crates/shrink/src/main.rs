//! The `shrink` command line: compile, run, check, inspect and bench ONNX models. The interface is
//! the CLI contract of DESIGN.md; other tools script against it, so names and output formats are
//! kept exact. Every failure is one line on stderr and a nonzero exit, never a panic trace.
use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use shrink::compare::{Tolerance, compare};
use shrink::dataset::{datasets_next_to, load_dataset};
use shrink::ir::{DType, Tensor};
use shrink::onnx::{ImportOptions, Imported, load_model};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod cli_aot;
use cli_aot::{CompileArgs, aot_profile, cmd_compile, run_aot};

#[derive(Parser)]
#[command(
    name = "shrink",
    version,
    long_version = long_version(),
    about = "ONNX models to tiny standalone machine-code kernels"
)]
struct Cli {
    /// Largest tensor any stage may create or load, in bytes (suffixes K, M, G allowed).
    #[arg(long, global = true, default_value = "4G", value_parser = parse_size)]
    max_memory: usize,
    /// Run the graph as imported, without optimization passes.
    #[arg(long, global = true)]
    no_opt: bool,
    /// An explicit optimization pipeline, e.g. `shapes,const-fold,dce`.
    #[arg(long, global = true, value_delimiter = ',')]
    passes: Option<Vec<String>>,
    /// Bind a symbolic input dimension: NAME=VALUE (repeatable).
    #[arg(long, global = true)]
    dim: Vec<String>,
    /// Freeze a graph input to the value in FILE (.pb or .npy): NAME=FILE (repeatable).
    #[arg(long, global = true)]
    freeze: Vec<String>,
    /// Fix every dim of an input: NAME=D0,D1,... (repeatable), e.g. `--input-shape x=1,3,48,320`.
    #[arg(long, global = true)]
    input_shape: Vec<String>,
    /// Largest size of folded constants alive at once during constant folding (K/M/G suffixes).
    #[arg(long, global = true, default_value = "1G", value_parser = parse_size)]
    fold_budget: usize,
    /// Kernel strategy for layers with weights: stream, packed, lut, dense or auto (default).
    #[arg(long, global = true, default_value = "auto")]
    strategy: String,
    /// The strategy of one layer: LAYER=STRATEGY (repeatable; LAYER is the ONNX node name).
    #[arg(long, global = true)]
    strategy_for: Vec<String>,
    /// Most machine code one compile may emit, every layer and strategy together (K/M/G
    /// suffixes; default 256M): a model whose code would be larger is refused, naming the node
    /// that crosses it. Also the size a forced `stream` layer may take.
    #[arg(long, global = true, value_parser = parse_size)]
    max_code: Option<usize>,
    /// What `auto` optimizes for: speed (default) or size (smallest code + data per layer).
    #[arg(long, global = true, default_value = "speed")]
    optimize: String,
    /// Activations of ternary `packed` layers: f32 (default; faithful to the graph, 24-bit
    /// fixed point) or int8 (BitNet-style absmax quantization per activation vector).
    #[arg(long, global = true, default_value = "f32")]
    activations: String,
    /// Multiply and add separately in float kernels instead of fused multiply-adds: the same
    /// output bits on every target, at up to half the speed on compute-bound layers.
    #[arg(long, global = true)]
    no_fma: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    Jit,
    Interp,
    Aot,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a model to an object file or static library plus C header.
    Compile {
        model: Option<PathBuf>,
        /// A profile name or triple (`--target help` lists them), or `host`.
        #[arg(long)]
        target: String,
        /// The object (`.o`) or static library (`.a`) to write.
        #[arg(short = 'o')]
        out: Option<PathBuf>,
        /// The C header to write.
        #[arg(long)]
        header: Option<PathBuf>,
        /// Symbol prefix (a C identifier; default: the model's file stem).
        #[arg(long)]
        name: Option<String>,
        /// Print the optimized IR, the Cranelift IR or the target's assembly.
        #[arg(long)]
        emit: Option<String>,
    },
    /// Run a model on inputs and write its outputs as TensorProto files.
    Run {
        model: PathBuf,
        /// A folder of input_<j>.pb files (an ONNX test data set).
        #[arg(long, conflicts_with = "input")]
        input_dir: Option<PathBuf>,
        /// NAME=FILE.pb or NAME=FILE.npy, once per graph input.
        #[arg(long)]
        input: Vec<String>,
        #[arg(long)]
        output_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "jit")]
        engine: Engine,
    },
    /// Run a model on its test data sets and compare with the expected outputs.
    Check {
        model: PathBuf,
        datasets: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "jit")]
        engine: Engine,
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 1e-3)]
        rtol: f64,
        #[arg(long, default_value_t = 1e-4)]
        atol: f64,
    },
    /// Describe a model: inputs, outputs, layers, weight structure.
    Inspect {
        model: PathBuf,
        #[arg(long)]
        json: bool,
        /// Write the report as one self-contained HTML page (sign maps of every layer).
        #[arg(long, conflicts_with = "json")]
        html: Option<PathBuf>,
    },
    /// Time a model on its stored test inputs (or zeros).
    Bench {
        model: PathBuf,
        #[arg(long, value_enum, default_value = "jit")]
        engine: Engine,
        #[arg(long, default_value_t = 100)]
        iters: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        json: bool,
        /// Also time every layer (JIT): one compile per kernel, each prefix of the program
        /// timed, beside the cost model's prediction.
        #[arg(long)]
        per_layer: bool,
    },
}

/// What `--version` prints after `shrink`: the version, the AOT target profiles compiled in, and
/// the JIT's host.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let targets: Vec<&str> = shrink::target::profiles()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        format!(
            "{}\nAOT targets: {}\nJIT host: {}",
            env!("CARGO_PKG_VERSION"),
            targets.join(", "),
            shrink::target::host_triple()
        )
    })
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1usize << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("bad size '{s}'"))
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Jit => "jit",
            Engine::Interp => "interp",
            Engine::Aot => "aot",
        }
    }
}

fn not_yet(engine: Engine) -> anyhow::Error {
    anyhow!(
        "engine '{}' is not available for bench yet: use 'jit' or 'interp'",
        engine.name()
    )
}

/// Bytes of code one stream term (a load and an add or subtract) takes, for `--max-code`.
const STREAM_TERM_BYTES: usize = 10;

/// The code generation options of the command line, with this CPU's cost model (what the JIT
/// runs, `inspect` and `bench` show; a static library's target replaces it).
fn codegen_options(cli: &Cli) -> Result<shrink::codegen::CodegenOptions> {
    use shrink::codegen::Strategy;
    let mut o = shrink::codegen::CodegenOptions {
        strategy: cli
            .strategy
            .parse::<Strategy>()
            .map_err(|e| anyhow!("--strategy: {e}"))?,
        cost: shrink::host_cost_model(),
        ..Default::default()
    };
    for a in &cli.strategy_for {
        let (layer, s) = a
            .split_once('=')
            .ok_or_else(|| anyhow!("--strategy-for expects LAYER=STRATEGY, got '{a}'"))?;
        let s = s
            .parse::<Strategy>()
            .map_err(|e| anyhow!("--strategy-for {layer}: {e}"))?;
        o.per_layer.push((layer.to_string(), s));
    }
    if let Some(bytes) = cli.max_code {
        o.max_stream_terms = bytes / STREAM_TERM_BYTES;
    }
    o.max_code_bytes = Some(
        cli.max_code
            .unwrap_or(shrink::codegen::caps::DEFAULT_MAX_CODE),
    );
    o.max_memory = cli.max_memory;
    match cli.optimize.as_str() {
        "speed" => {}
        "size" => o.goal = shrink::codegen::Goal::Size,
        other => bail!("--optimize {other}: expected speed or size"),
    }
    o.activations = cli.activations.parse().map_err(|e: String| anyhow!(e))?;
    o.fma = !cli.no_fma;
    Ok(o)
}

/// `--input-shape NAME=D0,D1,...` arguments.
fn input_shapes(cli: &Cli) -> Result<Vec<(String, Vec<usize>)>> {
    cli.input_shape
        .iter()
        .map(|a| {
            let (name, dims) = a
                .split_once('=')
                .ok_or_else(|| anyhow!("--input-shape expects NAME=D0,D1,..., got '{a}'"))?;
            let dims = dims
                .split(',')
                .map(|d| d.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| anyhow!("--input-shape {name}: '{dims}' is not a list of sizes"))?;
            Ok((name.to_string(), dims))
        })
        .collect()
}

fn load(model: &Path, max_memory: usize) -> Result<Imported> {
    Ok(load_model(model, &ImportOptions { max_memory })?)
}

fn opt_options(cli: &Cli) -> Result<shrink::OptOptions> {
    let mut o = shrink::OptOptions {
        enabled: !cli.no_opt,
        passes: cli.passes.clone(),
        ..Default::default()
    };
    o.ctx.fold_budget = cli.fold_budget;
    o.ctx.eval.max_bytes = cli.max_memory;
    for d in &cli.dim {
        let (name, v) = d
            .split_once('=')
            .ok_or_else(|| anyhow!("--dim expects NAME=VALUE, got '{d}'"))?;
        let v = v
            .parse::<usize>()
            .map_err(|_| anyhow!("--dim {name}: '{v}' is not a dimension size"))?;
        o.dims.push((name.to_string(), v));
    }
    for f in &cli.freeze {
        o.freeze.push(read_input_arg(f, cli.max_memory)?);
    }
    Ok(o)
}

/// The graph ready to run on `inputs`: frozen inputs removed, shapes specialized to the data,
/// optimized. Returns the graph and the inputs bound in graph order.
fn prepare(
    cli: &Cli,
    imp: &Imported,
    inputs: &[(String, Tensor)],
    model: &Path,
    engine: Engine,
) -> Result<(shrink::ir::Graph, Vec<Tensor>, Guards)> {
    let at = |e: String| anyhow!("{}: {e}", model.display());
    let opts = opt_options(cli)?;
    let mut g = imp.graph.clone();
    for (name, t) in &opts.freeze {
        shrink::opt::specialize::freeze(&mut g, name, t.clone()).map_err(at)?;
    }
    for (name, v) in &opts.dims {
        shrink::opt::specialize::bind_dim(&mut g, name, *v).map_err(at)?;
    }
    for (name, dims) in input_shapes(cli)? {
        shrink::compiler::set_input_shape(&mut g, &name, &dims).map_err(at)?;
    }
    let frozen: Vec<&str> = opts.freeze.iter().map(|(n, _)| n.as_str()).collect();
    let given: Vec<(String, Tensor)> = inputs
        .iter()
        .filter(|(n, _)| !frozen.contains(&n.as_str()))
        .cloned()
        .collect();
    let bound = shrink::bind_inputs(&g, &given).map_err(at)?;
    // Generated code needs static shapes: where they depend on input values (runtime axes,
    // pads), the graph is specialized to this data and the kernel guards those values.
    let guards = if engine == Engine::Interp {
        shrink::specialize_to(&mut g, &bound);
        vec![]
    } else {
        shrink::specialize_to_values(&mut g, &bound).map_err(at)?
    };
    let rest = shrink::OptOptions {
        freeze: vec![],
        dims: vec![],
        ..opts
    };
    let stats = shrink::optimize(&mut g, &rest).map_err(at)?;
    if cli_says_what_it_did(cli) {
        eprintln!(
            "{}: {} nodes imported, {} after optimization{}; engine {}",
            model.display(),
            imp.graph.op_count(),
            g.op_count(),
            what_passes_did(&stats),
            engine.name()
        );
    }
    Ok((g, bound, guards))
}

/// Whether `check` reports on stderr what it did before its PASS/FAIL lines (stdout stays the
/// scripted contract); `SHRINK_QUIET=1` silences it.
fn cli_says_what_it_did(cli: &Cli) -> bool {
    matches!(cli.cmd, Cmd::Check { .. }) && std::env::var_os("SHRINK_QUIET").is_none()
}

/// The counters that say what the optimizer found, e.g. ` (const-fold: nodes_folded=49; …)`.
fn what_passes_did(stats: &[shrink::opt::Stats]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for pass in ["shapes", "const-fold", "sparsity", "fusion", "ternary"] {
        let mut counters: Vec<(&str, usize)> = Vec::new();
        for s in stats.iter().filter(|s| s.pass == pass) {
            for &(name, n) in &s.counters {
                let wanted = match pass {
                    "shapes" => name == "shape_values_folded",
                    "ternary" => matches!(name, "ternary_layers" | "zeros"),
                    _ => true,
                };
                if n > 0 && wanted && name != "bytes_created" && name != "peak_bytes" {
                    match counters.iter_mut().find(|(c, _)| *c == name) {
                        Some((_, total)) => *total += n,
                        None => counters.push((name, n)),
                    }
                }
            }
        }
        if !counters.is_empty() {
            let list: Vec<String> = counters.iter().map(|(c, n)| format!("{c}={n}")).collect();
            parts.push(format!("{pass}: {}", list.join(" ")));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// JIT-compiles `g`, with a progress bar on stderr once the compile has taken a second.
/// Input values a graph was specialized on (see [`shrink::specialize_to_values`]).
type Guards = Vec<(usize, Tensor)>;

fn compile_with_bar(
    cli: &Cli,
    g: &shrink::ir::Graph,
    guards: Guards,
    threads: usize,
) -> Result<shrink::Kernel, String> {
    let g = shrink::with_static_shapes(g)?;
    let mut options = codegen_options(cli).map_err(|e| e.to_string())?;
    options.value_guards = guards;
    options.threads = threads;
    let program = shrink::codegen::lower(&g, &options).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template("compiling {bar:40} {pos}/{len} functions")
            .expect("valid template"),
    );
    let report = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if bar.is_hidden() && start.elapsed().as_secs_f64() > 1.0 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    };
    let k = shrink::Kernel::compile_with_progress(&program, Some(&report));
    bar.finish_and_clear();
    k.map_err(|e| e.to_string())
}

/// Runs the model on `inputs` with `engine` (the graph is optimized for those inputs first).
fn execute(
    cli: &Cli,
    imp: &Imported,
    inputs: &[(String, Tensor)],
    model: &Path,
    engine: Engine,
    target: Option<&shrink::target::TargetProfile>,
) -> Result<Vec<Tensor>> {
    let (g, bound, guards) = prepare(cli, imp, inputs, model, engine)?;
    let at = |e: String| anyhow!("{}: {e}", model.display());
    match engine {
        Engine::Interp => {
            let ctx = shrink::interp::EvalCtx {
                max_bytes: cli.max_memory,
            };
            shrink::interp::run(&g, &bound, &ctx).map_err(|e| at(e.to_string()))
        }
        Engine::Jit => {
            let kernel = compile_with_bar(cli, &g, guards, 1).map_err(at)?;
            kernel.run(&bound).map_err(|e| at(e.to_string()))
        }
        Engine::Aot => {
            let profile = target.ok_or_else(|| anyhow!("--engine aot needs a --target"))?;
            run_aot(cli, &g, guards, &bound, profile).map_err(at)
        }
    }
}

fn read_input_arg(arg: &str, cap: usize) -> Result<(String, Tensor)> {
    let (name, file) = arg
        .split_once('=')
        .ok_or_else(|| anyhow!("--input expects NAME=FILE, got '{arg}'"))?;
    let path = Path::new(file);
    let t = if path.extension().is_some_and(|e| e == "npy") {
        let data = std::fs::read(path).with_context(|| file.to_string())?;
        shrink::npy::parse_npy(&data, cap).map_err(|e| anyhow!("{file}: {e}"))?
    } else {
        shrink::onnx::load_tensor_pb(path, cap)
            .map_err(|e| anyhow!(e))?
            .1
    };
    Ok((name.to_string(), t))
}

fn cmd_run(
    cli: &Cli,
    model: &Path,
    input_dir: &Option<PathBuf>,
    input: &[String],
    output_dir: &Option<PathBuf>,
    engine: Engine,
) -> Result<()> {
    let profile = aot_profile(engine, None)?;
    let imp = load(model, cli.max_memory)?;
    let inputs = match input_dir {
        Some(d) => {
            load_dataset(d, cli.max_memory)
                .map_err(|e| anyhow!(e))?
                .inputs
        }
        None => input
            .iter()
            .map(|a| read_input_arg(a, cli.max_memory))
            .collect::<Result<_>>()?,
    };
    let outs = execute(cli, &imp, &inputs, model, engine, profile.as_ref())?;
    for (k, ((name, _), t)) in imp.graph.outputs.iter().zip(&outs).enumerate() {
        let preview: Vec<String> = (0..t.len().min(8))
            .map(|i| match t.strings() {
                Some(s) => format!("{:?}", String::from_utf8_lossy(&s[i])),
                None => format!("{}", t.get_f64(i)),
            })
            .collect();
        let more = if t.len() > 8 { ", ..." } else { "" };
        println!(
            "output {k} '{name}': {}{:?} [{}{more}]",
            t.dtype(),
            t.dims(),
            preview.join(", ")
        );
        if let Some(dir) = output_dir {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            let path = dir.join(format!("output_{k}.pb"));
            std::fs::write(&path, shrink::onnx::writer::tensor_pb_bytes(t, name))
                .with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}

fn cmd_check(
    cli: &Cli,
    model: &Path,
    datasets: &[PathBuf],
    engine: Engine,
    target: Option<&str>,
    tol: Tolerance,
) -> Result<bool> {
    let profile = aot_profile(engine, target)?;
    let imp = load(model, cli.max_memory)?;
    let sets = if datasets.is_empty() {
        datasets_next_to(model)
    } else {
        datasets.to_vec()
    };
    if sets.is_empty() {
        bail!(
            "{}: no test_data_set_* folders next to the model and none given",
            model.display()
        );
    }
    let mut all_ok = true;
    for set in &sets {
        let data = load_dataset(set, cli.max_memory).map_err(|e| anyhow!(e))?;
        let label = set.file_name().map_or(set.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        });
        let outcome =
            execute(cli, &imp, &data.inputs, model, engine, profile.as_ref()).map(|outs| {
                if outs.len() != data.outputs.len() {
                    return (
                        f64::INFINITY,
                        Some(format!(
                            "{} outputs, {} expected",
                            outs.len(),
                            data.outputs.len()
                        )),
                    );
                }
                let mut worst = 0f64;
                for (k, (got, (_, want))) in outs.iter().zip(&data.outputs).enumerate() {
                    let c = compare(got, want, tol);
                    worst = worst.max(c.max_abs_err);
                    if let Some(m) = c.mismatch {
                        return (worst, Some(format!("output {k}: {m}")));
                    }
                }
                (worst, None)
            });
        match outcome {
            Ok((err, None)) => println!("PASS {label} max_abs_err={err:.3e}"),
            Ok((err, Some(why))) => {
                all_ok = false;
                println!("FAIL {label} max_abs_err={err:.3e} ({why})");
            }
            Err(e) => {
                all_ok = false;
                println!("FAIL {label} ({e})");
            }
        }
    }
    Ok(all_ok)
}

/// Zero-filled inputs (empty strings for string inputs) of the model's static input shapes.
fn zeros_like_inputs(imp: &Imported) -> Result<Vec<(String, Tensor)>> {
    let g = &imp.graph;
    g.inputs
        .iter()
        .map(|&id| {
            let n = g.node(id);
            let dims = n.outputs[0]
                .shape
                .as_ref()
                .and_then(|s| s.as_fixed())
                .ok_or_else(|| {
                    anyhow!(
                        "input '{}' has a non-static shape; give test data next to the model",
                        n.name
                    )
                })?;
            let (dtype, numel) = (n.outputs[0].dtype, dims.iter().product::<usize>());
            let t = if dtype == DType::String {
                Tensor::from_strings(dims, vec![Default::default(); numel])
            } else {
                Tensor::from_bytes(dtype, dims, vec![0u8; numel * dtype.size()].into())
            };
            Ok((n.name.clone(), t.map_err(|e| anyhow!(e))?))
        })
        .collect()
}

/// Median and p99 of `iters` warm calls of `f`, in nanoseconds.
fn time_runs(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<(u64, u64, usize)> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    let p99 = times[((times.len() * 99).div_ceil(100)).saturating_sub(1)];
    Ok((median, p99, times.len()))
}

/// Most `--threads`: beyond it a pool costs more than any layer gains.
const MAX_THREADS: usize = 256;

fn cmd_bench(
    cli: &Cli,
    model: &Path,
    engine: Engine,
    iters: usize,
    threads: usize,
    json: bool,
    per_layer: bool,
) -> Result<()> {
    if engine == Engine::Aot {
        return Err(not_yet(engine));
    }
    if per_layer && engine != Engine::Jit {
        bail!("--per-layer times the JIT's kernels: use --engine jit");
    }
    let t0 = Instant::now();
    let imp = load(model, cli.max_memory)?;
    let inputs = match datasets_next_to(model).first() {
        Some(set) => {
            load_dataset(set, cli.max_memory)
                .map_err(|e| anyhow!(e))?
                .inputs
        }
        None => zeros_like_inputs(&imp)?,
    };
    let (g, bound, guards) = prepare(cli, &imp, &inputs, model, engine)?;
    let at = |e: String| anyhow!("{}: {e}", model.display());
    let ctx = shrink::interp::EvalCtx {
        max_bytes: cli.max_memory,
    };
    let interp = || {
        shrink::interp::run(&g, &bound, &ctx)
            .map(|_| ())
            .map_err(|e| at(e.to_string()))
    };
    let layers = if per_layer {
        let mut options = codegen_options(cli)?;
        options.value_guards = guards.clone();
        options.threads = threads;
        let static_g = shrink::with_static_shapes(&g).map_err(at)?;
        let program = shrink::codegen::lower(&static_g, &options).map_err(|e| at(e.to_string()))?;
        let ins: Vec<&[u8]> = bound.iter().map(|t| t.bytes().as_ref()).collect();
        Some(shrink::per_layer::per_layer(&program, &ins, iters).map_err(at)?)
    } else {
        None
    };
    let kernel = match engine {
        Engine::Jit => Some(compile_with_bar(cli, &g, guards, threads).map_err(at)?),
        _ => None,
    };
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (median, p99, n) = match &kernel {
        Some(k) => {
            // Caller-owned buffers, allocated once: the loop measures the kernel alone.
            let ins: Vec<&[u8]> = bound.iter().map(|t| t.bytes().as_ref()).collect();
            let mut outs: Vec<Vec<u8>> = k.outputs().iter().map(|s| vec![0; s.bytes()]).collect();
            let mut scratch = vec![0u8; k.scratch_bytes()];
            time_runs(iters, || {
                let mut views: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
                k.run_into(&ins, &mut views, &mut scratch)
                    .map_err(|e| at(e.to_string()))
            })?
        }
        None => time_runs(iters, interp)?,
    };
    // The oracle's time in the same run, as the baseline the generated code is measured against.
    let interp_median = if kernel.is_some() {
        Some(time_runs(iters.clamp(1, 1000), interp)?.0)
    } else {
        None
    };
    if json {
        let mut obj = serde_json::json!({"engine": engine.name(), "iters": n, "median_ns": median, "p99_ns": p99, "compile_ms": compile_ms});
        if let Some(im) = interp_median {
            obj["interp_median_ns"] = im.into();
        }
        if let Some(k) = &kernel {
            obj["threads"] = k.threads().into();
        }
        if let Some(l) = &layers {
            obj["layers"] = serde_json::to_value(l)?;
        }
        println!("{obj}");
    } else {
        let on = match &kernel {
            Some(k) if k.threads() > 1 => format!(" on {} threads", k.threads()),
            _ => String::new(),
        };
        println!(
            "engine {}{on}: {n} iters, median {:.3} ms, p99 {:.3} ms (import + optimize{} {:.1} ms)",
            engine.name(),
            median as f64 / 1e6,
            p99 as f64 / 1e6,
            if kernel.is_some() { " + compile" } else { "" },
            compile_ms
        );
        if let Some(im) = interp_median {
            println!(
                "engine interp (same run): median {:.3} ms — the jit is {:.1}× faster",
                im as f64 / 1e6,
                im as f64 / median.max(1) as f64
            );
        }
        if let Some(layers) = &layers {
            println!(
                "  {:<24} {:<16} {:<8} {:>12} {:>12}",
                "layer", "op", "strategy", "measured_us", "predicted_us"
            );
            for l in layers {
                println!(
                    "  {:<24} {:<16} {:<8} {:>12.2} {:>12}",
                    l.node,
                    l.op,
                    l.strategy,
                    l.measured_ns / 1e3,
                    l.predicted_ns
                        .map_or("-".into(), |p| format!("{:.2}", p / 1e3))
                );
            }
        }
    }
    Ok(())
}

fn main() {
    // Internal bugs still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error{loc}: {}",
            info.payload_as_str().unwrap_or("panic")
        );
    }));
    // Per-pass timing and statistics: RUST_LOG=shrink::opt=debug (logs go to stderr).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cli = Cli::parse();
    // Bad code generation flags are reported once, before any model is read.
    let result: Result<bool> = match codegen_options(&cli).and(input_shapes(&cli)) {
        Err(e) => Err(e),
        Ok(_) => run_command(&cli),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::exit(1);
        }
    }
}

fn run_command(cli: &Cli) -> Result<bool> {
    let result: Result<bool> = match &cli.cmd {
        Cmd::Compile {
            model,
            target,
            out,
            header,
            name,
            emit,
        } => cmd_compile(
            cli,
            CompileArgs {
                model,
                target,
                out,
                header,
                name,
                emit,
            },
        )
        .map(|_| true),
        Cmd::Run {
            model,
            input_dir,
            input,
            output_dir,
            engine,
        } => cmd_run(cli, model, input_dir, input, output_dir, *engine).map(|_| true),
        Cmd::Check {
            model,
            datasets,
            engine,
            target,
            rtol,
            atol,
        } => cmd_check(
            cli,
            model,
            datasets,
            *engine,
            target.as_deref(),
            Tolerance {
                rtol: *rtol,
                atol: *atol,
            },
        ),
        Cmd::Inspect { model, json, html } => load(model, cli.max_memory).and_then(|imp| {
            let opt = opt_options(cli)?;
            let staged = if opt.enabled {
                Some(shrink::optimize_staged(&imp.graph, &opt))
            } else {
                None
            };
            let mut r = match &staged {
                Some(Ok(s)) => shrink::inspect::inspect(&imp.graph, Some(s), None),
                Some(Err(e)) => shrink::inspect::inspect(&imp.graph, None, Some(e)),
                None => shrink::inspect::inspect(&imp.graph, None, None),
            };
            if let Some(Ok(s)) = &staged {
                // What the generated code would be: compiled for the host, never run.
                let cg = codegen_options(cli)?;
                let compiled = shrink::compiler::require_static_inputs(&s.optimized)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        shrink::codegen::lower(&s.optimized, &cg).map_err(|e| e.to_string())
                    })
                    .and_then(|p| {
                        shrink::Kernel::compile(&p)
                            .map(|k| (p, k))
                            .map_err(|e| e.to_string())
                    });
                match compiled {
                    Ok((p, k)) => shrink::inspect::fill_codegen(&mut r, &p, k.stats()),
                    Err(e) => r.codegen_error = Some(e),
                }
            }
            if let Some(out) = html {
                let codegen = codegen_options(cli)?;
                let input = shrink::report::PageInput {
                    model: &model.display().to_string(),
                    graph: &imp.graph,
                    staged: staged.as_ref().and_then(|s| s.as_ref().ok()),
                    opt: &opt,
                    codegen: &codegen,
                    report: &r,
                    prefix: &shrink::aot::c_identifier_from(
                        &model.file_stem().unwrap_or_default().to_string_lossy(),
                    ),
                };
                println!(
                    "{}",
                    shrink::report::write_html(out, &input).map_err(|e| anyhow!(e))?
                );
            } else if *json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                print!("{}", shrink::inspect::render(&r));
            }
            Ok(true)
        }),
        Cmd::Bench {
            model,
            engine,
            iters,
            threads,
            json,
            per_layer,
        } => {
            if *threads == 0 || *threads > MAX_THREADS {
                Err(anyhow!(
                    "--threads {threads}: expected 1 to {MAX_THREADS} (threads the JIT runs large layers on)"
                ))
            } else if *threads > 1 && *engine != Engine::Jit {
                Err(anyhow!(
                    "--threads {threads}: only the JIT runs layers on several threads; use --engine jit"
                ))
            } else {
                cmd_bench(cli, model, *engine, *iters, *threads, *json, *per_layer).map(|_| true)
            }
        }
    };
    result
}
