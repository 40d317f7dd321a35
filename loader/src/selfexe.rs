//! Reading our own file: the trailer at the end of `/proc/self/exe`, then the metadata and
//! runtime record it points at, checked against the trailer's sha256. Three reads, no scan.

use crate::format::{FormatError, Runtime, Trailer, TRAILER_LEN};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The running file, opened, with what its trailer and runtime record say.
#[derive(Debug)]
pub struct SelfExe {
    pub file: File,
    pub trailer: Trailer,
    pub runtime: Runtime,
    /// The metadata and runtime record as read (the trailer's `hashed()` span): what a
    /// signature check covers.
    pub record: Vec<u8>,
}

#[derive(Debug)]
pub enum SelfExeError {
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    Format(FormatError),
}

impl fmt::Display for SelfExeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelfExeError::Io { what, path, source } => write!(f, "{what} {path}: {source}"),
            SelfExeError::Format(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SelfExeError {}

impl From<FormatError> for SelfExeError {
    fn from(e: FormatError) -> Self {
        SelfExeError::Format(e)
    }
}

/// Opens `/proc/self/exe` and reads it.
pub fn open() -> Result<SelfExe, SelfExeError> {
    open_path(Path::new("/proc/self/exe"))
}

/// Opens an oci2bin file at `path` and reads its trailer and runtime record.
pub fn open_path(path: &Path) -> Result<SelfExe, SelfExeError> {
    let io_err = |what, source| SelfExeError::Io {
        what,
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(|e| io_err("open", e))?;
    let len = file.metadata().map_err(|e| io_err("stat", e))?.len();
    if len < TRAILER_LEN as u64 {
        return Err(FormatError::NoTrailer.into());
    }
    let mut tail = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut tail, len - TRAILER_LEN as u64)
        .map_err(|e| io_err("read", e))?;
    let trailer = Trailer::decode(&tail, len)?;
    let hashed = trailer.hashed();
    let mut record = vec![0u8; hashed.len as usize];
    file.read_exact_at(&mut record, hashed.offset)
        .map_err(|e| io_err("read", e))?;
    trailer.verify_hashed(&record)?;
    let runtime = Runtime::decode(&record[trailer.metadata.len as usize..])?;
    Ok(SelfExe {
        file,
        trailer,
        runtime,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Span, FORMAT_MAJOR, FORMAT_MINOR};
    use sha2::{Digest, Sha256};

    fn file_with(runtime: &Runtime, corrupt: bool) -> tempfile::NamedTempFile {
        let mut bytes = vec![0u8; 1024]; // stands in for head + tar
        let meta = b"{\"name\":\"x\"}".to_vec();
        let rec = runtime.encode();
        let meta_at = bytes.len() as u64;
        bytes.extend_from_slice(&meta);
        bytes.extend_from_slice(&rec);
        let mut hashed = meta.clone();
        hashed.extend_from_slice(&rec);
        let t = Trailer {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            flags: 0,
            tar: Span::new(0, 1024),
            metadata: Span::new(meta_at, meta.len() as u64),
            runtime: Span::new(meta_at + meta.len() as u64, rec.len() as u64),
            signature: Span::default(),
            metadata_sha256: Sha256::digest(&hashed).into(),
        };
        if corrupt {
            let at = bytes.len() - 3;
            bytes[at] ^= 1;
        }
        bytes.extend_from_slice(&t.encode());
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &bytes).unwrap();
        f
    }

    fn runtime() -> Runtime {
        Runtime {
            image_id: format!("sha256:{}", "a".repeat(64)),
            name: "x:1".into(),
            cmd: Some(vec!["sh".into()]),
            ..Runtime::default()
        }
    }

    #[test]
    fn reads_the_runtime_record_through_the_trailer() {
        let f = file_with(&runtime(), false);
        assert_eq!(open_path(f.path()).unwrap().runtime, runtime());
    }

    #[test]
    fn a_tampered_record_is_refused() {
        let f = file_with(&runtime(), true);
        let e = open_path(f.path()).unwrap_err();
        assert!(
            matches!(e, SelfExeError::Format(FormatError::MetadataDigest)),
            "{e}"
        );
    }

    #[test]
    fn a_plain_binary_has_no_trailer() {
        let e = open_path(Path::new("/bin/sh")).unwrap_err();
        assert!(
            matches!(e, SelfExeError::Format(FormatError::NoTrailer)),
            "{e}"
        );
    }
}
