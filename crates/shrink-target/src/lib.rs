//! shrink-target: the targets shrink compiles for ahead of time. A [`TargetProfile`] is a triple,
//! the Cranelift flags that pick the instruction set extensions, and the C toolchain and runner
//! that link and run the result (for tests and `check --engine aot`). Profiles are the TOML files
//! of the repository's `targets/` directory, embedded at build time so an installed binary needs
//! no files beside it.
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;
pub use target_lexicon;
use target_lexicon::Triple;

/// The profile files, in the order `shrink compile --target help` lists them. A new file in
/// `targets/` needs a line here (a test checks that the two agree).
const SOURCES: &[(&str, &str)] = &[
    (
        "x86_64-unknown-linux-gnu.toml",
        include_str!("../targets/x86_64-unknown-linux-gnu.toml"),
    ),
    ("x86_64-v3.toml", include_str!("../targets/x86_64-v3.toml")),
    ("x86_64-v4.toml", include_str!("../targets/x86_64-v4.toml")),
    (
        "aarch64-unknown-linux-gnu.toml",
        include_str!("../targets/aarch64-unknown-linux-gnu.toml"),
    ),
    (
        "riscv64gc-unknown-linux-gnu.toml",
        include_str!("../targets/riscv64gc-unknown-linux-gnu.toml"),
    ),
    (
        "riscv64gcv-unknown-linux-gnu.toml",
        include_str!("../targets/riscv64gcv-unknown-linux-gnu.toml"),
    ),
    (
        "aarch64-unknown-none.toml",
        include_str!("../targets/aarch64-unknown-none.toml"),
    ),
    (
        "riscv64gc-unknown-none-elf.toml",
        include_str!("../targets/riscv64gc-unknown-none-elf.toml"),
    ),
    (
        "x86_64-apple-darwin.toml",
        include_str!("../targets/x86_64-apple-darwin.toml"),
    ),
    (
        "aarch64-apple-darwin.toml",
        include_str!("../targets/aarch64-apple-darwin.toml"),
    ),
];

/// One target: what to compile for and how to link and run the result.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetProfile {
    /// What `--target` accepts (besides the triple).
    pub name: String,
    /// A target-lexicon triple; it decides the ISA, the calling convention and the object format.
    pub triple: String,
    /// One line for `--target help`.
    pub description: String,
    /// Other names `--target` accepts (`x86_64-linux`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// No toolchain or runner here can link or run it (bare metal, macOS): objects only.
    #[serde(default)]
    pub compile_only: bool,
    #[serde(default)]
    pub cranelift: CraneliftFlags,
    #[serde(default)]
    pub toolchain: Toolchain,
    /// Measured constants of the code generator's cost model (`cargo bench --bench
    /// calibrate` prints them); empty = the code generator's defaults.
    #[serde(default)]
    pub cost: BTreeMap<String, f64>,
}

/// Cranelift settings on top of shrink's defaults (see [`TargetProfile::isa`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CraneliftFlags {
    /// ISA presets applied first (`x86-64-v3`, `zvl128b`, …). Presets never imply more than
    /// they name: x86 presets do not set `has_avx`, so profiles set it in `isa`.
    #[serde(default)]
    pub presets: Vec<String>,
    /// Shared settings (`opt_level`, …), applied after shrink's defaults.
    #[serde(default)]
    pub shared: BTreeMap<String, FlagValue>,
    /// ISA settings (`has_avx = true`), applied after the presets.
    #[serde(default)]
    pub isa: BTreeMap<String, FlagValue>,
}

/// A setting's value as TOML spells it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FlagValue {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl std::fmt::Display for FlagValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagValue::Bool(b) => write!(f, "{b}"),
            FlagValue::Int(i) => write!(f, "{i}"),
            FlagValue::Str(s) => f.write_str(s),
        }
    }
}

/// How to link and run code for a target on this kind of machine (Debian, x86-64).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// The C compiler and the flags every compile needs (`riscv64-linux-gnu-gcc -mabi=lp64d`).
    #[serde(default)]
    pub cc: Vec<String>,
    /// The program that runs a linked executable, with its flags; empty = run it directly.
    #[serde(default)]
    pub runner: Vec<String>,
    /// Debian packages that provide `cc` and `runner`.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// Every built-in profile, in listing order.
pub fn profiles() -> &'static [TargetProfile] {
    static PROFILES: OnceLock<Vec<TargetProfile>> = OnceLock::new();
    PROFILES.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(file, text)| {
                // The files are part of the build; a broken one is a bug the unit tests catch.
                parse_profile(file, text).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    })
}

/// Parses one profile file (`file` names it in errors).
pub fn parse_profile(file: &str, text: &str) -> Result<TargetProfile, String> {
    let p: TargetProfile = toml::from_str(text)
        .map_err(|e| format!("{file}: {}", e.to_string().replace('\n', " ").trim_end()))?;
    let t =
        Triple::from_str(&p.triple).map_err(|e| format!("{file}: triple '{}': {e}", p.triple))?;
    if t.binary_format == target_lexicon::BinaryFormat::Unknown {
        return Err(format!(
            "{file}: triple '{}' names no object format (add -elf)",
            p.triple
        ));
    }
    Ok(p)
}

/// The profile named `name`, or the one whose triple is `name` (`host` is this machine's
/// baseline profile). The error lists every profile.
pub fn find(name: &str) -> Result<TargetProfile, String> {
    let all = profiles();
    let wanted = if name == "host" {
        host_triple()
    } else {
        name.to_string()
    };
    if let Some(p) = all
        .iter()
        .find(|p| p.name == wanted || p.aliases.contains(&wanted))
    {
        return Ok(p.clone());
    }
    // A triple: the baseline profile of it is the one named after it; else the first listed.
    if let Some(p) = all.iter().find(|p| p.triple == wanted) {
        return Ok(p.clone());
    }
    // Other spellings of a listed triple (`aarch64-linux-gnu`, …).
    if let Ok(t) = Triple::from_str(&wanted)
        && let Some(p) = all
            .iter()
            .find(|p| Triple::from_str(&p.triple).is_ok_and(|pt| pt == t))
    {
        return Ok(p.clone());
    }
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    Err(format!(
        "unknown target '{name}' (known: host, {})",
        names.join(", ")
    ))
}

/// The triple of the machine shrink runs on.
pub fn host_triple() -> String {
    Triple::host().to_string()
}

impl TargetProfile {
    /// The parsed triple.
    pub fn target_triple(&self) -> Triple {
        Triple::from_str(&self.triple).expect("checked when the profile was parsed")
    }

    /// The Cranelift ISA for this target. Objects are not PIC: every reference shrink's code
    /// makes is to its own functions and read-only data, which Cranelift reaches PC-relative
    /// anyway, so the object links into static, PIE and shared executables without text
    /// relocations; `is_pic` would only send that data through the GOT.
    pub fn isa(&self) -> Result<OwnedTargetIsa, String> {
        let at =
            |what: &str, e: &dyn std::fmt::Display| format!("target {}: {what}: {e}", self.name);
        let mut shared = settings::builder();
        let defaults = [
            ("opt_level", "speed"),
            ("is_pic", "false"),
            // Probestack would call `__cranelift_probestack`; shrink's frames are small.
            ("enable_probestack", "false"),
            ("use_colocated_libcalls", "false"),
        ];
        for (k, v) in defaults {
            shared.set(k, v).map_err(|e| at(k, &e))?;
        }
        for (k, v) in &self.cranelift.shared {
            shared
                .set(k, &v.to_string())
                .map_err(|e| at(&format!("shared flag {k}"), &e))?;
        }
        let mut builder = cranelift_codegen::isa::lookup(self.target_triple())
            .map_err(|e| at("no Cranelift backend", &e))?;
        for preset in &self.cranelift.presets {
            builder
                .enable(preset)
                .map_err(|e| at(&format!("preset {preset}"), &e))?;
        }
        for (k, v) in &self.cranelift.isa {
            // `enable` also accepts presets spelled as flags (RISC-V `has_c`).
            let r = match v {
                FlagValue::Bool(true) => builder.enable(k),
                other => builder.set(k, &other.to_string()),
            };
            r.map_err(|e| at(&format!("ISA flag {k}"), &e))?;
        }
        builder
            .finish(settings::Flags::new(shared))
            .map_err(|e| at("ISA", &e))
    }

    /// Whether code for this target runs natively on this machine: same architecture and OS,
    /// and every ISA extension the profile enables is one this CPU has.
    pub fn runs_natively(&self) -> Result<bool, String> {
        let t = self.target_triple();
        let host = Triple::host();
        if t.architecture != host.architecture || t.operating_system != host.operating_system {
            return Ok(false);
        }
        let ours = self.isa()?;
        let native = cranelift_native::builder()
            .map_err(|e| format!("host ISA: {e}"))?
            .finish(settings::Flags::new(settings::builder()))
            .map_err(|e| format!("host ISA: {e}"))?;
        let has: BTreeMap<&str, bool> = native
            .isa_flags()
            .iter()
            .filter_map(|f| f.as_bool().map(|b| (f.name, b)))
            .collect();
        Ok(ours
            .isa_flags()
            .iter()
            .filter(|f| f.as_bool() == Some(true))
            .all(|f| has.get(f.name).copied().unwrap_or(false)))
    }

    /// `--target help`: one line per profile.
    pub fn summary(&self) -> String {
        format!("{:<30} {:<30} {}", self.name, self.triple, self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_and_builds_an_isa() {
        assert_eq!(profiles().len(), SOURCES.len());
        for p in profiles() {
            let isa = p.isa().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(isa.triple(), &p.target_triple(), "{}", p.name);
            assert!(!p.description.is_empty() && !p.description.contains('\n'));
            assert!(p.compile_only || !p.toolchain.cc.is_empty(), "{}", p.name);
        }
    }

    #[test]
    fn names_are_unique_and_match_the_files() {
        for (file, _) in SOURCES {
            let n = profiles()
                .iter()
                .filter(|p| format!("{}.toml", p.name) == *file)
                .count();
            assert_eq!(n, 1, "{file}: the profile's name must be its file name");
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/targets");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = SOURCES.iter().map(|(f, _)| f.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "targets/ and SOURCES disagree");
    }

    #[test]
    fn x86_presets_get_avx_set_explicitly() {
        for name in ["x86_64-v3", "x86_64-v4"] {
            let isa = find(name).unwrap().isa().unwrap();
            let on = |flag: &str| {
                isa.isa_flags()
                    .iter()
                    .any(|f| f.name == flag && f.as_bool() == Some(true))
            };
            assert!(on("has_avx") && on("has_avx2") && on("has_fma"), "{name}");
        }
        let v4 = find("x86_64-v4").unwrap().isa().unwrap();
        assert!(
            v4.isa_flags()
                .iter()
                .any(|f| f.name == "has_avx512vnni" && f.as_bool() == Some(true))
        );
        let base = find("x86_64-unknown-linux-gnu").unwrap().isa().unwrap();
        assert!(
            base.isa_flags()
                .iter()
                .all(|f| f.name != "has_avx" || f.as_bool() == Some(false))
        );
    }

    #[test]
    fn find_by_name_triple_and_host() {
        assert_eq!(find("x86_64-v3").unwrap().name, "x86_64-v3");
        assert_eq!(
            find("riscv64gc-unknown-linux-gnu").unwrap().name,
            "riscv64gc-unknown-linux-gnu"
        );
        assert_eq!(find("host").unwrap().triple, host_triple());
        assert_eq!(
            find("aarch64-linux-gnu").unwrap().name,
            "aarch64-unknown-linux-gnu"
        );
    }

    #[test]
    fn unknown_target_lists_the_profiles() {
        let e = find("pdp11").unwrap_err();
        assert!(e.starts_with("unknown target 'pdp11'"), "{e}");
        for p in profiles() {
            assert!(e.contains(&p.name), "{e}");
        }
        assert!(!e.contains('\n'));
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let e = parse_profile("x.toml", "name = 1").unwrap_err();
        assert!(e.starts_with("x.toml: ") && !e.contains('\n'), "{e}");
        let e = parse_profile(
            "y.toml",
            "name='a'\ntriple='nonsense-x-y-z-w'\ndescription='d'",
        )
        .unwrap_err();
        assert!(e.starts_with("y.toml: triple"), "{e}");
        let e = parse_profile(
            "z.toml",
            "name='a'\ntriple='aarch64-unknown-none'\ndescription='d'",
        )
        .unwrap_err();
        assert!(e.contains("no object format"), "{e}");
    }
}
