//! VM mode's parts in an output (`--vm`, `--vm-default`, `oci2vm`; R11, B13): the guest kernel
//! (gzipped) and the VM runtime ride in the file as tar entries under `oci2bin/vm/`, which image
//! readers ignore, and the runtime record points at them.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use loader::format::elf_info;

use crate::loader_bin;

#[derive(Debug, Args, Default, Clone)]
pub struct VmArgs {
    /// Carry VM mode (the guest kernel and the VM runtime): the file then also runs in a
    /// microVM with --vm
    #[arg(long)]
    pub vm: bool,
    /// As --vm, and the file starts in VM mode (`--vm=false` runs it in namespaces); the
    /// default when oci2bin runs as `oci2vm`
    #[arg(long)]
    pub vm_default: bool,
    /// The guest kernel, an x86_64 ELF vmlinux (default: `make kernel`'s, found next to this
    /// program as ../kernel/vmlinux or ../share/oci2bin/vmlinux)
    #[arg(long, value_name = "VMLINUX", env = "OCI2BIN_VM_KERNEL")]
    pub vm_kernel: Option<PathBuf>,
    /// The VM runtime (default: the one built with this oci2bin)
    #[arg(long, value_name = "PATH", env = "OCI2BIN_VM_RUNTIME")]
    pub vm_runtime: Option<PathBuf>,
}

/// What an output carries for VM mode.
pub struct Bundle {
    /// The kernel, gzipped (deterministically: no name, mtime 0).
    pub kernel_gz: Vec<u8>,
    /// The VM runtime, gzipped likewise.
    pub runtime_gz: Vec<u8>,
    /// The file starts in VM mode.
    pub default: bool,
}

/// Whether this program was started as `oci2vm` (a link to oci2bin): outputs start in VM mode.
pub fn invoked_as_oci2vm() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "oci2vm"))
        .unwrap_or(false)
}

/// The parts to carry, if the build asks for VM mode.
pub fn resolve(a: &VmArgs) -> Result<Option<Bundle>> {
    let default = a.vm_default || invoked_as_oci2vm();
    if !(a.vm || default) {
        return Ok(None);
    }
    let kernel_path = match &a.vm_kernel {
        Some(p) => p.clone(),
        None => default_kernel().context(
            "VM mode needs a guest kernel: build one with `make kernel` (Debian's linux-source) \
             and pass --vm-kernel target/kernel/vmlinux (or set OCI2BIN_VM_KERNEL)",
        )?,
    };
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("cannot read the guest kernel {}", kernel_path.display()))?;
    check_kernel(&kernel)
        .with_context(|| format!("{} is not a usable guest kernel", kernel_path.display()))?;
    let runtime = match &a.vm_runtime {
        Some(p) => Cow::Owned(
            std::fs::read(p).with_context(|| format!("cannot read the VM runtime {}", p.display()))?,
        ),
        None => Cow::Borrowed(loader_bin::EMBEDDED_VM_RUNTIME.context(
            "this oci2bin was built without the VM runtime: build it with `make` (or pass --vm-runtime)",
        )?),
    };
    let info = elf_info(&runtime).context("the VM runtime is not an ELF executable")?;
    if info.has_interp {
        bail!("the VM runtime needs an interpreter (PT_INTERP): it must be static");
    }
    Ok(Some(Bundle {
        kernel_gz: gzip(&kernel).context("compress the guest kernel")?,
        runtime_gz: gzip(&runtime).context("compress the VM runtime")?,
        default,
    }))
}

/// gzip with no name and mtime 0: the same input gives the same bytes.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(data)?;
    gz.finish()
}

/// An x86_64 ELF: what qemu's microvm (PVH) and libkrun boot.
fn check_kernel(k: &[u8]) -> Result<()> {
    if k.len() < 64 || &k[..4] != b"\x7fELF" {
        bail!("not an ELF vmlinux (a bzImage or compressed image will not do)");
    }
    if u16::from_le_bytes([k[18], k[19]]) != 62 {
        bail!("not an x86_64 kernel");
    }
    Ok(())
}

fn default_kernel() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("../kernel/vmlinux"),
        dir.join("../share/oci2bin/vmlinux"),
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_must_be_an_x86_64_elf() {
        assert!(check_kernel(
            b"MZ not elf at all, just some bytes to be long enough for it....... "
        )
        .is_err());
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[18] = 183; // aarch64
        assert!(check_kernel(&elf).is_err());
        elf[18] = 62;
        assert!(check_kernel(&elf).is_ok());
    }

    #[test]
    fn no_vm_flag_means_no_parts() {
        assert!(resolve(&VmArgs::default()).unwrap().is_none());
    }

    #[test]
    fn a_missing_kernel_is_named_with_the_way_to_build_one() {
        let a = VmArgs {
            vm: true,
            vm_kernel: Some("/nonexistent/vmlinux".into()),
            ..Default::default()
        };
        let e = format!("{:#}", resolve(&a).err().unwrap());
        assert!(e.contains("/nonexistent/vmlinux"), "{e}");
    }
}
