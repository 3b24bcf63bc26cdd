//! What a participant of a pretrained federation reads: the coordinator's task (JSON) and
//! safetensors bytes (a base's weights, an adapter). Any input is a value or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<harambee_llm::PretrainedTask>(data);
    if let Ok(tensors) = harambee_llm::tensors_from_bytes(std::path::Path::new("fuzz"), data) {
        for t in tensors.values() {
            assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
        }
    }
});
