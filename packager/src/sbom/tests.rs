//! The whole scan, on images whose layers are built in memory.

use std::sync::Arc;

use super::*;
use crate::model::tests_support::tiny_image;
use crate::model::{Descriptor, MemoryBlobs, MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP};

/// A plain tar layer; a `None` content is a whiteout-free empty file, `->T` a symlink to T.
fn tar_layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if let Some(t) = data.strip_prefix("->") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, p, t).unwrap();
        } else {
            h.set_size(data.len() as u64);
            b.append_data(&mut h, p, data.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn gzip(tar: Vec<u8>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

fn image(layers: Vec<Vec<u8>>) -> Image {
    let mut blobs = MemoryBlobs::default();
    let mut img = tiny_image();
    img.layers = layers
        .into_iter()
        .map(|l| {
            let size = l.len() as u64;
            Descriptor::new(MEDIA_OCI_LAYER_GZIP, blobs.insert(l), size)
        })
        .collect();
    img.blobs = Arc::new(blobs);
    img
}

const DEBIAN_OS: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

fn stanza(name: &str, version: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nMaintainer: Jo <jo@example.org>\nVersion: {version}\n\n"
    )
}

fn names(inv: &Inventory) -> Vec<(String, String, usize)> {
    inv.packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.layer))
        .collect()
}

#[test]
fn each_package_is_attributed_to_the_layer_that_installed_its_version() {
    let status0 = stanza("base-files", "12.4") + &stanza("libc6", "2.36-9");
    let status1 = stanza("base-files", "12.4")
        + &stanza("libc6", "2.36-9+deb12u4")
        + &stanza("curl", "7.88.1-10");
    let inv = scan(&image(vec![
        gzip(tar_layer(&[
            ("usr/lib/os-release", DEBIAN_OS),
            ("etc/os-release", "->../usr/lib/os-release"),
            ("var/lib/dpkg/status", &status0),
        ])),
        gzip(tar_layer(&[
            ("var/lib/dpkg/status", &status1),
            ("etc/motd", "hi"),
        ])),
        gzip(tar_layer(&[("etc/motd", "unrelated")])),
    ]))
    .unwrap();
    assert_eq!(
        names(&inv),
        [
            ("base-files".into(), "12.4".into(), 0),
            ("curl".into(), "7.88.1-10".into(), 1),
            ("libc6".into(), "2.36-9+deb12u4".into(), 1),
        ]
    );
    assert_eq!(inv.os.distro().as_deref(), Some("debian-12"));
    assert_eq!(
        purl(&inv.packages[2], &inv.os),
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    );
}

#[test]
fn a_package_deleted_by_a_whiteout_is_not_listed() {
    let inv = scan(&image(vec![
        gzip(tar_layer(&[
            (
                "var/lib/dpkg/status.d/tzdata",
                &stanza("tzdata", "2024a-0+deb12u1"),
            ),
            ("var/lib/dpkg/status.d/netbase", &stanza("netbase", "6.4")),
            ("var/lib/dpkg/status.d/netbase.md5sums", "x  etc/services\n"),
        ])),
        gzip(tar_layer(&[("var/lib/dpkg/status.d/.wh.tzdata", "")])),
    ]))
    .unwrap();
    assert_eq!(names(&inv), [("netbase".into(), "6.4".into(), 0)]);
    assert_eq!(inv.packages[0].db, "/var/lib/dpkg/status.d/netbase");
}

#[test]
fn an_opaque_directory_drops_the_database_below_it() {
    let inv = scan(&image(vec![
        gzip(tar_layer(&[("var/lib/dpkg/status", &stanza("a", "1"))])),
        gzip(tar_layer(&[("var/lib/dpkg/.wh..wh..opq", "")])),
    ]))
    .unwrap();
    assert!(inv.packages.is_empty());
}

#[test]
fn licenses_come_from_the_packages_copyright_file() {
    let copyright =
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                     Files: *\nCopyright: 1999 Jo\nLicense: GPL-2+\n\n\
                     Files: lib/*\nLicense: custom-thing\n\n\
                     License: custom-thing\n Do what you like.\n";
    let inv = scan(&image(vec![gzip(tar_layer(&[
        ("var/lib/dpkg/status", &stanza("hello", "2.10-3")),
        ("usr/share/doc/hello/copyright", copyright),
    ]))]))
    .unwrap();
    let p = &inv.packages[0];
    assert_eq!(p.licenses, ["GPL-2+", "custom-thing"]);
    let doc = serde_json::to_value(spdx::document(&inv, "2026-01-01T00:00:00Z")).unwrap();
    let pkg = &doc["packages"][1];
    assert_eq!(
        pkg["licenseDeclared"],
        "GPL-2.0-or-later AND LicenseRef-custom-thing"
    );
    assert_eq!(pkg["supplier"], "Person: Jo (jo@example.org)");
    let extracted = &doc["hasExtractedLicensingInfos"][0];
    assert_eq!(extracted["licenseId"], "LicenseRef-custom-thing");
    assert_eq!(extracted["extractedText"], "Do what you like.");
    let bom = serde_json::to_value(cyclonedx::document(&inv, "2026-01-01T00:00:00Z")).unwrap();
    let lic = &bom["components"][0]["licenses"];
    assert_eq!(lic[0]["license"]["id"], "GPL-2.0-or-later");
    assert_eq!(lic[1]["license"]["name"], "custom-thing");
}

#[test]
fn apk_packages_get_alpine_purls() {
    let installed = "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\n\
                     P:zlib\nV:1.3.1-r0\nA:x86_64\nL:Zlib\no:zlib\n\n";
    let inv = scan(&image(vec![gzip(tar_layer(&[
        ("etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n"),
        ("lib/apk/db/installed", installed),
    ]))]))
    .unwrap();
    assert_eq!(inv.packages.len(), 2);
    assert_eq!(
        purl(&inv.packages[0], &inv.os),
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1&upstream=musl"
    );
}

#[test]
fn zstd_and_plain_tar_layers_are_read() {
    let plain = tar_layer(&[("var/lib/dpkg/status", &stanza("a", "1"))]);
    let zst =
        ruzstd::encoding::compress_to_vec(&plain[..], ruzstd::encoding::CompressionLevel::Fastest);
    for layer in [plain.clone(), zst] {
        let mut img = image(vec![layer]);
        img.layers[0].media_type = MEDIA_OCI_LAYER.into();
        assert_eq!(scan(&img).unwrap().packages.len(), 1);
    }
}

#[test]
fn a_layer_whose_bytes_do_not_match_its_digest_is_refused() {
    let good = gzip(tar_layer(&[("var/lib/dpkg/status", &stanza("a", "1"))]));
    let mut img = image(vec![good.clone()]);
    let mut blobs = MemoryBlobs::default();
    let mut bad = good;
    let n = bad.len();
    bad[n - 5] ^= 1; // the gzip trailer's size field: the tar still reads
    blobs.0.insert(img.layers[0].digest, bad);
    img.blobs = Arc::new(blobs);
    let e = scan(&img).unwrap_err();
    assert!(
        matches!(e, Error::Digest { .. } | Error::Layer { .. }),
        "{e}"
    );
}

#[test]
fn a_huge_database_file_is_refused_not_read() {
    let mut h = tar::Header::new_gnu();
    h.set_path("var/lib/dpkg/status").unwrap();
    h.set_size(layers::MAX_FILE + 1);
    h.set_mode(0o644);
    h.set_cksum();
    // Only the header: the scan must stop before reading the data.
    let mut layer = h.as_bytes().to_vec();
    layer.extend_from_slice(&[0u8; 1024]);
    let e = scan(&image(vec![layer])).unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");
}

#[test]
fn documents_are_reproducible_for_the_same_image_and_time() {
    let img = image(vec![gzip(tar_layer(&[(
        "var/lib/dpkg/status",
        &stanza("a", "1"),
    )]))]);
    let one = serde_json::to_vec(&spdx::document(&scan(&img).unwrap(), "t")).unwrap();
    let two = serde_json::to_vec(&spdx::document(&scan(&img).unwrap(), "t")).unwrap();
    assert_eq!(one, two);
}
