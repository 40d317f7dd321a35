//! VM mode (`--vm`, R11): the runtime that boots the image in a microVM. It is a program of its
//! own (`loader-vm`), carried in a file next to the small loader as a VM part and started by it
//! for `--vm` (the small loader only copies it out, see [`parts`]); inside the guest the same
//! program is the init ([`guest`]).

pub mod cpio;
pub mod guest;
pub mod host;
pub mod krun;
pub mod parts;
pub mod qemu;
pub mod wire;

use std::path::Path;

/// What the machine is made of, whichever monitor runs it.
#[derive(Debug, Clone)]
pub struct Machine<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub root: &'a Path,
    pub memory_mib: u64,
    pub cpus: u32,
    /// qemu only: KVM rather than emulation (libkrun is always KVM).
    pub kvm: bool,
    /// `-t`: the caller's terminal is the guest's `hvc0`.
    pub tty: bool,
    /// `--net passt`: a virtio-net device on passt's socket.
    pub net: bool,
}

/// The descriptor of the oci2bin file the small loader hands the runtime (its /proc/self/exe
/// is the runtime itself).
pub const FILE_FD_ENV: &str = "OCI2BIN_VM_FILE_FD";
