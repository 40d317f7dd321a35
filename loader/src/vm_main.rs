//! The VM runtime (`loader-vm`): started by an oci2bin file's loader for `--vm`, with the file
//! open as a descriptor; inside the guest, the same program is the init.

#[cfg(target_env = "musl")]
mod nounwind;

use loader::{exec, selfexe, vm};
use std::process::exit;

fn main() {
    if vm::guest::is_guest_init() {
        vm::guest::main();
    }
    let Some(fd) = std::env::var_os(vm::FILE_FD_ENV) else {
        eprintln!(
            "oci2bin: this is the VM runtime of oci2bin files; run a file built with --vm with \
             its --vm flag"
        );
        exit(exec::EXIT_OURS)
    };
    let path = std::path::Path::new("/proc/self/fd").join(&fd);
    let r = selfexe::open_path(&path)
        .map_err(Into::into)
        .and_then(|me| vm::host::run(&me, std::env::args_os().skip(1).collect()));
    match r {
        Ok(code) => exit(code),
        Err(e) => {
            eprintln!("oci2bin: {e}");
            exit(exec::EXIT_OURS)
        }
    }
}
