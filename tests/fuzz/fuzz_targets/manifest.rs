//! Manifests, configs and whole image archives: a docker-archive read in place (its tar index,
//! manifest.json, config and layer descriptors) from the fuzzer's bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci2bin::model::{self, Config};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    for media in [
        None,
        Some(model::MEDIA_OCI_MANIFEST),
        Some(model::MEDIA_DOCKER_MANIFEST),
    ] {
        let _ = model::parse_manifest(data.to_vec(), media);
    }
    let _ = Config::parse(data.to_vec());
    let dir = std::env::var_os("FUZZ_TMP").unwrap_or("/dev/shm".into());
    let mut f = tempfile::NamedTempFile::new_in(dir).unwrap();
    f.write_all(data).unwrap();
    let _ = oci2bin::source::docker_archive::open(f.path(), None, "docker-archive:fuzz");
});
