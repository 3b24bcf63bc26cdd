//! Model files may be hostile: reading one returns an error or a consistent parameter set.
#![no_main]

use harambee_params::ParamSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = ParamSet::from_safetensors(data) {
        let again = ParamSet::from_safetensors(&params.to_safetensors().expect("re-encode")).expect("re-read");
        assert_eq!(params.digest(), again.digest());
    }
});
