//! The wire types decode any bytes without panicking, and round-trip what they encode.
#![allow(clippy::unwrap_used)]

use harambee_proto::{CHUNK_BYTES, chunks, v1};
use proptest::prelude::*;
use prost::Message;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = v1::UpdateChunk::decode(bytes.as_slice()) {
            prop_assert_eq!(v1::UpdateChunk::decode(m.encode_to_vec().as_slice()).unwrap(), m);
        }
        let _ = v1::EnrolRequest::decode(bytes.as_slice());
        let _ = v1::TaskRequest::decode(bytes.as_slice());
        let _ = v1::EvaluationReport::decode(bytes.as_slice());
    }

    #[test]
    fn headers_round_trip(round in any::<u64>(), samples in any::<u64>(), key in proptest::collection::vec(any::<u8>(), 32)) {
        let header = v1::UpdateHeader { public_key: key, round, num_samples: samples, encoding: "f32".into(), ..Default::default() };
        let chunk = v1::UpdateChunk { part: Some(v1::update_chunk::Part::Header(header)) };
        prop_assert_eq!(v1::UpdateChunk::decode(chunk.encode_to_vec().as_slice()).unwrap(), chunk);
    }

    #[test]
    fn chunks_cover_the_bytes_once_in_order(len in 0usize..(3 * CHUNK_BYTES), offset in 0usize..CHUNK_BYTES) {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut rebuilt = bytes[..offset.min(len)].to_vec();
        for (at, c) in chunks(&bytes, offset) {
            prop_assert_eq!(at, rebuilt.len());
            prop_assert!(c.len() <= CHUNK_BYTES);
            rebuilt.extend_from_slice(c);
        }
        prop_assert_eq!(rebuilt, bytes);
    }
}
