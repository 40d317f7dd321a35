//! The metadata JSON of an oci2bin file: what `oci2bin inspect` and other tools read (the loader
//! reads the compact runtime record instead).

use serde::{Deserialize, Serialize};

use crate::model::RunConfig;

/// The metadata block, written between the tar's end and the runtime record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// File format version, `MAJOR.MINOR`.
    pub format_version: String,
    /// `oci2bin <version>` that wrote the file.
    pub tool_version: String,
    /// The SOURCE argument the file was built from.
    pub source: String,
    /// The source's manifest digest before any mutation.
    pub source_digest: String,
    /// The image name, `NAME:TAG`.
    pub image: String,
    /// Digest of the manifest stored in the file.
    pub manifest_digest: String,
    pub config_digest: String,
    pub architecture: String,
    pub os: String,
    /// Build time: SOURCE_DATE_EPOCH when set, else the clock (RFC 3339, UTC).
    pub created: String,
    pub layers: Vec<LayerMeta>,
    pub loader: LoaderMeta,
    pub config: RunConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// Where the layer's bytes start in the file.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderMeta {
    pub size: u64,
    /// sha256 of the loader binary as built (before its program headers were shifted).
    pub sha256: String,
    /// Where the (shifted) loader image starts in the file.
    pub offset: u64,
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `1970-01-01T00:00:00Z` form of a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let rem = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        civil_date(secs),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn civil_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_times_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
