//! An uncompressed layer: the tar reader, the in-root path resolver, whiteouts, hardlinks and
//! symlinks, extracted for real into a fresh directory. Whatever the bytes, nothing may appear
//! outside that directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loader::extract::{remove_tree, Extractor, Whiteouts};

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir_in(std::env::var_os("FUZZ_TMP").unwrap_or("/dev/shm".into()))
        .expect("temp dir");
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // Merged mode, then one layer alone as the store extracts it.
    if let Ok(mut x) = Extractor::new(&root) {
        if x.apply_tar("fuzz", data).is_ok() {
            let _ = x.finish();
        }
    }
    let _ = remove_tree(&root);
    std::fs::create_dir(&root).unwrap();
    if let Ok(mut x) = Extractor::for_layer(&root, Whiteouts::Xattr) {
        if x.apply_tar("fuzz", data).is_ok() {
            let _ = x.finish_layer();
        }
    }
    let _ = remove_tree(&root);
    let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "something was written beside the root: {left:?}"
    );
});
