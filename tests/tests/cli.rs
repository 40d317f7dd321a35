//! The packager's command line: bad flags and bad sources are clear one-line errors.

use e2e::{assert_one_line_error, fixtures, oci2bin_cmd, text, world_tempdir};

#[test]
fn unknown_flag_is_rejected() {
    let o = oci2bin_cmd(&["--entrypint", "x", "oci:/nowhere"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--entrypint"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn unknown_transport_and_missing_source() {
    let o = oci2bin_cmd(&["floppy:/dev/fd0"]);
    assert_one_line_error(&o, "floppy");
    let o = oci2bin_cmd(&["oci:/definitely/not/here"]);
    assert_one_line_error(&o, "/definitely/not/here");
}

#[test]
fn output_name_follows_the_reference() {
    let dir = world_tempdir();
    let o = std::process::Command::new(e2e::oci2bin())
        .arg(format!("oci:{}:latest", fixtures::busybox().display()))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        dir.path().join("busybox-v3_latest").exists(),
        "{:?}",
        std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
    );
    assert!(text(&o.stdout).contains("image digest:") || text(&o.stderr).contains("image digest:"));
}

#[test]
fn inspect_reads_the_file_back() {
    let f = fixtures::busybox_bin();
    let o = oci2bin_cmd(&["inspect", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in ["amd64", "sh", "PATH=/bin"] {
        assert!(out.contains(want), "inspect lacks {want}:\n{out}");
    }
    let o = oci2bin_cmd(&["inspect", "--json", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 2, "{v}");
    let o = oci2bin_cmd(&["inspect", "/bin/sh"]);
    assert_one_line_error(&o, "trailer");
}

#[test]
fn reproducible_with_source_date_epoch() {
    let dir = world_tempdir();
    let src = format!("oci:{}:latest", fixtures::busybox().display());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    e2e::build(&src, &a, &[]);
    e2e::build(&src, &b, &[]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}
