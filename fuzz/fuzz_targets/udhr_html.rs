//! Corpus HTML is read from disk: sentence extraction must never panic on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for sentence in harambee_learn::udhr::extract_sentences(text) {
            assert!(!sentence.is_empty());
        }
    }
});
