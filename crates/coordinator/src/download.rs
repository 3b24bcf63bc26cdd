//! Compressed downloads. Under a lossy download encoding the global model moves each round
//! by its change *as encoded*: `next = base + decode(encode(aggregate − base))`. Everyone who
//! holds the base then rebuilds `next` bit for bit from those few bytes, so members download
//! the encoded change rather than the whole model, the digests they sign stay exact, and an
//! auditor recomputes the same `next`. The encoding's error is not carried to the next round
//! (it is at most half a quantisation step of one round's change, and the next round's
//! aggregate starts from the published model, so it does not accumulate as drift).

use harambee_params::{ParamSet, ParamsError, UpdateCodec};

/// The model to publish after a step from `base` to `next`, and (for a lossy `codec`) the
/// bytes that turn `base` into it. An exact codec publishes `next` itself, with no bytes.
pub fn published_step(
    codec: UpdateCodec,
    base: &ParamSet,
    next: ParamSet,
) -> Result<(ParamSet, Option<Vec<u8>>), ParamsError> {
    if codec.is_exact() {
        return Ok((next, None));
    }
    let (bytes, published) = codec.encode(base, &next, None)?;
    Ok((published, Some(bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_published_model_is_what_the_bytes_rebuild_from_the_base() {
        let base = ParamSet::from_tensors([("w", vec![300], vec![0.5; 300])]).unwrap();
        let next = ParamSet::from_tensors([(
            "w",
            vec![300],
            (0..300)
                .map(|i| 0.5 + (i as f32 * 0.37).sin() * 0.01)
                .collect(),
        )])
        .unwrap();
        for codec in ["f16", "bf16", "int8", "topk:0.1"] {
            let codec: UpdateCodec = codec.parse().unwrap();
            let (published, bytes) = published_step(codec, &base, next.clone()).unwrap();
            let bytes = bytes.unwrap();
            assert_eq!(bytes.len(), codec.encoded_len(300));
            assert_eq!(codec.decode(&base, &bytes).unwrap(), published);
        }
        let (published, bytes) = published_step(UpdateCodec::F32, &base, next.clone()).unwrap();
        assert_eq!((published, bytes), (next, None));
    }
}
