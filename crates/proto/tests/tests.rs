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

proptest! {
    // Call proofs arrive as untrusted metadata: any bytes decode or are refused, never a
    // panic, and what decodes re-encodes to the same bytes.
    #[test]
    fn call_proofs_decode_any_bytes_or_refuse_them(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        match harambee_proto::CallProof::from_bytes(&bytes) {
            Ok(p) => prop_assert_eq!(p.to_bytes().to_vec(), bytes),
            Err(_) => prop_assert_ne!(bytes.len(), harambee_proto::auth::PROOF_BYTES),
        }
    }

    // A proof signs one call: another federation, method or body does not verify.
    #[test]
    fn a_call_proof_covers_its_federation_method_and_body(other in "[a-z]{1,8}") {
        let me = harambee_identity::Identity::generate().unwrap();
        let beat = v1::HeartbeatRequest { public_key: me.public().to_bytes().to_vec() };
        let request = harambee_proto::auth::signed(&me, "fed", harambee_proto::auth::method::HEARTBEAT, beat.clone());
        let proof = harambee_proto::CallProof::of(&request).unwrap().unwrap();
        let body = harambee_proto::auth::body_digest(&beat);
        let ok = |fed: &str, method: &str, body: &[u8; 32]| me.public().verify_raw(&proof.message(fed, method, body), &proof.signature).is_ok();
        prop_assert!(ok("fed", harambee_proto::auth::method::HEARTBEAT, &body));
        let elsewhere = format!("{}-fed", other);
        prop_assert!(!ok(&elsewhere, harambee_proto::auth::method::HEARTBEAT, &body));
        prop_assert!(!ok("fed", harambee_proto::auth::method::GET_TASK, &body));
        prop_assert!(!ok("fed", harambee_proto::auth::method::HEARTBEAT, &[1; 32]));
    }
}
