//! apk's database, `/lib/apk/db/installed` (or `/usr/lib/apk/db/installed` where apk-tools 3
//! moved it): stanzas of one-letter `X:value` lines separated by blank lines.

use std::collections::BTreeMap;

use super::layers::View;
use super::{Kind, Package};

pub const DBS: &[&str] = &["lib/apk/db/installed", "usr/lib/apk/db/installed"];

pub fn touches(path: &str) -> bool {
    DBS.iter().any(|db| super::related(path, db))
}

pub fn packages(view: &View) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    for db in DBS {
        if let Some(data) = view.file(db) {
            for p in parse(&String::from_utf8_lossy(data), &format!("/{db}")) {
                // Both paths may be one file through a link: list a package once.
                if !out.iter().any(|q| q.name == p.name && q.arch == p.arch) {
                    out.push(p);
                }
            }
        }
    }
    out
}

pub fn parse(text: &str, db: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut fields: BTreeMap<char, String> = BTreeMap::new();
    let mut flush = |fields: &mut BTreeMap<char, String>| {
        if let (Some(name), Some(version)) = (fields.remove(&'P'), fields.remove(&'V')) {
            let license = fields.remove(&'L').filter(|l| !l.is_empty());
            out.push(Package {
                kind: Kind::Apk,
                name,
                version,
                arch: fields.remove(&'A'),
                source_name: fields.remove(&'o'),
                source_version: None,
                licenses: license.into_iter().collect(),
                license_texts: BTreeMap::new(),
                supplier: fields.remove(&'m'),
                db: db.to_string(),
                layer: 0,
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            // Per-file lines (F:, R:, Z:, a:, M:) repeat; the package's own fields come first.
            fields
                .entry(k)
                .or_insert_with(|| chars.as_str().to_string());
        }
    }
    flush(&mut fields);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_packages_with_origin_license_and_arch() {
        let p = parse(
            "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:383152\nT:the musl c library\n\
             U:https://musl.libc.org/\nL:MIT\no:musl\nm:Natanael Copa <ncopa@alpinelinux.org>\n\
             F:lib\nR:ld-musl-x86_64.so.1\n\n\
             P:busybox\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n",
            "/lib/apk/db/installed",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "musl");
        assert_eq!(p[0].version, "1.2.4_git20230717-r4");
        assert_eq!(p[0].licenses, ["MIT"]);
        assert_eq!(p[0].source_name.as_deref(), Some("musl"));
        assert_eq!(p[1].arch.as_deref(), Some("x86_64"));
    }

    #[test]
    fn a_stanza_without_a_version_is_skipped() {
        assert!(parse("P:half\n\n", "/x").is_empty());
    }
}
