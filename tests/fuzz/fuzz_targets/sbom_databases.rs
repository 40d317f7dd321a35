//! The SBOM's parsers of image content: a layer tar applied to the merged view (whiteouts, opaque
//! directories, links resolved within the root), then dpkg's status and status.d, DEP-5
//! copyright files, apk's installed database, rpm's query output, license expressions and
//! os-release, each fed the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci2bin::sbom::{apk, control, dpkg, layers, license, rpm, OsRelease};

fuzz_target!(|data: &[u8]| {
    let mut view = layers::View::default();
    if let Ok(mut tar) = layers::decompress(data) {
        let _ = layers::apply(&mut view, 0, &mut tar, "sha256:fuzz");
    }
    let _ = dpkg::packages(&view);
    let _ = apk::packages(&view);
    let _ = view.file("etc/os-release");
    let text = String::from_utf8_lossy(data);
    let _ = control::parse(&text);
    let _ = dpkg::parse_copyright(&text);
    let _ = apk::parse(&text, "/lib/apk/db/installed");
    let _ = rpm::parse_query(&text, "/var/lib/rpm");
    let _ = OsRelease::parse(&text);
    for line in text.lines().take(64) {
        let e = license::parse(line);
        let s = e.spdx();
        // Whatever goes in, what comes out is made of SPDX id characters, operators and parens.
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || " .-+()".contains(c)),
            "{s:?}"
        );
    }
});
