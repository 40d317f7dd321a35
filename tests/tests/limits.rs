//! Resource limits (issue 14): the container's soft limits of open files and processes are its
//! hard ones, as rootless podman gives (a login's soft 1024 open files is too few for servers).

use std::path::Path;

use e2e::{fixtures, Runner};

#[test]
fn soft_open_files_and_processes_are_raised_to_the_hard_limits() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let inner = "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu";
    let script = format!(
        "ulimit -S -n 1024; ulimit -H -n 4096; ulimit -S -u 100; exec '{}' sh -c '{inner}'",
        fixtures::busybox_bin().display()
    );
    let out = r.ok(Path::new("/bin/sh"), &["-c", &script]);
    let v: Vec<&str> = out.lines().collect();
    assert_eq!(v.len(), 4, "{out}");
    assert_eq!((v[0], v[1]), ("4096", "4096"), "{out}");
    assert_eq!(v[2], v[3], "{out}");
}
