//! Compiling models from a Cargo build script, in the manner of the `cc` crate: a builder that
//! compiles an ONNX model ahead of time for the target Cargo is building for, writes the static
//! library into `OUT_DIR`, tells Cargo how to link it and when to rerun, and generates a typed
//! Rust wrapper to `include!`.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), shrink::Error> {
//!     shrink::build::Build::new()
//!         .model("../models/ternary_mlp/model.onnx")
//!         .name("mlp")
//!         .compile()?;
//!     Ok(())
//! }
//! ```
//!
//! and in the crate: `include!(concat!(env!("OUT_DIR"), "/mlp.rs"));`, which defines `pub struct
//! Mlp` (see [`wrapper`] for its API). The wrapper is plain `core` code — no allocation, no std —
//! so it also serves `no_std` firmware built for a bare-metal profile.
use crate::{AotOutput, CompileOptions, Compiler, Error};
use shrink_ir::DType;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What a build script asks for; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Build {
    model: Option<PathBuf>,
    name: Option<String>,
    target: Option<String>,
    out_dir: Option<PathBuf>,
    options: CompileOptions,
    quiet: bool,
}

/// The files [`Build::compile`] wrote, and the compile itself (sizes, I/O specs, header).
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub library: PathBuf,
    pub header: PathBuf,
    pub wrapper: PathBuf,
    pub output: AotOutput,
}

impl Build {
    pub fn new() -> Build {
        Build::default()
    }

    /// The ONNX model; relative paths are resolved by the build script's working directory,
    /// which Cargo sets to the package root.
    pub fn model(&mut self, path: impl AsRef<Path>) -> &mut Build {
        self.model = Some(path.as_ref().to_path_buf());
        self
    }

    /// The symbol prefix (a C identifier): `{name}_run`, `lib{name}.a`, `{name}.h`, `{name}.rs`.
    /// Default: the model's file stem made an identifier.
    pub fn name(&mut self, name: &str) -> &mut Build {
        self.name = Some(name.to_string());
        self
    }

    /// A target profile to use instead of the one matching Cargo's `TARGET` (e.g. `x86_64-v3`
    /// for a machine known to have AVX2).
    pub fn target(&mut self, target: &str) -> &mut Build {
        self.target = Some(target.to_string());
        self
    }

    /// Where to write; default `OUT_DIR`.
    pub fn out_dir(&mut self, dir: impl AsRef<Path>) -> &mut Build {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Optimization and code generation options, as `shrink compile` takes them.
    pub fn options(&mut self, options: CompileOptions) -> &mut Build {
        self.options = options;
        self
    }

    /// Do not print `cargo:` directives (for use outside a build script).
    pub fn quiet(&mut self) -> &mut Build {
        self.quiet = true;
        self
    }

    /// Compiles the model, writes `lib{name}.a`, `{name}.h` and `{name}.rs`, and prints the
    /// `cargo:` directives that link the library and rerun the script when the model changes.
    pub fn compile(&self) -> Result<Artifacts, Error> {
        let model = self
            .model
            .as_deref()
            .ok_or_else(|| Error("shrink::build: no model given (call .model(path))".into()))?;
        let at = |e: String| Error(format!("{}: {e}", model.display()));
        let name = match &self.name {
            Some(n) => n.clone(),
            None => default_name(model),
        };
        shrink_aot::check_prefix(&name).map_err(|e| at(e.to_string()))?;
        let target = match &self.target {
            Some(t) => t.clone(),
            None => env("TARGET").map_err(at)?,
        };
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => PathBuf::from(env("OUT_DIR").map_err(at)?),
        };
        let profile = profile_for(&target).map_err(at)?;
        if !self.quiet {
            // Before compiling, so that a broken model is retried once it is fixed.
            println!("cargo:rerun-if-changed={}", model.display());
        }
        let output = Compiler::new(self.options.clone())
            .compile_aot(model, &profile, &name)
            .map_err(|e| {
                // Compiler errors about a path already start with it.
                if e.0.starts_with(&model.display().to_string()) {
                    e
                } else {
                    at(e.0)
                }
            })?;
        let source = wrapper(&output, &model.display().to_string()).map_err(at)?;
        let archive = output.archive().map_err(|e| at(e.0))?;
        std::fs::create_dir_all(&out_dir).map_err(|e| at(format!("{}: {e}", out_dir.display())))?;
        let write = |file: String, bytes: &[u8]| -> Result<PathBuf, Error> {
            let p = out_dir.join(file);
            std::fs::write(&p, bytes).map_err(|e| at(format!("{}: {e}", p.display())))?;
            Ok(p)
        };
        let library = write(format!("lib{name}.a"), &archive)?;
        let header = write(format!("{name}.h"), output.header.as_bytes())?;
        let wrapper = write(format!("{name}.rs"), source.as_bytes())?;
        if !self.quiet {
            println!("cargo:rustc-link-search=native={}", out_dir.display());
            println!("cargo:rustc-link-lib=static={name}");
        }
        Ok(Artifacts {
            library,
            header,
            wrapper,
            output,
        })
    }
}

fn env(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| {
        format!("${var} is not set: run from a Cargo build script, or call .target()/.out_dir()")
    })
}

/// The file stem as a C identifier, as `shrink compile` defaults `--name`.
fn default_name(model: &Path) -> String {
    let stem = model.file_stem().unwrap_or_default().to_string_lossy();
    shrink_aot::c_identifier_from(&stem)
}

/// The profile for a Rust target triple or profile name: the baseline profile of that triple.
/// Unlike `--target`, `host` is not accepted: Cargo always names the triple.
pub fn profile_for(target: &str) -> Result<String, String> {
    let known = || {
        let names: Vec<&str> = shrink_target::profiles()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        names.join(", ")
    };
    if target == "host" {
        return Err(format!("no target profile for 'host' (known: {})", known()));
    }
    match shrink_target::find(target) {
        Ok(p) => Ok(p.name),
        Err(_) => Err(format!(
            "shrink has no target profile for {target} (known: {}); pass one with .target()",
            known()
        )),
    }
}

/// The Rust element type of a tensor of `dtype` in the wrapper. Narrow floats and sub-byte
/// integers are one byte per element in the kernel ABI, f16/bf16 travel as their bits, and
/// bool as u8 (0 or 1) so that an output byte can never be an invalid `bool`.
fn rust_type(dtype: DType) -> Result<&'static str, String> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I64 => "i64",
        DType::U64 => "u64",
        DType::I32 => "i32",
        DType::U32 => "u32",
        DType::I16 => "i16",
        DType::U16 | DType::F16 | DType::BF16 => "u16",
        DType::I8 | DType::I4 | DType::I2 => "i8",
        DType::String => {
            return Err("string tensors have no fixed-size Rust wrapper".to_string());
        }
        _ => "u8",
    })
}

/// A Rust type name for prefix `name`: `ternary_mlp` → `TernaryMlp`.
pub fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'K');
    }
    out
}

/// Words that cannot be parameter names (strict and reserved keywords, and the wrapper's own).
const TAKEN: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield", "_", "inputs", "outputs", "status",
    "scratch",
];

/// Parameter names from the tensor names, made snake_case identifiers; `fallback{i}` when that
/// fails or two tensors would collide (names that look like a fallback are never kept, so the
/// fallbacks cannot collide either).
fn param_names(names: &[&str], fallback: &str, used: &mut Vec<String>) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut p: String = n
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let bad = p.is_empty()
                || p.starts_with(|c: char| c.is_ascii_digit())
                || TAKEN.contains(&p.as_str())
                || used.contains(&p)
                || p.starts_with("input_")
                || p.starts_with("output_");
            if bad {
                p = format!("{fallback}{i}");
            }
            used.push(p.clone());
            p
        })
        .collect()
}

/// The Rust source of the wrapper of an AOT compile, for `include!` at module level. For prefix
/// `mlp` it defines the `extern "C"` declaration of `mlp_run` and
///
/// - `pub struct Mlp`: the kernel's scratch, owned and `SCRATCH_ALIGN`-aligned, so a value is
///   all one call needs (`Mlp::new()` is `const`: a `static`, a local or a `Box` all work; each
///   thread uses its own);
/// - consts `Mlp::SCRATCH_BYTES`, `SCRATCH_ALIGN`, `INPUT_NAMES`, `OUTPUT_NAMES`, and per tensor
///   `INPUT_0_DIMS` / `INPUT_0_LEN` (elements) / `OUTPUT_0_…`;
/// - `pub fn run(&mut self, x: &[f32; 64], y: &mut [f32; 32]) -> Result<(), i32>`: one
///   argument per input then per output (named after the tensors), flat row-major arrays, the
///   kernel's nonzero status as the error. Nothing is allocated.
///
/// `source` names the model in the generated comment.
pub fn wrapper(out: &AotOutput, source: &str) -> Result<String, String> {
    let p = &out.prefix;
    let ty = type_name(p);
    let mut used = vec![];
    let in_names: Vec<&str> = out.inputs.iter().map(|s| s.name.as_str()).collect();
    let out_names: Vec<&str> = out.outputs.iter().map(|s| s.name.as_str()).collect();
    let in_params = param_names(&in_names, "input_", &mut used);
    let out_params = param_names(&out_names, "output_", &mut used);
    let mut elems = vec![];
    for s in out.inputs.iter().chain(&out.outputs) {
        let t = rust_type(s.dtype).map_err(|e| format!("tensor '{}': {e}", s.name))?;
        elems.push(t);
    }
    let (in_elems, out_elems) = elems.split_at(out.inputs.len());
    let align = shrink_aot::SCRATCH_ALIGN;
    // An array of at least one byte, so that the struct is never zero-sized.
    let scratch_len = out.scratch_bytes.max(1);
    let mut s = String::new();
    let w = &mut s;
    // The file is include!d into a module, so it carries no inner attributes or `//!` docs.
    writeln!(
        w,
        "// {p}.rs: generated by shrink {} from {} for {}; do not edit.\n",
        env!("CARGO_PKG_VERSION"),
        source.replace('\n', " "),
        out.profile.name
    )
    .unwrap();
    writeln!(
        w,
        "unsafe extern \"C\" {{\n    \
         fn {p}_run(\n        \
         inputs: *const *const ::core::ffi::c_void,\n        \
         outputs: *const *mut ::core::ffi::c_void,\n        \
         scratch: *mut ::core::ffi::c_void,\n    \
         ) -> i32;\n}}\n"
    )
    .unwrap();
    writeln!(
        w,
        "/// The model `{p}` compiled by shrink, with the scratch memory of one call at a time.\n\
         /// Zeroed bytes are a valid value (for `Box::new_zeroed` when the scratch is large).\n\
         #[repr(C, align({align}))]\n\
         pub struct {ty} {{\n    scratch: [u8; {scratch_len}],\n}}\n"
    )
    .unwrap();
    writeln!(w, "impl {ty} {{").unwrap();
    writeln!(
        w,
        "    /// Bytes of scratch the kernel needs per call.\n    \
         pub const SCRATCH_BYTES: usize = {};\n    \
         /// The scratch alignment the kernel is fastest with.\n    \
         pub const SCRATCH_ALIGN: usize = {align};",
        out.scratch_bytes
    )
    .unwrap();
    for (kind, specs) in [("INPUT", &out.inputs), ("OUTPUT", &out.outputs)] {
        let names: Vec<String> = specs.iter().map(|s| format!("{:?}", s.name)).collect();
        writeln!(
            w,
            "    pub const {kind}_NAMES: [&str; {}] = [{}];",
            specs.len(),
            names.join(", ")
        )
        .unwrap();
        for (i, s) in specs.iter().enumerate() {
            let dims: Vec<String> = s.dims.iter().map(usize::to_string).collect();
            writeln!(
                w,
                "    /// Dims of {} '{}' ({}, row-major).\n    \
                 pub const {kind}_{i}_DIMS: [usize; {}] = [{}];\n    \
                 pub const {kind}_{i}_LEN: usize = {};",
                kind.to_ascii_lowercase(),
                s.name.replace('\n', " "),
                s.dtype,
                s.dims.len(),
                dims.join(", "),
                s.dims.iter().product::<usize>()
            )
            .unwrap();
        }
    }
    writeln!(
        w,
        "\n    pub const fn new() -> {ty} {{\n        {ty} {{ scratch: [0; {scratch_len}] }}\n    }}\n"
    )
    .unwrap();
    let mut args = vec![];
    for (i, (n, t)) in in_params.iter().zip(in_elems).enumerate() {
        args.push(format!("{n}: &[{t}; Self::INPUT_{i}_LEN]"));
    }
    for (k, (n, t)) in out_params.iter().zip(out_elems).enumerate() {
        args.push(format!("{n}: &mut [{t}; Self::OUTPUT_{k}_LEN]"));
    }
    let ins: Vec<String> = in_params
        .iter()
        .map(|n| format!("{n}.as_ptr().cast()"))
        .collect();
    let outs: Vec<String> = out_params
        .iter()
        .map(|n| format!("{n}.as_mut_ptr().cast()"))
        .collect();
    writeln!(
        w,
        "    /// Runs the model. The error is the kernel's nonzero status (1: an index input out of\n    \
         /// range, 2: a computed index out of bounds, 3: integer division by zero, 4: an input\n    \
         /// value invalid for the op); the outputs are then unspecified.\n    \
         pub fn run(&mut self, {}) -> Result<(), i32> {{\n        \
         let inputs: [*const ::core::ffi::c_void; {}] = [{}];\n        \
         let outputs: [*mut ::core::ffi::c_void; {}] = [{}];\n        \
         // SAFETY: the arrays have exactly the element counts of the header, so the kernel\n        \
         // reads and writes inside them; the scratch is SCRATCH_BYTES long; nothing is kept.\n        \
         let status = unsafe {{\n            \
         {p}_run(inputs.as_ptr(), outputs.as_ptr(), self.scratch.as_mut_ptr().cast())\n        \
         }};\n        \
         if status == 0 {{ Ok(()) }} else {{ Err(status) }}\n    }}\n}}\n",
        args.join(", "),
        ins.len(),
        ins.join(", "),
        outs.len(),
        outs.join(", "),
    )
    .unwrap();
    writeln!(
        w,
        "impl Default for {ty} {{\n    fn default() -> {ty} {{\n        {ty}::new()\n    }}\n}}"
    )
    .unwrap();
    Ok(s)
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
