//! shrink-aot: a lowered [`Program`] written ahead of time for a [`TargetProfile`] — a
//! relocatable object (ELF or Mach-O), a static library around it, and the C header that states
//! the kernel ABI. The object is made by the same [`shrink_codegen::define`] the JIT uses; only
//! the Cranelift module differs (`cranelift_object::ObjectModule` here). Every object is checked
//! after it is written (see [`validate`]): nothing imported, no writable data, only
//! `PREFIX_`-named global symbols, the target's format and architecture.
mod archive;
mod header;
pub mod validate;

pub use archive::{archive, archive_kind};
pub use header::{SCRATCH_ALIGN, c_identifier_from, check_prefix, header};
pub use shrink_codegen::{DefineOptions, Defined, Listing};
pub use shrink_target::TargetProfile;
pub use validate::{ObjectFacts, check_archive, check_object};

use cranelift_module::{Linkage, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use shrink_codegen::{CodegenError, Program};

/// Why an object could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AotError {
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// The target profile cannot produce an ISA or an object format.
    #[error("{0}")]
    Target(String),
    /// `--name` is not usable as a C identifier prefix.
    #[error("{0}")]
    Prefix(String),
    /// The written object or archive breaks one of the rules of the kernel ABI (a bug).
    #[error("invalid output: {0}")]
    Invalid(String),
}

/// An object file, what [`shrink_codegen::define`] put in it, and what validation read back.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub object: Vec<u8>,
    pub defined: Defined,
    pub facts: ObjectFacts,
}

fn object_module(profile: &TargetProfile, prefix: &str) -> Result<ObjectModule, AotError> {
    let isa = profile.isa().map_err(AotError::Target)?;
    // `default_libcall_names` is only consulted for libcalls, which `define` refuses anyway.
    let builder = ObjectBuilder::new(isa, prefix, default_libcall_names())
        .map_err(|e| AotError::Target(format!("target {}: {e}", profile.name)))?;
    Ok(ObjectModule::new(builder))
}

/// Compiles `p` for `profile` into one object whose only global symbol is `{prefix}_run`,
/// then validates it.
pub fn compile(
    p: &Program,
    profile: &TargetProfile,
    prefix: &str,
    options: DefineOptions,
) -> Result<Compiled, AotError> {
    check_prefix(prefix)?;
    let mut module = object_module(profile, prefix)?;
    let defined = shrink_codegen::define(&mut module, p, prefix, Linkage::Export, options)?;
    let object = module.finish().emit().map_err(|e| {
        AotError::Target(format!("target {}: writing the object: {e}", profile.name))
    })?;
    let facts = check_object(&object, profile, prefix)?;
    Ok(Compiled {
        object,
        defined,
        facts,
    })
}

/// The object file of `p` for `profile` (see [`compile`]).
pub fn object(p: &Program, profile: &TargetProfile, prefix: &str) -> Result<Vec<u8>, AotError> {
    Ok(compile(p, profile, prefix, DefineOptions::default())?.object)
}

/// The Cranelift IR or disassembly of `p` as compiled for `profile` (`--emit clif|asm`).
pub fn listing(
    p: &Program,
    profile: &TargetProfile,
    prefix: &str,
    kind: Listing,
) -> Result<String, AotError> {
    check_prefix(prefix)?;
    let mut module = object_module(profile, prefix)?;
    let options = DefineOptions {
        listing: Some(kind),
        progress: None,
    };
    Ok(shrink_codegen::define(&mut module, p, prefix, Linkage::Export, options)?.listing)
}
