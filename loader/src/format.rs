//! The oci2bin file format, version 1: the contract between the packager that writes a file and the
//! loader that runs it. This module is the spec; it does byte layout only (no I/O, no `unsafe`).
//!
//! ```text
//! offset 0      +--------------------------------------------------------------------------+
//!               | tar header #1 (512 bytes)                                                 |
//!               |   0..64    the loader's ELF header; e_phoff = P + original e_phoff,       |
//!               |            e_shoff moved by P (or 0)                                      |
//!               |   64..100  rest of the name field (zero)                                  |
//!               |   100..    ustar fields: mode, size, mtime, "ustar\0" "00" at 257,        |
//!               |            checksum at 148; type '0'                                      |
//! 512           +--------------------------------------------------------------------------+
//!               | tar #1 data: zero padding up to P (P = max(p_align of the loader, 4096))  |
//! P             +--------------------------------------------------------------------------+
//!               | tar #1 data: the loader ELF image, byte for byte, except that every       |
//!               | program header has p_offset += P (so p_offset ≡ p_vaddr mod p_align       |
//!               | still holds) and, inside the copy, the ELF header gets the same patch     |
//!               | (zero padding to the next 512-byte block)                                 |
//!               +--------------------------------------------------------------------------+
//!               | the image archive: ustar entries that form BOTH an OCI image layout and a |
//!               | docker-archive (`docker save` since Docker 25):                           |
//!               |   oci-layout, blobs/sha256/<config>, blobs/sha256/<layer>…,               |
//!               |   blobs/sha256/<manifest>, index.json, manifest.json, repositories        |
//!               | layers are stored exactly as they came (never recompressed)               |
//!               | VM mode (1.2, optional): oci2bin/vm/vmlinux.gz, oci2bin/vm/runtime.gz,    |
//!               |   entries image readers ignore; the record's VM parts point at them       |
//!               +--------------------------------------------------------------------------+
//!               | tar end-of-archive: two zero blocks          (end = tar.offset + tar.len) |
//!               +--------------------------------------------------------------------------+
//!               | metadata: UTF-8 JSON for tools (`oci2bin inspect`): source reference and  |
//!               | digest, build time, tool version, per-layer offsets and digests, config   |
//!               +--------------------------------------------------------------------------+
//!               | runtime record: the compact encoding the loader reads (see [`Runtime`]):  |
//!               | what it must know to run, with no JSON parser in the loader               |
//!               +--------------------------------------------------------------------------+
//!               | signature block (optional; ECDSA P-256 over SHA-256 of every byte before) |
//!               +--------------------------------------------------------------------------+
//! end - 128     | trailer (128 bytes, little-endian, see [`Trailer`])                       |
//! end           +--------------------------------------------------------------------------+
//! ```
//!
//! The loader reads only the trailer (from the end of `/proc/self/exe`), the runtime record, and
//! the layer bytes at the offsets the record gives: no tar scan. The ELF itself is never edited
//! per image beyond the offset shift, so its bytes identify the loader build.
//!
//! Trailer layout (128 bytes):
//! ```text
//!   0  magic "OCI2BIN\0"        8
//!   8  major u16, minor u16     4   a loader refuses an unknown major; it accepts a newer minor
//!                                   of its major that sets no flag it does not know
//!  12  flags u32                4   "must understand" bits: a loader refuses any bit it does
//!                                   not know ([`KNOWN_FLAGS`]): bit 0, signature required
//!                                   ([`FLAG_SIGNATURE_REQUIRED`], since 1.1)
//!  16  tar       offset,len     16  (u64, u64)
//!  32  metadata  offset,len     16
//!  48  runtime   offset,len     16
//!  64  signature offset,len     16  (0,0 when unsigned)
//!  80  sha256(metadata ‖ runtime)  32
//! 112  reserved                 8   zero; a loader refuses anything else
//! 120  end magic "OCI2BIN!"     8
//! ```
//! Metadata and runtime record are contiguous, so one hash covers both. The regions lie in file
//! order without overlap: tar, metadata, runtime record (directly after the metadata), signature
//! (if any), trailer.
//!
//! Compatibility: a newer minor version may only add what an older loader can safely ignore (for
//! example unknown runtime-record tags). A change an older loader must not miss sets a flag bit,
//! so that loader stops with a clear message instead of running the image wrongly; the reserved
//! bytes may only gain a meaning together with such a bit.

use sha2::{Digest, Sha256};
use std::fmt;

pub mod signature;

pub const FORMAT_MAJOR: u16 = 1;
pub const FORMAT_MINOR: u16 = 2;
pub const TRAILER_LEN: usize = 128;
pub const TRAILER_MAGIC: &[u8; 8] = b"OCI2BIN\0";
pub const TRAILER_END_MAGIC: &[u8; 8] = b"OCI2BIN!";
pub const BLOCK: usize = 512;
/// Trailer flag: the file runs only when signed by a key its runtime record names (built with
/// `--require-signature`); a loader that does not check signatures must refuse it.
pub const FLAG_SIGNATURE_REQUIRED: u32 = 1;
/// Trailer flag bits this loader understands; any other set bit makes it refuse the file.
pub const KNOWN_FLAGS: u32 = FLAG_SIGNATURE_REQUIRED;
/// Upper bound on the runtime record and metadata a loader will read: a guard against a
/// trailer that points at gigabytes.
pub const MAX_RECORD_LEN: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Bytes at the end are not a trailer.
    NoTrailer,
    /// A trailer of a format version this code does not know.
    UnsupportedVersion { major: u16, minor: u16 },
    /// Trailer flag bits this code does not know (only the unknown bits).
    UnknownFlags(u32),
    /// The trailer's reserved bytes are not zero.
    ReservedNotZero,
    /// A span that reaches past the end of the file (or whose end overflows).
    BadSpan {
        what: &'static str,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    /// A region inside the file that starts before the region in front of it ends.
    Overlap {
        first: &'static str,
        first_end: u64,
        second: &'static str,
        second_offset: u64,
    },
    /// The runtime record does not start where the metadata ends (one hash covers both).
    Gap {
        metadata_end: u64,
        runtime_offset: u64,
    },
    /// The metadata and runtime record do not hash to the trailer's sha256.
    MetadataDigest,
    /// The runtime record is malformed.
    BadRecord(&'static str),
    /// The loader binary cannot head a polyglot.
    BadElf(&'static str),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NoTrailer => write!(f, "no oci2bin trailer at the end of the file (truncated, or not an oci2bin file)"),
            FormatError::UnsupportedVersion { major, minor } => write!(
                f,
                "file format version {major}.{minor} is not supported by this loader (it reads {FORMAT_MAJOR}.x); rebuild the file with a matching oci2bin"
            ),
            FormatError::UnknownFlags(bits) => write!(f, "unknown trailer flags {bits:#010x}: this file needs a newer oci2bin loader"),
            FormatError::ReservedNotZero => write!(f, "reserved trailer bytes are not zero: file corrupt or written by an incompatible tool"),
            FormatError::BadSpan { what, offset, len, file_len } => write!(
                f,
                "trailer points {what} outside the file (offset {offset}, length {len}, file length {file_len}): file truncated or corrupt"
            ),
            FormatError::Overlap { first, first_end, second, second_offset } => write!(
                f,
                "trailer regions overlap: {second} (offset {second_offset}) starts before {first} ends (offset {first_end}): file corrupt"
            ),
            FormatError::Gap { metadata_end, runtime_offset } => write!(
                f,
                "trailer regions leave a gap: the runtime record (offset {runtime_offset}) does not start where the metadata ends (offset {metadata_end}): file corrupt"
            ),
            FormatError::MetadataDigest => write!(f, "metadata does not match its sha256 in the trailer: file corrupt or tampered"),
            FormatError::BadRecord(why) => write!(f, "malformed runtime record: {why}"),
            FormatError::BadElf(why) => write!(f, "loader is not a usable static ELF: {why}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// A byte range of the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

impl Span {
    pub fn new(offset: u64, len: u64) -> Span {
        Span { offset, len }
    }
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The fixed-size record at the very end of every file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub major: u16,
    pub minor: u16,
    pub flags: u32,
    pub tar: Span,
    pub metadata: Span,
    pub runtime: Span,
    pub signature: Span,
    pub metadata_sha256: [u8; 32],
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(TRAILER_MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        for (i, s) in [self.tar, self.metadata, self.runtime, self.signature]
            .iter()
            .enumerate()
        {
            let at = 16 + i * 16;
            b[at..at + 8].copy_from_slice(&s.offset.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&s.len.to_le_bytes());
        }
        b[80..112].copy_from_slice(&self.metadata_sha256);
        b[120..128].copy_from_slice(TRAILER_END_MAGIC);
        b
    }

    /// Decodes the last [`TRAILER_LEN`] bytes of a file of `file_len` bytes and checks the
    /// version, that no unknown flag and no reserved byte is set, and that every span lies inside
    /// the file, in order (tar, metadata, runtime, signature, trailer) and without overlap.
    pub fn decode(b: &[u8], file_len: u64) -> Result<Trailer, FormatError> {
        if b.len() != TRAILER_LEN || &b[0..8] != TRAILER_MAGIC || &b[120..128] != TRAILER_END_MAGIC
        {
            return Err(FormatError::NoTrailer);
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let major = u16_at(8);
        let minor = u16_at(10);
        // Major first: another major may give flags and reserved bytes another meaning.
        if major != FORMAT_MAJOR {
            return Err(FormatError::UnsupportedVersion { major, minor });
        }
        let flags = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FormatError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        if b[112..120].iter().any(|&x| x != 0) {
            return Err(FormatError::ReservedNotZero);
        }
        let span = |i: usize| Span::new(u64_at(16 + i * 16), u64_at(24 + i * 16));
        let t = Trailer {
            major,
            minor,
            flags,
            tar: span(0),
            metadata: span(1),
            runtime: span(2),
            signature: span(3),
            metadata_sha256: b[80..112].try_into().unwrap(),
        };
        t.check_spans(file_len)?;
        if t.metadata.len.saturating_add(t.runtime.len) > MAX_RECORD_LEN {
            return Err(FormatError::BadRecord("metadata larger than 64 MiB"));
        }
        Ok(t)
    }

    fn check_spans(&self, file_len: u64) -> Result<(), FormatError> {
        let all = [
            ("the tar archive", self.tar),
            ("the metadata", self.metadata),
            ("the runtime record", self.runtime),
            ("the signature", self.signature),
        ];
        // An unsigned file has no signature region: (0,0) takes no place.
        let regions = if self.signature.is_empty() {
            &all[..3]
        } else {
            &all[..]
        };
        // Past the end first: a truncated file says so, whatever else looks wrong.
        for &(what, s) in regions {
            if s.offset
                .checked_add(s.len)
                .filter(|&end| end <= file_len)
                .is_none()
            {
                return Err(FormatError::BadSpan {
                    what,
                    offset: s.offset,
                    len: s.len,
                    file_len,
                });
            }
        }
        let trailer = (
            "the trailer",
            Span::new(file_len.saturating_sub(TRAILER_LEN as u64), 0),
        );
        let mut before = regions[0];
        for &next in regions[1..].iter().chain([trailer].iter()) {
            let ((first, a), (second, b)) = (before, next);
            if b.offset < a.end() {
                return Err(FormatError::Overlap {
                    first,
                    first_end: a.end(),
                    second,
                    second_offset: b.offset,
                });
            }
            before = next;
        }
        if self.runtime.offset != self.metadata.end() {
            return Err(FormatError::Gap {
                metadata_end: self.metadata.end(),
                runtime_offset: self.runtime.offset,
            });
        }
        Ok(())
    }

    /// Span covering metadata and runtime record, the bytes `metadata_sha256` hashes.
    pub fn hashed(&self) -> Span {
        Span::new(self.metadata.offset, self.metadata.len + self.runtime.len)
    }

    pub fn verify_hashed(&self, bytes: &[u8]) -> Result<(), FormatError> {
        if Sha256::digest(bytes).as_slice() == self.metadata_sha256 {
            Ok(())
        } else {
            Err(FormatError::MetadataDigest)
        }
    }
}

/// How a layer blob is compressed; from its media type (or, for docker archives, its magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Zstd = 2,
}

impl Compression {
    fn from_u8(v: u8) -> Result<Compression, FormatError> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Zstd),
            _ => Err(FormatError::BadRecord("unknown layer compression")),
        }
    }

    /// Sniffs the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// One layer as the loader sees it: where its blob lies in this file and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub offset: u64,
    pub size: u64,
    /// sha256 of the blob as stored (the descriptor digest).
    pub sha256: [u8; 32],
    pub compression: Compression,
}

/// What the loader needs to run the image: the runtime record. Encoded as a sequence of
/// `tag u8, len u32 LE, value` items after the 4-byte magic `O2BR`; unknown tags are skipped so a
/// newer packager can add fields an older loader ignores. Repeated tags form lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// Cache key: the manifest digest, `sha256:<hex>`.
    pub image_id: String,
    /// Image reference the file was built from, for messages and the default hostname.
    pub name: String,
    pub layers: Vec<LayerRef>,
    /// `None` when the image has no Entrypoint (as opposed to an empty one).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub stop_signal: String,
    /// Default runtime flags recorded by the packager, parsed before the user's own.
    pub default_args: Vec<String>,
    /// The default seccomp profile, compiled when the file was built (absent in files of
    /// older packagers: the loader then runs without a default filter, with a warning).
    pub seccomp: Option<SeccompRecord>,
    /// Public keys (SEC1 points) one of which must have signed the file for it to run (since
    /// 1.1; the trailer then sets [`FLAG_SIGNATURE_REQUIRED`]). Signed with the rest of the
    /// record, so changing them needs signing again.
    pub trusted_keys: Vec<Vec<u8>>,
    /// What VM mode needs (`--vm`, since 1.2): the guest kernel and the VM runtime, stored as
    /// tar entries under `oci2bin/vm/` that image readers ignore. Empty in a namespace-only file.
    pub vm_parts: Vec<VmPart>,
}

/// One file VM mode takes from the archive: where its bytes lie and what they hash to.
/// Item layout: `kind` u8, `offset` u64, `size` u64, `sha256` 32 bytes, `compression` u8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPart {
    pub kind: VmPartKind,
    pub offset: u64,
    pub size: u64,
    /// sha256 of the bytes as stored.
    pub sha256: [u8; 32],
    /// How the bytes are stored (both gzipped, as the packager writes them).
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmPartKind {
    /// The guest kernel: an uncompressed ELF `vmlinux` (PVH entry), once decompressed.
    Kernel = 1,
    /// The VM runtime: a static ELF, the loader built with VM support, run for `--vm`.
    Runtime = 2,
}

impl VmPartKind {
    /// Its name in the archive (`oci2bin/vm/NAME`) and in the cache.
    pub fn name(self) -> &'static str {
        match self {
            VmPartKind::Kernel => "vmlinux",
            VmPartKind::Runtime => "runtime",
        }
    }
}

/// The directory of the VM parts inside the archive.
pub const VM_DIR: &str = "oci2bin/vm";

/// The default seccomp filter as the packager compiled it, and what it assumed, so the loader
/// installs it as it is in the common case and recompiles `profile` only when the run's
/// capabilities or kernel differ where the profile looks. Item layout: `caps` u64,
/// `caps_named` u64, `min_kernel` (u16, u16), `bpf` length u32, `bpf`, then `profile` to the
/// end of the item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeccompRecord {
    /// The capability set the filter was compiled for.
    pub caps: u64,
    /// The capabilities the profile's includes/excludes name.
    pub caps_named: u64,
    /// The filter assumes a kernel at least this new (the profile's highest `minKernel`).
    pub min_kernel: (u16, u16),
    /// `struct sock_filter` instructions, 8 bytes each, native endian.
    pub bpf: Vec<u8>,
    /// The profile itself (Docker's JSON), for a recompile.
    pub profile: Vec<u8>,
}

mod tag {
    pub const IMAGE_ID: u8 = 1;
    pub const NAME: u8 = 2;
    pub const LAYER: u8 = 3;
    pub const ENTRYPOINT_SET: u8 = 4;
    pub const ENTRYPOINT: u8 = 5;
    pub const CMD_SET: u8 = 6;
    pub const CMD: u8 = 7;
    pub const ENV: u8 = 8;
    pub const WORKDIR: u8 = 9;
    pub const USER: u8 = 10;
    pub const STOP_SIGNAL: u8 = 11;
    pub const DEFAULT_ARG: u8 = 12;
    pub const SECCOMP: u8 = 13;
    pub const TRUSTED_KEY: u8 = 14;
    pub const VM_PART: u8 = 15;
}

const RECORD_MAGIC: &[u8; 4] = b"O2BR";
const LAYER_LEN: usize = 8 + 8 + 32 + 1;
const VM_PART_LEN: usize = 1 + LAYER_LEN;

impl Runtime {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = RECORD_MAGIC.to_vec();
        let mut put = |t: u8, v: &[u8]| {
            out.push(t);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        };
        put(tag::IMAGE_ID, self.image_id.as_bytes());
        put(tag::NAME, self.name.as_bytes());
        for l in &self.layers {
            let mut v = Vec::with_capacity(LAYER_LEN);
            v.extend_from_slice(&l.offset.to_le_bytes());
            v.extend_from_slice(&l.size.to_le_bytes());
            v.extend_from_slice(&l.sha256);
            v.push(l.compression as u8);
            put(tag::LAYER, &v);
        }
        for (set, item, list) in [
            (tag::ENTRYPOINT_SET, tag::ENTRYPOINT, &self.entrypoint),
            (tag::CMD_SET, tag::CMD, &self.cmd),
        ] {
            if let Some(list) = list {
                put(set, &[]);
                for s in list {
                    put(item, s.as_bytes());
                }
            }
        }
        for e in &self.env {
            put(tag::ENV, e.as_bytes());
        }
        put(tag::WORKDIR, self.workdir.as_bytes());
        put(tag::USER, self.user.as_bytes());
        put(tag::STOP_SIGNAL, self.stop_signal.as_bytes());
        for a in &self.default_args {
            put(tag::DEFAULT_ARG, a.as_bytes());
        }
        if let Some(sc) = &self.seccomp {
            let mut v = Vec::with_capacity(24 + sc.bpf.len() + sc.profile.len());
            v.extend_from_slice(&sc.caps.to_le_bytes());
            v.extend_from_slice(&sc.caps_named.to_le_bytes());
            v.extend_from_slice(&sc.min_kernel.0.to_le_bytes());
            v.extend_from_slice(&sc.min_kernel.1.to_le_bytes());
            v.extend_from_slice(&(sc.bpf.len() as u32).to_le_bytes());
            v.extend_from_slice(&sc.bpf);
            v.extend_from_slice(&sc.profile);
            put(tag::SECCOMP, &v);
        }
        for k in &self.trusted_keys {
            put(tag::TRUSTED_KEY, k);
        }
        for p in &self.vm_parts {
            let mut v = Vec::with_capacity(VM_PART_LEN);
            v.push(p.kind as u8);
            v.extend_from_slice(&p.offset.to_le_bytes());
            v.extend_from_slice(&p.size.to_le_bytes());
            v.extend_from_slice(&p.sha256);
            v.push(p.compression as u8);
            put(tag::VM_PART, &v);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Runtime, FormatError> {
        if !b.starts_with(RECORD_MAGIC) {
            return Err(FormatError::BadRecord("bad magic"));
        }
        let mut r = Runtime::default();
        let mut at = 4;
        let text = |v: &[u8]| {
            String::from_utf8(v.to_vec()).map_err(|_| FormatError::BadRecord("text is not UTF-8"))
        };
        while at < b.len() {
            if b.len() - at < 5 {
                return Err(FormatError::BadRecord("truncated item header"));
            }
            let t = b[at];
            let len = u32::from_le_bytes(b[at + 1..at + 5].try_into().unwrap()) as usize;
            at += 5;
            if b.len() - at < len {
                return Err(FormatError::BadRecord("item longer than the record"));
            }
            let v = &b[at..at + len];
            at += len;
            match t {
                tag::IMAGE_ID => r.image_id = text(v)?,
                tag::NAME => r.name = text(v)?,
                tag::LAYER => {
                    if v.len() != LAYER_LEN {
                        return Err(FormatError::BadRecord("layer item of the wrong length"));
                    }
                    r.layers.push(LayerRef {
                        offset: u64::from_le_bytes(v[0..8].try_into().unwrap()),
                        size: u64::from_le_bytes(v[8..16].try_into().unwrap()),
                        sha256: v[16..48].try_into().unwrap(),
                        compression: Compression::from_u8(v[48])?,
                    })
                }
                tag::ENTRYPOINT_SET => r.entrypoint = Some(Vec::new()),
                tag::ENTRYPOINT => r.entrypoint.get_or_insert_with(Vec::new).push(text(v)?),
                tag::CMD_SET => r.cmd = Some(Vec::new()),
                tag::CMD => r.cmd.get_or_insert_with(Vec::new).push(text(v)?),
                tag::ENV => r.env.push(text(v)?),
                tag::WORKDIR => r.workdir = text(v)?,
                tag::USER => r.user = text(v)?,
                tag::STOP_SIGNAL => r.stop_signal = text(v)?,
                tag::DEFAULT_ARG => r.default_args.push(text(v)?),
                tag::SECCOMP => r.seccomp = Some(seccomp_item(v)?),
                tag::TRUSTED_KEY => {
                    if !matches!((v.len(), v.first()), (65, Some(4)) | (33, Some(2 | 3))) {
                        return Err(FormatError::BadRecord("trusted key is not a SEC1 point"));
                    }
                    r.trusted_keys.push(v.to_vec())
                }
                tag::VM_PART => {
                    if v.len() != VM_PART_LEN {
                        return Err(FormatError::BadRecord("vm part item of the wrong length"));
                    }
                    let kind = match v[0] {
                        1 => VmPartKind::Kernel,
                        2 => VmPartKind::Runtime,
                        // A part a newer packager adds that this loader cannot use.
                        _ => continue,
                    };
                    r.vm_parts.push(VmPart {
                        kind,
                        offset: rd64(v, 1),
                        size: rd64(v, 9),
                        sha256: v[17..49].try_into().unwrap(),
                        compression: Compression::from_u8(v[49])?,
                    })
                }
                _ => {}
            }
        }
        let id = r.image_id.strip_prefix("sha256:").unwrap_or("");
        if id.len() != 64
            || !id
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(FormatError::BadRecord("image id is not a sha256 digest"));
        }
        Ok(r)
    }
}

fn seccomp_item(v: &[u8]) -> Result<SeccompRecord, FormatError> {
    const FIXED: usize = 8 + 8 + 4 + 4;
    if v.len() < FIXED {
        return Err(FormatError::BadRecord("seccomp item too short"));
    }
    let n = u32::from_le_bytes(v[20..24].try_into().unwrap()) as usize;
    if v.len() - FIXED < n || !n.is_multiple_of(8) {
        return Err(FormatError::BadRecord("seccomp filter of a wrong length"));
    }
    Ok(SeccompRecord {
        caps: rd64(v, 0),
        caps_named: rd64(v, 8),
        min_kernel: (rd16(v, 16), rd16(v, 18)),
        bpf: v[FIXED..FIXED + n].to_vec(),
        profile: v[FIXED + n..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// The head: tar header #1 that is also an ELF header.

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn rd64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn wr64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Facts about a loader ELF needed to place it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub phoff: u64,
    pub phnum: usize,
    pub shoff: u64,
    pub max_align: u64,
    pub has_interp: bool,
}

/// Reads what [`build_head`] needs from a 64-bit little-endian ELF executable.
pub fn elf_info(elf: &[u8]) -> Result<ElfInfo, FormatError> {
    if elf.len() < EHDR_LEN || &elf[0..4] != b"\x7fELF" {
        return Err(FormatError::BadElf("no ELF magic"));
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err(FormatError::BadElf("not a 64-bit little-endian ELF"));
    }
    let e_type = rd16(elf, 16);
    if e_type != 2 && e_type != 3 {
        return Err(FormatError::BadElf("not an executable"));
    }
    let phoff = rd64(elf, 32);
    let shoff = rd64(elf, 40);
    let phentsize = rd16(elf, 54) as usize;
    let phnum = rd16(elf, 56) as usize;
    if phentsize != PHDR_LEN || phnum == 0 {
        return Err(FormatError::BadElf("unexpected program header size"));
    }
    let end = (phoff as usize)
        .checked_add(phnum * PHDR_LEN)
        .filter(|&e| e <= elf.len())
        .ok_or(FormatError::BadElf("program headers outside the file"))?;
    let mut max_align = 4096;
    let mut has_interp = false;
    for ph in elf[phoff as usize..end].chunks_exact(PHDR_LEN) {
        let p_type = u32::from_le_bytes(ph[0..4].try_into().unwrap());
        if p_type == 3 {
            has_interp = true;
        }
        if p_type == 1 {
            max_align = max_align.max(rd64(ph, 48));
        }
    }
    if !max_align.is_power_of_two() || max_align > 1 << 24 {
        return Err(FormatError::BadElf("unreasonable segment alignment"));
    }
    Ok(ElfInfo {
        phoff,
        phnum,
        shoff,
        max_align,
        has_interp,
    })
}

/// Writes the ustar checksum of a 512-byte header (checksum field counted as spaces).
pub fn tar_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
}

/// Writes `v` as a NUL-terminated octal number in `field`, or, when it does not fit, in the GNU
/// base-256 form (high bit set) that GNU tar, Go and Docker read.
pub fn tar_number(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if v < 1u64.checked_shl(3 * digits as u32).unwrap_or(u64::MAX) {
        let s = format!("{v:0digits$o}\0");
        field.copy_from_slice(s.as_bytes());
    } else {
        field.fill(0);
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
        field[0] = 0x80;
    }
}

/// A plain ustar header for a regular file, directory or other type.
pub fn tar_header(name: &str, size: u64, mode: u32, mtime: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.as_bytes();
    assert!(n.len() <= 100, "tar name longer than 100 bytes: {name}");
    h[..n.len()].copy_from_slice(n);
    fill_ustar(&mut h, size, mode, mtime, typeflag);
    h
}

fn fill_ustar(h: &mut [u8; BLOCK], size: u64, mode: u32, mtime: u64, typeflag: u8) {
    tar_number(&mut h[100..108], mode as u64);
    tar_number(&mut h[108..116], 0);
    tar_number(&mut h[116..124], 0);
    tar_number(&mut h[124..136], size);
    tar_number(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    tar_checksum(h);
}

/// Rounds up to a whole number of tar blocks.
pub fn pad_to_block(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// The head of a polyglot: tar header #1 + padding + shifted loader, padded to a block. The
/// returned bytes are a complete first tar entry; the image archive's entries follow directly.
pub fn build_head(loader: &[u8], mtime: u64) -> Result<Vec<u8>, FormatError> {
    let info = elf_info(loader)?;
    if info.has_interp {
        return Err(FormatError::BadElf(
            "it needs an interpreter (PT_INTERP): build it static",
        ));
    }
    let p = info.max_align.max(4096);
    let mut image = loader.to_vec();
    shift_elf(&mut image, &info, p);
    let entry_len = p - BLOCK as u64 + image.len() as u64;
    let mut out = Vec::with_capacity(pad_to_block(p + image.len() as u64) as usize);
    let mut h = [0u8; BLOCK];
    h[..EHDR_LEN].copy_from_slice(&image[..EHDR_LEN]);
    fill_ustar(&mut h, entry_len, 0o755, mtime, b'0');
    out.extend_from_slice(&h);
    out.resize(p as usize, 0);
    out.extend_from_slice(&image);
    out.resize(pad_to_block(out.len() as u64) as usize, 0);
    Ok(out)
}

/// Moves every segment's file offset (and the header tables) by `p` bytes.
fn shift_elf(image: &mut [u8], info: &ElfInfo, p: u64) {
    wr64(image, 32, info.phoff + p);
    if info.shoff != 0 {
        wr64(image, 40, info.shoff + p);
    }
    for i in 0..info.phnum {
        let at = info.phoff as usize + i * PHDR_LEN + 8;
        let off = rd64(image, at);
        wr64(image, at, off + p);
    }
}

/// The length of the head [`build_head`] produces, and where the loader image starts in it.
pub fn head_layout(loader: &[u8]) -> Result<(u64, u64), FormatError> {
    let info = elf_info(loader)?;
    let p = info.max_align.max(4096);
    Ok((pad_to_block(p + loader.len() as u64), p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_runtime() -> Runtime {
        Runtime {
            image_id: format!("sha256:{}", "ab".repeat(32)),
            name: "busybox:latest".into(),
            layers: vec![LayerRef {
                offset: 1024,
                size: 77,
                sha256: [7; 32],
                compression: Compression::Zstd,
            }],
            entrypoint: Some(vec![]),
            cmd: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]),
            env: vec!["PATH=/bin".into()],
            workdir: "/root".into(),
            user: "".into(),
            stop_signal: "".into(),
            default_args: vec!["--init".into()],
            seccomp: Some(SeccompRecord {
                caps: 0xa80425fb,
                caps_named: 1 << 21,
                min_kernel: (4, 8),
                bpf: vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
                profile: b"{}".to_vec(),
            }),
            trusted_keys: vec![[&[4u8][..], &[9; 64]].concat()],
            vm_parts: vec![VmPart {
                kind: VmPartKind::Kernel,
                offset: 4096,
                size: 99,
                sha256: [3; 32],
                compression: Compression::Gzip,
            }],
        }
    }

    #[test]
    fn runtime_record_skips_vm_parts_of_unknown_kinds_and_refuses_bad_ones() {
        let r = sample_runtime();
        let mut b = r.encode();
        let mut other = vec![9u8];
        other.extend_from_slice(&[0; VM_PART_LEN - 1]);
        b.push(tag::VM_PART);
        b.extend_from_slice(&(other.len() as u32).to_le_bytes());
        b.extend_from_slice(&other);
        assert_eq!(Runtime::decode(&b).unwrap(), r);
        let mut short = r.encode();
        short.extend_from_slice(&[tag::VM_PART, 1, 0, 0, 0, 1]);
        assert!(Runtime::decode(&short).is_err());
    }

    #[test]
    fn runtime_record_refuses_a_trusted_key_that_is_not_a_point() {
        let mut r = sample_runtime();
        r.trusted_keys[0].pop();
        assert!(Runtime::decode(&r.encode()).is_err());
    }

    #[test]
    fn runtime_record_without_seccomp_still_decodes() {
        let mut r = sample_runtime();
        r.seccomp = None;
        assert_eq!(Runtime::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn runtime_record_refuses_a_seccomp_filter_of_a_wrong_length() {
        let mut r = sample_runtime();
        r.seccomp.as_mut().unwrap().bpf.pop();
        assert!(Runtime::decode(&r.encode()).is_err());
    }

    #[test]
    fn runtime_record_round_trips_and_keeps_empty_vs_absent() {
        let r = sample_runtime();
        assert_eq!(Runtime::decode(&r.encode()).unwrap(), r);
        let mut none = r.clone();
        none.entrypoint = None;
        assert_eq!(Runtime::decode(&none.encode()).unwrap().entrypoint, None);
    }

    #[test]
    fn runtime_record_skips_unknown_tags() {
        let mut b = sample_runtime().encode();
        b.extend_from_slice(&[200, 3, 0, 0, 0, b'x', b'y', b'z']);
        assert_eq!(Runtime::decode(&b).unwrap(), sample_runtime());
    }

    #[test]
    fn runtime_record_rejects_truncation_everywhere() {
        let b = sample_runtime().encode();
        for cut in 0..b.len() {
            // Every prefix is either rejected or decodes to something without the full layer list.
            if let Ok(r) = Runtime::decode(&b[..cut]) {
                assert_ne!(
                    r,
                    sample_runtime(),
                    "prefix {cut} decoded to the full record"
                );
            }
        }
    }

    #[test]
    fn trailer_golden_bytes() {
        let t = Trailer {
            major: 1,
            minor: 0,
            flags: 0,
            tar: Span::new(0, 0x1000),
            metadata: Span::new(0x1000, 0x20),
            runtime: Span::new(0x1020, 0x10),
            signature: Span::default(),
            metadata_sha256: [0xaa; 32],
        };
        let b = t.encode();
        assert_eq!(&b[0..8], b"OCI2BIN\0");
        assert_eq!(&b[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &b[16..32],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&b[32..40], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[80..112], &[0xaa; 32]);
        assert_eq!(&b[112..120], &[0; 8]);
        assert_eq!(&b[120..128], b"OCI2BIN!");
        let file_len = 0x1030 + TRAILER_LEN as u64;
        assert_eq!(Trailer::decode(&b, file_len).unwrap(), t);
    }

    /// A valid unsigned trailer: tar 0..0x1000, metadata 0x1000..0x1020, record ..0x1030.
    fn sample_trailer() -> Trailer {
        Trailer {
            major: 1,
            minor: 0,
            flags: 0,
            tar: Span::new(0, 0x1000),
            metadata: Span::new(0x1000, 0x20),
            runtime: Span::new(0x1020, 0x10),
            signature: Span::default(),
            metadata_sha256: [0; 32],
        }
    }

    const SAMPLE_FILE_LEN: u64 = 0x1030 + TRAILER_LEN as u64;

    fn decode_err(t: &Trailer, file_len: u64) -> FormatError {
        Trailer::decode(&t.encode(), file_len).unwrap_err()
    }

    #[test]
    fn trailer_not_at_the_end_is_no_trailer() {
        assert_eq!(
            Trailer::decode(&[0u8; 128], 1 << 20),
            Err(FormatError::NoTrailer)
        );
    }

    #[test]
    fn trailer_of_an_unknown_major_is_refused() {
        for major in [0, 2, u16::MAX] {
            let mut t = sample_trailer();
            t.major = major;
            t.minor = 3;
            assert_eq!(
                decode_err(&t, SAMPLE_FILE_LEN),
                FormatError::UnsupportedVersion { major, minor: 3 }
            );
        }
    }

    #[test]
    fn trailer_of_a_newer_minor_is_accepted() {
        let mut t = sample_trailer();
        t.minor = 7;
        assert_eq!(Trailer::decode(&t.encode(), SAMPLE_FILE_LEN).unwrap(), t);
    }

    #[test]
    fn trailer_with_an_unknown_flag_is_refused_naming_the_bits() {
        let mut t = sample_trailer();
        t.flags = 4;
        let e = decode_err(&t, SAMPLE_FILE_LEN);
        assert_eq!(e, FormatError::UnknownFlags(4));
        assert_eq!(
            e.to_string(),
            "unknown trailer flags 0x00000004: this file needs a newer oci2bin loader"
        );
        // Only the unknown bits are named; the known one (signature required) is not.
        t.flags = 0x8000_0001;
        assert_eq!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::UnknownFlags(0x8000_0000)
        );
        // A newer minor does not excuse a flag this loader does not know.
        t.minor = 1;
        assert!(matches!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::UnknownFlags(_)
        ));
    }

    #[test]
    fn trailer_with_nonzero_reserved_bytes_is_refused() {
        for at in 112..120 {
            let mut b = sample_trailer().encode();
            b[at] = 1;
            let e = Trailer::decode(&b, SAMPLE_FILE_LEN).unwrap_err();
            assert_eq!(e, FormatError::ReservedNotZero, "byte {at}");
            assert!(e
                .to_string()
                .starts_with("reserved trailer bytes are not zero"));
        }
    }

    #[test]
    fn trailer_span_past_the_end_is_outside_the_file() {
        // The metadata ends at 0x1020, past the last byte of a 0x1010-byte file.
        let e = decode_err(&sample_trailer(), 0x1010);
        assert!(
            matches!(
                e,
                FormatError::BadSpan {
                    what: "the metadata",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("outside the file"), "{e}");
        let mut t = sample_trailer();
        t.signature = Span::new(SAMPLE_FILE_LEN, 1);
        assert!(matches!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::BadSpan {
                what: "the signature",
                ..
            }
        ));
    }

    #[test]
    fn trailer_span_whose_end_overflows_is_outside_the_file() {
        let mut t = sample_trailer();
        t.runtime = Span::new(0x1020, u64::MAX - 0x10);
        assert!(matches!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::BadSpan {
                what: "the runtime record",
                ..
            }
        ));
        let mut t = sample_trailer();
        t.signature = Span::new(u64::MAX, 2);
        assert!(matches!(
            decode_err(&t, u64::MAX),
            FormatError::BadSpan {
                what: "the signature",
                ..
            }
        ));
    }

    #[test]
    fn trailer_metadata_inside_the_tar_is_an_overlap() {
        let mut t = sample_trailer();
        t.tar = Span::new(0, 0x1010);
        let e = decode_err(&t, SAMPLE_FILE_LEN);
        assert_eq!(
            e.to_string(),
            "trailer regions overlap: the metadata (offset 4096) starts before the tar archive ends (offset 4112): file corrupt"
        );
    }

    #[test]
    fn trailer_runtime_record_inside_the_metadata_is_an_overlap() {
        let mut t = sample_trailer();
        t.runtime = Span::new(0x1010, 0x10);
        assert_eq!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::Overlap {
                first: "the metadata",
                first_end: 0x1020,
                second: "the runtime record",
                second_offset: 0x1010,
            }
        );
    }

    #[test]
    fn trailer_runtime_record_after_a_gap_is_refused() {
        // The hash covers metadata ‖ record as one run of bytes: a gap would hash the wrong ones.
        let mut t = sample_trailer();
        t.runtime = Span::new(0x1028, 0x8);
        let e = decode_err(&t, SAMPLE_FILE_LEN);
        assert!(matches!(e, FormatError::Gap { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("the runtime record (offset 4136) does not start where the metadata ends (offset 4128)"),
            "{e}"
        );
    }

    #[test]
    fn trailer_signature_inside_the_runtime_record_is_an_overlap() {
        let mut t = sample_trailer();
        t.signature = Span::new(0x1028, 0x8);
        assert_eq!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::Overlap {
                first: "the runtime record",
                first_end: 0x1030,
                second: "the signature",
                second_offset: 0x1028,
            }
        );
    }

    #[test]
    fn trailer_region_running_into_the_trailer_is_an_overlap() {
        let mut t = sample_trailer();
        t.signature = Span::new(0x1030, 0x40);
        let file_len = 0x1060 + TRAILER_LEN as u64;
        assert_eq!(
            decode_err(&t, file_len),
            FormatError::Overlap {
                first: "the signature",
                first_end: 0x1070,
                second: "the trailer",
                second_offset: 0x1060,
            }
        );
        let mut t = sample_trailer();
        t.runtime = Span::new(0x1020, 0x10 + TRAILER_LEN as u64);
        assert!(matches!(
            decode_err(&t, SAMPLE_FILE_LEN),
            FormatError::Overlap {
                second: "the trailer",
                ..
            }
        ));
    }

    #[test]
    fn trailer_with_a_signature_in_place_is_accepted() {
        let mut t = sample_trailer();
        t.signature = Span::new(0x1030, 0x40);
        let file_len = 0x1070 + TRAILER_LEN as u64;
        assert_eq!(Trailer::decode(&t.encode(), file_len).unwrap(), t);
    }

    fn fake_elf() -> Vec<u8> {
        // A minimal static ELF: header + one PT_LOAD at offset 0 with align 0x1000.
        let mut e = vec![0u8; 0x1800];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16] = 3; // ET_DYN (static-pie)
        e[18] = 0x3e;
        wr64(&mut e, 32, 64);
        e[52] = 64;
        e[54] = 56;
        e[56] = 1;
        let ph = 64;
        e[ph] = 1; // PT_LOAD
        wr64(&mut e, ph + 8, 0); // p_offset
        wr64(&mut e, ph + 32, 0x1800); // p_filesz
        wr64(&mut e, ph + 48, 0x1000); // p_align
        e
    }

    #[test]
    fn head_is_a_tar_header_and_an_elf_header() {
        let elf = fake_elf();
        let head = build_head(&elf, 0).unwrap();
        assert_eq!(head.len() as u64, head_layout(&elf).unwrap().0);
        assert_eq!(&head[0..4], b"\x7fELF");
        assert_eq!(&head[257..263], b"ustar\0");
        // e_phoff points into the data area, at the copy's program headers.
        assert_eq!(rd64(&head, 32), 0x1000 + 64);
        // p_offset moved by P.
        assert_eq!(rd64(&head, 0x1000 + 64 + 8), 0x1000);
        // Checksum verifies.
        let mut h: [u8; BLOCK] = head[..BLOCK].try_into().unwrap();
        let stored = h[148..156].to_vec();
        tar_checksum(&mut h);
        assert_eq!(stored, h[148..156].to_vec());
        // Size field: data from 512 up to the end of the loader.
        let size = u64::from_str_radix(std::str::from_utf8(&head[124..135]).unwrap(), 8).unwrap();
        assert_eq!(size, 0x1000 - 512 + 0x1800);
    }

    #[test]
    fn head_refuses_dynamic_loader() {
        let mut elf = fake_elf();
        elf[64] = 3; // PT_INTERP
        assert!(matches!(build_head(&elf, 0), Err(FormatError::BadElf(_))));
    }

    #[test]
    fn big_sizes_use_base256() {
        let mut f = [0u8; 12];
        tar_number(&mut f, 8 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(u64::from_be_bytes(f[4..12].try_into().unwrap()), 8 << 30);
        tar_number(&mut f, 5);
        assert_eq!(&f, b"00000000005\0");
    }
}
