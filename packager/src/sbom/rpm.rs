//! rpm's database in its three formats — sqlite (`rpmdb.sqlite`, rpm ≥ 4.16), ndb
//! (`Packages.db`, SUSE) and Berkeley DB (`Packages`, older RHEL) — under `/var/lib/rpm` or
//! `/usr/lib/sysimage/rpm`. No well-kept Rust reader of rpmdb exists, so the `rpm` binary reads
//! it: the database files (only they) are copied to a temporary directory and queried with
//! `rpm --dbpath`, with the backend that matches the files.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::layers::View;
use super::{Error, Kind, Package};

pub const DB_DIRS: &[&str] = &["var/lib/rpm", "usr/lib/sysimage/rpm"];
pub const DB_FILES: &[&str] = &[
    "rpmdb.sqlite",
    "rpmdb.sqlite-wal",
    "rpmdb.sqlite-shm",
    "Packages.db",
    "Index.db",
    "Packages",
];

/// The query format: one line per package, fields separated by a tab.
const QUERY: &str = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{LICENSE}\\t%{VENDOR}\\n";

pub fn touches(path: &str) -> bool {
    DB_DIRS.iter().any(|d| super::related(path, d))
}

/// The backend (rpm's `_db_backend`) for the files in a database directory.
fn backend(view: &View, dir: &str) -> Option<&'static str> {
    let has = |f: &str| view.file(&format!("{dir}/{f}")).is_some();
    if has("rpmdb.sqlite") {
        Some("sqlite")
    } else if has("Packages.db") {
        Some("ndb")
    } else if has("Packages") {
        Some("bdb_ro")
    } else {
        None
    }
}

pub fn packages(view: &View) -> Result<Vec<Package>, Error> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for dir in DB_DIRS {
        let Some(backend) = backend(view, dir) else {
            continue;
        };
        // /var/lib/rpm is often a link to /usr/lib/sysimage/rpm: read one database once.
        let main = DB_FILES
            .iter()
            .find_map(|f| view.file(&format!("{dir}/{f}")))
            .map(<[u8]>::to_vec);
        if seen.contains(&main) {
            continue;
        }
        seen.push(main);
        out.extend(query(view, dir, backend)?);
    }
    Ok(out)
}

fn query(view: &View, dir: &str, backend: &str) -> Result<Vec<Package>, Error> {
    let db = format!("/{dir}");
    let failed = |reason: String| Error::Rpm {
        db: db.clone(),
        reason,
    };
    let tmp = tempfile::tempdir().map_err(|e| failed(format!("cannot make a directory: {e}")))?;
    for f in DB_FILES {
        if let Some(data) = view.file(&format!("{dir}/{f}")) {
            std::fs::write(tmp.path().join(f), data)
                .map_err(|e| failed(format!("cannot copy {f}: {e}")))?;
        }
    }
    let rpm = std::env::var_os("OCI2BIN_RPM").unwrap_or_else(|| "rpm".into());
    let result = Command::new(&rpm)
        .arg("--dbpath")
        .arg(tmp.path())
        .args(["--define", &format!("_db_backend {backend}")])
        .args(["-qa", "--qf", QUERY])
        .env("LC_ALL", "C")
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::RpmMissing {
                db,
                rpm: Path::new(&rpm).display().to_string(),
            })
        }
        Err(e) => return Err(failed(format!("cannot run rpm: {e}"))),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    // An rpm built without this backend warns, reads an empty dummy database and exits 0.
    if stderr.contains("invalid %_db_backend") || stderr.contains("dummy database") {
        return Err(failed(format!(
            "this rpm ({}) cannot read {backend} databases",
            Path::new(&rpm).display()
        )));
    }
    if !output.status.success() {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(failed(format!(
            "rpm {}: {}",
            output.status,
            last.unwrap_or("no message")
        )));
    }
    Ok(parse_query(&String::from_utf8_lossy(&output.stdout), &db))
}

/// Parses the lines [`QUERY`] prints.
pub fn parse_query(text: &str, db: &str) -> Vec<Package> {
    let none = |s: &str| (!s.is_empty() && s != "(none)").then(|| s.to_string());
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [name, epoch, version, release, arch, srpm, license, vendor] = f[..] else {
                return None;
            };
            if name.is_empty() || name == "gpg-pubkey" {
                // Imported signing keys are stored as pseudo-packages.
                return None;
            }
            let version = match epoch {
                "0" | "" => format!("{version}-{release}"),
                e => format!("{e}:{version}-{release}"),
            };
            Some(Package {
                kind: Kind::Rpm,
                name: name.to_string(),
                version,
                arch: none(arch),
                source_name: none(srpm),
                source_version: None,
                licenses: none(license).into_iter().collect(),
                license_texts: BTreeMap::new(),
                supplier: none(vendor),
                db: db.to_string(),
                layer: 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lines_become_packages_and_signing_keys_are_skipped() {
        let p = parse_query(
            "bash\t0\t5.2.26\t3.fc40\tx86_64\tbash-5.2.26-3.fc40.src.rpm\tGPL-3.0-or-later\tFedora Project\n\
             gpg-pubkey\t0\ta15b79cc\t63d04c2c\t(none)\t(none)\tpubkey\t(none)\n\
             shadow-utils\t2\t4.15.1\t1.fc40\tx86_64\tshadow-utils-4.15.1-1.fc40.src.rpm\tBSD-3-Clause\t(none)\n",
            "/var/lib/rpm",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].version, "5.2.26-3.fc40");
        assert_eq!(p[1].version, "2:4.15.1-1.fc40");
        assert_eq!(p[1].supplier, None);
    }
}
