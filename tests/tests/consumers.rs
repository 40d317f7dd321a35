//! Every output is an image archive that the real consumers accept: GNU tar, skopeo (as both a
//! docker-archive and an oci-archive), podman load, and docker load + run where an engine answers.

use e2e::{fixtures, have, require, text};
use std::path::Path;
use std::process::Command;

fn outputs() -> Vec<(&'static str, &'static Path)> {
    vec![
        ("busybox", fixtures::busybox_bin()),
        ("debian", fixtures::debian_bin()),
    ]
}

#[test]
fn gnu_tar_lists_an_oci_layout_and_a_docker_manifest() {
    for (name, f) in outputs() {
        let o = Command::new("tar").arg("tf").arg(f).output().unwrap();
        assert!(
            o.status.success(),
            "{name}: tar tf failed: {}",
            text(&o.stderr)
        );
        let list = text(&o.stdout);
        for want in ["oci-layout", "index.json", "manifest.json", "blobs/sha256/"] {
            assert!(list.contains(want), "{name}: tar tf lacks {want}:\n{list}");
        }
    }
}

#[test]
fn the_file_is_a_static_elf_without_interpreter() {
    let o = Command::new("readelf")
        .arg("-lh")
        .arg(fixtures::busybox_bin())
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "readelf: {}", text(&o.stderr));
    assert!(
        !out.contains("INTERP"),
        "the head must be a static loader:\n{out}"
    );
}

fn skopeo_inspect(transport: &str, f: &Path) -> serde_json::Value {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("{transport}:{}", f.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect {transport}: {}",
        text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn skopeo_reads_docker_archive_and_oci_archive() {
    if !require(have("skopeo"), "skopeo not installed") {
        return;
    }
    for (name, f) in outputs() {
        let layers = e2e::layer_refs(f).len();
        for transport in ["docker-archive", "oci-archive"] {
            let m = skopeo_inspect(transport, f);
            let got = m["layers"].as_array().map(|l| l.len()).unwrap_or(0);
            assert_eq!(got, layers, "{name} via {transport}: layer count\n{m}");
        }
        let o = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", f.display()))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: skopeo inspect: {}",
            text(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Architecture"], "amd64");
    }
}

#[test]
fn podman_loads_and_runs_it() {
    if !require(have("podman"), "podman not installed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root")
            .arg(tmp.path().join("root"))
            .arg("--runroot")
            .arg(tmp.path().join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    for (name, f) in outputs() {
        let o = podman(&["load", "-i", f.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "{name}: podman load: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stdout).contains("Loaded image"),
            "{name}: {}",
            text(&o.stdout)
        );
    }
    let o = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let images = text(&o.stdout);
    let busybox = images
        .lines()
        .find(|l| l.contains("busybox"))
        .expect("busybox tag loaded");
    let o = podman(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        busybox,
        "cat",
        "/etc/issue",
    ]);
    assert!(o.status.success(), "podman run: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "busybox fixture\n");
}

#[test]
fn docker_loads_and_runs_it() {
    if !e2e::docker::required() {
        return;
    }
    // Engines before 23 cannot load zstd layers (the 20.10 engine on our CI machines fails `docker load` on them); the
    // Debian fixture has one, so such an engine gets the same image without it.
    let server = Command::new("docker")
        .args(["version", "-f", "{{.Server.Version}}"])
        .output()
        .unwrap();
    let major: u32 = text(&server.stdout)
        .split('.')
        .next()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    let mut images = outputs();
    if major < 23 {
        eprintln!(
            "note: docker engine {} predates zstd support: loading debian without its zstd layer",
            text(&server.stdout).trim()
        );
        images[1].1 = fixtures::debian_without_zstd_bin();
    }
    for (name, f) in images {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("docker load < '{}'", f.display()))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: docker load: {}",
            text(&o.stderr)
        );
        let out = text(&o.stdout);
        let tag = out
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .unwrap_or_else(|| panic!("{name}: no tag loaded: {out}"))
            .trim()
            .to_string();
        let cmd: &[&str] = match name {
            "busybox" => &["cat", "/etc/issue"],
            _ => &["/opt/fixture/hello.sh"],
        };
        let o = Command::new("docker")
            .args(["run", "--rm", "--net", "none", &tag])
            .args(cmd)
            .output()
            .unwrap();
        let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
        assert!(
            o.status.success(),
            "{name}: docker run: {}",
            text(&o.stderr)
        );
        let want = if name == "busybox" {
            "busybox fixture\n"
        } else {
            "hello from layer2\n"
        };
        assert_eq!(text(&o.stdout), want, "{name}");
    }
}
