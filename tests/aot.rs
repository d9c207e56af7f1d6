//! The ahead-of-time path end to end, for every target profile and every shipped model:
//! - objects are what the kernel ABI promises, read back with the `object` crate independently of
//!   shrink-aot's own check: the target's format and architecture, no undefined symbol, no
//!   writable data, every global symbol `PREFIX_`-named; archives carry a symbol index;
//! - reproducible: `.o`, `.a` and `.h` are byte-identical whether codegen runs on 1 or 2 threads;
//! - correct: linked by gcc into a C program, run natively, the outputs are bit-identical to the
//!   JIT's on the same inputs (baseline x86-64, and v3/v4 when this CPU has AVX2/AVX-512F), also
//!   with two models linked into one program under distinct prefixes.
//!
//! gcc is required: without it the link tests fail, they never skip.
use object::read::archive::ArchiveFile;
use object::{Architecture, BinaryFormat, Object, ObjectSection, ObjectSymbol, SectionKind};
use shrink::dataset::{datasets_next_to, load_dataset};
use shrink::ir::Tensor;
use shrink::target::{TargetProfile, profiles};
use shrink::{AotOutput, Compiler};
use std::path::{Path, PathBuf};

#[path = "support/toolchain.rs"]
mod toolchain;
use toolchain::ensure_toolchain;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(name, model.onnx)` of every shipped example model, sorted.
fn shipped_models() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(repo().join("examples/models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("model.onnx").is_file())
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            (name, d.join("model.onnx"))
        })
        .collect();
    v.sort();
    assert!(v.len() >= 3, "shipped models: {v:?}");
    v
}

/// The compiler of the cross-target comparisons: float kernels without fused multiply-adds,
/// the mode whose outputs are the same bits on every ISA and CPU level
/// ([`shrink::codegen::CodegenOptions::fma`]; `fused_multiply_adds_agree_among_targets_with_fma`
/// checks the default mode).
fn portable() -> Compiler {
    let mut c = Compiler::default();
    c.options.codegen.fma = false;
    c
}

fn compile(model: &Path, target: &str, prefix: &str) -> AotOutput {
    portable()
        .compile_aot(model, target, prefix)
        .unwrap_or_else(|e| panic!("{} for {target}: {e}", model.display()))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shrink-aot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The object rules, checked here without shrink-aot's validator.
fn assert_object_rules(bytes: &[u8], profile: &TargetProfile, prefix: &str, what: &str) {
    let f = object::File::parse(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let t = profile.target_triple();
    let (format, mangle) = match t.binary_format {
        shrink::target::target_lexicon::BinaryFormat::Macho => (BinaryFormat::MachO, "_"),
        _ => (BinaryFormat::Elf, ""),
    };
    assert_eq!(f.format(), format, "{what}");
    let arch = match t.architecture.to_string().as_str() {
        "x86_64" => Architecture::X86_64,
        a if a.starts_with("aarch64") => Architecture::Aarch64,
        a if a.starts_with("riscv64") => Architecture::Riscv64,
        a => panic!("{what}: unexpected architecture {a}"),
    };
    assert_eq!(f.architecture(), arch, "{what}");
    let mut globals = vec![];
    for s in f.symbols() {
        let name = s.name().unwrap();
        assert!(
            !s.is_undefined() || name.is_empty(),
            "{what}: imports {name}"
        );
        if s.is_global() {
            assert!(
                name.starts_with(&format!("{mangle}{prefix}_")),
                "{what}: global {name}"
            );
            globals.push(name.to_string());
        }
    }
    assert_eq!(globals, [format!("{mangle}{prefix}_run")], "{what}");
    for s in f.sections() {
        let writable = matches!(
            s.kind(),
            SectionKind::Data
                | SectionKind::UninitializedData
                | SectionKind::Tls
                | SectionKind::UninitializedTls
                | SectionKind::Common
        );
        assert!(
            !writable || s.size() == 0,
            "{what}: writable section {:?}",
            s.name()
        );
        if let object::SectionFlags::Elf { sh_flags } = s.flags() {
            let w = sh_flags & u64::from(object::elf::SHF_WRITE) != 0;
            assert!(!w || s.size() == 0, "{what}: SHF_WRITE on {:?}", s.name());
        }
    }
    if profile.triple.contains("riscv64") {
        let object::FileFlags::Elf { e_flags, .. } = f.flags() else {
            panic!("{what}: no ELF flags")
        };
        assert_eq!(
            e_flags & object::elf::EF_RISCV_FLOAT_ABI,
            object::elf::EF_RISCV_FLOAT_ABI_DOUBLE,
            "{what}"
        );
    }
}

#[test]
fn every_profile_compiles_every_shipped_model_to_a_valid_object_and_archive() {
    let mut table = String::new();
    for (name, model) in shipped_models() {
        for profile in profiles() {
            let what = format!("{name} for {}", profile.name);
            let o = compile(&model, &profile.name, &name);
            assert_object_rules(&o.object, profile, &name, &what);
            let a = o.archive().unwrap();
            let ar = ArchiveFile::parse(a.as_slice()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let index: Vec<Vec<u8>> = ar
                .symbols()
                .unwrap()
                .unwrap_or_else(|| panic!("{what}: archive without symbol index"))
                .map(|s| s.unwrap().name().to_vec())
                .collect();
            let mangle = if profile.triple.contains("apple") {
                "_"
            } else {
                ""
            };
            assert_eq!(
                index,
                [format!("{mangle}{name}_run").into_bytes()],
                "{what}"
            );
            let members: Vec<_> = ar.members().map(|m| m.unwrap()).collect();
            assert_eq!(members.len(), 1, "{what}");
            assert_eq!(
                members[0].data(a.as_slice()).unwrap(),
                o.object.as_slice(),
                "{what}"
            );
            assert!(o.header.contains(&format!("int32_t {name}_run(const void *const *inputs, void *const *outputs, void *scratch);")));
            table.push_str(&format!(
                "{name:<14} {:<30} .o {:>7} B  text {:>7} B  rodata {:>6} B\n",
                profile.name,
                o.object.len(),
                o.facts.text_bytes,
                o.facts.rodata_bytes
            ));
        }
    }
    println!("{table}");
}

/// Panics unless `cc` (gcc or g++, language standard `std`) accepts `file` with every warning
/// an error and headers from `include`.
fn assert_compiles_strictly(cc: &str, std: &str, include: &Path, file: &Path, what: &str) {
    let out = std::process::Command::new(cc)
        .args([
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(include)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("{cc} is required for the AOT tests (apt-get install gcc g++): {e}")
        });
    assert!(
        out.status.success(),
        "{cc} {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn headers_compile_as_c_and_cpp() {
    let dir = scratch("headers");
    for (name, model) in shipped_models() {
        let o = compile(&model, "host", &name);
        std::fs::write(dir.join(format!("{name}.h")), &o.header).unwrap();
        let src = format!(
            "#include \"{name}.h\"\n#include \"{name}.h\"\n\
             _Static_assert({name}_SCRATCH_ALIGN == 64, \"align\");\n\
             static unsigned char input0[{name}_INPUT_0_BYTES];\n\
             int main(void) {{ if (sizeof input0 != {name}_INPUT_BYTES[0]) return 100; return (int)({name}_INPUT_BYTES[0] + {name}_OUTPUT_0_RANK + {name}_INPUT_0_DIMS[0] + {name}_INPUT_0_DTYPE) + ({name}_INPUT_NAMES[0][0] == 0) + ({name}_OUTPUT_NAMES[0] == 0); }}\n"
        );
        for (cc, ext, std) in [("gcc", "c", "-std=c11"), ("g++", "cpp", "-std=c++17")] {
            let src = if ext == "cpp" {
                src.replace("_Static_assert", "static_assert")
            } else {
                src.clone()
            };
            let file = dir.join(format!("{name}.{ext}"));
            std::fs::write(&file, src).unwrap();
            assert_compiles_strictly(cc, std, &dir, &file, &name);
        }
    }
}

#[test]
fn output_is_identical_on_one_and_two_threads() {
    let (name, model) = shipped_models()
        .into_iter()
        .find(|(n, _)| n == "bitnet_block")
        .unwrap();
    let build = |threads: usize, target: &str| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let o = compile(&model, target, &name);
            (o.object.clone(), o.archive().unwrap(), o.header.clone())
        })
    };
    for target in [
        "x86_64-unknown-linux-gnu",
        "x86_64-v4",
        "aarch64-unknown-linux-gnu",
        "riscv64gcv-unknown-linux-gnu",
        "aarch64-apple-darwin",
    ] {
        let one = build(1, target);
        let two = build(2, target);
        assert!(
            one.0 == two.0,
            "{target}: .o differs between 1 and 2 threads"
        );
        assert!(
            one.1 == two.1,
            "{target}: .a differs between 1 and 2 threads"
        );
        assert!(
            one.2 == two.2,
            "{target}: .h differs between 1 and 2 threads"
        );
        assert!(
            build(2, target).0 == two.0,
            "{target}: .o differs between two runs"
        );
    }
}

/// The stored inputs of a model in the kernel's input order, and the portable JIT's outputs on
/// them.
fn inputs_and_jit_outputs(model: &Path) -> (Vec<Tensor>, Vec<Vec<u8>>) {
    jit_outputs(&portable(), model)
}

/// The stored inputs of `model` and `compiler`'s JIT outputs on them.
fn jit_outputs(compiler: &Compiler, model: &Path) -> (Vec<Tensor>, Vec<Vec<u8>>) {
    let set = datasets_next_to(model)
        .into_iter()
        .next()
        .expect("a test data set");
    let data = load_dataset(&set, 1 << 30).unwrap();
    let kernel = compiler.compile_jit(model).unwrap();
    let inputs: Vec<Tensor> = kernel
        .inputs()
        .iter()
        .map(|s| {
            data.inputs
                .iter()
                .find(|(n, _)| *n == s.name)
                .unwrap_or_else(|| panic!("no stored input '{}'", s.name))
                .1
                .clone()
        })
        .collect();
    let outs = kernel.run(&inputs).unwrap();
    (inputs, outs.iter().map(|t| t.bytes().to_vec()).collect())
}

/// The x86-64 profiles this CPU can run.
fn native_profiles() -> Vec<&'static TargetProfile> {
    let mut v = vec![shrink::target::find("x86_64-unknown-linux-gnu").unwrap()];
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        v.push(shrink::target::find("x86_64-v3").unwrap());
    }
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vnni")
    {
        v.push(shrink::target::find("x86_64-v4").unwrap());
    }
    v.into_iter()
        .map(|p| profiles().iter().find(|q| q.name == p.name).unwrap())
        .collect()
}

/// In the default mode (fused multiply-adds where native), the objects of the native profiles
/// that have FMA give the host JIT's bits (which has FMA wherever those profiles run).
#[test]
fn fused_multiply_adds_agree_among_targets_with_fma() {
    let with_fma: Vec<&TargetProfile> = native_profiles()
        .into_iter()
        .filter(|p| p.name != "x86_64-unknown-linux-gnu")
        .collect();
    assert!(
        !with_fma.is_empty(),
        "this host runs no x86-64 profile with FMA (x86_64-v3 needs AVX2 and FMA)"
    );
    let compiler = Compiler::default();
    for (name, model) in shipped_models() {
        let (inputs, want) = jit_outputs(&compiler, &model);
        for profile in &with_fma {
            let o = compiler
                .compile_aot(model.as_path(), &profile.name, &name)
                .unwrap();
            let dir = scratch(&format!("fma-{name}-{}", profile.name));
            let got =
                shrink::harness::link_and_run(profile, &[&o], std::slice::from_ref(&inputs), &dir)
                    .unwrap_or_else(|e| panic!("{name} on {}: {e}", profile.name));
            assert!(
                got[0] == want,
                "{name} on {}: outputs differ from the JIT's with FMA",
                profile.name
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn linked_c_program_matches_the_jit_bit_for_bit() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the host link tests run on x86-64"
    );
    let runs = native_profiles();
    println!(
        "native profiles: {:?}",
        runs.iter().map(|p| &p.name).collect::<Vec<_>>()
    );
    for profile in &runs {
        assert!(profile.runs_natively().unwrap(), "{}", profile.name);
    }
    assert_shipped_models_match_the_jit(&runs);
}

/// Each shipped model compiled for each of `profiles`, linked with the C harness and run
/// (natively or under the runner), gives the JIT's outputs bit for bit.
fn assert_shipped_models_match_the_jit(profiles: &[&TargetProfile]) {
    for (name, model) in shipped_models() {
        let (inputs, want) = inputs_and_jit_outputs(&model);
        for profile in profiles {
            let o = compile(&model, &profile.name, &name);
            let dir = scratch(&format!("{name}-{}", profile.name));
            let got =
                shrink::harness::link_and_run(profile, &[&o], std::slice::from_ref(&inputs), &dir)
                    .unwrap_or_else(|e| panic!("{name} on {}: {e}", profile.name));
            assert!(
                got[0] == want,
                "{name} on {}: outputs differ from the JIT's",
                profile.name
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn two_models_link_into_one_program() {
    let models = shipped_models();
    let picked: Vec<&(String, PathBuf)> = models.iter().take(2).collect();
    let profile = profiles()
        .iter()
        .find(|p| p.name == "x86_64-unknown-linux-gnu")
        .unwrap();
    let mut outs = vec![];
    let mut inputs = vec![];
    let mut wants = vec![];
    for (name, model) in &picked {
        outs.push(compile(model, &profile.name, &format!("{name}_m")));
        let (i, w) = inputs_and_jit_outputs(model);
        inputs.push(i);
        wants.push(w);
    }
    let dir = scratch("two-models");
    let refs: Vec<&AotOutput> = outs.iter().collect();
    let got = shrink::harness::link_and_run(profile, &refs, &inputs, &dir).unwrap();
    assert_eq!(got.len(), 2);
    for ((g, w), (name, _)) in got.iter().zip(&wants).zip(&picked) {
        assert!(
            g == w,
            "{name}: outputs differ from the JIT's when linked beside another model"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_and_targets_are_one_line_errors() {
    let (_, model) = &shipped_models()[0];
    for bad in ["1x", "a-b", "int", ""] {
        let e = Compiler::default()
            .compile_aot(model.as_path(), "host", bad)
            .unwrap_err()
            .0;
        assert!(e.contains("--name") && !e.contains('\n'), "{e}");
    }
    let e = Compiler::default()
        .compile_aot(model.as_path(), "vax", "m")
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("unknown target 'vax'") && e.contains("x86_64-v3"),
        "{e}"
    );
}

/// Installs the Debian packages of `profile`'s toolchain when its compiler or runner is missing
/// (the profiles list them for this purpose); a failure to install fails the test.

#[test]
fn foreign_isas_under_qemu_match_the_jit_bit_for_bit() {
    let foreign: Vec<&TargetProfile> = profiles()
        .iter()
        .filter(|p| !p.compile_only && !p.toolchain.runner.is_empty())
        .collect();
    assert!(foreign.len() >= 3, "{foreign:?}");
    for profile in &foreign {
        ensure_toolchain(profile);
    }
    assert_shipped_models_match_the_jit(&foreign);
}

/// Every kernel strategy of the shipped models on every ISA qemu runs (packed's native f64x2
/// loop on AArch64 and RISC-V V, its loop-language fallback on scalar RISC-V), linked into one
/// program per profile, against the JIT of the same strategy on this machine.
#[test]
fn every_strategy_runs_on_every_isa_and_agrees_with_the_jit() {
    use shrink::codegen::{CodegenOptions, Strategy};
    use shrink::compare::{Tolerance, compare};
    let runnable: Vec<&TargetProfile> = profiles().iter().filter(|p| !p.compile_only).collect();
    for profile in &runnable {
        if !profile.toolchain.runner.is_empty() {
            ensure_toolchain(profile);
        }
    }
    let strategies = [Strategy::Stream, Strategy::Packed, Strategy::Dense];
    for profile in runnable {
        if shrink::harness::can_run(profile).is_err() {
            // An x86 preset this CPU lacks (v4 without AVX-512): the native test says which.
            assert!(profile.toolchain.runner.is_empty(), "{}", profile.name);
            continue;
        }
        let mut outs = vec![];
        let mut ins = vec![];
        let mut wants = vec![];
        for (name, model) in shipped_models() {
            let (inputs, _) = inputs_and_jit_outputs(&model);
            for strategy in strategies {
                let options = shrink::CompileOptions {
                    codegen: CodegenOptions {
                        strategy,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let compiler = Compiler::new(options);
                let kernel = compiler.compile_jit(model.as_path()).unwrap();
                wants.push((format!("{name} {strategy}"), kernel.run(&inputs).unwrap()));
                let prefix = format!("{name}_{strategy}");
                outs.push(
                    compiler
                        .compile_aot(model.as_path(), &profile.name, &prefix)
                        .unwrap_or_else(|e| panic!("{prefix} for {}: {e}", profile.name)),
                );
                ins.push(inputs.clone());
            }
        }
        let dir = scratch(&format!("strategies-{}", profile.name));
        let refs: Vec<&AotOutput> = outs.iter().collect();
        let got = shrink::harness::link_and_run(profile, &refs, &ins, &dir)
            .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
        for ((what, want), (o, bytes)) in wants.iter().zip(outs.iter().zip(got)) {
            for ((spec, w), b) in o.outputs.iter().zip(want).zip(bytes) {
                let t = Tensor::from_bytes(spec.dtype, spec.dims.clone(), b.into()).unwrap();
                // The scalar fallback of a native loop sums in another order: not bit-identical.
                let c = compare(&t, w, Tolerance::INTERP);
                assert!(
                    c.mismatch.is_none(),
                    "{what} on {}: {:?}",
                    profile.name,
                    c.mismatch
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The int8 dot-product kernel (a dynamically quantized layer: DynamicQuantizeLinear →
/// MatMulInteger with constant int8 weights → rescale) on every ISA qemu runs — its 128-bit
/// form on AArch64 and RISC-V V, its loop-language fallback on scalar RISC-V — gives the
/// interpreter's bits: the integer sums are exact on every path.
#[test]
fn int8_layers_run_on_every_isa_with_the_interpreters_bits() {
    let runnable: Vec<&TargetProfile> = profiles().iter().filter(|p| !p.compile_only).collect();
    let m = shrink::demo::dynamic_quant_layer("dq", 3, 100, 50);
    let compiler = Compiler::new(Default::default());
    let g = compiler.optimized_graph(m.model.as_slice()).unwrap();
    let inputs: Vec<Tensor> = m.inputs.iter().map(|(_, t)| t.clone()).collect();
    let want = shrink::interp::run(&g, &inputs, &Default::default()).unwrap();
    for profile in runnable {
        if !profile.toolchain.runner.is_empty() {
            ensure_toolchain(profile);
        }
        if shrink::harness::can_run(profile).is_err() {
            assert!(profile.toolchain.runner.is_empty(), "{}", profile.name);
            continue;
        }
        let o = compiler
            .compile_aot(m.model.as_slice(), &profile.name, "dq")
            .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
        let dir = scratch(&format!("int8-{}", profile.name));
        let got =
            shrink::harness::link_and_run(profile, &[&o], std::slice::from_ref(&inputs), &dir)
                .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
        assert_eq!(got[0][0], want[0].bytes().to_vec(), "{}", profile.name);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_model_without_inputs_and_a_scalar_output_has_a_valid_header_and_links() {
    use shrink::codegen::{IoSpec, Program};
    let p = Program {
        inputs: vec![],
        outputs: vec![IoSpec {
            name: "odd \"name\" */ ??= é".into(),
            dtype: shrink::ir::DType::F32,
            dims: vec![],
        }],
        scratch_bytes: 0,
        kernels: vec![],
        consts: Default::default(),
        threads: 1,
        max_code_bytes: None,
    };
    let profile = shrink::target::find("host").unwrap();
    let o = AotOutput::new(&p, profile.clone(), "empty").unwrap();
    assert!(
        o.header.contains("#define empty_NUM_INPUTS 0"),
        "{}",
        o.header
    );
    assert!(
        o.header
            .contains("static const size_t empty_OUTPUT_0_DIMS[1] = {0};"),
        "{}",
        o.header
    );
    let dir = scratch("empty");
    std::fs::write(dir.join("empty.h"), &o.header).unwrap();
    for (cc, file, std) in [("gcc", "t.c", "-std=c11"), ("g++", "t.cpp", "-std=c++17")] {
        std::fs::write(
            dir.join(file),
            "#include \"empty.h\"\nint main(void) { return (int)empty_OUTPUT_BYTES[0] - 4; }\n",
        )
        .unwrap();
        assert_compiles_strictly(cc, std, &dir, &dir.join(file), "empty");
    }
    let got = shrink::harness::link_and_run(&profile, &[&o], &[vec![]], &dir).unwrap();
    assert_eq!(got[0].len(), 1);
    assert_eq!(got[0][0].len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds `tests/aot/abi_check.c` against model `o` (prefix `m`) for its profile and runs it on
/// `inputs`, expecting `status` and (when 0) `want` from every plain, guarded and threaded run.
fn abi_check(o: &AotOutput, inputs: &[Tensor], status: i32, want: Option<&[Vec<u8>]>, dir: &Path) {
    let profile = &o.profile;
    std::fs::write(dir.join("m.h"), &o.header).unwrap();
    std::fs::write(dir.join("libm.a"), o.archive().unwrap()).unwrap();
    let ins: Vec<u8> = inputs.iter().flat_map(|t| t.bytes().to_vec()).collect();
    std::fs::write(dir.join("inputs.bin"), ins).unwrap();
    let exe = dir.join("abi_check");
    let mut cc = profile.toolchain.cc.clone();
    cc.extend(
        [
            "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread", "-I",
        ]
        .map(String::from),
    );
    cc.push(dir.display().to_string());
    cc.push(repo().join("tests/aot/abi_check.c").display().to_string());
    cc.push(dir.join("libm.a").display().to_string());
    cc.extend(["-o".into(), exe.display().to_string()]);
    let built = std::process::Command::new(&cc[0])
        .args(&cc[1..])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}: {}",
        profile.name,
        String::from_utf8_lossy(&built.stderr)
    );
    let mut run = profile.toolchain.runner.clone();
    run.push(exe.display().to_string());
    run.push(dir.join("inputs.bin").display().to_string());
    run.push(status.to_string());
    if let Some(want) = want {
        std::fs::write(dir.join("want.bin"), want.concat()).unwrap();
        run.push(dir.join("want.bin").display().to_string());
    }
    let ran = std::process::Command::new(&run[0])
        .args(&run[1..])
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}: {}",
        profile.name,
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The kernel ABI as a C program sees it, on the three ISAs: every buffer against guard pages
/// (before and after), two threads running one kernel at once with their own scratch, and a
/// Gather index out of range returning BAD_INDEX (1) without touching memory outside a buffer.
#[test]
fn the_c_abi_holds_under_guard_pages_threads_and_bad_indices() {
    use shrink::onnx::writer::{Attr, ModelBuilder, WDim};
    let targets = [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "riscv64gc-unknown-linux-gnu",
    ];
    let mut gather = ModelBuilder::new("gather", 21);
    gather
        .input(
            "data",
            shrink::ir::DType::F32,
            &[WDim::Fixed(4), WDim::Fixed(3)],
        )
        .input("idx", shrink::ir::DType::I64, &[WDim::Fixed(2)])
        .output(
            "y",
            shrink::ir::DType::F32,
            &[WDim::Fixed(2), WDim::Fixed(3)],
        )
        .node(
            "Gather",
            "pick",
            &["data", "idx"],
            &["y"],
            &[("axis", Attr::Int(0))],
        );
    let gather = gather.to_bytes();
    let data = Tensor::from_vec(vec![4, 3], (0..12).map(|v| v as f32).collect::<Vec<f32>>());
    for target in targets {
        let profile = shrink::target::find(target).unwrap();
        ensure_toolchain(&profile);
        for (name, model) in shipped_models() {
            let (inputs, want) = inputs_and_jit_outputs(&model);
            let o = compile(&model, target, "m");
            let dir = scratch(&format!("abi-{name}-{target}"));
            abi_check(&o, &inputs, 0, Some(&want), &dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let o = Compiler::default()
            .compile_aot(gather.as_slice(), target, "m")
            .unwrap();
        let dir = scratch(&format!("abi-gather-{target}"));
        let ok = [data.clone(), Tensor::from_vec(vec![2], vec![3i64, -1])];
        let want = Compiler::default()
            .compile_jit(gather.as_slice())
            .unwrap()
            .run(&ok)
            .unwrap();
        let want: Vec<Vec<u8>> = want.iter().map(|t| t.bytes().to_vec()).collect();
        assert_eq!(want[0][..4], 9f32.to_le_bytes(), "row 3 first");
        abi_check(&o, &ok, 0, Some(&want), &dir);
        for bad in [
            vec![1i64, 4],
            vec![-5, 0],
            vec![i64::MAX, 0],
            vec![0, i64::MIN],
        ] {
            let ins = [data.clone(), Tensor::from_vec(vec![2], bad)];
            abi_check(&o, &ins, 1, None, &dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Position independence: the object links into a shared library with `-z text` (the linker
/// refuses any text relocation) on each ISA; executables link as PIE, Debian's default.
#[test]
fn objects_link_into_shared_libraries_without_text_relocations() {
    for target in [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "riscv64gc-unknown-linux-gnu",
    ] {
        let profile = shrink::target::find(target).unwrap();
        ensure_toolchain(&profile);
        for (name, model) in shipped_models() {
            let o = compile(&model, target, &name);
            let dir = scratch(&format!("so-{name}-{target}"));
            let obj = dir.join("m.o");
            std::fs::write(&obj, &o.object).unwrap();
            let mut cc = profile.toolchain.cc.clone();
            cc.extend(["-shared", "-Wl,-z,text", "-nostdlib", "-o"].map(String::from));
            cc.push(dir.join("libm.so").display().to_string());
            cc.push(obj.display().to_string());
            let out = std::process::Command::new(&cc[0])
                .args(&cc[1..])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} for {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
