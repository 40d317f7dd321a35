//! Random access into a tar file: one pass records where every entry's data lies, then blobs are
//! read in place with positional reads (no extraction, no shared seek position).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
enum Kind {
    File { offset: u64, size: u64 },
    Symlink(String),
    Hardlink(String),
}

/// The entries of a tar file, by normalized path.
pub struct TarIndex {
    path: PathBuf,
    file: Arc<File>,
    entries: HashMap<String, Kind>,
}

/// Normalizes an archive path: no leading `./` or `/`, no trailing `/`, no `.` components.
pub fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

impl TarIndex {
    pub fn open(path: &Path) -> Result<TarIndex> {
        let file = File::open(path).map_err(Error::io("cannot open", path))?;
        let read_err = |source: io::Error| Error::IoOther {
            what: format!("reading tar archive {}", path.display()),
            source,
        };
        let mut archive = tar::Archive::new(&file);
        let mut entries = HashMap::new();
        for e in archive.entries_with_seek().map_err(read_err)? {
            let e = e.map_err(read_err)?;
            let name = normalize(&String::from_utf8_lossy(&e.path_bytes()));
            let link = || {
                e.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
            };
            let kind = match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File {
                    offset: e.raw_file_position(),
                    size: e.size(),
                },
                tar::EntryType::Symlink => match link() {
                    Some(l) => Kind::Symlink(l),
                    None => continue,
                },
                tar::EntryType::Link => match link() {
                    Some(l) => Kind::Hardlink(normalize(&l)),
                    None => continue,
                },
                _ => continue,
            };
            // A later entry of the same name wins, as when extracting.
            entries.insert(name, kind);
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            file: Arc::new(file),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a regular file's data lies, following symlinks and hardlinks (as `docker save`
    /// writes for repeated layers).
    pub fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name);
        for _ in 0..16 {
            match self.entries.get(&name)? {
                Kind::File { offset, size } => return Some((*offset, *size)),
                Kind::Hardlink(t) => name = t.clone(),
                Kind::Symlink(t) => {
                    name = if t.starts_with('/') {
                        normalize(t)
                    } else {
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        normalize(&format!("{dir}/{t}"))
                    }
                }
            }
        }
        None
    }

    pub fn contains(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    /// Opens a file of the archive for reading.
    pub fn open_entry(&self, name: &str) -> Result<Section> {
        let (offset, size) = self.locate(name).ok_or_else(|| Error::NotFound {
            what: "archive entry",
            name: format!("{name} in {}", self.path.display()),
        })?;
        Ok(Section {
            file: self.file.clone(),
            offset,
            remaining: size,
        })
    }

    /// Reads a whole (small) file of the archive.
    pub fn read_entry(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (_, size) = self.locate(name).ok_or_else(|| Error::NotFound {
            what: "archive entry",
            name: format!("{name} in {}", self.path.display()),
        })?;
        if size > limit {
            return Err(Error::Invalid(format!(
                "{name} in {} is {size} bytes, more than the {limit} allowed",
                self.path.display()
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open_entry(name)?
            .read_to_end(&mut buf)
            .map_err(|source| Error::IoOther {
                what: format!("reading {name} in {}", self.path.display()),
                source,
            })?;
        Ok(buf)
    }
}

/// A byte range of a file, read with `pread`.
pub struct Section {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
}

impl Section {
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Section {
        Section {
            file,
            offset,
            remaining: len,
        }
    }
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive entry truncated",
            ));
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        assert_eq!(normalize("./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(normalize("/x/./y/"), "x/y");
        assert_eq!(normalize("a/../b"), "b");
    }

    #[test]
    fn reads_entries_in_place_and_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "./one/layer.tar", &b"hello"[..])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "two/layer.tar", "../one/layer.tar")
            .unwrap();
        b.into_inner().unwrap();

        let idx = TarIndex::open(&path).unwrap();
        assert_eq!(idx.read_entry("one/layer.tar", 100).unwrap(), b"hello");
        assert_eq!(idx.read_entry("two/layer.tar", 100).unwrap(), b"hello");
        assert!(idx.read_entry("one/layer.tar", 4).is_err());
        assert!(idx.open_entry("three").is_err());
    }
}
