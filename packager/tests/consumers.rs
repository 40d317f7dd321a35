//! The packager against real images and real consumers: an image built with umoci, packaged by
//! the real binary, then read by tar, skopeo, podman and docker, run directly, and read back as a
//! source by oci2bin itself.
//!
//! The loader at the head defaults to /bin/busybox (static, so the kernel runs the file and
//! busybox answers "applet not found"); set OCI2BIN_TEST_LOADER to use the real loader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCH: &str = "1700000000";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_oci2bin")
}

fn loader() -> PathBuf {
    std::env::var_os("OCI2BIN_TEST_LOADER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/bin/busybox".into())
}

fn loader_is_busybox() -> bool {
    std::env::var_os("OCI2BIN_TEST_LOADER").is_none()
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        found,
        "this test needs `{tool}` (apt-get install -y {tool})"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

/// A busybox image in an OCI layout `DIR/busybox:1.36`, made with umoci (TESTING.md recipe).
fn busybox_layout(dir: &Path) -> PathBuf {
    need("umoci");
    let l = dir.join("busybox");
    let b = dir.join("bundle");
    let ls = l.to_str().unwrap();
    let img = format!("{ls}:1.36");
    run(Command::new("umoci").args(["init", "--layout", ls]));
    run(Command::new("umoci").args(["new", "--image", &img]));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &img])
        .arg(&b));
    let bin = b.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&b));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img,
        "--config.entrypoint",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "echo hello from busybox",
        "--config.env",
        "PATH=/bin",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
    run(Command::new("umoci").args(["gc", "--layout", ls]));
    l
}

/// Runs oci2bin with SOURCE_DATE_EPOCH and the test loader.
fn oci2bin(args: &[&str], cwd: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("OCI2BIN_LOADER", loader())
        .output()
        .unwrap()
}

fn pack(args: &[&str], cwd: &Path) -> String {
    let out = oci2bin(args, cwd);
    assert!(
        out.status.success(),
        "oci2bin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn metadata(file: &Path) -> serde_json::Value {
    let out = run(Command::new(bin()).arg("inspect").arg(file).arg("--json"));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn skopeo_inspect(transport_ref: &str, config: bool) -> serde_json::Value {
    need("skopeo");
    let mut c = Command::new("skopeo");
    c.arg("inspect");
    if config {
        c.arg("--config");
    }
    serde_json::from_str(&stdout(c.arg(transport_ref))).unwrap()
}

#[test]
fn a_busybox_image_becomes_a_file_that_tar_and_skopeo_read_and_the_kernel_runs() {
    let t = tempfile::tempdir().unwrap();
    let layout = busybox_layout(t.path());
    let out = pack(&[&format!("oci:{}:1.36", layout.display())], t.path());
    let f = t.path().join("busybox_1.36");
    let meta = metadata(&f);
    let digest = meta["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(
        out.lines().next().unwrap(),
        format!("image digest: busybox:1.36@{digest}")
    );
    assert!(out.contains("busybox_1.36"), "{out}");

    // The image's own digest survives (no config edits): same as the layout's manifest.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    let listing = stdout(Command::new("tar").arg("tf").arg(&f));
    let names: Vec<&str> = listing.lines().collect();
    assert!(
        names[0].starts_with("\\177ELF") || names[0].starts_with("\u{7f}ELF"),
        "{names:?}"
    );
    assert_eq!(names[1], "oci-layout");
    assert_eq!(
        names[names.len() - 3..],
        ["index.json", "manifest.json", "repositories"]
    );
    assert!(names.contains(&format!("blobs/sha256/{}", &digest[7..]).as_str()));

    let oci = skopeo_inspect(&format!("oci-archive:{}", f.display()), false);
    assert_eq!(oci["Digest"], digest.as_str());
    assert_eq!(oci["Architecture"], "amd64");
    let dock = skopeo_inspect(&format!("docker-archive:{}", f.display()), true);
    assert_eq!(dock["config"]["Entrypoint"][0], "/bin/sh");
    assert_eq!(dock["config"]["Cmd"][1], "echo hello from busybox");

    // Executable as it stands: the kernel loads the ELF at the head.
    let ran = Command::new(&f)
        .output()
        .expect("the kernel refused to execute the file");
    if loader_is_busybox() {
        // busybox answers to its file name: as `busybox_1.36` it is the multi-call binary itself.
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&ran.stdout),
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(
            said.contains("BusyBox v") || said.contains("applet not found"),
            "busybox did not run: {said}"
        );
    }
}

#[test]
fn podman_loads_and_runs_the_file() {
    need("podman");
    let t = tempfile::tempdir().unwrap();
    let layout = busybox_layout(t.path());
    pack(
        &[
            &format!("oci:{}:1.36", layout.display()),
            "bb",
            "--tag",
            "oci2bin-test/podman:1",
        ],
        t.path(),
    );
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(t.path().join("root"))
            .arg("--runroot")
            .arg(t.path().join("runroot"));
        c.args(["--storage-driver", "vfs"]).args(args);
        c
    };
    let loaded = stdout(
        podman(&["load", "-i", t.path().join("bb").to_str().unwrap()]).current_dir(t.path()),
    );
    assert!(loaded.contains("oci2bin-test/podman:1"), "{loaded}");
    let said = stdout(&mut podman(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        "oci2bin-test/podman:1",
    ]));
    assert_eq!(said.trim(), "hello from busybox");
    // podman's vfs layers hold files only root may remove; podman does it itself.
    let _ = podman(&["rmi", "-a", "-f"]).output();
}

#[test]
fn docker_loads_and_runs_the_file() {
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !engine {
        eprintln!("SKIPPED: no Docker engine answers `docker info` here");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = busybox_layout(t.path());
    let tag = format!("oci2bin-test/docker:{}", std::process::id());
    pack(
        &[
            &format!("oci:{}:1.36", layout.display()),
            "bb",
            "--tag",
            &tag,
        ],
        t.path(),
    );
    let f = std::fs::File::open(t.path().join("bb")).unwrap();
    let loaded = stdout(Command::new("docker").arg("load").stdin(f));
    struct Rmi<'a>(&'a str);
    impl Drop for Rmi<'_> {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", self.0]).output();
        }
    }
    let _cleanup = Rmi(&tag);
    assert!(loaded.contains(&format!("Loaded image: {tag}")), "{loaded}");
    let said = stdout(Command::new("docker").args(["run", "--rm", &tag]));
    assert_eq!(said.trim(), "hello from busybox");
}

#[test]
fn our_own_output_is_a_source_as_oci_archive_and_docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let layout = busybox_layout(t.path());
    pack(
        &[&format!("oci:{}:1.36", layout.display()), "first"],
        t.path(),
    );
    let first = metadata(&t.path().join("first"));

    pack(&["oci-archive:first", "via-oci"], t.path());
    let via_oci = metadata(&t.path().join("via-oci"));
    assert_eq!(
        via_oci["manifest_digest"], first["manifest_digest"],
        "the manifest is carried byte for byte"
    );
    assert_eq!(via_oci["image"], "busybox:1.36");
    assert_eq!(via_oci["layers"][0]["digest"], first["layers"][0]["digest"]);

    pack(&["docker-archive:first", "via-docker"], t.path());
    let via_docker = metadata(&t.path().join("via-docker"));
    assert_eq!(
        via_docker["config_digest"], first["config_digest"],
        "the config (image ID) is kept"
    );
    assert_eq!(
        via_docker["layers"][0]["digest"],
        first["layers"][0]["digest"]
    );
    assert_eq!(via_docker["image"], "busybox:1.36");
    // Default output name from the archive's RepoTag.
    pack(&["docker-archive:via-docker"], t.path());
    assert!(t.path().join("busybox_1.36").is_file());
    let again = skopeo_inspect(
        &format!("oci-archive:{}", t.path().join("via-docker").display()),
        false,
    );
    assert_eq!(again["Digest"], via_docker["manifest_digest"]);
}

#[test]
fn same_input_and_source_date_epoch_give_byte_identical_files() {
    let t = tempfile::tempdir().unwrap();
    let layout = busybox_layout(t.path());
    let src = format!("oci:{}:1.36", layout.display());
    pack(&[&src, "a", "--env", "X=1"], t.path());
    pack(&[&src, "b", "--env", "X=1"], t.path());
    assert!(
        std::fs::read(t.path().join("a")).unwrap() == std::fs::read(t.path().join("b")).unwrap()
    );

    // dir: too — the rootfs is packed deterministically.
    let rootfs = t.path().join("bundle/rootfs");
    pack(
        &[
            &format!("dir:{}", rootfs.display()),
            "c",
            "--cmd",
            r#"["/bin/echo","from dir"]"#,
        ],
        t.path(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pack(
        &[
            &format!("dir:{}", rootfs.display()),
            "d",
            "--cmd",
            r#"["/bin/echo","from dir"]"#,
        ],
        t.path(),
    );
    assert!(
        std::fs::read(t.path().join("c")).unwrap() == std::fs::read(t.path().join("d")).unwrap()
    );
    let oci = skopeo_inspect(
        &format!("oci-archive:{}", t.path().join("c").display()),
        true,
    );
    assert_eq!(oci["config"]["Cmd"][1], "from dir");
    // Default name for dir: sources is the directory's.
    pack(&[&format!("dir:{}", rootfs.display())], t.path());
    assert!(t.path().join("rootfs").is_file());
}

#[test]
fn config_edits_reach_the_config_the_record_and_inspect() {
    let t = tempfile::tempdir().unwrap();
    let layout = busybox_layout(t.path());
    pack(
        &[
            &format!("oci:{}:1.36", layout.display()),
            "edited",
            "--entrypoint",
            r#"["/bin/echo","-n"]"#,
            "--cmd",
            "hi",
            "--env",
            "PATH=/usr/bin:/bin",
            "--env",
            "A=b",
            "--workdir",
            "/tmp",
            "--user",
            "1000:1000",
            "--tag",
            "me/edited:2",
        ],
        t.path(),
    );
    let f = t.path().join("edited");
    let m = metadata(&f);
    assert_eq!(
        m["config"]["entrypoint"],
        serde_json::json!(["/bin/echo", "-n"])
    );
    assert_eq!(m["config"]["cmd"], serde_json::json!(["hi"]));
    assert_eq!(
        m["config"]["env"],
        serde_json::json!(["PATH=/usr/bin:/bin", "A=b"])
    );
    assert_eq!(m["config"]["workdir"], "/tmp");
    assert_eq!(m["config"]["user"], "1000:1000");
    assert_eq!(m["image"], "me/edited:2");
    assert_ne!(m["manifest_digest"], m["source_digest"]);
    let cfg = skopeo_inspect(&format!("docker-archive:{}", f.display()), true);
    assert_eq!(cfg["config"]["WorkingDir"], "/tmp");
    assert_eq!(cfg["config"]["User"], "1000:1000");
    let text = stdout(Command::new(bin()).arg("inspect").arg(&f));
    for want in [
        "image:        me/edited:2",
        "platform:     linux/amd64",
        r#"entrypoint:   ["/bin/echo","-n"]"#,
        "  A=b",
    ] {
        assert!(text.contains(want), "inspect lacks {want:?}:\n{text}");
    }
}

#[test]
fn errors_are_one_line_and_name_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let out = oci2bin(args, t.path());
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        let e = String::from_utf8(out.stderr).unwrap();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("oci2bin: error: "), "{e}");
        e
    };
    // A registry with nothing listening: refused at once, offline too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(err(&[&format!("127.0.0.1:{port}/alpine:latest")])
        .contains(&format!("cannot reach 127.0.0.1:{port}")));
    assert!(err(&["ftp:/x"]).contains("unknown transport `ftp`"));
    assert!(err(&["oci:/nonexistent"]).contains("not an OCI image layout"));
    assert!(err(&["inspect", "/bin/busybox"]).contains("not an oci2bin file"));
    assert!(err(&["dir:/tmp", "--loader", "/etc/passwd"]).contains("not a usable static ELF"));
    assert!(
        std::fs::read_dir(t.path()).unwrap().next().is_none(),
        "a failed build left files"
    );
}
