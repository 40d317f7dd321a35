//! A layer blob as the loader reads it from its file: its digest, then gzip (one or more
//! members) or zstd (frames, skippable ones too) by its first bytes, then the tar inside.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loader::extract::{remove_tree, Extractor};
use loader::format::{Compression, LayerRef};
use sha2::{Digest, Sha256};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::var_os("FUZZ_TMP").unwrap_or("/dev/shm".into());
    let base = tempfile::tempdir_in(dir).expect("temp dir");
    let mut blob = tempfile::tempfile_in(base.path()).unwrap();
    blob.write_all(data).unwrap();
    let compression = match Compression::sniff(data) {
        Compression::None => Compression::Gzip,
        c => c,
    };
    let layer = LayerRef {
        offset: 0,
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        compression,
    };
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    if let Ok(mut x) = Extractor::new(&root) {
        if x.apply_layer(&blob, &layer).is_ok() {
            let _ = x.finish();
        }
    }
    let _ = remove_tree(&root);
});
