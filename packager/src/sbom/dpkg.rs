//! dpkg's database: `/var/lib/dpkg/status` (packages whose status is `installed`) and
//! `/var/lib/dpkg/status.d/*` (one stanza file per package, as distroless and other
//! dpkg-less builders write it), with licenses from DEP-5 copyright files.

use std::collections::BTreeMap;

use super::control::{self, Stanza};
use super::layers::View;
use super::{Kind, Package};

pub const STATUS: &str = "var/lib/dpkg/status";
pub const STATUS_D: &str = "var/lib/dpkg/status.d";

/// Whether a change at `path` (a write, or the removal of it and all below) can change the
/// package list.
pub fn touches(path: &str) -> bool {
    super::related(path, STATUS) || super::related(path, STATUS_D)
}

/// The installed packages the view's databases list, without licenses or layers.
pub fn packages(view: &View) -> Vec<Package> {
    let mut out = Vec::new();
    if let Some(data) = view.file(STATUS) {
        let text = String::from_utf8_lossy(data);
        out.extend(
            control::parse(&text)
                .iter()
                .filter(|s| installed(s))
                .filter_map(|s| package(s, &format!("/{STATUS}"))),
        );
    }
    for (name, _) in view.children(STATUS_D) {
        if name.ends_with(".md5sums") || name.starts_with('.') {
            continue;
        }
        let path = format!("{STATUS_D}/{name}");
        let Some(data) = view.file(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(data);
        out.extend(
            control::parse(&text)
                .iter()
                .filter(|s| installed(s))
                .filter_map(|s| package(s, &format!("/{path}"))),
        );
    }
    out
}

/// `Status: want flag status`: only `installed` packages are on the system (`config-files`
/// left after a remove, or half-installed ones, are not). status.d stanzas carry no Status.
fn installed(s: &Stanza) -> bool {
    s.get("Status")
        .is_none_or(|st| st.split_whitespace().nth(2) == Some("installed"))
}

fn package(s: &Stanza, db: &str) -> Option<Package> {
    let name = s.get("Package")?.to_string();
    let version = s.get("Version")?.to_string();
    // `Source: name (version)` when the source's version differs from the binary's.
    let (source_name, source_version) = match s.get("Source") {
        Some(src) => match src.split_once('(') {
            Some((n, v)) => (
                Some(n.trim().to_string()),
                Some(v.trim_end_matches(')').trim().to_string()),
            ),
            None => (Some(src.trim().to_string()), None),
        },
        None => (None, None),
    };
    Some(Package {
        kind: Kind::Deb,
        name,
        version,
        arch: s.get("Architecture").map(str::to_string),
        source_name,
        source_version,
        licenses: Vec::new(),
        license_texts: BTreeMap::new(),
        supplier: s.get("Maintainer").map(str::to_string),
        db: db.to_string(),
        layer: 0,
    })
}

/// Licenses from `/usr/share/doc/NAME/copyright`: the `License:` short names of a DEP-5
/// (machine-readable) file, with the texts of its stand-alone license stanzas; for a free-form
/// file, the `/usr/share/common-licenses/X` files it points to (as Debian policy asks).
pub fn licenses(view: &View, package: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let Some(data) = view.file(&format!("usr/share/doc/{package}/copyright")) else {
        return Default::default();
    };
    parse_copyright(&String::from_utf8_lossy(data))
}

pub fn parse_copyright(text: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let stanzas = control::parse(text);
    let machine_readable = stanzas.first().and_then(|s| s.get("Format")).is_some();
    let mut names: Vec<String> = Vec::new();
    let mut texts = BTreeMap::new();
    let add = |n: &str, names: &mut Vec<String>| {
        if !n.is_empty() && !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    };
    if machine_readable {
        for (i, s) in stanzas.iter().enumerate() {
            let Some(name) = s.first_line("License") else {
                continue;
            };
            let full = s.get("License").unwrap_or("");
            let is_files = s.get("Files").is_some();
            // The header's License and every Files stanza's say what applies; a stand-alone
            // stanza gives a license's text.
            if i == 0 || is_files {
                add(name, &mut names);
            } else if let Some((_, body)) = full.split_once('\n') {
                texts.insert(name.to_string(), body.trim().to_string());
            }
        }
    } else {
        const COMMON: &str = "/usr/share/common-licenses/";
        let mut rest = text;
        while let Some(i) = rest.find(COMMON) {
            rest = &rest[i + COMMON.len()..];
            let n: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-.+_".contains(*c))
                .collect();
            add(n.trim_end_matches('.'), &mut names);
        }
    }
    (names, texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::layers::Node;

    fn view(files: &[(&str, &str)]) -> View {
        let mut v = View::default();
        for (p, d) in files {
            v.nodes.insert(
                p.to_string(),
                Node::File {
                    data: d.as_bytes().to_vec(),
                    layer: 0,
                },
            );
        }
        v
    }

    #[test]
    fn only_installed_packages_are_listed_with_source_and_arch() {
        let v = view(&[(
            STATUS,
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
             Package: libgcc-s1\nStatus: install ok installed\nArchitecture: amd64\nSource: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\n",
        )]);
        let p = packages(&v);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "libc6");
        assert_eq!(p[0].source_name.as_deref(), Some("glibc"));
        assert_eq!(p[1].source_version.as_deref(), Some("12.2.0-14"));
        assert_eq!(p[1].db, "/var/lib/dpkg/status");
    }

    #[test]
    fn distroless_status_d_files_are_read_and_md5sums_skipped() {
        let v = view(&[
            (
                "var/lib/dpkg/status.d/base-files",
                "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
            ),
            (
                "var/lib/dpkg/status.d/base-files.md5sums",
                "abc  etc/issue\n",
            ),
        ]);
        let p = packages(&v);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].db, "/var/lib/dpkg/status.d/base-files");
    }

    #[test]
    fn a_change_to_the_database_or_a_parent_directory_touches_it() {
        assert!(touches("var/lib/dpkg/status"));
        assert!(touches("var/lib/dpkg"));
        assert!(touches("var"));
        assert!(touches("var/lib/dpkg/status.d/x"));
        assert!(!touches("var/lib/dpkg/status-old"));
        assert!(!touches("var/lib/dpkg/info"));
    }

    #[test]
    fn dep5_licenses_come_from_the_header_and_files_stanzas() {
        let (names, texts) = parse_copyright(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: x\n\n\
             Files: *\nCopyright: me\nLicense: GPL-2+\n\n\
             Files: lib/*\nCopyright: you\nLicense: BSD-3-clause or Expat\n\n\
             Files: more/*\nLicense: GPL-2+\n\n\
             License: GPL-2+\n This is free software\n .\n on and on\n",
        );
        assert_eq!(names, ["GPL-2+", "BSD-3-clause or Expat"]);
        assert_eq!(texts["GPL-2+"], "This is free software\n\non and on");
    }

    #[test]
    fn free_form_copyright_names_the_common_licenses_it_points_to() {
        let (names, _) = parse_copyright(
            "This is bash.\nSee /usr/share/common-licenses/GPL-3.\nAnd /usr/share/common-licenses/GPL-3 again.\n",
        );
        assert_eq!(names, ["GPL-3"]);
    }
}
