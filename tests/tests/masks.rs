//! Docker's masked and read-only paths (issue 14): kernel interfaces hidden under `/proc` and
//! `/sys`, the kernel's tunables read-only; checked as the unprivileged test user and against
//! `docker run` with the same probe.

use std::path::Path;

use e2e::{fixtures, Runner};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// What a container may see of the masked paths and do to the read-only ones.
const PROBE: &str = "for f in /proc/kcore /proc/keys /proc/timer_list; do \
      [ -e $f ] && echo \"$f $(head -c 64 $f 2>/dev/null | wc -c)\"; done; \
    echo \"/sys/firmware $(ls /sys/firmware 2>/dev/null | wc -l)\"; \
    (echo 1 > /proc/sysrq-trigger) 2>/dev/null && echo sysrq-writable || echo sysrq-refused; \
    (echo 0 > /proc/sys/kernel/panic) 2>/dev/null && echo sys-writable || echo sys-refused";

#[test]
fn kernel_interfaces_are_hidden_and_tunables_read_only() {
    if !e2e::runner::userns() {
        return;
    }
    let out = Runner::new().ok(bb(), &["sh", "-c", PROBE]);
    assert!(out.contains("/proc/keys 0\n"), "{out}");
    assert!(out.contains("/sys/firmware 0\n"), "{out}");
    assert!(out.contains("sysrq-refused\nsys-refused\n"), "{out}");
    assert!(!out.contains("writable"), "{out}");
}

#[test]
fn docker_agrees_on_the_masked_and_read_only_paths() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let docker = e2e::docker::run_sh(&tag, &["--net", "none"], PROBE);
    e2e::docker::remove(&tag);
    assert_eq!(Runner::new().ok(bb(), &["sh", "-c", PROBE]), docker);
}
