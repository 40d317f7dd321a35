//! The trailer, the runtime record and the signature block: what the loader reads first from a
//! file it cannot trust. A record that decodes must encode back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loader::format::signature::SignatureBlock;
use loader::format::{Runtime, Trailer, TRAILER_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() >= TRAILER_LEN {
        let _ = Trailer::decode(&data[data.len() - TRAILER_LEN..], data.len() as u64);
    }
    if let Ok(r) = Runtime::decode(data) {
        assert_eq!(Runtime::decode(&r.encode()).as_ref(), Ok(&r));
    }
    let _ = SignatureBlock::decode(data);
});
