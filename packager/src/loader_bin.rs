//! The loader that heads every output: `--loader PATH` / `OCI2BIN_LOADER`, else the one embedded
//! at build time (see build.rs).

use std::borrow::Cow;
use std::path::Path;

use loader::format::{elf_info, FormatError};

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/embedded_loader.rs"));

/// The loader bytes to use: the given file, else the embedded one.
pub fn resolve(path: Option<&Path>) -> Result<Cow<'static, [u8]>> {
    let (bytes, shown) = match path {
        Some(p) => (
            Cow::Owned(std::fs::read(p).map_err(Error::io("cannot read loader", p))?),
            p.to_path_buf(),
        ),
        None => (
            Cow::Borrowed(EMBEDDED.ok_or(Error::NoLoader)?),
            "(embedded)".into(),
        ),
    };
    let info = elf_info(&bytes).map_err(|source| Error::BadLoader {
        path: shown.clone(),
        source,
    })?;
    if info.has_interp {
        return Err(Error::BadLoader {
            path: shown,
            source: FormatError::BadElf("it needs an interpreter (PT_INTERP): build it static"),
        });
    }
    Ok(bytes)
}

/// Whether this build carries a loader.
pub fn embedded() -> bool {
    EMBEDDED.is_some()
}
