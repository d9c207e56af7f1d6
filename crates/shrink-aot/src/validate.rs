//! Checks of a written object or archive against the rules of the kernel ABI, by reading it back
//! with the `object` crate: the format and architecture of the target, no undefined symbol (the
//! code imports nothing, not even libc), no writable or zero-initialized data (weights live in
//! read-only data; the kernel keeps no state), and no global symbol outside `PREFIX_`. These are
//! what make two models linkable into one program and a kernel callable from several threads.
use crate::AotError;
use object::read::archive::ArchiveFile;
use object::{
    Architecture, BinaryFormat, Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind,
};
use shrink_target::TargetProfile;

/// What an object contains, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub format: String,
    pub architecture: String,
    /// Global symbols, without the platform's leading underscore (Mach-O).
    pub globals: Vec<String>,
    /// Bytes of executable sections.
    pub text_bytes: u64,
    /// Bytes of read-only data sections.
    pub rodata_bytes: u64,
}

fn invalid(what: String) -> AotError {
    AotError::Invalid(what)
}

/// The object format and architecture `profile` must produce.
pub fn expected_format(profile: &TargetProfile) -> (BinaryFormat, Architecture) {
    let t = profile.target_triple();
    let format = match t.binary_format {
        target_lexicon::BinaryFormat::Macho => BinaryFormat::MachO,
        target_lexicon::BinaryFormat::Coff => BinaryFormat::Coff,
        _ => BinaryFormat::Elf,
    };
    let arch = match t.architecture {
        target_lexicon::Architecture::X86_64 => Architecture::X86_64,
        target_lexicon::Architecture::Aarch64(_) => Architecture::Aarch64,
        target_lexicon::Architecture::Riscv64(_) => Architecture::Riscv64,
        _ => Architecture::Unknown,
    };
    (format, arch)
}

/// Checks one object written for `profile` with symbol prefix `prefix`.
pub fn check_object(
    bytes: &[u8],
    profile: &TargetProfile,
    prefix: &str,
) -> Result<ObjectFacts, AotError> {
    let file =
        object::File::parse(bytes).map_err(|e| invalid(format!("unreadable object: {e}")))?;
    let (format, arch) = expected_format(profile);
    if file.format() != format || file.architecture() != arch {
        return Err(invalid(format!(
            "a {:?} {:?} object, target {} wants {format:?} {arch:?}",
            file.format(),
            file.architecture(),
            profile.name
        )));
    }
    let mut facts = ObjectFacts {
        format: format!("{format:?}"),
        architecture: format!("{arch:?}"),
        ..Default::default()
    };
    // Mach-O prefixes every C symbol with '_'.
    let mangle = if format == BinaryFormat::MachO {
        "_"
    } else {
        ""
    };
    let wanted = format!("{mangle}{prefix}_");
    for sym in file.symbols() {
        let name = sym.name().unwrap_or("<unnamed>");
        if matches!(sym.kind(), SymbolKind::File | SymbolKind::Section) || name.is_empty() {
            continue;
        }
        if sym.is_undefined() {
            return Err(invalid(format!("the object imports '{name}'")));
        }
        if sym.is_global() {
            if !name.starts_with(&wanted) {
                return Err(invalid(format!(
                    "global symbol '{name}' lacks the prefix '{prefix}_'"
                )));
            }
            facts.globals.push(name[mangle.len()..].to_string());
        }
    }
    for s in file.sections() {
        let size = s.size();
        match s.kind() {
            SectionKind::Text => facts.text_bytes += size,
            SectionKind::ReadOnlyData | SectionKind::ReadOnlyString => facts.rodata_bytes += size,
            SectionKind::Data
            | SectionKind::UninitializedData
            | SectionKind::Tls
            | SectionKind::UninitializedTls
            | SectionKind::Common
            | SectionKind::ReadOnlyDataWithRel
                if size > 0 =>
            {
                return Err(invalid(format!(
                    "section '{}' is writable data ({size} bytes)",
                    s.name().unwrap_or("?")
                )));
            }
            _ => {}
        }
    }
    if facts.globals != [format!("{prefix}_run")] {
        return Err(invalid(format!(
            "global symbols {:?}, expected exactly {prefix}_run",
            facts.globals
        )));
    }
    Ok(facts)
}

/// Checks an archive: a symbol index that names `PREFIX_run` for each prefix, and every member a
/// valid object for `profile` under one of `prefixes`.
pub fn check_archive(
    bytes: &[u8],
    profile: &TargetProfile,
    prefixes: &[&str],
) -> Result<Vec<ObjectFacts>, AotError> {
    let ar = ArchiveFile::parse(bytes).map_err(|e| invalid(format!("unreadable archive: {e}")))?;
    let index: Vec<String> = ar
        .symbols()
        .map_err(|e| invalid(format!("archive symbol index: {e}")))?
        .ok_or_else(|| invalid("the archive has no symbol index".into()))?
        .filter_map(|s| s.ok())
        .map(|s| String::from_utf8_lossy(s.name()).into_owned())
        .collect();
    let (format, _) = expected_format(profile);
    let mangle = if format == BinaryFormat::MachO {
        "_"
    } else {
        ""
    };
    for p in prefixes {
        let run = format!("{mangle}{p}_run");
        if !index.contains(&run) {
            return Err(invalid(format!(
                "the archive index lacks {run} (has {index:?})"
            )));
        }
    }
    let mut facts = vec![];
    for m in ar.members() {
        let m = m.map_err(|e| invalid(format!("archive member: {e}")))?;
        let data = m
            .data(bytes)
            .map_err(|e| invalid(format!("archive member: {e}")))?;
        let last = prefixes
            .iter()
            .map(|p| check_object(data, profile, p))
            .find(|r| r.is_ok())
            .unwrap_or_else(|| {
                check_object(data, profile, prefixes.first().copied().unwrap_or(""))
            });
        facts.push(last?);
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as Writer, Symbol, SymbolSection};
    use object::{Endianness, SymbolFlags, SymbolScope};

    /// An x86-64 ELF object with `m_run` in .text, then `extra` applied.
    fn elf(extra: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = w.section_id(object::write::StandardSection::Text);
        let off = w.append_section_data(text, &[0xc3], 16);
        w.add_symbol(Symbol {
            name: b"m_run".to_vec(),
            value: off,
            size: 1,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        extra(&mut w);
        w.write().unwrap()
    }

    fn host() -> TargetProfile {
        shrink_target::find("x86_64-unknown-linux-gnu").unwrap()
    }

    fn symbol(name: &str, section: SymbolSection, scope: SymbolScope) -> Symbol {
        Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Data,
            scope,
            weak: false,
            section,
            flags: SymbolFlags::None,
        }
    }

    #[test]
    fn a_clean_object_passes() {
        let facts = check_object(&elf(|_| {}), &host(), "m").unwrap();
        assert_eq!(facts.globals, ["m_run"]);
        assert_eq!(facts.text_bytes, 1);
    }

    #[test]
    fn each_broken_rule_is_refused() {
        let import = elf(|w| {
            w.add_symbol(symbol(
                "memcpy",
                SymbolSection::Undefined,
                SymbolScope::Unknown,
            ));
        });
        let e = check_object(&import, &host(), "m").unwrap_err().to_string();
        assert!(e.contains("imports 'memcpy'"), "{e}");
        let data = elf(|w| {
            let d = w.section_id(object::write::StandardSection::Data);
            w.append_section_data(d, &[1, 2, 3, 4], 4);
        });
        let e = check_object(&data, &host(), "m").unwrap_err().to_string();
        assert!(e.contains("writable data"), "{e}");
        let global = elf(|w| {
            let r = w.section_id(object::write::StandardSection::ReadOnlyData);
            w.append_section_data(r, &[0; 8], 8);
            w.add_symbol(symbol(
                "weights",
                SymbolSection::Section(r),
                SymbolScope::Dynamic,
            ));
        });
        let e = check_object(&global, &host(), "m").unwrap_err().to_string();
        assert!(e.contains("'weights' lacks the prefix"), "{e}");
        let e = check_object(&elf(|_| {}), &host(), "other")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'m_run' lacks the prefix 'other_'"), "{e}");
        let aarch64 = shrink_target::find("aarch64-unknown-linux-gnu").unwrap();
        let e = check_object(&elf(|_| {}), &aarch64, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wants Elf Aarch64"), "{e}");
        let e = check_object(b"not an object", &host(), "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unreadable object"), "{e}");
    }

    #[test]
    fn archives_need_an_index_naming_run() {
        let o = elf(|_| {});
        let a = crate::archive(&[("m.o".into(), o)]).unwrap();
        assert_eq!(check_archive(&a, &host(), &["m"]).unwrap().len(), 1);
        let e = check_archive(&a, &host(), &["m", "n"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("lacks n_run"), "{e}");
    }
}
