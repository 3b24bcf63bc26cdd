//! What a participant reads from others or from disk never panics: the coordinator's
//! pretrained task (JSON), safetensors bytes (weights and adapters), `config.json`.

use std::path::Path;

use harambee_llm::{HfConfig, PretrainedTask, tensors_from_bytes};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_bytes_are_tensors_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = tensors_from_bytes(Path::new("fuzz.safetensors"), &bytes);
    }

    #[test]
    fn a_safetensors_header_with_any_body_is_tensors_or_an_error(
        n in 0u64..200,
        header in "\\{\"w\":\\{\"dtype\":\"(F32|BF16|F16|I64)\",\"shape\":\\[[0-9]{1,3}(,[0-9]{1,2})?\\],\"data_offsets\":\\[0,[0-9]{1,3}\\]\\}\\}",
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = (header.len() as u64 + n % 2).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&body);
        if let Ok(tensors) = tensors_from_bytes(Path::new("fuzz.safetensors"), &bytes) {
            for t in tensors.values() {
                prop_assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
            }
        }
    }

    #[test]
    fn any_json_is_a_task_or_an_error(text in ".{0,300}") {
        let _ = serde_json::from_str::<PretrainedTask>(&text);
        let _ = serde_json::from_str::<HfConfig>(&text);
    }
}

#[test]
fn a_task_with_absurd_sizes_is_refused_before_anything_is_allocated() {
    let task = r#"{"base_name":"x","base_sha256":"00","config":{"model_type":"llama","hidden_size":64,"intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10},"lora":{"rank":1000000,"alpha":8.0,"targets":["q_proj"],"variant":"standard","seed":0},"context":16}"#;
    let task: PretrainedTask = serde_json::from_str(task).expect("parses");
    assert!(task.lora.validate().is_err());
}
