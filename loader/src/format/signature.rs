//! The signature block: 112 bytes directly after the runtime record and directly before the
//! trailer (whose `signature` span names it), present only in a signed file.
//!
//! ```text
//!   0  magic "O2BSIG1\0"                    8
//!   8  algorithm u32 (little-endian)        4   1 = ECDSA P-256 with SHA-256; others refused
//!  12  reserved u32                         4   zero
//!  16  key id                              32   sha256 of the signer's public key as a SEC1
//!                                               uncompressed point (0x04 ‖ X ‖ Y, 65 bytes)
//!  48  signature r ‖ s                     64   big-endian, 32 bytes each
//! 112
//! ```
//!
//! The signed message is every byte of the file before the block: the loader, the image
//! archive, the metadata and the runtime record. It is a plain ECDSA-SHA256 signature of those
//! bytes, so `openssl dgst -sha256 -verify PUB.pem` checks it too (with r ‖ s in DER). The
//! trailer after the block is not signed: it only locates regions that are, and a loader that
//! checks signatures requires them in this order with no gap, so it cannot point elsewhere.
//! Signing again replaces the block; the tar archive is never touched, so `docker load`, skopeo
//! and `tar` read a signed file as they read an unsigned one.

use super::FormatError;

pub const SIGNATURE_MAGIC: &[u8; 8] = b"O2BSIG1\0";
pub const SIGNATURE_LEN: usize = 112;
/// ECDSA over NIST P-256 with SHA-256: the one algorithm of format 1.
pub const ALG_ECDSA_P256_SHA256: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureBlock {
    pub key_id: [u8; 32],
    pub signature: [u8; 64],
}

impl SignatureBlock {
    pub fn encode(&self) -> [u8; SIGNATURE_LEN] {
        let mut b = [0u8; SIGNATURE_LEN];
        b[0..8].copy_from_slice(SIGNATURE_MAGIC);
        b[8..12].copy_from_slice(&ALG_ECDSA_P256_SHA256.to_le_bytes());
        b[16..48].copy_from_slice(&self.key_id);
        b[48..112].copy_from_slice(&self.signature);
        b
    }

    pub fn decode(b: &[u8]) -> Result<SignatureBlock, FormatError> {
        if b.len() != SIGNATURE_LEN || &b[0..8] != SIGNATURE_MAGIC {
            return Err(FormatError::BadRecord("the signature block is not one"));
        }
        if u32::from_le_bytes(b[8..12].try_into().unwrap()) != ALG_ECDSA_P256_SHA256 {
            return Err(FormatError::BadRecord(
                "the signature block names an unknown algorithm",
            ));
        }
        if b[12..16] != [0; 4] {
            return Err(FormatError::BadRecord(
                "the signature block's reserved bytes are not zero",
            ));
        }
        Ok(SignatureBlock {
            key_id: b[16..48].try_into().unwrap(),
            signature: b[48..112].try_into().unwrap(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_and_anything_else_is_refused() {
        let s = SignatureBlock {
            key_id: [7; 32],
            signature: [9; 64],
        };
        let b = s.encode();
        assert_eq!(SignatureBlock::decode(&b).unwrap(), s);
        assert!(SignatureBlock::decode(&b[..111]).is_err());
        let mut alg = b;
        alg[8] = 2;
        assert!(SignatureBlock::decode(&alg).is_err());
        let mut magic = b;
        magic[0] ^= 1;
        assert!(SignatureBlock::decode(&magic).is_err());
        let mut reserved = b;
        reserved[13] = 1;
        assert!(SignatureBlock::decode(&reserved).is_err());
    }
}
