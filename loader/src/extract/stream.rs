//! A layer blob as a byte stream: read by offset from the oci2bin file, hashed on the way,
//! decompressed (gzip members, zstd frames) with errors that name the format.

use super::READ_CHUNK;
use crate::format::LayerRef;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;

/// The stored bytes of one layer, read with `pread` from the oci2bin file and hashed on the way.
pub(super) struct LayerBytes<'a> {
    pub(super) file: &'a File,
    pub(super) pos: u64,
    pub(super) end: u64,
    pub(super) hasher: Sha256,
}

impl<'a> LayerBytes<'a> {
    /// The stored bytes of `layer` in `file`, buffered for a decompressor.
    pub(super) fn open(file: &'a File, layer: &LayerRef) -> BufReader<LayerBytes<'a>> {
        let raw = LayerBytes {
            file,
            pos: layer.offset,
            end: layer.offset.saturating_add(layer.size),
            hasher: Sha256::new(),
        };
        BufReader::with_capacity(READ_CHUNK, raw)
    }

    /// Reads and hashes what the decompressor left unread, so the digest covers the whole blob:
    /// how that read went, and whether all of it was read and its sha256 is `layer`'s.
    pub(super) fn drain(
        mut src: BufReader<LayerBytes<'_>>,
        layer: &LayerRef,
    ) -> (io::Result<u64>, bool) {
        let drained = io::copy(&mut src, &mut io::sink());
        let raw = src.into_inner();
        let ok = raw.pos == raw.end && raw.hasher.finalize()[..] == layer.sha256;
        (drained, ok)
    }
}

impl Read for LayerBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// A decompressor whose errors say which format failed ("gzip: unexpected end of file").
pub(super) struct Named<R> {
    pub(super) what: &'static str,
    pub(super) inner: R,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let short = if e.kind() == io::ErrorKind::UnexpectedEof {
                "stream ends early (truncated)".to_string()
            } else {
                e.to_string()
            };
            io::Error::new(e.kind(), format!("{}: {short}", self.what))
        })
    }
}

/// A zstd stream of one or more frames (skippable frames skipped), decoded with ruzstd.
pub(super) struct ZstdFrames<R> {
    src: R,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    /// What a decoding error means: input that ran out is a truncated stream, anything else a
    /// corrupt one. (ruzstd's own error text is not kept: its formatting code is ~10 KiB of
    /// loader, and its messages are Debug dumps.)
    fn failure(&mut self) -> io::Error {
        match self.src.fill_buf() {
            Ok([]) => io::ErrorKind::UnexpectedEof.into(),
            Ok(_) => io::Error::new(io::ErrorKind::InvalidData, "corrupt or unsupported stream"),
            Err(e) => e,
        }
    }

    pub(super) fn new(src: R) -> ZstdFrames<R> {
        ZstdFrames {
            src,
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.dec.reset(&mut self.src) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let skipped =
                            io::copy(&mut (&mut self.src).take(length as u64), &mut io::sink())?;
                        if skipped != length as u64 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        continue;
                    }
                    Err(_) => return Err(self.failure()),
                }
            }
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                if self
                    .dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(want))
                    .is_err()
                {
                    return Err(self.failure());
                }
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() {
                self.in_frame = false;
            }
        }
    }
}

/// Copies the blob `layer` describes out of `file` into `out`, decompressed as it is stored
/// (gzip or plain; the same readers as extraction, so no second copy of them in the loader);
/// whether all of it was there and its sha256 matched. Used for the VM parts.
pub fn copy_blob(file: &File, layer: &LayerRef, out: &mut dyn io::Write) -> io::Result<bool> {
    let mut src = LayerBytes::open(file, layer);
    let copied = match layer.compression {
        crate::format::Compression::Gzip => io::copy(
            &mut Named {
                what: "gzip",
                inner: crate::gzip::GzipMembers::new(&mut src),
            },
            out,
        ),
        _ => io::copy(&mut src, out),
    };
    let (drained, ok) = LayerBytes::drain(src, layer);
    // A wrong digest outranks what the decompressor met: it names the problem.
    if !ok {
        return Ok(false);
    }
    copied.and(drained).map(|_| true)
}
