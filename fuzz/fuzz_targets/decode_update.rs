//! Wire-encoded updates come from participants: decoding must never panic and must only
//! yield finite values of the agreed layout.
#![no_main]

use harambee_params::{Encoding, Layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let layout = Layout::new([("w", vec![4, 3]), ("b", vec![4])]).expect("static layout");
    for encoding in [Encoding::F32, Encoding::F16] {
        if let Ok(params) = encoding.decode(&layout, data) {
            assert!(params.check_finite().is_ok());
            assert_eq!(encoding.encode(&params).len(), data.len());
        }
    }
});
