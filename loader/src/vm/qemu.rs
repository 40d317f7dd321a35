//! The qemu backend: `qemu-system-x86_64 -M microvm` booting the file's kernel (PVH entry, no
//! firmware) with the runtime as its initramfs, the container's tree over virtio-9p and the
//! control and stdio streams as virtio-serial ports backed by unix sockets we listen on.

use super::Machine;
use std::ffi::OsString;
use std::path::Path;

/// The ports, by name (the guest finds them in /sys/class/virtio-ports/*/name), and the
/// sockets in the run directory that back them.
pub const CONTROL: (&str, &str) = ("oci2bin.ctl", "ctl.sock");
pub const STDIN: (&str, &str) = ("oci2bin.stdin", "in.sock");
pub const STDOUT: (&str, &str) = ("oci2bin.stdout", "out.sock");
pub const STDERR: (&str, &str) = ("oci2bin.stderr", "err.sock");
/// `-t`: the command's terminal, the guest's `hvc0` (a virtio console port).
pub const TERMINAL: &str = "term.sock";
/// The 9p tag of the container's tree.
pub const ROOT_TAG: &str = "oci2bin.root";
/// The guest kernel's log (and, without `-t`, everything the serial console prints).
pub const CONSOLE_LOG: &str = "console.log";

/// Escapes a value for qemu's `key=value,...` options (a comma is doubled).
fn opt(v: &Path) -> String {
    v.to_string_lossy().replace(',', ",,")
}

/// qemu's arguments (after the program name); socket paths are relative to the run directory,
/// which is the monitor's working directory (a unix socket path holds only 108 bytes).
pub fn args(m: &Machine) -> Vec<OsString> {
    let mut a: Vec<String> = vec![
        "-M".into(),
        // The RTC stays: without it the guest's clock starts at 1970, and the kernel waits a
        // second for a CMOS that never answers (half of an emulated boot).
        "microvm,x-option-roms=off,acpi=off".into(),
        "-accel".into(),
        if m.kvm { "kvm" } else { "tcg" }.into(),
        "-cpu".into(),
        if m.kvm { "host" } else { "max" }.into(),
        "-smp".into(),
        m.cpus.to_string(),
        "-m".into(),
        format!("{}M", m.memory_mib),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        opt(m.kernel),
        "-initrd".into(),
        opt(m.initrd),
        "-append".into(),
        // The runtime is /init; the kernel stays quiet unless it dies.
        "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t rdinit=/init".into(),
    ];
    // The serial console is the kernel's log, in a file the host shows when the guest fails.
    a.extend([
        "-chardev".into(),
        format!("file,id=console,path={CONSOLE_LOG}"),
        "-serial".into(),
        "chardev:console".into(),
    ]);
    a.extend([
        "-fsdev".into(),
        format!(
            "local,id=root,path={},security_model=none,multidevs=remap",
            opt(m.root)
        ),
        "-device".into(),
        format!("virtio-9p-device,fsdev=root,mount_tag={ROOT_TAG}"),
        "-device".into(),
        "virtio-serial-device,max_ports=8".into(),
    ]);
    if m.tty {
        // The command's terminal is the guest's hvc0 (virtio: input waits in its buffers until
        // the command reads it, where a UART drops what comes early), fed by the host from the
        // caller's terminal in raw mode: qemu's own stdio would keep output processing on.
        a.extend([
            "-chardev".into(),
            format!("socket,id=term,path={TERMINAL}"),
            "-device".into(),
            "virtconsole,chardev=term".into(),
        ]);
    }
    if m.net {
        a.extend([
            "-netdev".into(),
            format!(
                "stream,id=net0,server=off,addr.type=unix,addr.path={}",
                crate::plan::vm::PASST_SOCKET
            ),
            "-device".into(),
            "virtio-net-device,netdev=net0".into(),
        ]);
    }
    let ports: &[(&str, &str)] = if m.tty {
        &[CONTROL]
    } else {
        &[CONTROL, STDIN, STDOUT, STDERR]
    };
    for (i, (name, sock)) in ports.iter().enumerate() {
        a.extend([
            "-chardev".into(),
            format!("socket,id=port{i},path={sock}"),
            "-device".into(),
            format!("virtserialport,chardev=port{i},name={name}"),
        ]);
    }
    a.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(tty: bool) -> Vec<String> {
        args(&Machine {
            kernel: Path::new("/c/vm/k,1/vmlinux"),
            initrd: Path::new("/c/initrd"),
            root: Path::new("/run/x/root"),
            memory_mib: 256,
            cpus: 2,
            kvm: false,
            tty,
            net: tty,
        })
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect()
    }

    #[test]
    fn qemu_gets_a_microvm_with_the_kernel_the_tree_and_four_ports() {
        let a = machine(false);
        let after = |k: &str| a[a.iter().position(|x| x == k).unwrap() + 1].clone();
        assert!(after("-M").starts_with("microvm,"));
        assert_eq!(after("-accel"), "tcg");
        assert_eq!(after("-m"), "256M");
        assert_eq!(after("-smp"), "2");
        assert_eq!(after("-kernel"), "/c/vm/k,,1/vmlinux", "commas are escaped");
        assert!(after("-append").contains("rdinit=/init"));
        assert!(a
            .iter()
            .any(|x| x.contains("path=/run/x/root,security_model=none")));
        assert_eq!(
            a.iter().filter(|x| x.starts_with("virtserialport")).count(),
            4
        );
        assert!(a.iter().any(|x| x == "file,id=console,path=console.log"));
        assert!(!a.iter().any(|x| x.starts_with("virtio-net")));
    }

    #[test]
    fn a_tty_run_puts_the_console_on_stdio_without_signals() {
        let a = machine(true);
        assert!(a.iter().any(|x| x == "socket,id=term,path=term.sock"));
        assert!(a.iter().any(|x| x == "virtconsole,chardev=term"));
        assert!(a.iter().any(|x| x.ends_with("addr.path=passt.sock")));
        assert_eq!(
            a.iter().filter(|x| x.starts_with("virtserialport")).count(),
            1
        );
        assert!(a.iter().any(|x| x == "file,id=console,path=console.log"));
    }
}
