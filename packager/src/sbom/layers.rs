//! The few files an SBOM needs, read straight from an image's layers: each layer is streamed
//! once (gzip, zstd or plain tar), and only the paths [`wanted`] names are kept, with OCI
//! whiteouts, opaque directories and type changes applied as a union mount would. Nothing is
//! written to disk.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

use super::Error;

/// A file bigger than this is refused: no package database comes near it, and a hostile layer
/// must not make us hold gigabytes.
pub const MAX_FILE: u64 = 512 << 20;

/// What the merged view holds at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { data: Vec<u8>, layer: usize },
    Symlink { target: String, layer: usize },
}

/// The wanted part of the merged filesystem after some layers.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub nodes: BTreeMap<String, Node>,
}

impl View {
    /// The file at `path`, following symlinks (at most 8) on the path's last component and on
    /// parent directories the view knows of.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        let mut p = normalize(path)?;
        for _ in 0..8 {
            match self.nodes.get(&p) {
                Some(Node::File { data, .. }) => return Some(data),
                Some(Node::Symlink { target, .. }) => p = resolve_link(&p, target),
                None => p = self.through_parent_link(&p)?,
            }
        }
        None
    }

    /// `p` with its deepest symlinked parent directory replaced by the link's target.
    fn through_parent_link(&self, p: &str) -> Option<String> {
        let mut end = p.len();
        while let Some(i) = p[..end].rfind('/') {
            if let Some(Node::Symlink { target, .. }) = self.nodes.get(&p[..i]) {
                let dir = resolve_link(&p[..i], target);
                return normalize(&format!("{dir}/{}", &p[i + 1..]));
            }
            end = i;
        }
        None
    }

    /// The files directly inside `dir` (not following links), with their names.
    pub fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> {
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter_map(move |(k, v)| {
                let name = &k[dir.len() + 1..];
                (!name.contains('/')).then_some((name, v))
            })
    }

    /// The layer that last wrote `path` (not following links).
    pub fn layer_of(&self, path: &str) -> Option<usize> {
        self.nodes.get(path).map(|n| match n {
            Node::File { layer, .. } | Node::Symlink { layer, .. } => *layer,
        })
    }

    /// Removes `path` and everything below it.
    fn remove_tree(&mut self, path: &str) -> bool {
        let below = format!("{path}/");
        let doomed: Vec<String> = self
            .nodes
            .range(path.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(path))
            .filter(|k| *k == path || k.starts_with(&below))
            .cloned()
            .collect();
        for k in &doomed {
            self.nodes.remove(k);
        }
        !doomed.is_empty()
    }

    /// Removes what lower layers put below `dir` (an opaque directory).
    fn remove_lower_below(&mut self, dir: &str, layer: usize) -> bool {
        let below = format!("{dir}/");
        let before = self.nodes.len();
        self.nodes
            .retain(|k, n| !k.starts_with(&below) || node_layer(n) >= layer);
        before != self.nodes.len()
    }
}

fn node_layer(n: &Node) -> usize {
    match n {
        Node::File { layer, .. } | Node::Symlink { layer, .. } => *layer,
    }
}

/// A tar path made relative and clean (`./a//b/` → `a/b`); `None` for a path that climbs out.
pub fn normalize(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// Where a symlink at `at` pointing to `target` leads, inside the root (absolute targets are
/// taken from the image's root, as the container sees them; `..` stops at the root).
fn resolve_link(at: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        match at.rfind('/') {
            Some(i) => format!("{}/{target}", &at[..i]),
            None => target.to_string(),
        }
    };
    crate::source::tarindex::normalize(&joined)
}

/// Which paths the scan keeps: package databases, Debian copyright files and the package doc
/// directories that are links, and os-release.
pub fn wanted(path: &str) -> bool {
    const EXACT: &[&str] = &[
        "var/lib/dpkg/status",
        "lib/apk/db/installed",
        "usr/lib/apk/db/installed",
        "etc/os-release",
        "usr/lib/os-release",
    ];
    if EXACT.contains(&path) {
        return true;
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        return !name.contains('/');
    }
    if let Some(rest) = path.strip_prefix("usr/share/doc/") {
        return match rest.split_once('/') {
            None => true,
            Some((_, f)) => f == "copyright",
        };
    }
    for dir in super::rpm::DB_DIRS {
        if let Some(name) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            return super::rpm::DB_FILES.contains(&name);
        }
    }
    false
}

/// A layer's tar stream, decompressing gzip or zstd by their magic numbers (media types lie).
pub fn decompress<'a, R: BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(r).map_err(io::Error::other)?)
    } else {
        Box::new(r)
    })
}

/// Applies one layer's tar stream to `view`; returns the paths it changed (written or removed).
pub fn apply(
    view: &mut View,
    layer: usize,
    tar: impl Read,
    digest: &str,
) -> Result<Vec<String>, Error> {
    let bad = |e: io::Error| Error::Layer {
        digest: digest.to_string(),
        source: e,
    };
    let mut changed = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize(&raw) else {
            return Err(bad(io::Error::other(format!(
                "entry `{raw}` climbs out of the root"
            ))));
        };
        if path.is_empty() {
            continue;
        }
        let (dir, name) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            if view.remove_lower_below(dir, layer) {
                changed.push(dir.to_string());
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let victim = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            if view.remove_tree(&victim) {
                changed.push(victim);
            }
            continue;
        }
        let kind = entry.header().entry_type();
        // Whatever replaces a path hides what lower layers had at and below it; a directory
        // only replaces a non-directory.
        if kind.is_dir() {
            if view.nodes.remove(&path).is_some() {
                changed.push(path.clone());
            }
            continue;
        }
        if view.remove_tree(&path) {
            changed.push(path.clone());
        }
        if !wanted(&path) {
            continue;
        }
        let node = if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Node::Symlink { target, layer }
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .and_then(|b| normalize(&String::from_utf8_lossy(&b)));
            match target.and_then(|t| view.nodes.get(&t).cloned()) {
                Some(Node::File { data, .. }) => Node::File { data, layer },
                _ => continue,
            }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.size();
            if size > MAX_FILE {
                return Err(Error::TooBig {
                    path: format!("/{path}"),
                    size,
                    limit: MAX_FILE,
                });
            }
            // The header's size is a claim: grow as bytes arrive, not on its word.
            let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
            entry.read_to_end(&mut data).map_err(bad)?;
            Node::File { data, layer }
        } else {
            continue;
        };
        view.nodes.insert(path.clone(), node);
        changed.push(path);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) if c.starts_with("->") => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    h.set_mode(0o777);
                    b.append_link(&mut h, path, &c[2..]).unwrap();
                }
                Some(c) => {
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn view(layers: &[Vec<u8>]) -> View {
        let mut v = View::default();
        for (i, l) in layers.iter().enumerate() {
            apply(&mut v, i, &l[..], "sha256:test").unwrap();
        }
        v
    }

    #[test]
    fn keeps_only_wanted_files_and_the_layer_that_wrote_them() {
        let v = view(&[
            layer(&[
                ("var/lib/dpkg/", None),
                ("var/lib/dpkg/status", Some("a")),
                ("etc/passwd", Some("root")),
            ]),
            layer(&[("./var/lib/dpkg/status", Some("b"))]),
        ]);
        assert_eq!(v.file("var/lib/dpkg/status"), Some(&b"b"[..]));
        assert_eq!(v.layer_of("var/lib/dpkg/status"), Some(1));
        assert_eq!(v.file("etc/passwd"), None);
    }

    #[test]
    fn a_whiteout_deletes_a_file_and_an_opaque_dir_hides_lower_contents() {
        let v = view(&[
            layer(&[
                ("var/lib/dpkg/status.d/a", Some("A")),
                ("var/lib/dpkg/status.d/b", Some("B")),
                ("usr/share/doc/x/copyright", Some("X")),
            ]),
            layer(&[
                ("var/lib/dpkg/status.d/.wh.a", Some("")),
                ("usr/share/doc/.wh..wh..opq", Some("")),
                ("usr/share/doc/y/copyright", Some("Y")),
            ]),
        ]);
        let names: Vec<_> = v.children("var/lib/dpkg/status.d").map(|c| c.0).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(v.file("usr/share/doc/x/copyright"), None);
        assert_eq!(v.file("usr/share/doc/y/copyright"), Some(&b"Y"[..]));
    }

    #[test]
    fn a_whited_out_directory_takes_its_contents_along() {
        let v = view(&[
            layer(&[("lib/apk/db/installed", Some("P:x"))]),
            layer(&[("lib/.wh.apk", Some(""))]),
        ]);
        assert!(v.nodes.is_empty());
    }

    #[test]
    fn symlinks_are_followed_for_the_file_and_its_parent_directories() {
        let v = view(&[layer(&[
            ("usr/lib/os-release", Some("ID=debian")),
            ("etc/os-release", Some("->../usr/lib/os-release")),
            ("usr/share/doc/libfoo", Some("->foo-common")),
            ("usr/share/doc/foo-common/copyright", Some("C")),
        ])]);
        assert_eq!(v.file("etc/os-release"), Some(&b"ID=debian"[..]));
        assert_eq!(v.file("usr/share/doc/libfoo/copyright"), Some(&b"C"[..]));
    }

    #[test]
    fn a_symlink_loop_ends() {
        let v = view(&[layer(&[
            ("etc/os-release", Some("->/usr/lib/os-release")),
            ("usr/lib/os-release", Some("->/etc/os-release")),
        ])]);
        assert_eq!(v.file("etc/os-release"), None);
    }

    #[test]
    fn an_entry_climbing_out_is_refused() {
        // Written by hand: the tar crate's builder refuses `..` itself.
        let mut h = tar::Header::new_gnu();
        let name = b"../../etc/os-release";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let raw = b.into_inner().unwrap();
        let err = apply(&mut View::default(), 0, &raw[..], "sha256:bad").unwrap_err();
        assert!(err.to_string().contains("climbs out"), "{err}");
    }
}
