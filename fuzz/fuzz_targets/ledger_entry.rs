//! Untrusted ledger entries (an auditor reads whatever ledger it is handed): any bytes parse
//! as a canonical entry or are refused, never a panic, and what parses is its own encoding.
#![no_main]

use harambee_ledger::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::parse(data) {
        assert_eq!(entry.to_bytes(), data);
    }
});
