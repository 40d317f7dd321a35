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

/// The descriptor of the oci2bin file the small loader hands the runtime (its /proc/self/exe
/// is the runtime itself).
pub const FILE_FD_ENV: &str = "OCI2BIN_VM_FILE_FD";
