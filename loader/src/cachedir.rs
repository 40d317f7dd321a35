//! The cache's naming rules, shared by the loader (which fills and uses the cache) and the
//! packager (`oci2bin cache ls|rm|prune`). Pure: no I/O, no policy.
//!
//! Layout under the cache root (`$XDG_CACHE_HOME/oci2bin`, else `$HOME/.cache/oci2bin`):
//! ```text
//! rootfs/<key>-x2   a merged tree (all layers applied in one directory), published whole by
//!                   rename(2)
//! rootfs/<key>-s1   a stacked entry: the image's root is the overlay of its layers in `layers/`;
//!                   the directory holds `layers`, their names (bottom first, one a line), and
//!                   maybe `fix/`, a small layer stacked on top (see `cache::stackable`); it is
//!                   published after all of them, once they are known to stack exactly as the
//!                   merged tree would be
//! meta/<key>-x2|s1  one line per image that used the entry ("<image id> <name>"); every run holds
//!                   flock(LOCK_SH) on it while it runs, and its mtime is the entry's last use
//! layers/<lkey>-l1  one layer, extracted alone: `tree/` (whiteouts and opaque directories as
//!                   overlayfs reads them) and `info` (see [`crate::extract::LayerInfo`]); shared
//!                   by every image that has the layer
//! locks/<key>.lock  flock(LOCK_EX) by the one process extracting the entry (or the layer)
//! tmp/<key>-<rand>  staging trees being extracted
//! mnt/              empty; each run mounts its tmpfs here in its own mount namespace
//! volumes/NAME      a named volume (`-v NAME:/path`); `oci2bin volume` manages them
//! volumes/.NAME.lock  flock(LOCK_SH) by every run that mounts NAME; `volume rm` takes LOCK_EX
//! overlay-probe     what the kernel's overlayfs does with our whiteouts (see `cache::probe`)
//! ```
//! Private extractions (when the cache cannot be used) live in `$TMPDIR/oci2bin-<key12>-<rand>/`
//! with a `.lock` file that the run holds with flock(LOCK_EX).

use crate::format::LayerRef;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::PathBuf;

pub const ROOTFS: &str = "rootfs";
pub const META: &str = "meta";
pub const LOCKS: &str = "locks";
pub const TMP: &str = "tmp";
pub const MNT: &str = "mnt";
pub const LAYERS: &str = "layers";
/// Every subdirectory of the cache root.
pub const SUBDIRS: [&str; 6] = [ROOTFS, META, LOCKS, TMP, MNT, LAYERS];
/// Suffix of merged cache entries (and their meta files): bump it whenever extraction semantics
/// or the key change, so old trees are never used (`oci2bin cache prune` removes them).
pub const ENTRY_SUFFIX: &str = "-x2";
/// Suffix of stacked entries (and their meta files), bumped as [`ENTRY_SUFFIX`] is.
pub const STACK_SUFFIX: &str = "-s1";
/// Suffix of layer directories in `layers/`, bumped whenever a layer's extraction changes.
pub const LAYER_SUFFIX: &str = "-l1";
/// In a stacked entry: the names of its layers, bottom first; and, when some directories need
/// other attributes than their topmost layer gives them, the fix layer stacked above them all.
pub const STACK_LIST: &str = "layers";
pub const STACK_FIX: &str = "fix";
/// In a layer directory: the tree, and what its extraction found.
pub const LAYER_TREE: &str = "tree";
pub const LAYER_INFO: &str = "info";
/// In the cache root: the result of the overlay probe.
pub const PROBE: &str = "overlay-probe";
pub const LOCK_SUFFIX: &str = ".lock";
/// Prefix of private extraction directories in the temporary directory.
pub const PRIVATE_PREFIX: &str = "oci2bin-";
/// The lock file inside a private extraction directory.
pub const PRIVATE_LOCK: &str = ".lock";

/// Named volumes, under the cache root.
pub const VOLUMES: &str = "volumes";

/// Docker's rule for volume names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so none starts with a dot).
pub fn valid_volume_name(n: &[u8]) -> bool {
    n.len() >= 2
        && n[0].is_ascii_alphanumeric()
        && n.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The lock file of volume `name`, beside it in `volumes/`.
pub fn volume_lock(name: &str) -> String {
    format!(".{name}{LOCK_SUFFIX}")
}

/// Length of a key: lowercase hex of a sha256.
pub const KEY_LEN: usize = 64;

/// The cache key of a root filesystem: sha256 over the ordered layer digests only, so images that
/// differ in their config alone share one tree.
pub fn key(layers: &[LayerRef]) -> String {
    key_mapped(layers, None)
}

/// The key of a root filesystem extracted with file owners under an id map (`map` is
/// [`crate::subid::map_text`] of the uid and gid maps): a different entry than the single-uid
/// one of the same layers, and one per map, since the host owners of its files differ.
pub fn key_mapped(layers: &[LayerRef], map: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(b"oci2bin rootfs v2\n");
    if let Some(m) = map {
        h.update(b"mapped ");
        h.update(m.as_bytes());
        h.update(b"\n");
    }
    for l in layers {
        h.update(b"sha256:");
        h.update(hex(&l.sha256).as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// The key of one layer in `layers/`: sha256 over its digest (and the id map, as in
/// [`key_mapped`]), in a domain of its own so it never names a merged entry.
pub fn layer_key(layer: &LayerRef, map: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(b"oci2bin layer v1\n");
    if let Some(m) = map {
        h.update(b"mapped ");
        h.update(m.as_bytes());
        h.update(b"\n");
    }
    h.update(b"sha256:");
    h.update(hex(&layer.sha256).as_bytes());
    h.update(b"\n");
    hex(&h.finalize())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Whether `s` has the shape of a key (64 lowercase hex digits).
pub fn is_key(s: &str) -> bool {
    s.len() == KEY_LEN && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The name of an entry (in `rootfs/`) and of its meta file (in `meta/`).
pub fn entry_name(key: &str) -> String {
    format!("{key}{ENTRY_SUFFIX}")
}

/// The name of a stacked entry (in `rootfs/`) and of its meta file (in `meta/`).
pub fn stack_name(key: &str) -> String {
    format!("{key}{STACK_SUFFIX}")
}

/// The name of a layer directory (in `layers/`).
pub fn layer_name(layer_key: &str) -> String {
    format!("{layer_key}{LAYER_SUFFIX}")
}

/// Whether an entry suffix is one the loader of this version uses (merged or stacked).
pub fn is_current_suffix(suffix: &str) -> bool {
    suffix == ENTRY_SUFFIX || suffix == STACK_SUFFIX
}

/// The name of an entry's extraction lock (in `locks/`).
pub fn lock_name(key: &str) -> String {
    format!("{key}{LOCK_SUFFIX}")
}

/// Splits an entry name into key and suffix: `("<key>", "-x2")`. `None` for names that are no
/// entry of any format.
pub fn split_entry_name(name: &str) -> Option<(&str, &str)> {
    let (key, _) = name.split_once('-')?;
    is_key(key).then(|| name.split_at(KEY_LEN))
}

/// The key a staging tree (`tmp/<key>-<rand>`) belongs to.
pub fn staging_key(name: &str) -> Option<&str> {
    split_entry_name(name).map(|(k, _)| k)
}

/// The name of a private extraction directory.
pub fn private_name(key: &str, rand: &str) -> String {
    format!("{PRIVATE_PREFIX}{}-{rand}", &key[..key.len().min(12)])
}

/// One line of a meta file: `<image id> <name>\n` (line breaks in the name become `?`).
pub fn meta_line(image_id: &str, name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c == '\n' || c == '\r' { '?' } else { c })
        .collect();
    format!("{image_id} {name}\n")
}

/// The `(image id, name)` pairs of a meta file, in order, duplicates kept.
pub fn parse_meta(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once(' ').unwrap_or((l, "")))
}

/// The cache root: `$XDG_CACHE_HOME/oci2bin`, else `$HOME/.cache/oci2bin`; relative values are
/// ignored (as the XDG spec says). `None` when neither names one.
pub fn root_from_vars(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let abs = |k: &str| var(k).map(PathBuf::from).filter(|p| p.is_absolute());
    abs("XDG_CACHE_HOME")
        .map(|p| p.join("oci2bin"))
        .or_else(|| abs("HOME").map(|h| h.join(".cache/oci2bin")))
}

/// Whether a process with effective uid `euid` may create the cache inside an existing directory
/// owned by `uid` with mode `mode`: its own, or a root-owned sticky one (like /tmp).
pub fn may_create_in(uid: u32, mode: u32, euid: u32) -> bool {
    uid == euid || (uid == 0 && mode & 0o1000 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Compression;

    fn layer(b: u8) -> LayerRef {
        LayerRef {
            offset: b as u64,
            size: 10,
            sha256: [b; 32],
            compression: Compression::Gzip,
        }
    }

    #[test]
    fn key_depends_on_the_layer_digests_in_order_and_nothing_else() {
        let k = key(&[layer(1), layer(2)]);
        assert!(is_key(&k), "{k}");
        let mut moved = layer(1);
        moved.offset = 999;
        moved.compression = Compression::Zstd;
        assert_eq!(key(&[moved, layer(2)]), k);
        assert_ne!(key(&[layer(2), layer(1)]), k);
        assert_ne!(key(&[layer(1)]), k);
        // A mapped entry differs from the single-uid one, and per map.
        let mapped = key_mapped(&[layer(1), layer(2)], Some("0:1000:1,1:100000:65536"));
        assert!(is_key(&mapped));
        assert_ne!(mapped, k);
        assert_ne!(
            key_mapped(&[layer(1), layer(2)], Some("0:1000:1,1:200000:65536")),
            mapped
        );
        assert_eq!(key_mapped(&[layer(1), layer(2)], None), k);
        // Golden: sha256("oci2bin rootfs v2\n") for no layers.
        assert_eq!(
            key(&[]),
            hex(&Sha256::digest(b"oci2bin rootfs v2\n")),
            "the key of an empty layer list"
        );
    }

    #[test]
    fn entry_names_split_into_key_and_suffix() {
        let k = "ab".repeat(32);
        assert_eq!(entry_name(&k), format!("{k}-x2"));
        assert_eq!(
            split_entry_name(&format!("{k}-x1")),
            Some((k.as_str(), "-x1"))
        );
        assert_eq!(staging_key(&format!("{k}-0123abcd")), Some(k.as_str()));
        assert_eq!(split_entry_name("abc-x2"), None);
        assert_eq!(split_entry_name(&k), None);
        assert_eq!(private_name(&k, "r"), "oci2bin-abababababab-r");
        assert_eq!(
            split_entry_name(&stack_name(&k)),
            Some((k.as_str(), STACK_SUFFIX))
        );
        assert!(is_current_suffix(ENTRY_SUFFIX) && is_current_suffix(STACK_SUFFIX));
        assert!(!is_current_suffix("-x1"));
        assert_eq!(layer_name(&k), format!("{k}-l1"));
    }

    #[test]
    fn a_layer_key_depends_on_its_digest_and_map_and_never_names_an_entry() {
        let k = layer_key(&layer(1), None);
        assert!(is_key(&k), "{k}");
        let mut moved = layer(1);
        moved.offset = 5;
        moved.compression = Compression::Zstd;
        assert_eq!(layer_key(&moved, None), k);
        assert_ne!(layer_key(&layer(2), None), k);
        assert_ne!(layer_key(&layer(1), Some("0:1000:1")), k);
        assert_ne!(
            key(&[layer(1)]),
            k,
            "a one-layer image's entry has another key"
        );
    }

    #[test]
    fn meta_lines_round_trip_and_never_break_a_line() {
        let text = meta_line("sha256:aa", "busybox:latest") + &meta_line("sha256:bb", "x\ny");
        assert_eq!(text, "sha256:aa busybox:latest\nsha256:bb x?y\n");
        let pairs: Vec<_> = parse_meta(&text).collect();
        assert_eq!(
            pairs,
            [("sha256:aa", "busybox:latest"), ("sha256:bb", "x?y")]
        );
    }

    #[test]
    fn root_follows_xdg_then_home_and_ignores_relative_values() {
        let vars = |xdg: Option<&str>, home: Option<&str>| {
            root_from_vars(|k| match k {
                "XDG_CACHE_HOME" => xdg.map(Into::into),
                "HOME" => home.map(Into::into),
                _ => None,
            })
        };
        assert_eq!(vars(Some("/x"), Some("/h")), Some("/x/oci2bin".into()));
        assert_eq!(
            vars(Some("rel"), Some("/h")),
            Some("/h/.cache/oci2bin".into())
        );
        assert_eq!(vars(None, Some("rel")), None);
    }

    #[test]
    fn the_cache_may_be_created_in_own_or_sticky_root_owned_dirs_only() {
        assert!(may_create_in(1000, 0o755, 1000));
        assert!(may_create_in(0, 0o1777, 1000));
        assert!(!may_create_in(0, 0o755, 1000));
        assert!(!may_create_in(1001, 0o1777, 1000));
        assert!(may_create_in(0, 0o755, 0));
    }
}
