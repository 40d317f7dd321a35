//! Image references and digests as users and registries write them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(n) = oci2bin::reference::ImageName::parse(s) {
            // What a parsed name prints parses again.
            let again = n.to_string();
            let _ = oci2bin::reference::ImageName::parse(&again);
        }
        let _ = oci2bin::reference::Reference::parse(s);
        let _ = oci2bin::model::Digest::parse(s);
    }
});
