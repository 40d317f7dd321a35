//! PEM keys (public, and private in PKCS#8, encrypted PKCS#8 and SEC1), base64, and a
//! signature check of a file whose signature block comes from the fuzzer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loader::trust::{base64_decode, PublicKey};

fuzz_target!(|data: &[u8]| {
    let _ = PublicKey::from_pem(data);
    let _ = PublicKey::from_sec1(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = base64_decode(s);
        let _ = oci2bin::trust::parse_private_key(s, b"fuzz");
    }
});
