//! `oci2bin keygen`, `sign` and `verify`: ECDSA P-256 signatures over every byte of a file
//! before its signature block (the block's layout: `loader::format::signature`; checking one:
//! `loader::trust`, shared with the loader's `--verify-key`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use loader::format::signature::SignatureBlock;
use loader::format::{Span, Trailer};
use loader::trust::{self, PublicKey, TrustError};
use p256::ecdsa::signature::DigestSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::sink::polyglot;

/// Where a passphrase for an encrypted private key comes from.
#[derive(Debug, Clone, Default)]
pub enum Passphrase {
    /// `$OCI2BIN_KEY_PASSPHRASE`, else asked for on the terminal.
    #[default]
    Ask,
    File(PathBuf),
}

impl Passphrase {
    fn get(&self, key: &Path) -> Result<String> {
        match self {
            Passphrase::File(p) => {
                let s = fs::read_to_string(p).map_err(Error::io("cannot read", p))?;
                Ok(s.strip_suffix('\n').unwrap_or(&s).to_string())
            }
            Passphrase::Ask => {
                if let Ok(p) = std::env::var("OCI2BIN_KEY_PASSPHRASE") {
                    return Ok(p);
                }
                rpassword::prompt_password(format!("passphrase for {}: ", key.display())).map_err(
                    |e| Error::IoOther {
                        what: format!(
                            "{} is encrypted and no passphrase could be asked for (set \
                             OCI2BIN_KEY_PASSPHRASE or pass --passphrase-file)",
                            key.display()
                        ),
                        source: e,
                    },
                )
            }
        }
    }
}

/// The text of the first PEM block labelled `label` in `text`, begin and end lines included
/// (`openssl ecparam -genkey` writes an `EC PARAMETERS` block before the key).
fn pem_block<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}

/// A P-256 private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, as `oci2bin keygen` and `openssl
/// genpkey` write it), encrypted PKCS#8 (`BEGIN ENCRYPTED PRIVATE KEY`, passphrase asked for) or
/// SEC1 (`BEGIN EC PRIVATE KEY`, as `openssl ecparam -genkey` writes it).
pub fn load_private_key(path: &Path, pass: &Passphrase) -> Result<SigningKey> {
    let text = fs::read_to_string(path).map_err(Error::io("cannot read key", path))?;
    let pass = match pem_block(&text, "ENCRYPTED PRIVATE KEY") {
        Some(_) => pass.get(path)?,
        None => String::new(),
    };
    parse_private_key(&text, pass.as_bytes())
        .map_err(|why| Error::Invalid(format!("key {}: {why}", path.display())))
}

/// [`load_private_key`] on the key's text, with the passphrase of an encrypted one.
pub fn parse_private_key(text: &str, pass: &[u8]) -> std::result::Result<SigningKey, String> {
    if let Some(pem) = pem_block(text, "ENCRYPTED PRIVATE KEY") {
        return SigningKey::from_pkcs8_encrypted_pem(pem, pass)
            .map_err(|e| format!("cannot decrypt it (wrong passphrase, or not a P-256 key): {e}"));
    }
    if let Some(pem) = pem_block(text, "PRIVATE KEY") {
        return SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not an ECDSA P-256 private key in PKCS#8: {e}"));
    }
    if let Some(pem) = pem_block(text, "EC PRIVATE KEY") {
        use p256::elliptic_curve::SecretKey;
        return SecretKey::<p256::NistP256>::from_sec1_pem(pem)
            .map(SigningKey::from)
            .map_err(|e| format!("not an ECDSA P-256 private key in SEC1: {e}"));
    }
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err("a public key; signing needs the private one".into());
    }
    Err(
        "no PEM private key in it (BEGIN PRIVATE KEY, ENCRYPTED PRIVATE KEY or EC PRIVATE KEY)"
            .into(),
    )
}

/// A P-256 public key in PEM (`BEGIN PUBLIC KEY`); a private key gives its public half.
pub fn load_public_key(path: &Path, pass: &Passphrase) -> Result<PublicKey> {
    let text = fs::read(path).map_err(Error::io("cannot read key", path))?;
    if String::from_utf8_lossy(&text).contains("PRIVATE KEY-----") {
        return Ok(PublicKey::from(
            *load_private_key(path, pass)?.verifying_key(),
        ));
    }
    PublicKey::from_pem(&text).map_err(|e| Error::Invalid(format!("key {}: {e}", path.display())))
}

/// Writes a new key pair: `PRIVATE` (PKCS#8 PEM, mode 0600, created: never replaces a file) and
/// `PUBLIC` (SubjectPublicKeyInfo PEM). Returns the key's id.
pub fn keygen(private: &Path, public: &Path) -> Result<[u8; 32]> {
    let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Invalid(format!("encode the private key: {e}")))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Invalid(format!("encode the public key: {e}")))?;
    for p in [private, public] {
        if p.exists() {
            return Err(Error::Invalid(format!(
                "{} exists; not replacing a key",
                p.display()
            )));
        }
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private)
        .map_err(Error::io("cannot create", private))?;
    f.write_all(pem.as_bytes())
        .map_err(Error::io("cannot write", private))?;
    fs::write(public, public_pem).map_err(Error::io("cannot write", public))?;
    Ok(PublicKey::from(*key.verifying_key()).id())
}

/// Signs `input` with `key`, writing the signed file to `out` (which may be `input`: it is
/// replaced whole, by a rename). A signature already there is replaced. Returns the key id.
pub fn sign(input: &Path, out: &Path, key: &SigningKey) -> Result<[u8; 32]> {
    let (t, ..) = polyglot::read_back(input)?;
    let f = File::open(input).map_err(Error::io("cannot open", input))?;
    // Everything up to the end of the runtime record is signed; an old block and the trailer go.
    let signed = t.runtime.end();
    let mut h = Sha256::new();
    trust::hash_range(&f, 0, signed, &mut h).map_err(Error::io("cannot read", input))?;
    let sig: Signature = key.sign_digest(h);
    let id = PublicKey::from(*key.verifying_key()).id();
    let block = SignatureBlock {
        key_id: id,
        signature: sig.to_bytes().into(),
    };
    let trailer = Trailer {
        signature: Span::new(signed, block.encode().len() as u64),
        ..t
    };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".oci2bin-sign-")
        .tempfile_in(dir)
        .map_err(Error::io("cannot create a file in", dir))?;
    let written = (|| {
        io::copy(&mut io::Read::take(&f, signed), tmp.as_file_mut())?;
        tmp.write_all(&block.encode())?;
        tmp.write_all(&trailer.encode())?;
        tmp.as_file().sync_all()?;
        let mode = f.metadata()?.permissions().mode();
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode & 0o7777))
    })();
    written.map_err(Error::io("cannot write", tmp.path()))?;
    tmp.persist(out)
        .map_err(|e| Error::io("cannot write", out)(e.error))?;
    Ok(id)
}

/// What `verify` found.
pub enum Verdict {
    Valid { key_id: [u8; 32] },
    NotSigned,
    Invalid(String),
}

impl Verdict {
    /// `oci2bin verify`'s exit code: 0 valid, 1 not signed, 2 invalid.
    pub fn code(&self) -> i32 {
        match self {
            Verdict::Valid { .. } => 0,
            Verdict::NotSigned => 1,
            Verdict::Invalid(_) => 2,
        }
    }
}

/// Checks the signature of `file` against `key`. A file that cannot be read or is not an
/// oci2bin file is `Invalid`, with the reason.
pub fn verify(file: &Path, key: &PublicKey) -> Verdict {
    let (t, _, _, len) = match polyglot::read_back(file) {
        Ok(r) => r,
        Err(e) => return Verdict::Invalid(e.to_string()),
    };
    let f = match File::open(file) {
        Ok(f) => f,
        Err(e) => return Verdict::Invalid(format!("cannot open {}: {e}", file.display())),
    };
    match trust::verify_file(&f, len, &t, key) {
        Ok(()) => Verdict::Valid { key_id: key.id() },
        Err(TrustError::NotSigned) => Verdict::NotSigned,
        Err(e) => Verdict::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
