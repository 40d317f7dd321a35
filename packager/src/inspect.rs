//! `oci2bin inspect FILE`: what a built file holds, from its trailer and metadata (no tar scan).

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::sink::polyglot::read_back;

/// The checked metadata of a file, and the file's size.
pub struct Inspection {
    pub metadata: Metadata,
    pub file_size: u64,
    /// Layer count in the runtime record (must equal the metadata's).
    pub runtime_layers: usize,
    /// The key id (hex) its signature block names, unchecked (`oci2bin verify` checks it);
    /// `None` when unsigned.
    pub signed_by: Option<String>,
    /// Key ids (hex) one of which must have signed it (`--require-signature`).
    pub required_keys: Vec<String>,
}

pub fn inspect(path: &Path) -> Result<Inspection> {
    let (trailer, metadata, runtime, file_size) = read_back(path)?;
    if runtime.layers.len() != metadata.layers.len() || runtime.image_id != metadata.manifest_digest
    {
        return Err(Error::Invalid(format!(
            "{}: metadata and runtime record disagree about the image",
            path.display()
        )));
    }
    let signed_by = std::fs::File::open(path)
        .ok()
        .and_then(|f| loader::trust::signature_block(&f, file_size, &trailer).ok())
        .map(|b| hex::encode(b.key_id));
    let required_keys = runtime
        .trusted_keys
        .iter()
        .filter_map(|k| loader::trust::PublicKey::from_sec1(k).ok())
        .map(|k| hex::encode(k.id()))
        .collect();
    Ok(Inspection {
        metadata,
        file_size,
        runtime_layers: runtime.layers.len(),
        signed_by,
        required_keys,
    })
}

fn json_list(v: &Option<Vec<String>>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => serde_json::to_string(v).expect("strings serialize"),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The human-readable report.
pub fn render(i: &Inspection) -> String {
    let m = &i.metadata;
    let mut s = String::new();
    let _ = writeln!(s, "image:        {}", m.image);
    let _ = writeln!(s, "digest:       {}", m.manifest_digest);
    let _ = writeln!(s, "platform:     {}/{}", m.os, m.architecture);
    let _ = writeln!(s, "entrypoint:   {}", json_list(&m.config.entrypoint));
    let _ = writeln!(s, "cmd:          {}", json_list(&m.config.cmd));
    let _ = writeln!(s, "workdir:      {}", or_dash(&m.config.workdir));
    let _ = writeln!(s, "user:         {}", or_dash(&m.config.user));
    let _ = writeln!(s, "env:");
    for e in &m.config.env {
        let _ = writeln!(s, "  {e}");
    }
    if !m.config.labels.is_empty() {
        let _ = writeln!(s, "labels:");
        for (k, v) in &m.config.labels {
            let _ = writeln!(s, "  {k}={v}");
        }
    }
    let total: u64 = m.layers.iter().map(|l| l.size).sum();
    let _ = writeln!(s, "layers:       {} ({} bytes)", m.layers.len(), total);
    for l in &m.layers {
        let _ = writeln!(s, "  {}  {:>12}  {}", l.digest, l.size, l.media_type);
    }
    let _ = writeln!(s, "built:");
    let _ = writeln!(s, "  source:     {}", m.source);
    let _ = writeln!(s, "  source digest: {}", m.source_digest);
    let _ = writeln!(s, "  created:    {}", m.created);
    let _ = writeln!(
        s,
        "  tool:       {} (format {})",
        m.tool_version, m.format_version
    );
    let _ = writeln!(
        s,
        "  loader:     {} bytes, sha256:{}",
        m.loader.size, m.loader.sha256
    );
    let _ = writeln!(s, "  file size:  {} bytes", i.file_size);
    match &i.signed_by {
        Some(id) => writeln!(
            s,
            "signature:    by key id {id} (unchecked: `oci2bin verify --key PUB --in FILE`)"
        ),
        None => writeln!(s, "signature:    none"),
    }
    .expect("a String takes writes");
    for id in &i.required_keys {
        let _ = writeln!(
            s,
            "runs only if signed by key id {id} (--require-signature)"
        );
    }
    s
}
