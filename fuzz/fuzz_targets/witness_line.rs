//! Untrusted witness files (`ledger verify --witness`): any line parses or is refused, never
//! a panic, and what parses writes back to a line that parses the same.
#![no_main]

use harambee_ledger::Witness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(w) = Witness::parse_line(text)
    {
        assert_eq!(Witness::parse_line(&w.to_line()).ok(), Some(w));
    }
});
