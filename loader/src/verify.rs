//! `--verify-key PUB.pem`: the file's signature is checked before anything else happens, before
//! the cache is even looked at (so a cache entry of a good file never runs a tampered one: the
//! tampered file stops here).
//!
//! Reading every byte costs ~40 ms on a 60 MB file, too much for every warm start. So once a
//! file has verified, a mark in the cache names it: `verified/<sha256 of what identifies it>`,
//! hashed over the key id, the signature block, the record's sha256 and the file's identity as
//! fstat gives it (device, inode, size, mtime and ctime to the nanosecond). Changing the file in
//! place changes its ctime, which no user can set back; another file in its place has another
//! inode or ctime; so no mark matches a changed file. The marks sit in the user's own cache,
//! under a directory that must be theirs: whoever can write there can already change what runs.

use crate::cache::Locations;
use crate::format::signature::SignatureBlock;
use crate::format::FLAG_SIGNATURE_REQUIRED;
use crate::selfexe::SelfExe;
use crate::trust::{self, PublicKey, TrustError};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fs::{DirBuilder, File, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The marks' directory under the cache root.
pub const VERIFIED: &str = "verified";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("--verify-key {path}: {why}")]
    Key { path: String, why: String },
    #[error("signature check failed (--verify-key {path}): {source}")]
    Failed { path: String, source: TrustError },
    #[error(
        "this file runs only when signed by a key it names (built with --require-signature): \
         {source}"
    )]
    Required { source: TrustError },
}

/// A file built with `--require-signature` (its record names keys, its trailer sets the flag)
/// runs only when one of those keys signed it: checked with no flag at all.
pub fn check_required(me: &SelfExe) -> Result<(), VerifyError> {
    let keys = &me.runtime.trusted_keys;
    if keys.is_empty() && me.trailer.flags & FLAG_SIGNATURE_REQUIRED == 0 {
        return Ok(());
    }
    let fail = |source| VerifyError::Required { source };
    let st = me.file.metadata().map_err(|e| fail(e.into()))?;
    let block = trust::signature_block(&me.file, st.len(), &me.trailer).map_err(fail)?;
    let key = keys
        .iter()
        .filter_map(|k| PublicKey::from_sec1(k).ok())
        .find(|k| k.id() == block.key_id)
        .ok_or_else(|| {
            fail(TrustError::Invalid(format!(
                "signed by key id {}, which it does not name",
                trust::short_id(&block.key_id)
            )))
        })?;
    check_block(me, &st, &key, &block).map_err(fail)
}

/// Checks `me`'s signature against the PEM public key at `key_path`.
pub fn check(me: &SelfExe, key_path: &OsStr) -> Result<(), VerifyError> {
    let path = Path::new(key_path).display().to_string();
    let pem = std::fs::read(key_path).map_err(|e| VerifyError::Key {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let key = PublicKey::from_pem(&pem).map_err(|e| VerifyError::Key {
        path: path.clone(),
        why: e.to_string(),
    })?;
    check_key(me, &key).map_err(|source| VerifyError::Failed { path, source })
}

/// Checks `me`'s signature against `key`, or finds the mark of an earlier check.
pub fn check_key(me: &SelfExe, key: &PublicKey) -> Result<(), TrustError> {
    let st = me.file.metadata()?;
    let block = trust::signature_block(&me.file, st.len(), &me.trailer)?;
    check_block(me, &st, key, &block)
}

/// [`check_key`] with the file's metadata and signature block as read.
fn check_block(
    me: &SelfExe,
    st: &Metadata,
    key: &PublicKey,
    block: &SignatureBlock,
) -> Result<(), TrustError> {
    let mark = mark_path(me, st, key, block);
    if mark.as_ref().is_some_and(|m| m.exists()) {
        return Ok(());
    }
    trust::verify_block(&me.file, &me.trailer, key, block, Some(&me.record))?;
    if let Some(m) = mark {
        // Best effort: without a mark the next start reads the file again.
        let _ = File::create(m);
    }
    Ok(())
}

/// Where the mark of `me` verified by `key` lives, when the cache has a marks directory of
/// ours (made if missing).
fn mark_path(
    me: &SelfExe,
    st: &Metadata,
    key: &PublicKey,
    block: &SignatureBlock,
) -> Option<PathBuf> {
    let dir = Locations::from_env().cache?.join(VERIFIED);
    let m = match std::fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(_) => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .ok()?;
            std::fs::symlink_metadata(&dir).ok()?
        }
    };
    if !m.is_dir() || m.uid() != crate::sys::fs::geteuid() || m.mode() & 0o022 != 0 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(b"oci2bin verified v1\0");
    h.update(key.id());
    // The block's bytes as in the file (it decoded, so it encodes back to them).
    h.update(block.encode());
    h.update(me.trailer.metadata_sha256);
    for v in [
        st.dev(),
        st.ino(),
        st.len(),
        st.mtime() as u64,
        st.mtime_nsec() as u64,
        st.ctime() as u64,
        st.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    let name: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join(name))
}
