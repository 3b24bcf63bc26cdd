//! Untrusted gRPC messages: decoding any bytes as the messages a coordinator receives never
//! panics, and what decodes re-encodes to something that decodes the same.
#![no_main]

use harambee_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = v1::UpdateChunk::decode(data) {
        assert_eq!(v1::UpdateChunk::decode(m.encode_to_vec().as_slice()).ok(), Some(m));
    }
    let _ = v1::EnrolRequest::decode(data);
    let _ = v1::TaskRequest::decode(data);
    let _ = v1::FetchRequest::decode(data);
    let _ = v1::EvaluationReport::decode(data);
});
