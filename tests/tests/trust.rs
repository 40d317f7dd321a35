//! Signing and verifying real files (issue 16): keys from openssl (SEC1, PKCS#8, encrypted
//! PKCS#8) and from `oci2bin keygen`; openssl checks our signatures; a signed file stays an
//! image archive for tar, skopeo and docker; every kind of tampering makes `verify` exit 2 and
//! the loader with `--verify-key` refuse before extraction (its cache stays empty, and a cached
//! entry of the good file does not run the bad one).

use e2e::{fixtures, text, Runner};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: e2e::world_tempdir(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// `oci2bin keygen NAME`: NAME.key and NAME.pub.
    fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let o = e2e::oci2bin_cmd(&["keygen", self.path(name).to_str().unwrap()]);
        assert!(o.status.success(), "keygen: {}", text(&o.stderr));
        (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.pub")),
        )
    }
    /// The public key of `private`, written by openssl.
    fn openssl_pub(&self, private: &Path, name: &str) -> PathBuf {
        let p = self.path(name);
        openssl(&[
            "ec",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            p.to_str().unwrap(),
            "-passin",
            "pass:open sesame",
        ]);
        p
    }
}

fn openssl(args: &[&str]) -> Output {
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o.stderr));
    o
}

/// A copy of the busybox file, world-readable, to sign.
fn copy_of(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::copy(fixtures::busybox_bin(), &f).unwrap();
    f
}

fn sign(key: &Path, file: &Path, extra: &[(&str, &str)]) -> Output {
    let mut c = Command::new(e2e::oci2bin());
    c.args(["sign", "--key"]).arg(key).arg("--in").arg(file);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn verify(key: &Path, file: &Path) -> (i32, String) {
    let o = Command::new(e2e::oci2bin())
        .args(["verify", "--key"])
        .arg(key)
        .arg("--in")
        .arg(file)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        text(&o.stdout) + &text(&o.stderr),
    )
}

#[test]
fn keys_from_openssl_and_keygen_sign_files_that_verify_and_openssl_agrees() {
    let k = Keys::new();
    let sec1 = k.path("sec1.pem");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        sec1.to_str().unwrap(),
    ]);
    let pkcs8 = k.path("pkcs8.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        pkcs8.to_str().unwrap(),
    ]);
    let encrypted = k.path("encrypted.pem");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        pkcs8.to_str().unwrap(),
        "-out",
        encrypted.to_str().unwrap(),
        "-passout",
        "pass:open sesame",
    ]);
    let (ours, ours_pub) = k.keygen("ours");
    let cases = [
        ("sec1", sec1.clone(), k.openssl_pub(&sec1, "sec1.pub")),
        ("pkcs8", pkcs8.clone(), k.openssl_pub(&pkcs8, "pkcs8.pub")),
        (
            "encrypted",
            encrypted.clone(),
            k.openssl_pub(&encrypted, "encrypted.pub"),
        ),
        ("keygen", ours.clone(), ours_pub.clone()),
    ];
    for (what, private, public) in &cases {
        let f = copy_of(k.dir.path(), what);
        let o = sign(private, &f, &[("OCI2BIN_KEY_PASSPHRASE", "open sesame")]);
        assert!(o.status.success(), "{what}: {}", text(&o.stderr));
        let (code, out) = verify(public, &f);
        assert_eq!(code, 0, "{what}: {out}");
        assert!(out.contains("signature valid"), "{what}: {out}");
        // openssl checks the same signature over the same bytes.
        let bytes = std::fs::read(&f).unwrap();
        let t = loader::format::Trailer::decode(
            &bytes[bytes.len() - loader::format::TRAILER_LEN..],
            bytes.len() as u64,
        )
        .unwrap();
        let signed = &bytes[..t.signature.offset as usize];
        let block = loader::format::signature::SignatureBlock::decode(
            &bytes[t.signature.offset as usize..t.signature.end() as usize],
        )
        .unwrap();
        let der = der_signature(&block.signature);
        let (msg, sig) = (
            k.path(&format!("{what}.msg")),
            k.path(&format!("{what}.sig")),
        );
        std::fs::write(&msg, signed).unwrap();
        std::fs::write(&sig, der).unwrap();
        let o = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            public.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
            msg.to_str().unwrap(),
        ]);
        assert!(text(&o.stdout).contains("Verified OK"), "{what}");
    }
    // A wrong passphrase is refused, saying so.
    let f = copy_of(k.dir.path(), "wrongpass");
    let o = sign(&encrypted, &f, &[("OCI2BIN_KEY_PASSPHRASE", "nope")]);
    e2e::assert_one_line_error(&o, "cannot decrypt");
}

/// r ‖ s as the DER SEQUENCE of two INTEGERs openssl reads.
fn der_signature(rs: &[u8; 64]) -> Vec<u8> {
    let int = |x: &[u8]| {
        let mut v: Vec<u8> = x.iter().copied().skip_while(|&b| b == 0).collect();
        if v.first().is_none_or(|&b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&rs[..32]), int(&rs[32..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn a_signed_file_stays_an_image_archive_and_runs() {
    let k = Keys::new();
    let (private, public) = k.keygen("k");
    let f = copy_of(k.dir.path(), "signed");
    assert!(sign(&private, &f, &[]).status.success());
    let shown = text(&e2e::oci2bin_cmd(&["inspect", f.to_str().unwrap()]).stdout);
    assert!(shown.contains("signature:    by key id "), "{shown}");
    let unsigned = e2e::oci2bin_cmd(&["inspect", fixtures::busybox_bin().to_str().unwrap()]);
    assert!(text(&unsigned.stdout).contains("signature:    none"));
    let tar = Command::new("tar").arg("tf").arg(&f).output().unwrap();
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    assert!(text(&tar.stdout).contains("manifest.json"));
    let o = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", f.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    if e2e::docker::required() {
        let tag = e2e::docker::load(&f);
        e2e::docker::remove(&tag);
    }
    let r = Runner::new();
    let key = public.to_str().unwrap();
    assert_eq!(r.ok(&f, &["--verify-key", key, "echo", "ok"]), "ok\n");
    // Warm: the mark of the verified file; the same answer.
    assert_eq!(r.ok(&f, &["--verify-key", key, "echo", "again"]), "again\n");
    assert_eq!(r.files_under_cache("verified").len(), 1);
}

/// Flips one byte of `f` at `at`.
fn flip(f: &Path, at: u64) {
    let mut b = std::fs::read(f).unwrap();
    b[at as usize] ^= 0x01;
    std::fs::write(f, b).unwrap();
}

#[test]
fn tampered_truncated_or_otherwise_signed_files_fail_verify_and_never_run() {
    let k = Keys::new();
    let (private, public) = k.keygen("k");
    let (other, _) = k.keygen("other");
    let good = copy_of(k.dir.path(), "good");
    assert!(sign(&private, &good, &[]).status.success());
    let bytes = std::fs::read(&good).unwrap();
    let t = loader::format::Trailer::decode(
        &bytes[bytes.len() - loader::format::TRAILER_LEN..],
        bytes.len() as u64,
    )
    .unwrap();
    let layer = e2e::layer_refs(&good)[0].clone();
    let r = Runner::new();
    let key = public.to_str().unwrap();
    // The good file ran once: its entry is in the cache the bad ones must not use.
    r.ok(&good, &["--verify-key", key, "true"]);
    let cached = r.files_under_cache("rootfs").len();
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "a byte of a layer",
            Box::new(move |f| flip(f, layer.offset + layer.size / 2)),
        ),
        (
            "a byte of the metadata",
            Box::new(move |f| flip(f, t.metadata.offset + 2)),
        ),
        // In the loader's tar entry, ahead of the ELF image (a changed instruction could do
        // anything before it checks).
        ("a byte of the loader's entry", Box::new(|f| flip(f, 1000))),
        (
            "a byte of the signature",
            Box::new(move |f| flip(f, t.signature.offset + 80)),
        ),
        (
            "the last byte cut",
            Box::new(|f| {
                let b = std::fs::read(f).unwrap();
                std::fs::write(f, &b[..b.len() - 1]).unwrap();
            }),
        ),
        (
            "signed again with another key",
            Box::new(move |f| assert!(sign(&other, f, &[]).status.success())),
        ),
        (
            "the signature block of another file",
            Box::new(|f| {
                let dir = f.parent().unwrap();
                let another = dir.join("another");
                e2e::build(
                    &format!("oci:{}:latest", fixtures::busybox().display()),
                    &another,
                    &["--env", "X=1"],
                );
                let k = dir.join("k.key");
                assert!(sign(&k, &another, &[]).status.success());
                let a = std::fs::read(&another).unwrap();
                let mut b = std::fs::read(f).unwrap();
                let (n, m) = (a.len(), b.len());
                b[m - 240..m - 128].copy_from_slice(&a[n - 240..n - 128]);
                std::fs::write(f, b).unwrap();
            }),
        ),
    ];
    for (what, tamper) in cases {
        let bad = k.path(&format!("bad-{}", what.replace(' ', "-")));
        std::fs::copy(&good, &bad).unwrap();
        tamper(&bad);
        let (code, out) = verify(&public, &bad);
        assert_eq!(code, 2, "{what}: {out}");
        // A fresh cache: nothing is written.
        let fresh = Runner::new();
        let o = fresh.run(&bad, &["--verify-key", key, "echo", "ran"]);
        assert_eq!(o.status.code(), Some(125), "{what}: {}", text(&o.stderr));
        assert!(!text(&o.stdout).contains("ran"), "{what}");
        assert!(fresh.files_under_cache("rootfs").is_empty(), "{what}");
        assert!(fresh.files_under_cache("layers").is_empty(), "{what}");
        // The cache that holds the good file's entry: it is not used either.
        let o = r.run(&bad, &["--verify-key", key, "echo", "ran"]);
        assert_eq!(o.status.code(), Some(125), "{what}: {}", text(&o.stderr));
        assert!(!text(&o.stdout).contains("ran"), "{what}");
        assert_eq!(r.files_under_cache("rootfs").len(), cached, "{what}");
    }
    // Unsigned: verify says so (exit 1); the loader refuses it.
    let (code, out) = verify(&public, fixtures::busybox_bin());
    assert_eq!(code, 1, "{out}");
    let o = r.run(fixtures::busybox_bin(), &["--verify-key", key, "true"]);
    e2e::assert_one_line_error(&o, "not signed");
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn verify_json_says_the_status_for_scripts() {
    let k = Keys::new();
    let (private, public) = k.keygen("k");
    let f = copy_of(k.dir.path(), "f");
    let json = |f: &Path| {
        let o = Command::new(e2e::oci2bin())
            .args(["verify", "--json", "--key"])
            .arg(&public)
            .arg("--in")
            .arg(f)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), v["status"].as_str().unwrap().to_string())
    };
    assert_eq!(json(&f), (Some(1), "unsigned".into()));
    assert!(sign(&private, &f, &[]).status.success());
    assert_eq!(json(&f), (Some(0), "valid".into()));
    flip(&f, 5000);
    assert_eq!(json(&f), (Some(2), "invalid".into()));
}

#[test]
fn a_file_built_with_require_signature_runs_only_once_signed_by_its_key() {
    let k = Keys::new();
    let (private, public) = k.keygen("k");
    let (other, _) = k.keygen("other");
    let f = k.path("req");
    e2e::build(
        &format!("oci:{}:latest", fixtures::busybox().display()),
        &f,
        &["--require-signature", public.to_str().unwrap()],
    );
    let r = Runner::new();
    let o = r.run(&f, &["echo", "ran"]);
    e2e::assert_one_line_error(&o, "not signed");
    assert_eq!(o.status.code(), Some(125));
    assert!(r.files_under_cache("rootfs").is_empty());
    assert!(sign(&private, &f, &[]).status.success());
    assert_eq!(r.ok(&f, &["echo", "ran"]), "ran\n");
    // Signed by a key it does not name; then changed after signing.
    let by_other = k.path("by-other");
    std::fs::copy(&f, &by_other).unwrap();
    assert!(sign(&other, &by_other, &[]).status.success());
    let o = r.run(&by_other, &["echo", "ran"]);
    e2e::assert_one_line_error(&o, "which it does not name");
    assert_eq!(o.status.code(), Some(125));
    let changed = k.path("changed");
    std::fs::copy(&f, &changed).unwrap();
    flip(&changed, 1000);
    let o = r.run(&changed, &["echo", "ran"]);
    e2e::assert_one_line_error(&o, "does not match");
    assert_eq!(o.status.code(), Some(125));
}
