//! A streaming tar reader for image layers: ustar, GNU (`L` long names, `K` long link names,
//! base-256 numbers) and PAX (`x` per-entry `path`, `linkpath`, `size`, `mtime`; `g` global
//! headers skipped). It reads untrusted bytes, so it never trusts a size for an allocation
//! (metadata payloads are capped at [`MAX_META_LEN`]), verifies every header checksum, and
//! treats input that ends before the end-of-archive marker as an error, not a silent end.

use crate::format::BLOCK;
use std::io::{self, Read};

/// Largest PAX or GNU long-name/long-link payload accepted (real ones are a few hundred bytes).
pub const MAX_META_LEN: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("tar header for {what} too large ({size} bytes, limit {MAX_META_LEN})")]
    MetaTooLarge { what: String, size: u64 },
    #[error("tar header checksum mismatch at offset {offset}")]
    Checksum { offset: u64 },
    #[error("bad tar header at offset {offset}: {why}")]
    BadHeader { offset: u64, why: String },
    #[error("truncated tar: {0}")]
    Truncated(&'static str),
    #[error("tar entry {path}: unsupported type {kind:?}")]
    Unsupported { path: String, kind: char },
    #[error("reading tar stream: {0}")]
    Io(#[source] io::Error),
}

impl TarError {
    fn bad(offset: u64, why: impl Into<String>) -> TarError {
        TarError::BadHeader {
            offset,
            why: why.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

/// One archive member, with PAX/GNU extensions already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The member name as stored (no normalisation; never contains NUL).
    pub path: Vec<u8>,
    /// Symlink target or hardlink target name (never contains NUL).
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    /// Bytes of data that follow (0 for every kind but `File`).
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Owner as stored (PAX `uid`/`gid` win over the header fields).
    pub uid: u32,
    pub gid: u32,
    /// Extended attributes from PAX `SCHILY.xattr.NAME` records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The path for messages (lossy UTF-8).
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Reads entries one after another; the data of the current entry is read through the
/// [`Read`] impl of the reader itself and skipped automatically by the next [`Reader::next_entry`].
pub struct Reader<R> {
    inner: R,
    /// Bytes consumed from `inner`, for messages.
    offset: u64,
    /// Unread data bytes of the current entry, then its padding to a block.
    remaining: u64,
    padding: u64,
    done: bool,
}

#[derive(Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    mtime: Option<(i64, u32)>,
    uid: Option<u32>,
    gid: Option<u32>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            offset: 0,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// Bytes consumed from the underlying stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` after the end-of-archive marker.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut ext = Extensions::default();
        let mut pending_meta = false;
        let mut block = [0u8; BLOCK];
        loop {
            let at = self.offset;
            if !self.read_block(&mut block)? {
                return Err(TarError::Truncated(if pending_meta {
                    "archive ends after an extended header"
                } else {
                    "archive ends without an end-of-archive marker"
                }));
            }
            if block.iter().all(|&b| b == 0) {
                if pending_meta {
                    return Err(TarError::bad(
                        at,
                        "end of archive right after an extended header",
                    ));
                }
                // A second zero block ends the archive; GNU tar and Go also accept input that
                // stops right after the first one.
                let at2 = self.offset;
                if self.read_block(&mut block)? && block.iter().any(|&b| b != 0) {
                    return Err(TarError::bad(at2, "data after a zero block"));
                }
                self.done = true;
                return Ok(None);
            }
            verify_checksum(&block, at)?;
            let typeflag = block[156];
            let size = parse_number(&block[124..136], at, "size")?;
            let size = u64::try_from(size).map_err(|_| TarError::bad(at, "negative size"))?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    let what = match typeflag {
                        b'x' => "pax extended header",
                        b'g' => "pax global header",
                        b'L' => "gnu long name",
                        _ => "gnu long link name",
                    };
                    if size > MAX_META_LEN {
                        return Err(TarError::MetaTooLarge {
                            what: format!(
                                "{what} {}",
                                String::from_utf8_lossy(field(&block[..100]))
                            ),
                            size,
                        });
                    }
                    let payload = self.read_payload(size)?;
                    match typeflag {
                        b'x' => parse_pax(&payload, &mut ext, at)?,
                        // Global headers set defaults for later entries; none of the keys we use
                        // are meaningful archive-wide in layers, so they are dropped.
                        b'g' => {}
                        b'L' => ext.path = Some(field(&payload).to_vec()),
                        _ => ext.link = Some(field(&payload).to_vec()),
                    }
                    pending_meta = typeflag != b'g';
                    continue;
                }
                _ => {}
            }
            let entry = self.header_entry(&block, at, size, ext)?;
            return Ok(Some(entry));
        }
    }

    fn header_entry(
        &mut self,
        h: &[u8; BLOCK],
        at: u64,
        size: u64,
        ext: Extensions,
    ) -> Result<Entry, TarError> {
        let ustar_posix = &h[257..263] == b"ustar\0";
        let mut path = match ext.path {
            Some(p) => p,
            None => {
                let name = field(&h[..100]);
                let prefix = field(&h[345..500]);
                if ustar_posix && !prefix.is_empty() {
                    let mut p = prefix.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(name);
                    p
                } else {
                    name.to_vec()
                }
            }
        };
        let link = ext.link.unwrap_or_else(|| field(&h[157..257]).to_vec());
        if path.is_empty() {
            return Err(TarError::bad(at, "entry with an empty name"));
        }
        if path.contains(&0) || link.contains(&0) {
            return Err(TarError::bad(at, "entry name contains NUL"));
        }
        let typeflag = h[156];
        let kind = match typeflag {
            b'0' | b'\0' | b'7' if path.ends_with(b"/") => Kind::Dir,
            b'0' | b'\0' | b'7' => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => {
                return Err(TarError::Unsupported {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    kind: other as char,
                })
            }
        };
        while path.len() > 1 && path.ends_with(b"/") {
            path.pop();
        }
        let mode = parse_number(&h[100..108], at, "mode")?;
        // Owners outside u32 (negative, or huge base-256 values) are clamped by `id`.
        let id = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        let uid = match ext.uid {
            Some(u) => u,
            None => id(parse_number(&h[108..116], at, "uid")?),
        };
        let gid = match ext.gid {
            Some(g) => g,
            None => id(parse_number(&h[116..124], at, "gid")?),
        };
        let (mtime, mtime_nsec) = match ext.mtime {
            Some(t) => t,
            None => (parse_number(&h[136..148], at, "mtime")?, 0),
        };
        // Only regular files carry data (as Go's archive/tar and so Docker read it).
        let size = if kind == Kind::File {
            ext.size.unwrap_or(size)
        } else {
            0
        };
        self.remaining = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        Ok(Entry {
            path,
            link,
            kind,
            mode: (mode as u64 & 0o7777) as u32,
            size,
            mtime,
            mtime_nsec,
            uid,
            gid,
            xattrs: ext.xattrs,
        })
    }

    /// Reads a metadata payload whose size was already checked against [`MAX_META_LEN`].
    fn read_payload(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let mut buf = vec![0u8; size as usize];
        self.read_exact_or_truncated(&mut buf, "archive ends inside an extended header")?;
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.skip(pad)?;
        Ok(buf)
    }

    /// Reads one block; `false` on a clean end of input before its first byte.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.offset += got as u64;
        match got {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => Err(TarError::Truncated("archive ends inside a header")),
        }
    }

    fn read_exact_or_truncated(
        &mut self,
        buf: &mut [u8],
        why: &'static str,
    ) -> Result<(), TarError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(TarError::Truncated(why)),
            Err(e) => Err(TarError::Io(e)),
        }
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => return Err(TarError::Truncated("archive ends inside an entry's data")),
                Ok(k) => {
                    n -= k as u64;
                    self.offset += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Reader<R> {
    /// Reads the current entry's data; `Ok(0)` at its end. Input that ends early is an
    /// `UnexpectedEof` error.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.remaining.min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated tar: archive ends inside an entry's data",
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The bytes of a NUL-terminated (or full-width) header field.
fn field(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

fn verify_checksum(h: &[u8; BLOCK], at: u64) -> Result<(), TarError> {
    let stored = parse_number(&h[148..156], at, "checksum")?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    // Some old tars summed signed chars; accept either, as GNU tar and Go do.
    if stored == unsigned || stored == signed {
        Ok(())
    } else {
        Err(TarError::Checksum { offset: at })
    }
}

/// A numeric header field: octal text (space/NUL padded) or GNU base-256 (high bit set).
fn parse_number(f: &[u8], at: u64, what: &str) -> Result<i64, TarError> {
    if f[0] & 0x80 != 0 {
        // Base-256, two's complement: 0x80 marks a positive number, 0xff a negative one.
        let negative = f[0] & 0x40 != 0;
        let mut v: i128 = if negative { -1 } else { 0 };
        for (i, &b) in f.iter().enumerate() {
            let b = if i == 0 {
                b & 0x7f | if negative { 0x80 } else { 0 }
            } else {
                b
            };
            v = (v << 8) | b as i128;
            if v > i64::MAX as i128 || v < i64::MIN as i128 {
                return Err(TarError::bad(at, format!("{what} field out of range")));
            }
        }
        return Ok(v as i64);
    }
    let s = f.iter().skip_while(|&&c| c == b' ' || c == 0);
    let mut v: i64 = 0;
    for &c in s {
        match c {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add((c - b'0') as i64))
                    .ok_or_else(|| TarError::bad(at, format!("{what} field out of range")))?;
            }
            b' ' | 0 => break,
            _ => {
                return Err(TarError::bad(
                    at,
                    format!("{what} field is not an octal number"),
                ))
            }
        }
    }
    Ok(v)
}

/// Applies the records of a PAX extended header (`"<len> <key>=<value>\n"`).
fn parse_pax(mut b: &[u8], ext: &mut Extensions, at: u64) -> Result<(), TarError> {
    let bad = |why: &str| TarError::bad(at, format!("pax header: {why}"));
    while !b.is_empty() {
        let sp = b
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&b[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad record length"))?;
        if len <= sp + 1 || len > b.len() || b[len - 1] != b'\n' {
            return Err(bad("bad record length"));
        }
        let rec = &b[sp + 1..len - 1];
        b = &b[len..];
        let eq = rec
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| bad("record without '='"))?;
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        match key {
            b"path" => ext.path = Some(value.to_vec()),
            b"linkpath" => ext.link = Some(value.to_vec()),
            b"size" => {
                let s = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                ext.size = Some(s.ok_or_else(|| bad("bad size"))?);
            }
            b"mtime" => ext.mtime = Some(parse_pax_time(value).ok_or_else(|| bad("bad mtime"))?),
            b"uid" | b"gid" => {
                let v = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                let v = Some(v.ok_or_else(|| bad("bad uid or gid"))?);
                if key == b"uid" {
                    ext.uid = v;
                } else {
                    ext.gid = v;
                }
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                ext.xattrs
                    .push((k[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()));
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(bad("GNU sparse files are not supported"));
            }
            // uname/gname/atime/ctime and other vendors' records: not used.
            _ => {}
        }
    }
    Ok(())
}

/// `"[-]SECONDS[.FRACTION]"` to seconds and nanoseconds (floor for negative times).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nsec += (c - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nsec > 0 {
            Some((-secs - 1, 1_000_000_000 - nsec))
        } else {
            Some((-secs, 0))
        }
    } else {
        Some((secs, nsec))
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A small tar writer for tests: ustar headers from `format`, plus PAX and GNU extensions and
    //! deliberately hostile shapes.
    use crate::format::{pad_to_block, tar_checksum, tar_header, tar_number, BLOCK};

    #[derive(Default)]
    pub struct TarBuilder {
        pub bytes: Vec<u8>,
    }

    impl TarBuilder {
        pub fn new() -> TarBuilder {
            TarBuilder::default()
        }

        /// Appends a raw header (name must fit in 100 bytes) and its data.
        pub fn raw(
            &mut self,
            name: &str,
            typeflag: u8,
            mode: u32,
            link: &str,
            data: &[u8],
        ) -> &mut Self {
            self.raw_mtime(name, typeflag, mode, link, data, 1_600_000_000)
        }

        pub fn raw_mtime(
            &mut self,
            name: &str,
            typeflag: u8,
            mode: u32,
            link: &str,
            data: &[u8],
            mtime: u64,
        ) -> &mut Self {
            let mut h = tar_header(name, data.len() as u64, mode, mtime, typeflag);
            assert!(link.len() <= 100);
            h[157..157 + link.len()].copy_from_slice(link.as_bytes());
            tar_checksum(&mut h);
            self.push(&h, data)
        }

        pub fn push(&mut self, h: &[u8; BLOCK], data: &[u8]) -> &mut Self {
            self.bytes.extend_from_slice(h);
            self.bytes.extend_from_slice(data);
            let padded = pad_to_block(self.bytes.len() as u64) as usize;
            self.bytes.resize(padded, 0);
            self
        }

        pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
            self.raw(name, b'0', mode, "", data)
        }
        pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
            self.raw(name, b'5', mode, "", b"")
        }
        pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.raw(name, b'2', 0o777, target, b"")
        }
        pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.raw(name, b'1', 0o644, target, b"")
        }

        /// A PAX `x` header with the given records, then the entry itself under a short name.
        pub fn pax(&mut self, records: &[(&str, &str)]) -> &mut Self {
            let mut payload = Vec::new();
            for (k, v) in records {
                let body = format!(" {k}={v}\n");
                let mut len = body.len() + 1;
                while format!("{len}{body}").len() != len {
                    len += 1;
                }
                payload.extend_from_slice(format!("{len}{body}").as_bytes());
            }
            self.raw("PaxHeaders/x", b'x', 0o644, "", &payload)
        }

        /// A GNU `L` (long name) or `K` (long link) record with the GNU magic.
        pub fn gnu_long(&mut self, typeflag: u8, value: &str) -> &mut Self {
            let mut data = value.as_bytes().to_vec();
            data.push(0);
            let mut h = tar_header("././@LongLink", data.len() as u64, 0o644, 0, typeflag);
            h[257..265].copy_from_slice(b"ustar  \0");
            tar_checksum(&mut h);
            self.push(&h, &data)
        }

        /// A header that claims `size` bytes of payload but carries none.
        pub fn claim(&mut self, name: &str, typeflag: u8, size: u64) -> &mut Self {
            let mut h = tar_header(name, 0, 0o644, 0, typeflag);
            tar_number(&mut h[124..136], size);
            tar_checksum(&mut h);
            self.bytes.extend_from_slice(&h);
            self
        }

        pub fn finish(&mut self) -> Vec<u8> {
            let mut b = std::mem::take(&mut self.bytes);
            b.extend_from_slice(&[0u8; 2 * BLOCK]);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::TarBuilder;
    use super::*;
    use crate::format::{tar_checksum, tar_header, tar_number};

    fn all(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            r.read_to_end(&mut data).map_err(TarError::Io)?;
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_ustar_files_dirs_and_links_with_data() {
        let tar = TarBuilder::new()
            .dir("etc/", 0o755)
            .file("etc/hostname", 0o4755, b"box\n")
            .symlink("etc/link", "../usr/x")
            .hardlink("etc/hard", "etc/hostname")
            .raw("pipe", b'6', 0o600, "", b"")
            .finish();
        let got = all(&tar).unwrap();
        let kinds: Vec<_> = got.iter().map(|(e, _)| (e.path.clone(), e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (b"etc".to_vec(), Kind::Dir),
                (b"etc/hostname".to_vec(), Kind::File),
                (b"etc/link".to_vec(), Kind::Symlink),
                (b"etc/hard".to_vec(), Kind::Hardlink),
                (b"pipe".to_vec(), Kind::Fifo),
            ]
        );
        assert_eq!(got[1].1, b"box\n");
        assert_eq!(got[1].0.mode, 0o4755);
        assert_eq!(got[1].0.mtime, 1_600_000_000);
        assert_eq!(got[2].0.link, b"../usr/x");
    }

    #[test]
    fn unread_data_is_skipped_by_the_next_entry() {
        let tar = TarBuilder::new()
            .file("a", 0o644, &[7u8; 1500])
            .file("b", 0o644, b"x")
            .finish();
        let mut r = Reader::new(&tar[..]);
        assert_eq!(r.next_entry().unwrap().unwrap().path, b"a");
        assert_eq!(r.next_entry().unwrap().unwrap().path, b"b");
        assert!(r.next_entry().unwrap().is_none());
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn ustar_prefix_field_is_joined() {
        let mut h = tar_header("name.txt", 0, 0o644, 0, b'0');
        h[345..345 + 9].copy_from_slice(b"some/long");
        tar_checksum(&mut h);
        let tar = TarBuilder::new().push(&h, b"").finish();
        assert_eq!(all(&tar).unwrap()[0].0.path, b"some/long/name.txt");
    }

    #[test]
    fn pax_overrides_path_linkpath_size_and_mtime() {
        let long = "d/".repeat(150) + "file";
        let tar = TarBuilder::new()
            .pax(&[("path", &long), ("mtime", "1700000000.25"), ("uid", "0")])
            .file("short", 0o644, b"data")
            .pax(&[("linkpath", &("t/".repeat(80) + "x"))])
            .symlink("s", "short-target")
            .finish();
        let got = all(&tar).unwrap();
        assert_eq!(got[0].0.path, long.as_bytes());
        assert_eq!(
            (got[0].0.mtime, got[0].0.mtime_nsec),
            (1_700_000_000, 250_000_000)
        );
        assert_eq!(got[0].1, b"data");
        assert_eq!(got[1].0.link, ("t/".repeat(80) + "x").as_bytes());
        assert_eq!(got[1].0.path, b"s");
    }

    #[test]
    fn pax_global_headers_are_ignored() {
        let mut b = TarBuilder::new();
        b.raw(
            "pax_global_header",
            b'g',
            0o644,
            "",
            b"20 path=/etc/passwd\n",
        );
        let tar = b.file("a", 0o644, b"").finish();
        let got = all(&tar).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.path, b"a");
    }

    #[test]
    fn gnu_long_name_and_long_link() {
        let name = "n/".repeat(120) + "end";
        let link = "l/".repeat(120) + "target";
        let tar = TarBuilder::new()
            .gnu_long(b'L', &name)
            .gnu_long(b'K', &link)
            .symlink("trunc", "trunc")
            .finish();
        let got = all(&tar).unwrap();
        assert_eq!(got[0].0.path, name.as_bytes());
        assert_eq!(got[0].0.link, link.as_bytes());
    }

    #[test]
    fn base256_sizes_and_times() {
        let mut h = tar_header("big", 0, 0o644, 0, b'0');
        tar_number(&mut h[124..136], 3);
        h[136..148].fill(0);
        h[136] = 0x80;
        h[140..148].copy_from_slice(&(1u64 << 40).to_be_bytes());
        tar_checksum(&mut h);
        let tar = TarBuilder::new().push(&h, b"abc").finish();
        let got = all(&tar).unwrap();
        assert_eq!(got[0].0.mtime, 1 << 40);
        assert_eq!(got[0].1, b"abc");
        assert_eq!(parse_number(&[0xff; 8], 0, "x").unwrap(), -1);
    }

    #[test]
    fn bad_checksum_is_an_error() {
        let mut tar = TarBuilder::new().file("a", 0o644, b"x").finish();
        tar[0] = b'b';
        let e = all(&tar).unwrap_err();
        assert_eq!(e.to_string(), "tar header checksum mismatch at offset 0");
    }

    #[test]
    fn oversized_pax_header_is_refused_without_allocating() {
        let tar = TarBuilder::new()
            .claim("PaxHeaders/evil", b'x', 1 << 30)
            .finish();
        let e = all(&tar).unwrap_err().to_string();
        assert_eq!(
            e,
            "tar header for pax extended header PaxHeaders/evil too large (1073741824 bytes, limit 1048576)"
        );
    }

    #[test]
    fn oversized_gnu_long_name_is_refused() {
        let tar = TarBuilder::new()
            .claim("././@LongLink", b'L', (1 << 20) + 1)
            .finish();
        let e = all(&tar).unwrap_err().to_string();
        assert!(
            e.starts_with("tar header for gnu long name ././@LongLink too large"),
            "{e}"
        );
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_clean_end() {
        let tar = TarBuilder::new()
            .pax(&[("path", "p/q")])
            .file("a", 0o644, &[1u8; 700])
            .file("b", 0o644, b"bb")
            .finish();
        // Cut anywhere before the first end-of-archive block.
        let end = tar.len() - 1024;
        for cut in 0..end {
            assert!(
                all(&tar[..cut]).is_err(),
                "cut at {cut} read as a complete archive"
            );
        }
        // One zero block then end of input is accepted, as GNU tar and Go accept it.
        assert_eq!(all(&tar[..end + 512]).unwrap().len(), 2);
    }

    #[test]
    fn header_only_types_carry_no_data() {
        // A symlink header claiming a size: the next header follows directly (Go's reading).
        let mut h = tar_header("s", 0, 0o777, 0, b'2');
        tar_number(&mut h[124..136], 5);
        tar_checksum(&mut h);
        let mut b = TarBuilder::new();
        b.bytes.extend_from_slice(&h);
        let tar = b.file("f", 0o644, b"x").finish();
        let got = all(&tar).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.size, 0);
    }

    #[test]
    fn sparse_and_unknown_types_are_refused() {
        let tar = TarBuilder::new().raw("s", b'S', 0o644, "", b"").finish();
        assert_eq!(
            all(&tar).unwrap_err().to_string(),
            "tar entry s: unsupported type 'S'"
        );
        let tar = TarBuilder::new()
            .pax(&[("GNU.sparse.size", "10")])
            .file("a", 0o644, b"")
            .finish();
        assert!(all(&tar).unwrap_err().to_string().contains("sparse"));
    }

    #[test]
    fn pax_time_parsing() {
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn old_style_dir_with_trailing_slash() {
        let tar = TarBuilder::new()
            .raw("olddir/", b'0', 0o755, "", b"")
            .finish();
        let got = all(&tar).unwrap();
        assert_eq!(
            (got[0].0.path.as_slice(), got[0].0.kind),
            (&b"olddir"[..], Kind::Dir)
        );
    }
}
