//! Untrusted call proofs (the `x-harambee-proof-bin` metadata of every call): decoding any
//! bytes never panics, and what decodes re-encodes to the same bytes.
#![no_main]

use harambee_proto::CallProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = CallProof::from_bytes(data) {
        assert_eq!(proof.to_bytes().as_slice(), data);
        let _ = proof.message("fed", harambee_proto::auth::method::GET_TASK, &[0; 32]);
    }
});
