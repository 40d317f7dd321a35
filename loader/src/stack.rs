//! An image's root filesystem as overlayfs sees it: directories stacked topmost first (one merged
//! tree, or the image's layers from the layer store), with whiteouts and opaque directories in
//! the forms overlayfs reads with its `userxattr` option.
//!
//! [`Stack::lookup`] finds what a path is in the stack before it is mounted (the image's
//! `/etc/passwd`, the user-switching programs, the directories per-run files go into), with the
//! kernel's rules: the topmost layer that has a name decides; a whiteout hides the name in the
//! layers below, a non-directory hides everything below it, directories merge down to the first
//! opaque one. Symlinks on the way are not followed (a link could lead out of the image).

use crate::sys::fs as sys;
use std::ffi::{CString, OsStr};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// The xattr that makes a directory opaque ("y"), or marks one that holds xattr whiteouts ("x").
pub const OPAQUE_XATTR: &std::ffi::CStr = c"user.overlay.opaque";
/// The xattr that makes a zero-size regular file a whiteout (Linux 6.7 and later).
pub const WHITEOUT_XATTR: &std::ffi::CStr = c"user.overlay.whiteout";
/// The prefix of every xattr overlayfs interprets under `userxattr`: an image's own are dropped
/// at extraction (a container never sees them through overlayfs anyway).
pub const OVERLAY_XATTR_PREFIX: &[u8] = b"user.overlay.";

/// Directories stacked into a root filesystem, topmost first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stack(pub Vec<PathBuf>);

impl From<PathBuf> for Stack {
    fn from(p: PathBuf) -> Stack {
        Stack(vec![p])
    }
}

impl From<&str> for Stack {
    fn from(p: &str) -> Stack {
        Stack(vec![p.into()])
    }
}

/// What a name is in a stack.
#[derive(Debug)]
pub enum Found {
    Missing,
    /// A file, symlink or other non-directory: its path in the layer that shows it.
    NonDir(PathBuf, Metadata),
    /// A directory: its paths in the layers that merge into it, topmost first (its attributes
    /// are the first one's).
    Dir(Vec<PathBuf>, Metadata),
}

impl Found {
    pub fn metadata(&self) -> Option<&Metadata> {
        match self {
            Found::Missing => None,
            Found::NonDir(_, m) | Found::Dir(_, m) => Some(m),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Found::Dir(..))
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(sys::EINVAL))
}

/// Whether the xattr `name` of `path` (not followed) holds exactly `want` (`None`: any value).
fn has_xattr(path: &Path, name: &std::ffi::CStr, want: Option<&[u8]>) -> bool {
    let Ok(p) = cpath(path) else {
        return false;
    };
    let mut buf = [0u8; 4];
    match sys::lgetxattr(&p, name, &mut buf) {
        Ok(Some(n)) => want.is_none_or(|w| &buf[..n] == w),
        // ERANGE: longer than any value we look for.
        Ok(None) | Err(_) => false,
    }
}

/// Whether an object found in a layer is a whiteout: a 0/0 character device, or a zero-size
/// regular file with [`WHITEOUT_XATTR`].
pub fn is_whiteout(path: &Path, m: &Metadata) -> bool {
    let ft = m.file_type();
    (ft.is_char_device() && m.rdev() == 0)
        || (ft.is_file() && m.len() == 0 && has_xattr(path, WHITEOUT_XATTR, None))
}

/// Whether a directory in a layer is opaque: the layers below it do not show through.
pub fn is_opaque(path: &Path) -> bool {
    has_xattr(path, OPAQUE_XATTR, Some(b"y"))
}

/// What `name` is inside the merged directory made of `dirs` (topmost first).
pub fn child(dirs: &[PathBuf], name: &OsStr) -> io::Result<Found> {
    let mut merged: Vec<PathBuf> = Vec::new();
    let mut top: Option<Metadata> = None;
    for (i, d) in dirs.iter().enumerate() {
        let p = d.join(name);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if matches!(e.raw_os_error(), Some(sys::ENOENT) | Some(sys::ENOTDIR)) => {
                continue
            }
            Err(e) => return Err(e),
        };
        if !m.is_dir() {
            // Below a directory, a non-directory ends the merge; on top, it is the answer
            // (unless it is a whiteout, which hides everything).
            if top.is_none() && !is_whiteout(&p, &m) {
                return Ok(Found::NonDir(p, m));
            }
            break;
        }
        let last = i + 1 == dirs.len();
        let opaque = !last && is_opaque(&p);
        if top.is_none() {
            top = Some(m);
        }
        merged.push(p);
        if opaque {
            break;
        }
    }
    Ok(match top {
        Some(m) => Found::Dir(merged, m),
        None => Found::Missing,
    })
}

impl Stack {
    /// The directories, topmost first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.0
    }

    /// The directory of a merged tree (the only one), or the topmost layer.
    pub fn top(&self) -> &Path {
        self.0.first().map_or(Path::new(""), |p| p.as_path())
    }

    /// What `rel` (relative to the root; a leading `/` is ignored) is in the stack. Errors other
    /// than a missing name (a layer that cannot be read) count as missing.
    pub fn lookup(&self, rel: impl AsRef<Path>) -> Found {
        let mut dirs = self.0.clone();
        let mut found = None;
        for c in rel.as_ref().components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::RootDir | Component::CurDir => continue,
                Component::ParentDir | Component::Prefix(_) => return Found::Missing,
            };
            if found.is_some() && !matches!(found, Some(Found::Dir(..))) {
                return Found::Missing;
            }
            let f = child(&dirs, name).unwrap_or(Found::Missing);
            match &f {
                Found::Missing => return Found::Missing,
                Found::Dir(d, _) => dirs = d.clone(),
                Found::NonDir(..) => {}
            }
            found = Some(f);
        }
        match found {
            Some(f) => f,
            // The root itself.
            None => match fs::symlink_metadata(self.top()) {
                Ok(m) => Found::Dir(self.0.clone(), m),
                Err(_) => Found::Missing,
            },
        }
    }

    /// The `lowerdir=` value of an overlay mount: the directories, topmost first, with `\`,
    /// `,` and `:` escaped.
    pub fn lowerdir(&self) -> String {
        let mut s = String::new();
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(&escape(d));
        }
        s
    }
}

/// Overlay options escape `\`, `,` and `:` in paths with a backslash.
pub fn escape(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests;
