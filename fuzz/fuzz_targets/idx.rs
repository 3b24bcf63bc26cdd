//! IDX data files come from disk: the parsers must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = harambee_learn::parse_images(data);
    let _ = harambee_learn::parse_labels(data);
});
