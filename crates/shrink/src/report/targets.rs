//! What the model takes on each ahead-of-time ISA: the optimized graph compiled in-process as
//! `shrink compile` does (the profile's codegen options, `shrink_aot::compile`, the object read
//! back), one object per baseline Linux profile of x86-64, AArch64 and RISC-V 64.
use shrink_ir::Graph;

/// The profiles the report compiles for (names under targets/).
pub const REPORT_TARGETS: [&str; 3] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
];

/// One target's object sizes, or why it could not be compiled (one line).
#[derive(Clone, Debug)]
pub struct TargetSize {
    pub target: String,
    pub triple: String,
    /// (code bytes, read-only data bytes) of the object.
    pub sizes: Result<(u64, u64), String>,
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// Compiles `optimized` for every [`REPORT_TARGETS`] profile with symbol prefix `prefix`;
/// without a graph, every target carries `why`.
pub fn target_sizes(
    optimized: Result<&Graph, &str>,
    codegen: &shrink_codegen::CodegenOptions,
    prefix: &str,
) -> Vec<TargetSize> {
    REPORT_TARGETS
        .iter()
        .map(|&name| {
            let profile = shrink_target::find(name);
            let triple = profile
                .as_ref()
                .map_or_else(|_| "?".to_string(), |p| p.triple.clone());
            let sizes = optimized
                .map_err(str::to_string)
                .and_then(|g| {
                    let profile = profile?;
                    let options = crate::options_for_target(codegen, &profile)?;
                    let p = crate::lower_with(g, &options).map_err(one_line)?;
                    let c = shrink_aot::compile(&p, &profile, prefix, Default::default())
                        .map_err(one_line)?;
                    Ok((c.facts.text_bytes, c.facts.rodata_bytes))
                })
                .map_err(one_line);
            TargetSize {
                target: name.to_string(),
                triple,
                sizes,
            }
        })
        .collect()
}
