//! The identifiers documents give things: package URLs (in syft's form, so tools can match
//! them), the image's `pkg:oci` URL, stable per-package keys and name-based UUIDs.

use sha2::{Digest as _, Sha256};

use super::{Inventory, Kind, OsRelease, Package};

/// Percent-encodes a purl component: all but the unreserved characters.
fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        // `:` stays, as syft and the reference libraries write an epoch (`1:2.38`).
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The package URL: `pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12&upstream=glibc`.
pub fn purl(p: &Package, os: &OsRelease) -> String {
    let namespace = os.id.clone().unwrap_or_else(|| {
        match p.kind {
            Kind::Deb => "debian",
            Kind::Apk => "alpine",
            Kind::Rpm => "redhat",
        }
        .to_string()
    });
    // rpm's purl carries the epoch as a qualifier, not in the version.
    let (epoch, version) = match p.kind {
        Kind::Rpm => match p.version.split_once(':') {
            Some((e, v)) => (Some(e.to_string()), v.to_string()),
            None => (None, p.version.clone()),
        },
        _ => (None, p.version.clone()),
    };
    let upstream = p.source_name.as_ref().map(|s| match &p.source_version {
        Some(v) => format!("{s}@{v}"),
        None => s.clone(),
    });
    // Qualifiers sorted by key, as the purl spec asks.
    let qualifiers: Vec<String> = [
        ("arch", p.arch.clone()),
        ("distro", os.distro()),
        ("epoch", epoch),
        ("upstream", upstream),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", purl_encode(&v))))
    .collect();
    let mut s = format!(
        "pkg:{}/{}/{}@{}",
        p.kind.purl_type(),
        purl_encode(&namespace.to_ascii_lowercase()),
        purl_encode(&p.name),
        purl_encode(&version)
    );
    if !qualifiers.is_empty() {
        s.push('?');
        s.push_str(&qualifiers.join("&"));
    }
    s
}

/// The image's package URL: `pkg:oci/debian@sha256%3A…?repository_url=…&tag=12`.
pub fn image_purl(inv: &Inventory) -> String {
    let last = inv.repository.rsplit('/').next().unwrap_or(&inv.repository);
    format!(
        "pkg:oci/{}@{}?repository_url={}&tag={}",
        purl_encode(&last.to_ascii_lowercase()),
        purl_encode(&inv.digest.to_string()),
        purl_encode(&inv.repository),
        purl_encode(&inv.tag)
    )
}

/// A short stable id for a package, unique within a document.
pub fn package_key(p: &Package) -> String {
    let h = Sha256::digest(
        format!(
            "{}\0{}\0{}\0{}",
            p.kind.purl_type(),
            p.name,
            p.arch.as_deref().unwrap_or(""),
            p.db
        )
        .as_bytes(),
    );
    hex::encode(&h[..6])
}

/// A name-based UUID (RFC 4122 layout, version 5 bits) from some bytes.
pub fn uuid_from(bytes: &[u8]) -> String {
    let mut h: [u8; 32] = Sha256::digest(bytes).into();
    h[6] = (h[6] & 0x0f) | 0x50;
    h[8] = (h[8] & 0x3f) | 0x80;
    let x = hex::encode(&h[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}
