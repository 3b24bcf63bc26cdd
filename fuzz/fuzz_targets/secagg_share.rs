//! Untrusted secure-aggregation shares: whatever a neighbour seals, decoding it as a share pair
//! and combining what decodes never panics, and a decoded pair re-encodes to the same bytes.
#![no_main]

use harambee_secagg::SharePair;
use harambee_secagg::shamir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pair) = SharePair::from_bytes(data, 0) else {
        return;
    };
    assert_eq!(pair.to_bytes(), data);
    let _ = shamir::combine(&[pair.key, pair.seed], 2);
    let _ = shamir::combine(&[pair.key], 1);
});
