//! Gzip member framing (RFC 1952) around flate2's raw deflate decoder, for layer blobs.
//!
//! flate2's `MultiGzDecoder` checks each member's CRC32, which links crc32fast (a 16 KiB table
//! plus its code) into the size-limited loader. The check is redundant here: the extractor hashes
//! every blob's compressed bytes and refuses it unless the sha256 matches. So the CRC is skipped;
//! only the trailer's ISIZE (decompressed length mod 2^32) is compared, which costs nothing.
//!
//! The bufread `DeflateDecoder` consumes exactly the input the inflater used, so after a member's
//! deflate data the source is positioned on its trailer, and then on the next member's header.

use flate2::bufread::DeflateDecoder;
use std::io::{self, BufRead, Read};

/// Longest FNAME or FCOMMENT accepted: these are unbounded in the format, and a hostile blob must
/// not make the header parser read forever.
pub const MAX_HEADER_STRING: usize = 64 << 10;

/// Reserved FLG bits (5–7): RFC 1952 says a decoder must refuse a member that sets them.
const FLG_RESERVED: u8 = 0xe0;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Before a member's header (at the start, or after a trailer when more bytes follow).
    Header,
    /// Inside a member's deflate data.
    Data,
    /// After the last member's trailer.
    Done,
}

/// Decodes a gzip stream of one or more members, as `MultiGzDecoder` does, but without CRC32.
pub struct GzipMembers<R: BufRead> {
    dec: DeflateDecoder<R>,
    state: State,
}

impl<R: BufRead> GzipMembers<R> {
    pub fn new(src: R) -> GzipMembers<R> {
        GzipMembers {
            dec: DeflateDecoder::new(src),
            state: State::Header,
        }
    }

    /// The source: after the last member, positioned at its end.
    pub fn src(&mut self) -> &mut R {
        self.dec.get_mut()
    }

    /// The buffered input, which must not be empty: the stream is not allowed to end here.
    fn more(&mut self) -> io::Result<&[u8]> {
        match self.src().fill_buf()? {
            [] => Err(truncated()),
            b => Ok(b),
        }
    }

    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0; N];
        self.src().read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => truncated(),
            _ => e,
        })?;
        Ok(b)
    }

    fn skip(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            let k = self.more()?.len().min(n);
            self.src().consume(k);
            n -= k;
        }
        Ok(())
    }

    /// Skips a zero-terminated header string.
    fn skip_string(&mut self) -> io::Result<()> {
        let mut len = 0;
        loop {
            let b = self.more()?;
            let (k, end) = match b.iter().position(|&c| c == 0) {
                Some(i) => (i, true),
                None => (b.len(), false),
            };
            len += k;
            if len > MAX_HEADER_STRING {
                return Err(invalid("gzip header string too long"));
            }
            self.src().consume(k + end as usize);
            if end {
                return Ok(());
            }
        }
    }

    fn header(&mut self) -> io::Result<()> {
        let [id1, id2, cm, flg, ..] = self.bytes::<10>()?;
        if [id1, id2] != [0x1f, 0x8b] {
            return Err(invalid("not a gzip stream"));
        }
        if cm != 8 {
            return Err(invalid(&format!(
                "unsupported gzip compression method {cm}"
            )));
        }
        if flg & FLG_RESERVED != 0 {
            return Err(invalid("reserved gzip header flags set"));
        }
        if flg & FEXTRA != 0 {
            let xlen = u16::from_le_bytes(self.bytes()?);
            self.skip(xlen.into())?;
        }
        if flg & FNAME != 0 {
            self.skip_string()?;
        }
        if flg & FCOMMENT != 0 {
            self.skip_string()?;
        }
        if flg & FHCRC != 0 {
            self.skip(2)?;
        }
        self.dec.reset_data();
        Ok(())
    }

    /// Checks the trailer of the member just decoded; its CRC32 is left to the blob's sha256.
    fn trailer(&mut self) -> io::Result<()> {
        let t = self.bytes::<8>()?;
        let isize = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if isize != self.dec.total_out() as u32 {
            return Err(invalid("gzip member size mismatch"));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Header => {
                    self.header()?;
                    self.state = State::Data;
                }
                State::Data => {
                    // The decoder returns 0 only at the end of the deflate data; input that runs
                    // out before it is an UnexpectedEof error.
                    let n = self.dec.read(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                    self.trailer()?;
                    let more = !self.src().fill_buf()?.is_empty();
                    self.state = if more { State::Header } else { State::Done };
                }
                State::Done => return Ok(0),
            }
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "truncated gzip stream")
}

#[cfg(test)]
mod tests;
