//! The guest's initramfs: a `newc` cpio (the kernel's own initramfs format) holding the mount
//! points and one program, `/init`: this runtime, which acts as the guest's init there.

/// One entry: a directory (no data) or a regular file.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    /// `/dev/console` (5:1), which the kernel opens as the init's stdio.
    Console(&'a str),
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) {
    header_dev(out, ino, mode, nlink, size, name, (0, 0))
}

fn header_dev(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: usize,
    name: &str,
    rdev: (u32, u32),
) {
    out.extend_from_slice(b"070701");
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The archive, entries in order, then the trailer.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(name) => header(&mut out, ino, 0o040755, 2, 0, name),
            Entry::Console(name) => header_dev(&mut out, ino, 0o020600, 1, 0, name, (5, 1)),
            Entry::File(name, data, mode) => {
                header(&mut out, ino, 0o100000 | mode, 1, data.len(), name);
                out.extend_from_slice(data);
                pad4(&mut out);
            }
        }
    }
    header(&mut out, 0, 0, 1, 0, "TRAILER!!!");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_reads_back_with_gnu_cpio_when_present() {
        let a = archive(&[Entry::Dir("dev"), Entry::File("init", b"#!x\n", 0o755)]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: no cpio here");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "dev\ninit\n");
    }
}
