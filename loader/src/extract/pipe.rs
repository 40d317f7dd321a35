//! Decompression beside extraction: a forked child reads, hashes and decompresses a layer blob
//! into a pipe while this process creates the layer's files from it, as `tar -z` runs gzip beside
//! tar. Inflating a 63 MB gzip layer takes ~0.8 s of CPU and creating its files ~2 s: done one
//! after the other, the first is pure wait.
//!
//! The child then tells how it went on a second pipe, one message: whether the whole blob was
//! read and its sha256 matched, and the error that ended reading or decompressing, if any. The
//! parent combines it with its own result so the error a run reports is the one the inline path
//! reports (see [`Verdict::judge`]). A child whose reader stopped early (a hostile entry) gets
//! EPIPE and still hashes the rest: a corrupt blob is reported as corrupt, whatever broke first.

use super::stream::{LayerBytes, Named, ZstdFrames};
use super::{ErrorKind, READ_CHUNK};
use crate::format::{Compression, LayerRef};
use crate::gzip::GzipMembers;
use crate::sys::ns;
use crate::tar::TarError;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

/// Layers smaller than this are decompressed inline: a fork costs more than it saves. (Unit
/// tests pipe every compressed layer; the e2e suites' small layers take the inline path.)
#[cfg(not(test))]
pub(super) const MIN_SIZE: u64 = 1 << 20;
#[cfg(test)]
pub(super) const MIN_SIZE: u64 = 1;

/// The child decompressing a layer: its output, and where its verdict comes.
pub(super) struct Decompressor {
    pid: ns::pid_t,
    pub(super) data: File,
    verdict: File,
}

/// Starts the child for `layer` (compressed), or says why not (the caller decompresses inline).
pub(super) fn spawn(exe: &File, layer: &LayerRef) -> io::Result<Decompressor> {
    let (data_r, data_w) = ns::pipe()?;
    // 64 KiB by default: the child would wait for the reader every quarter of a read chunk.
    ns::grow_pipe(data_w.as_fd(), 1 << 20);
    let (verdict_r, verdict_w) = ns::pipe()?;
    match ns::fork()? {
        ns::Forked::Child => {
            drop((data_r, verdict_r));
            // Never outlive an extractor killed with -9.
            let _ = ns::kill_with_parent();
            let v = decompress(exe, layer, File::from(data_w));
            let _ = File::from(verdict_w).write_all(&v.encode());
            ns::exit_now(0)
        }
        ns::Forked::Parent(pid) => Ok(Decompressor {
            pid,
            data: File::from(data_r),
            verdict: File::from(verdict_r),
        }),
    }
}

/// The child's side: the blob decompressed into `out`, then the rest of it hashed.
fn decompress(exe: &File, layer: &LayerRef, mut out: File) -> Verdict {
    let mut src = LayerBytes::open(exe, layer);
    let mut dec: Box<dyn Read + '_> = match layer.compression {
        Compression::Zstd => Box::new(Named {
            what: "zstd",
            inner: ZstdFrames::new(&mut src),
        }),
        _ => Box::new(Named {
            what: "gzip",
            inner: GzipMembers::new(&mut src),
        }),
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut failed = None;
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            // The reader gave up (EPIPE): only the digest is still wanted.
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    drop((out, dec));
    let (drained, digest_ok) = LayerBytes::drain(src, layer);
    Verdict {
        read_error: drained.err().map(|e| e.to_string()),
        digest_ok,
        decompress_error: failed,
    }
}

impl Decompressor {
    /// Ends the child after the parent read what it wanted (closing `data` first, so a child
    /// still writing gets EPIPE), and judges the layer.
    pub(super) fn finish(self, parent: Result<(), ErrorKind>) -> Result<(), ErrorKind> {
        let Decompressor {
            pid,
            data,
            mut verdict,
        } = self;
        drop(data);
        if let Err(k @ ErrorKind::Interrupted(_)) = parent {
            let _ = ns::kill(pid, libc::SIGKILL);
            let _ = ns::wait_for(pid);
            return Err(k);
        }
        let mut msg = Vec::new();
        let read = verdict.read_to_end(&mut msg);
        let exit = ns::wait_for(pid);
        match (read, Verdict::decode(&msg)) {
            (Ok(_), Some(v)) => v.judge(parent),
            _ => Err(ErrorKind::Read(io::Error::other(format!(
                "layer decompressor ended with status {}",
                exit.map_or(-1, |e| e.code())
            )))),
        }
    }
}

/// What the child found.
#[derive(Debug, PartialEq)]
struct Verdict {
    digest_ok: bool,
    /// Reading the blob's rest after decompression failed.
    read_error: Option<String>,
    /// Decompression (or reading during it) failed: the stream the parent read stops there.
    decompress_error: Option<String>,
}

impl Verdict {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.digest_ok as u8];
        for e in [&self.read_error, &self.decompress_error] {
            let s = e.as_deref().unwrap_or("").as_bytes();
            v.push(e.is_some() as u8);
            v.extend_from_slice(&(s.len() as u32).to_le_bytes());
            v.extend_from_slice(s);
        }
        v
    }

    fn decode(mut b: &[u8]) -> Option<Verdict> {
        let digest_ok = *b.first()? == 1;
        b = &b[1..];
        let mut field = || {
            let (&some, rest) = b.split_first()?;
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let s = String::from_utf8_lossy(rest.get(4..4 + len)?).into_owned();
            b = &rest[4 + len..];
            Some((some == 1).then_some(s))
        };
        let read_error = field()?;
        let decompress_error = field()?;
        Some(Verdict {
            digest_ok,
            read_error,
            decompress_error,
        })
    }

    /// The layer's outcome, in the inline path's order: a read error, then a wrong digest, then
    /// what the parent met. A decompression error is what the parent met when it read the
    /// stream (the inline path's tar reader or trailing drain saw it; here the parent saw the
    /// stream end).
    fn judge(self, parent: Result<(), ErrorKind>) -> Result<(), ErrorKind> {
        if let Some(e) = self.read_error {
            return Err(ErrorKind::Read(io::Error::other(e)));
        }
        if !self.digest_ok {
            return Err(ErrorKind::Digest);
        }
        // The stream the parent read ended where decompression failed: whichever read saw the
        // end (a header's, an entry's data, the trailing drain) reports the failure itself.
        match (parent, self.decompress_error) {
            (Err(ErrorKind::Tar(_)), Some(e)) => {
                Err(ErrorKind::Tar(TarError::Io(io::Error::other(e))))
            }
            (Ok(()) | Err(ErrorKind::Read(_)), Some(e)) => {
                Err(ErrorKind::Read(io::Error::other(e)))
            }
            (r, _) => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_survives_the_pipe() {
        for v in [
            Verdict {
                digest_ok: true,
                read_error: None,
                decompress_error: None,
            },
            Verdict {
                digest_ok: false,
                read_error: Some("pread: bad".into()),
                decompress_error: Some(String::new()),
            },
        ] {
            assert_eq!(Verdict::decode(&v.encode()), Some(v));
        }
        assert_eq!(Verdict::decode(&[1, 0, 5, 0]), None);
    }

    #[test]
    fn a_wrong_digest_outranks_what_the_reader_met_and_a_decompression_error_names_itself() {
        let v = |digest_ok, d: Option<&str>| Verdict {
            digest_ok,
            read_error: None,
            decompress_error: d.map(String::from),
        };
        let tar = || Err(ErrorKind::Tar(TarError::Truncated("header")));
        assert!(matches!(
            v(false, None).judge(tar()),
            Err(ErrorKind::Digest)
        ));
        let e = v(true, Some("gzip: corrupt deflate stream")).judge(tar());
        assert_eq!(
            e.unwrap_err().to_string(),
            "reading tar stream: gzip: corrupt deflate stream"
        );
        let e = v(true, Some("gzip: trailer")).judge(Ok(()));
        assert_eq!(e.unwrap_err().to_string(), "reading layer: gzip: trailer");
        // The stream ended inside a file's data.
        let data = Err(ErrorKind::Read(io::Error::other(
            "truncated tar: inside data",
        )));
        let e = v(true, Some("zstd: stream ends early (truncated)")).judge(data);
        assert_eq!(
            e.unwrap_err().to_string(),
            "reading layer: zstd: stream ends early (truncated)"
        );
        // A hostile entry the parent refused before the stream broke stays the answer.
        let refused = Err(ErrorKind::Absolute("/etc".into()));
        let e = v(true, Some("gzip: corrupt")).judge(refused);
        assert_eq!(
            e.unwrap_err().to_string(),
            "entry /etc has an absolute path"
        );
        assert!(v(true, None).judge(Ok(())).is_ok());
    }
}
