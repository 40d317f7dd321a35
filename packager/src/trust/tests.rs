//! Signing specs on files the polyglot writer makes; keys from `keygen`. The e2e suite
//! (tests/tests/trust.rs) covers openssl's keys, real images and the loader.

use super::*;

struct Keys {
    _dir: tempfile::TempDir,
    private: PathBuf,
    public: PathBuf,
}

fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    keygen(&private, &public).unwrap();
    (private, public)
}

fn setup() -> (Keys, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keys(dir.path(), "k");
    let file = dir.path().join("image");
    fs::write(&file, crate::sink::polyglot::tests::build(None).0).unwrap();
    (
        Keys {
            _dir: dir,
            private,
            public,
        },
        file,
    )
}

fn public(k: &Keys) -> PublicKey {
    load_public_key(&k.public, &Passphrase::Ask).unwrap()
}

fn code(file: &Path, key: &PublicKey) -> (i32, String) {
    let v = verify(file, key);
    let why = match &v {
        Verdict::Invalid(w) => w.clone(),
        _ => String::new(),
    };
    (v.code(), why)
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one() {
    let (k, _) = setup();
    assert_eq!(
        fs::metadata(&k.private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let e = keygen(&k.private, &k.public).unwrap_err().to_string();
    assert!(e.contains("exists"), "{e}");
    // The public key of the private one is the public file's.
    let from_private = load_public_key(&k.private, &Passphrase::Ask).unwrap();
    assert_eq!(from_private.id(), public(&k).id());
}

#[test]
fn a_signed_file_verifies_and_keeps_its_image_archive_byte_for_byte() {
    let (k, file) = setup();
    let before = fs::read(&file).unwrap();
    assert_eq!(code(&file, &public(&k)).0, 1, "unsigned");
    let key = load_private_key(&k.private, &Passphrase::Ask).unwrap();
    let id = sign(&file, &file, &key).unwrap();
    assert_eq!(id, public(&k).id());
    assert_eq!(code(&file, &public(&k)), (0, String::new()));
    let after = fs::read(&file).unwrap();
    let (t, ..) = polyglot::read_back(&file).unwrap();
    assert_eq!(after.len(), before.len() + 112);
    assert_eq!(
        after[..t.runtime.end() as usize],
        before[..t.runtime.end() as usize]
    );
    // Signing again (here with another key) replaces the block: one block, the new key's.
    let dir = file.parent().unwrap();
    let (other, other_pub) = keys(dir, "other");
    let other_key = load_private_key(&other, &Passphrase::Ask).unwrap();
    let out = dir.join("resigned");
    sign(&file, &out, &other_key).unwrap();
    assert_eq!(fs::read(&out).unwrap().len(), after.len());
    let other_pub = load_public_key(&other_pub, &Passphrase::Ask).unwrap();
    assert_eq!(code(&out, &other_pub).0, 0);
    let (c, why) = code(&out, &public(&k));
    assert_eq!(c, 2);
    assert!(why.contains("signed by another key"), "{why}");
}

#[test]
fn any_changed_byte_or_a_cut_makes_the_signature_invalid() {
    let (k, file) = setup();
    let key = load_private_key(&k.private, &Passphrase::Ask).unwrap();
    sign(&file, &file, &key).unwrap();
    let good = fs::read(&file).unwrap();
    let (t, ..) = polyglot::read_back(&file).unwrap();
    let sig = t.signature.offset as usize;
    let cases = [
        ("the loader", 100, "does not match"),
        (
            "the image archive",
            (t.tar.end() / 2) as usize,
            "does not match",
        ),
        ("the metadata", t.metadata.offset as usize + 1, ""),
        ("the runtime record", t.runtime.offset as usize + 1, ""),
        ("the signature", sig + 60, "does not match"),
        ("the key id", sig + 20, "signed by another key"),
    ];
    for (what, at, want) in cases {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        fs::write(&file, &bad).unwrap();
        let (c, why) = code(&file, &public(&k));
        assert_eq!(c, 2, "{what}: {why}");
        assert!(why.contains(want), "{what}: {why}");
    }
    fs::write(&file, &good[..good.len() - 1]).unwrap();
    assert_eq!(code(&file, &public(&k)).0, 2, "truncated");
}

#[test]
fn a_signature_block_moved_from_another_file_is_invalid() {
    let (k, file) = setup();
    let key = load_private_key(&k.private, &Passphrase::Ask).unwrap();
    let dir = file.parent().unwrap();
    // Another file: the same image built at another time, signed by the same key.
    let other = dir.join("other");
    fs::write(&other, crate::sink::polyglot::tests::build(Some(1)).0).unwrap();
    sign(&other, &other, &key).unwrap();
    sign(&file, &file, &key).unwrap();
    let (to, from) = (fs::read(&file).unwrap(), fs::read(&other).unwrap());
    let (tt, ..) = polyglot::read_back(&file).unwrap();
    let (ot, ..) = polyglot::read_back(&other).unwrap();
    let mut moved = to.clone();
    let (a, b) = (tt.signature.offset as usize, ot.signature.offset as usize);
    moved[a..a + 112].copy_from_slice(&from[b..b + 112]);
    assert_ne!(moved, to);
    fs::write(&file, &moved).unwrap();
    assert_eq!(code(&file, &public(&k)).0, 2);
}

#[test]
fn keys_that_cannot_sign_are_refused_with_the_reason() {
    let (k, _) = setup();
    let e = load_private_key(&k.public, &Passphrase::Ask)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("public key; signing needs the private one"),
        "{e}"
    );
    let junk = k.private.with_extension("junk");
    fs::write(&junk, "hello").unwrap();
    let e = load_private_key(&junk, &Passphrase::Ask)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no PEM private key"), "{e}");
}
