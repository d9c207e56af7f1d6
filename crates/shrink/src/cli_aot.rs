//! The ahead-of-time side of the command line: `compile` (objects, static libraries, headers and
//! listings for any target profile) and the `aot` engine of `check` and `run` (compile, link the
//! C harness with the profile's compiler, run it with the profile's runner).
use crate::{Cli, Engine, Guards, codegen_options, input_shapes, opt_options};
use anyhow::{Context, Result, anyhow, bail};
use shrink::ir::Tensor;
use std::path::{Path, PathBuf};

/// `--target help`: every profile, one line each.
fn print_targets() {
    println!("{:<30} {:<30} description", "target", "triple");
    for p in shrink::target::profiles() {
        println!("{}", p.summary());
    }
    println!(
        "{:<30} {:<30} this machine's baseline profile",
        "host",
        shrink::target::host_triple()
    );
}

/// What `-o` asks for, by its extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OutKind {
    Object,
    Archive,
}

fn out_kind(out: &Path) -> Result<OutKind> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("o") => Ok(OutKind::Object),
        Some("a") => Ok(OutKind::Archive),
        _ => bail!(
            "-o {}: expected an object (.o) or a static library (.a)",
            out.display()
        ),
    }
}

/// The symbol prefix: `--name`, else the model's file stem made a C identifier.
fn symbol_prefix(model: &Path, name: &Option<String>) -> Result<String> {
    match name {
        Some(n) => {
            shrink::aot::check_prefix(n).map_err(|e| anyhow!(e))?;
            Ok(n.clone())
        }
        None => Ok(shrink::aot::c_identifier_from(
            &model.file_stem().unwrap_or_default().to_string_lossy(),
        )),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

pub struct CompileArgs<'a> {
    pub model: &'a Option<PathBuf>,
    pub target: &'a str,
    pub out: &'a Option<PathBuf>,
    pub header: &'a Option<PathBuf>,
    pub name: &'a Option<String>,
    pub emit: &'a Option<String>,
}

pub fn cmd_compile(cli: &Cli, a: CompileArgs) -> Result<()> {
    if a.target == "help" {
        print_targets();
        return Ok(());
    }
    let profile = shrink::target::find(a.target).map_err(|e| anyhow!(e))?;
    let Some(model) = a.model else {
        bail!("compile: give the MODEL to compile");
    };
    let listing = match a.emit.as_deref() {
        None | Some("ir") => None,
        Some("clif") => Some(shrink::codegen::Listing::Clif),
        Some("asm") => Some(shrink::codegen::Listing::Asm),
        Some(other) => bail!("--emit {other}: expected ir, clif or asm"),
    };
    if a.emit.is_none() && a.out.is_none() && a.header.is_none() {
        bail!(
            "compile: nothing to write; give -o OUT.a|OUT.o, --header OUT.h or --emit ir|clif|asm"
        );
    }
    let kind = a.out.as_deref().map(out_kind).transpose()?;
    let prefix = symbol_prefix(model, a.name)?;
    let options = shrink::CompileOptions {
        opt: opt_options(cli)?,
        input_shapes: input_shapes(cli)?,
        max_memory: cli.max_memory,
        codegen: codegen_options(cli)?,
    };
    let codegen = options.codegen.clone();
    let g = shrink::Compiler::new(options)
        .optimized_graph(model.as_path())
        .map_err(|e| anyhow!(e))?;
    if a.emit.as_deref() == Some("ir") {
        print!("{}", shrink::ir::text::print::print_graph(&g));
        if a.out.is_none() && a.header.is_none() {
            return Ok(());
        }
    }
    let at = |e: String| anyhow!("{}: {e}", model.display());
    let codegen = shrink::options_for_target(&codegen, &profile).map_err(at)?;
    let p = shrink::lower_with(&g, &codegen).map_err(|e| at(e.to_string()))?;
    if let Some(kind) = listing {
        let text =
            shrink::aot::listing(&p, &profile, &prefix, kind).map_err(|e| at(e.to_string()))?;
        print!("{text}");
    }
    if a.out.is_none() && a.header.is_none() {
        return Ok(());
    }
    let o = shrink::AotOutput::new(&p, profile, &prefix).map_err(|e| at(e.to_string()))?;
    if let (Some(path), Some(kind)) = (a.out, kind) {
        let bytes = match kind {
            OutKind::Object => o.object.clone(),
            OutKind::Archive => o.archive().map_err(|e| at(e.to_string()))?,
        };
        write_file(path, &bytes)?;
        eprintln!(
            "wrote {} ({} bytes; {} {} for {}, code {} bytes, read-only data {} bytes, scratch {} bytes)",
            path.display(),
            bytes.len(),
            o.facts.format,
            o.facts.architecture,
            o.profile.name,
            o.facts.text_bytes,
            o.facts.rodata_bytes,
            p.scratch_bytes
        );
    }
    if let Some(path) = a.header {
        write_file(path, o.header.as_bytes())?;
    }
    Ok(())
}

/// Compiles `g` ahead of time for `profile`, links it into the C harness with the profile's
/// compiler and runs it with its runner, in a temporary folder removed afterwards.
pub fn run_aot(
    cli: &Cli,
    g: &shrink::ir::Graph,
    guards: Guards,
    bound: &[Tensor],
    profile: &shrink::target::TargetProfile,
) -> Result<Vec<Tensor>, String> {
    let mut options = codegen_options(cli).map_err(|e| e.to_string())?;
    options.value_guards = guards;
    let options = shrink::options_for_target(&options, profile)?;
    let p = shrink::lower_with(g, &options).map_err(|e| e.to_string())?;
    let o = shrink::AotOutput::new(&p, profile.clone(), "model").map_err(|e| e.to_string())?;
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shrink-aot-{}-{n}", std::process::id()));
    let result = shrink::harness::link_and_run(profile, &[&o], &[bound.to_vec()], &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let outs = result?.pop().unwrap_or_default();
    outs.into_iter()
        .zip(&o.outputs)
        .map(|(bytes, s)| {
            Tensor::from_bytes(s.dtype, s.dims.clone(), bytes.into()).map_err(|e| e.to_string())
        })
        .collect()
}

/// The profile `--engine aot` builds for (`host` unless `--target` says otherwise), after
/// checking that its compiler and runner are installed.
pub fn aot_profile(
    engine: Engine,
    target: Option<&str>,
) -> Result<Option<shrink::target::TargetProfile>> {
    if engine != Engine::Aot {
        if let Some(t) = target {
            bail!("--target {t} applies to --engine aot only");
        }
        return Ok(None);
    }
    let p = shrink::target::find(target.unwrap_or("host")).map_err(|e| anyhow!(e))?;
    shrink::harness::can_run(&p).map_err(|e| anyhow!(e))?;
    Ok(Some(p))
}
