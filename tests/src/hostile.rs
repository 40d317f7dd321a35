//! Builders for hostile (and merely hand-made) images: raw tar bytes written header by header, so
//! a test can say exactly which malformed entry it feeds the loader, and a minimal OCI layout
//! around them.

use loader::format::{tar_checksum, tar_number};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// A tar stream written entry by entry with no sanitising at all.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn header(&mut self, name: &str, typeflag: u8, size: u64, link: &str, mode: u32) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        tar_number(&mut h[100..108], mode as u64);
        tar_number(&mut h[108..116], 0);
        tar_number(&mut h[116..124], 0);
        tar_number(&mut h[124..136], size);
        tar_number(&mut h[136..148], 1_700_000_000);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        tar_checksum(&mut h);
        self.bytes.extend_from_slice(&h);
    }

    fn data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0, pad));
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.header(name, b'0', data.len() as u64, "", 0o644);
        self.data(data);
        self
    }

    pub fn executable(mut self, name: &str, data: &[u8]) -> Self {
        self.header(name, b'0', data.len() as u64, "", 0o755);
        self.data(data);
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        self.header(name, b'5', 0, "", 0o755);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.header(name, b'2', 0, target, 0o777);
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.header(name, b'1', 0, target, 0o644);
        self
    }

    pub fn device(mut self, name: &str) -> Self {
        self.header(name, b'3', 0, "", 0o666);
        self
    }

    /// A PAX extended header that claims `claimed` bytes but carries only a few.
    pub fn huge_pax(mut self, claimed: u64) -> Self {
        self.header("PaxHeaders/x", b'x', claimed, "", 0o644);
        self.data(b"30 path=aaaaaaaaaaaaaaaaaaaaa\n");
        self
    }

    /// A GNU long-name entry that claims `claimed` bytes.
    pub fn huge_longname(mut self, claimed: u64) -> Self {
        self.header("././@LongLink", b'L', claimed, "", 0o644);
        self.data(&vec![b'a'; 1024]);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn put(layout: &Path, data: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(data));
    std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// Writes an OCI layout with tag `latest` whose layers are `layers` (tar bytes, gzip-compressed
/// when `gz`) under a busybox base layer, so the image has a shell to run when extraction passes.
pub fn layout(dir: &Path, layers: &[(Vec<u8>, bool)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let base = RawTar::default()
        .dir("bin/")
        .executable("bin/busybox", &busybox)
        .symlink("bin/sh", "busybox")
        .dir("tmp/")
        .finish();
    let mut all = vec![(base, true)];
    all.extend_from_slice(layers);
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, gz) in &all {
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(tar))));
        let (blob, mt) = if *gz {
            (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        descs.push(
            serde_json::json!({"mediaType": mt, "digest": put(dir, &blob), "size": blob.len()}),
        );
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh", "-c", "echo extracted"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(dir, &config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(dir, &manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}
