//! Checking a file's signature ([`crate::format::signature`]) against a public key in PEM.
//! Shared by the loader (`--verify-key`) and the packager (`oci2bin verify`); signing is the
//! packager's alone.

use crate::format::signature::{SignatureBlock, SIGNATURE_LEN};
use crate::format::{Trailer, TRAILER_LEN};
use p256::ecdsa::signature::DigestVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the file is not signed")]
    NotSigned,
    /// Signed, but not validly by this key: the reason.
    #[error("{0}")]
    Invalid(String),
    /// The public key cannot be used: the reason.
    #[error("{0}")]
    Key(String),
    #[error("read the file: {0}")]
    Read(#[from] io::Error),
}

/// A P-256 public key and its id (what a signature block names).
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    id: [u8; 32],
}

impl PublicKey {
    /// A key in PEM as `openssl ec -pubout` and `oci2bin keygen` write it (`BEGIN PUBLIC KEY`:
    /// a SubjectPublicKeyInfo).
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, TrustError> {
        let der = pem_body(text, "PUBLIC KEY").ok_or_else(|| {
            TrustError::Key("not a PEM public key (-----BEGIN PUBLIC KEY-----)".into())
        })?;
        let point = spki_p256_point(&der)
            .ok_or_else(|| TrustError::Key("not an ECDSA P-256 (prime256v1) public key".into()))?;
        PublicKey::from_sec1(point)
    }

    /// A key as a SEC1 point (65 bytes uncompressed, or 33 compressed).
    pub fn from_sec1(point: &[u8]) -> Result<PublicKey, TrustError> {
        let key = VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| TrustError::Key("the public key is not a point of P-256".into()))?;
        Ok(PublicKey::from(key))
    }

    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// The uncompressed SEC1 point (what the id hashes).
    pub fn sec1(&self) -> [u8; 65] {
        let p = self.key.to_encoded_point(false);
        p.as_bytes()
            .try_into()
            .expect("an uncompressed P-256 point is 65 bytes")
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl From<VerifyingKey> for PublicKey {
    fn from(key: VerifyingKey) -> PublicKey {
        let id = Sha256::digest(key.to_encoded_point(false).as_bytes()).into();
        PublicKey { key, id }
    }
}

/// The first 12 hex digits of a key id, as messages show it.
pub fn short_id(id: &[u8; 32]) -> String {
    id[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature block of a file of `len` bytes whose trailer is `t`: `NotSigned`, or
/// `Invalid` when it is not where a signed file has it (directly after the runtime record,
/// directly before the trailer) or not a block.
pub fn signature_block(file: &File, len: u64, t: &Trailer) -> Result<SignatureBlock, TrustError> {
    if t.signature.is_empty() {
        return Err(TrustError::NotSigned);
    }
    if t.signature.len != SIGNATURE_LEN as u64
        || t.signature.offset != t.runtime.end()
        || t.signature.end() != len.saturating_sub(TRAILER_LEN as u64)
    {
        return Err(TrustError::Invalid(
            "the signature block is not where a signed file has it (file corrupt)".into(),
        ));
    }
    let mut b = [0u8; SIGNATURE_LEN];
    file.read_exact_at(&mut b, t.signature.offset)?;
    SignatureBlock::decode(&b).map_err(|e| TrustError::Invalid(e.to_string()))
}

/// Checks the signature of `file` (`len` bytes, trailer `t`) against `key`, reading every
/// signed byte once.
pub fn verify_file(file: &File, len: u64, t: &Trailer, key: &PublicKey) -> Result<(), TrustError> {
    verify_with(file, len, t, key, None)
}

/// [`verify_file`], with the metadata and runtime record as already read (`record`, the
/// trailer's `hashed()` span): the signature then covers exactly the bytes the caller uses,
/// even if the file changes meanwhile.
pub fn verify_with(
    file: &File,
    len: u64,
    t: &Trailer,
    key: &PublicKey,
    record: Option<&[u8]>,
) -> Result<(), TrustError> {
    let block = signature_block(file, len, t)?;
    verify_block(file, t, key, &block, record)
}

/// [`verify_with`] for the file's signature block as [`signature_block`] read it.
pub fn verify_block(
    file: &File,
    t: &Trailer,
    key: &PublicKey,
    block: &SignatureBlock,
    record: Option<&[u8]>,
) -> Result<(), TrustError> {
    if block.key_id != key.id {
        return Err(TrustError::Invalid(format!(
            "signed by another key (id {}), not by this one (id {})",
            short_id(&block.key_id),
            short_id(&key.id)
        )));
    }
    let sig = Signature::from_slice(&block.signature)
        .map_err(|_| TrustError::Invalid("the signature is malformed".into()))?;
    let mut h = Sha256::new();
    match record {
        Some(r) if r.len() as u64 == t.hashed().len && t.hashed().end() == t.signature.offset => {
            hash_range(file, 0, t.metadata.offset, &mut h)?;
            h.update(r);
        }
        _ => hash_range(file, 0, t.signature.offset, &mut h)?,
    }
    key.key.verify_digest(h, &sig).map_err(|_| {
        TrustError::Invalid(
            "the signature does not match the file's contents (changed after signing)".into(),
        )
    })
}

/// Feeds `len` bytes of `file` from `offset` to `h`.
pub fn hash_range(file: &File, offset: u64, len: u64, h: &mut Sha256) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, end) = (offset, offset + len);
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// The DER inside a PEM block labelled `label` (the first such block).
pub fn pem_body(text: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    base64_decode(&text[start..stop])
}

/// Standard base64 with padding, whitespace ignored.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits, mut pad) = (0u32, 0u32, 0usize);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (pad <= 2 && bits < 6).then_some(out)
}

/// The EC point of a DER SubjectPublicKeyInfo of a P-256 key: SEQUENCE { SEQUENCE { OID
/// id-ecPublicKey, OID prime256v1 }, BIT STRING (no unused bits) point }. Short-form lengths
/// only: such a key is at most 91 bytes.
fn spki_p256_point(der: &[u8]) -> Option<&[u8]> {
    const ALGORITHM: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let rest = match der {
        [0x30, n, rest @ ..] if usize::from(*n) == rest.len() => rest,
        _ => return None,
    };
    match rest.strip_prefix(&ALGORITHM)? {
        [0x03, n, 0x00, point @ ..] if usize::from(*n) == point.len() + 1 => Some(point),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout`.
    const PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEofnI52VBNIuTy93Ie5QgfUDoPjbn
nXjj6XdV/vBNbPebORciBvlyjliguI0nxyfoFRZrJcNz7cVwL4jA2086vA==
-----END PUBLIC KEY-----
";

    #[test]
    fn an_openssl_public_key_parses_and_its_id_hashes_its_point() {
        let k = PublicKey::from_pem(PUB_PEM.as_bytes()).unwrap();
        let sec1 = k.sec1();
        assert_eq!(sec1[0], 4);
        assert_eq!(k.id(), <[u8; 32]>::from(Sha256::digest(sec1)));
        assert_eq!(PublicKey::from_sec1(&sec1).unwrap().id(), k.id());
    }

    #[test]
    fn what_is_not_a_p256_public_key_is_refused_with_the_reason() {
        let cases: [(&str, &str); 4] = [
            ("hello", "not a PEM public key"),
            (
                "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
                "not a PEM public key",
            ),
            // An RSA key's algorithm.
            (
                "-----BEGIN PUBLIC KEY-----\nMA0GCSqGSIb3DQEBAQUA\n-----END PUBLIC KEY-----\n",
                "not an ECDSA P-256",
            ),
            (
                &PUB_PEM.replace("L4jA2086", "L4jA2087"),
                "not a point of P-256",
            ),
        ];
        for (pem, want) in cases {
            let e = PublicKey::from_pem(pem.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{pem:?}: {e}");
        }
    }

    #[test]
    fn base64_decodes_as_the_standard_says() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("aGV=sbG8").is_none());
        assert!(base64_decode("a*").is_none());
    }
}
