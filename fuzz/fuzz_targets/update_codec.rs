//! Compressed updates come from participants: decoding any bytes with any code must never
//! panic, and must only yield a finite update of the base's layout, of the code's exact size.
#![no_main]

use harambee_params::{ParamSet, UpdateCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, bytes)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 64) + 1;
    let base = ParamSet::from_tensors([("w", vec![n], vec![0.25; n])]).expect("static layout");
    for codec in ["f32", "f16", "bf16", "int8", "topk:0.25", "topk:1"] {
        let codec: UpdateCodec = codec.parse().expect("known code");
        if let Ok(update) = codec.decode(&base, bytes) {
            assert!(update.check_finite().is_ok());
            assert_eq!(update.layout(), base.layout());
            assert_eq!(bytes.len(), codec.encoded_len(n));
        }
    }
});
