//! Gzip framing specs: streams from flate2's encoder (the reference), then edited by hand where a
//! test needs a field the encoder does not write or a broken stream.

use super::*;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use std::io::{BufReader, Write};

fn gz(data: &[u8]) -> Vec<u8> {
    finish(GzEncoder::new(Vec::new(), Compression::default()), data)
}

fn finish(mut e: GzEncoder<Vec<u8>>, data: &[u8]) -> Vec<u8> {
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Decodes through input buffers of several sizes, down to one byte, so header fields and
/// trailers straddle buffer refills; all must agree.
fn decode(z: &[u8]) -> io::Result<Vec<u8>> {
    let run = |cap| {
        let mut out = Vec::new();
        GzipMembers::new(BufReader::with_capacity(cap, z))
            .read_to_end(&mut out)
            .map(|_| out)
    };
    let first = run(1);
    for cap in [7, 64 << 10] {
        let same = match (&first, run(cap)) {
            (Ok(a), Ok(b)) => *a == b,
            (Err(a), Err(b)) => (a.kind(), a.to_string()) == (b.kind(), b.to_string()),
            _ => false,
        };
        assert!(same, "buffer size {cap} disagrees with size 1");
    }
    first
}

#[track_caller]
fn refused(z: &[u8], kind: io::ErrorKind, msg: &str) {
    let e = decode(z).expect_err("bad stream was accepted");
    assert_eq!((e.kind(), e.to_string().as_str()), (kind, msg));
}

fn text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"gzip member framing "[i % 20]).collect()
}

#[test]
fn single_member_decodes() {
    let data = text(100_000);
    assert_eq!(decode(&gz(&data)).unwrap(), data);
}

#[test]
fn empty_member_decodes_to_nothing() {
    assert_eq!(decode(&gz(b"")).unwrap(), b"");
}

#[test]
fn multi_member_stream_decodes_to_the_concatenation() {
    let (a, b) = (text(5000), b"second member".to_vec());
    let mut z = gz(&a);
    z.extend(gz(b""));
    z.extend(gz(&b));
    assert_eq!(decode(&z).unwrap(), [a, b].concat());
}

#[test]
fn every_header_field_is_skipped() {
    let data = text(3000);
    let builders = [
        GzBuilder::new().mtime(0x1234_5678).operating_system(3),
        GzBuilder::new().extra(vec![7u8; 300]),
        GzBuilder::new().extra(Vec::new()),
        GzBuilder::new().filename("layer.tar"),
        GzBuilder::new().comment("a comment"),
        GzBuilder::new()
            .extra(&b"AB\x02\x00xy"[..])
            .filename("f")
            .comment("c"),
    ];
    for b in builders {
        let z = finish(b.write(Vec::new(), Compression::fast()), &data);
        assert_eq!(decode(&z).unwrap(), data);
    }
}

/// Splices a header CRC (FHCRC; its value is not checked) and FTEXT into a member whose header,
/// as flate2 writes it, is `header_len` bytes.
fn with_header_crc(z: &[u8], header_len: usize) -> Vec<u8> {
    let mut out = z[..header_len].to_vec();
    out[3] |= FHCRC | 0x01;
    out.extend_from_slice(&[0xde, 0xad]);
    out.extend_from_slice(&z[header_len..]);
    out
}

#[test]
fn header_crc_and_text_flag_are_skipped() {
    let data = text(3000);
    assert_eq!(decode(&with_header_crc(&gz(&data), 10)).unwrap(), data);
    let all = GzBuilder::new()
        .extra(&b"xyz"[..])
        .filename("name")
        .comment("comment");
    let z = finish(all.write(Vec::new(), Compression::fast()), &data);
    let header_len = 10 + 2 + 3 + 5 + 8;
    assert_eq!(decode(&with_header_crc(&z, header_len)).unwrap(), data);
}

#[test]
fn truncation_anywhere_is_unexpected_eof() {
    let all = GzBuilder::new()
        .extra(&b"xyz"[..])
        .filename("name")
        .comment("comment");
    let one = finish(all.write(Vec::new(), Compression::fast()), &text(3000));
    let mut two = gz(b"first");
    let second_at = two.len();
    two.extend_from_slice(&one);
    // Every cut of a member, in its header, deflate data and trailer, and of the second member of
    // a stream (a cut right after the first member is a valid one-member stream).
    let cuts = (0..one.len())
        .map(|cut| &one[..cut])
        .chain((second_at + 1..two.len()).map(|cut| &two[..cut]));
    for z in cuts {
        let e = decode(z).expect_err("truncated stream was accepted");
        assert_eq!(
            e.kind(),
            io::ErrorKind::UnexpectedEof,
            "cut at {}: {e}",
            z.len()
        );
    }
    // An empty stream has no member at all.
    refused(&[], io::ErrorKind::UnexpectedEof, "truncated gzip stream");
    refused(
        &one[..one.len() - 3],
        io::ErrorKind::UnexpectedEof,
        "truncated gzip stream",
    );
}

#[test]
fn bad_magic_is_not_a_gzip_stream() {
    let mut z = gz(b"x");
    z[1] = 0x8c;
    refused(&z, io::ErrorKind::InvalidData, "not a gzip stream");
    refused(
        b"plain text, not gzip",
        io::ErrorKind::InvalidData,
        "not a gzip stream",
    );
}

#[test]
fn garbage_after_a_member_is_refused() {
    let mut z = gz(b"x");
    z.extend_from_slice(&[0; 16]);
    refused(&z, io::ErrorKind::InvalidData, "not a gzip stream");
}

#[test]
fn compression_methods_other_than_deflate_are_refused() {
    let mut z = gz(b"x");
    z[2] = 7;
    refused(
        &z,
        io::ErrorKind::InvalidData,
        "unsupported gzip compression method 7",
    );
}

#[test]
fn reserved_flag_bits_are_refused() {
    for bit in 5..8 {
        let mut z = gz(b"x");
        z[3] |= 1 << bit;
        refused(
            &z,
            io::ErrorKind::InvalidData,
            "reserved gzip header flags set",
        );
    }
}

#[test]
fn isize_mismatch_is_refused() {
    let mut z = gz(&text(1000));
    let n = z.len();
    z[n - 4..].copy_from_slice(&1001u32.to_le_bytes());
    refused(&z, io::ErrorKind::InvalidData, "gzip member size mismatch");
}

#[test]
fn crc_is_not_checked() {
    // The blob's sha256 covers it; a wrong CRC alone is not an error here.
    let data = text(1000);
    let mut z = gz(&data);
    let n = z.len();
    z[n - 8] ^= 0xff;
    assert_eq!(decode(&z).unwrap(), data);
}

#[test]
fn corrupt_deflate_data_is_refused() {
    let mut z = gz(b"x");
    // Block type 3 is reserved in deflate.
    z[10] = 0x07;
    refused(&z, io::ErrorKind::InvalidInput, "corrupt deflate stream");
}

#[test]
fn header_strings_are_bounded() {
    let data = b"payload";
    let at_limit = "n".repeat(MAX_HEADER_STRING);
    let z = finish(
        GzBuilder::new()
            .filename(at_limit.as_str())
            .comment(at_limit.as_str())
            .write(Vec::new(), Compression::fast()),
        data,
    );
    assert_eq!(decode(&z).unwrap(), data);
    // A hostile unterminated name is refused once past the limit, without reading to its end.
    let mut hostile = gz(b"")[..10].to_vec();
    hostile[3] = FNAME;
    hostile.resize(10 + 4 * MAX_HEADER_STRING, b'n');
    refused(
        &hostile,
        io::ErrorKind::InvalidData,
        "gzip header string too long",
    );
    hostile[3] = FCOMMENT;
    refused(
        &hostile,
        io::ErrorKind::InvalidData,
        "gzip header string too long",
    );
    // Shorter and unterminated: the stream simply ends early.
    hostile.truncate(100);
    refused(
        &hostile,
        io::ErrorKind::UnexpectedEof,
        "truncated gzip stream",
    );
}

#[test]
fn large_payload_round_trips() {
    // A few MiB mixing incompressible noise with repeats, so the inflater uses stored, fixed and
    // dynamic blocks and long back references.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(6 << 20);
    while data.len() < 6 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x & 3 == 0 {
            let back = (x >> 8) as usize % data.len().clamp(1, 30_000);
            let start = data.len().saturating_sub(back + 1);
            let run: Vec<u8> = data[start..].iter().take(200).copied().collect();
            data.extend(run);
        } else {
            data.extend_from_slice(&x.to_le_bytes()[..(x >> 60) as usize % 8 + 1]);
        }
    }
    let z = gz(&data);
    let mut out = Vec::new();
    GzipMembers::new(BufReader::new(&z[..]))
        .read_to_end(&mut out)
        .unwrap();
    assert!(out == data, "round trip differs");
}
