//! Static libraries: `ar` archives with a symbol index, so linkers find `PREFIX_run` without
//! `ranlib`. GNU format for ELF members, Darwin (BSD) format for Mach-O ones — what each
//! platform's linker expects. Member headers carry no time stamps or owners (reproducible).
use crate::AotError;
use ar_archive_writer::{ArchiveKind, DEFAULT_OBJECT_READER, NewArchiveMember};
use object::BinaryFormat;

/// The archive format for members of this object format.
pub fn archive_kind(format: BinaryFormat) -> ArchiveKind {
    match format {
        BinaryFormat::MachO => ArchiveKind::Darwin,
        _ => ArchiveKind::Gnu,
    }
}

/// An archive of `members` (`(file name, object bytes)`), its format chosen by the first
/// member's object format.
pub fn archive(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>, AotError> {
    let format = members
        .first()
        .and_then(|(_, bytes)| object::File::parse(bytes.as_slice()).ok())
        .map_or(BinaryFormat::Elf, |f| f.format());
    let new: Vec<NewArchiveMember> = members
        .iter()
        .map(|(name, bytes)| {
            NewArchiveMember::new(bytes.as_slice(), &DEFAULT_OBJECT_READER, name.clone())
        })
        .collect();
    let mut out = std::io::Cursor::new(Vec::new());
    ar_archive_writer::write_archive_to_stream(&mut out, &new, archive_kind(format), false, None)
        .map_err(|e| AotError::Invalid(format!("writing the archive: {e}")))?;
    Ok(out.into_inner())
}
