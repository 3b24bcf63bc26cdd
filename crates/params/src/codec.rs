//! Compressed updates: what a participant uploads, in fewer bytes than f32.
//!
//! Every lossy code sends the update's *change* from the round's base (which both sides
//! hold), since a change is small and centred where weights are not: half precision, bfloat16,
//! 8-bit integers with one scale per block, or only the largest coordinates (top-k). A FedAvg
//! update and a DiLoCo pseudo-gradient are both such a change, so both compress alike.
//!
//! The encoder returns, beside the bytes, the update exactly as the receiver will decode it
//! (`base + decoded change`, the same f32 additions on both sides): that is what the
//! participant signs and what the ledger records, so verification recomputes rounds from the
//! decoded updates bit for bit. What a code leaves out may be carried to the participant's
//! next update (error feedback), which is what keeps top-k and int8 from drifting.

use std::fmt;
use std::str::FromStr;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::{Encoding, ParamSet, ParamsError};

/// Values per block of the int8 code, each block with its own f32 scale.
pub const INT8_BLOCK: usize = 256;

/// How an update travels on the wire. The charter chooses it for a federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum UpdateCodec {
    /// Every value in f32: exact, 4 bytes a value.
    #[default]
    F32,
    /// The change in IEEE half precision: 2 bytes a value.
    F16,
    /// The change in bfloat16 (f32's range, 8 significant bits): 2 bytes a value.
    Bf16,
    /// The change in 8-bit integers, one f32 scale (its largest magnitude / 127) per block of
    /// [`INT8_BLOCK`] values: just over 1 byte a value.
    Int8,
    /// The change's largest coordinates by magnitude, as (index, value) pairs: 8 bytes each,
    /// every other coordinate unchanged.
    TopK {
        /// The fraction of coordinates sent, in parts per million.
        per_million: u32,
    },
}

impl UpdateCodec {
    /// Whether the code is exact (only f32 is).
    pub fn is_exact(self) -> bool {
        self == UpdateCodec::F32
    }

    /// [`is_exact`](Self::is_exact) by reference, for serde's `skip_serializing_if`.
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
    pub fn is_exact_ref(&self) -> bool {
        self.is_exact()
    }

    /// How many coordinates top-k sends of `values` (at least one); `values` for the others.
    pub fn kept(self, values: usize) -> usize {
        match self {
            UpdateCodec::TopK { per_million } => {
                let k = (values as u128 * u128::from(per_million)).div_ceil(1_000_000);
                (k as usize).clamp(1.min(values), values)
            }
            _ => values,
        }
    }

    /// The exact size in bytes of an encoded update of a model of `values` values: a receiver
    /// refuses any other length before reading the bytes.
    pub fn encoded_len(self, values: usize) -> usize {
        match self {
            UpdateCodec::F32 => values * 4,
            UpdateCodec::F16 | UpdateCodec::Bf16 => values * 2,
            UpdateCodec::Int8 => values.div_ceil(INT8_BLOCK) * 4 + values,
            UpdateCodec::TopK { .. } => self.kept(values) * 8,
        }
    }

    /// Encodes `update`, trained from `base`. With a `residual` (the participant's error
    /// feedback, zeros at first), the change plus what earlier encodings left out is encoded,
    /// and what this one leaves out is kept there for the next. Returns the bytes and the
    /// update as the receiver decodes them.
    pub fn encode(
        self,
        base: &ParamSet,
        update: &ParamSet,
        residual: Option<&mut Vec<f32>>,
    ) -> Result<(Vec<u8>, ParamSet), ParamsError> {
        update.check_same_layout(base)?;
        update.check_finite()?;
        if self.is_exact() {
            return Ok((Encoding::F32.encode(update), update.clone()));
        }
        let mut change: Vec<f32> = update
            .values()
            .iter()
            .zip(base.values())
            .map(|(u, b)| u - b)
            .collect();
        let residual = residual.filter(|r| r.len() == change.len() || r.is_empty());
        if let Some(r) = &residual
            && !r.is_empty()
        {
            change.iter_mut().zip(r.iter()).for_each(|(c, r)| *c += r);
        }
        let bytes = self.encode_change(&change);
        // The receiver's own decoder says what was sent, so sender and receiver agree on
        // every bit.
        let sent = self.decode(base, &bytes)?;
        if let Some(r) = residual {
            r.clear();
            r.extend(
                change
                    .iter()
                    .zip(sent.values().iter().zip(base.values()))
                    .map(|(c, (s, b))| c - (s - b)),
            );
        }
        Ok((bytes, sent))
    }

    /// Decodes untrusted bytes of an update trained from `base`: exactly
    /// [`encoded_len`](Self::encoded_len) bytes, int8 scales finite and not negative, top-k
    /// indices in range and strictly increasing, and the rebuilt update finite. One pass
    /// over the bytes adds the change to a copy of the base.
    pub fn decode(self, base: &ParamSet, bytes: &[u8]) -> Result<ParamSet, ParamsError> {
        if self.is_exact() {
            return Encoding::F32.decode(base.layout(), bytes);
        }
        let expected = self.encoded_len(base.len());
        if bytes.len() != expected {
            return Err(ParamsError::EncodedLength {
                expected,
                actual: bytes.len(),
                encoding: self.kind(),
            });
        }
        // One pass: each block of the base plus its decoded change is written once and
        // checked while it is still in cache.
        let mut values = Vec::with_capacity(base.len());
        let finite = match self {
            UpdateCodec::F16 => rebuild_half::<f16>(bytes, base.values(), &mut values),
            UpdateCodec::Bf16 => rebuild_half::<bf16>(bytes, base.values(), &mut values),
            UpdateCodec::Int8 => rebuild_int8(bytes, base.values(), &mut values)?,
            UpdateCodec::TopK { .. } => rebuild_top_k(bytes, base.values(), &mut values)?,
            UpdateCodec::F32 => unreachable!("exact updates return above"),
        };
        let update = ParamSet::from_values(base.layout().clone(), values)?;
        if !finite {
            // Names the tensor and the index.
            update.check_finite()?;
        }
        Ok(update)
    }

    fn encode_change(self, change: &[f32]) -> Vec<u8> {
        match self {
            UpdateCodec::F16 => encode_half::<f16>(change),
            UpdateCodec::Bf16 => encode_half::<bf16>(change),
            UpdateCodec::Int8 => encode_int8(change),
            UpdateCodec::TopK { .. } => encode_top_k(change, self.kept(change.len())),
            UpdateCodec::F32 => unreachable!("exact updates are encoded as f32 parameters"),
        }
    }

    /// The code's family name, without its parameter.
    fn kind(self) -> &'static str {
        match self {
            UpdateCodec::F32 => "f32",
            UpdateCodec::F16 => "f16",
            UpdateCodec::Bf16 => "bf16",
            UpdateCodec::Int8 => "int8",
            UpdateCodec::TopK { .. } => "topk",
        }
    }
}

/// Values converted at a time between f32 and a 16-bit float: a stack buffer that the slice
/// conversions (F16C where the CPU has it) run over.
const HALF_CHUNK: usize = 1024;

/// The change as little-endian 16-bit floats.
fn encode_half<H: HalfFloat>(change: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; change.len() * 2];
    let mut buffer = [H::ZERO; HALF_CHUNK];
    for (values, bytes) in change
        .chunks(HALF_CHUNK)
        .zip(out.chunks_mut(HALF_CHUNK * 2))
    {
        let halves = &mut buffer[..values.len()];
        H::from_f32_slice(halves, values);
        for (o, h) in bytes.chunks_exact_mut(2).zip(halves.iter()) {
            o.copy_from_slice(&h.bits().to_le_bytes());
        }
    }
    out
}

/// Appends `base` plus the little-endian 16-bit floats in `bytes` to `out`; whether every
/// value is finite.
fn rebuild_half<H: HalfFloat>(bytes: &[u8], base: &[f32], out: &mut Vec<f32>) -> bool {
    let mut halves = [H::ZERO; HALF_CHUNK];
    let mut wide = [0.0f32; HALF_CHUNK];
    let mut finite = true;
    for (base, bytes) in base.chunks(HALF_CHUNK).zip(bytes.chunks(HALF_CHUNK * 2)) {
        let n = base.len();
        for (h, b) in halves[..n].iter_mut().zip(bytes.chunks_exact(2)) {
            *h = H::from_bits(u16::from_le_bytes([b[0], b[1]]));
        }
        H::to_f32_slice(&halves[..n], &mut wide[..n]);
        let start = out.len();
        out.extend(base.iter().zip(&wide[..n]).map(|(b, w)| b + w));
        finite &= out[start..].iter().all(|v| v.is_finite());
    }
    finite
}

/// What the two 16-bit float types share here.
trait HalfFloat: Copy {
    const ZERO: Self;
    fn bits(self) -> u16;
    fn from_bits(bits: u16) -> Self;
    fn from_f32_slice(out: &mut [Self], values: &[f32]);
    fn to_f32_slice(halves: &[Self], out: &mut [f32]);
}

macro_rules! half_float {
    ($t:ty) => {
        impl HalfFloat for $t {
            const ZERO: Self = <$t>::ZERO;
            fn bits(self) -> u16 {
                self.to_bits()
            }
            fn from_bits(bits: u16) -> Self {
                <$t>::from_bits(bits)
            }
            fn from_f32_slice(out: &mut [Self], values: &[f32]) {
                out.convert_from_f32_slice(values);
            }
            fn to_f32_slice(halves: &[Self], out: &mut [f32]) {
                halves.convert_to_f32_slice(out);
            }
        }
    };
}

half_float!(f16);
half_float!(bf16);

/// All the blocks' scales, then every value as an i8 of its block's scale.
fn encode_int8(change: &[f32]) -> Vec<u8> {
    let blocks = change.len().div_ceil(INT8_BLOCK);
    let mut out = vec![0u8; blocks * 4 + change.len()];
    let (scales, codes) = out.split_at_mut(blocks * 4);
    for ((block, scale), codes) in change
        .chunks(INT8_BLOCK)
        .zip(scales.chunks_exact_mut(4))
        .zip(codes.chunks_mut(INT8_BLOCK))
    {
        let largest = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let step = largest / 127.0;
        scale.copy_from_slice(&step.to_le_bytes());
        let inverse = if step > 0.0 { 1.0 / step } else { 0.0 };
        for (q, v) in codes.iter_mut().zip(block) {
            // Half away from zero by truncation: it vectorises without SSE4.1's rounding.
            let x = (v * inverse).clamp(-127.0, 127.0);
            *q = ((x + 0.5f32.copysign(x)) as i32) as i8 as u8;
        }
    }
    out
}

/// Appends `base` plus the int8 codes times their block's scale to `out`; whether every
/// value is finite.
fn rebuild_int8(bytes: &[u8], base: &[f32], out: &mut Vec<f32>) -> Result<bool, ParamsError> {
    let (scales, codes) = bytes.split_at(base.len().div_ceil(INT8_BLOCK) * 4);
    let mut finite = true;
    for (index, ((scale, codes), base)) in scales
        .chunks_exact(4)
        .zip(codes.chunks(INT8_BLOCK))
        .zip(base.chunks(INT8_BLOCK))
        .enumerate()
    {
        let scale = f32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(ParamsError::BadCode(format!(
                "int8 block {index} has scale {scale}, not a finite non-negative number"
            )));
        }
        let start = out.len();
        out.extend(
            base.iter()
                .zip(codes)
                .map(|(b, &q)| b + f32::from(q as i8) * scale),
        );
        finite &= out[start..].iter().all(|v| v.is_finite());
    }
    Ok(finite)
}

/// The `k` coordinates of largest magnitude (ties to the lower index, so the choice is
/// deterministic), as their indices in increasing order, then their values.
fn encode_top_k(change: &[f32], k: usize) -> Vec<u8> {
    let mut order: Vec<u32> = (0..change.len() as u32).collect();
    let larger = |a: &u32, b: &u32| {
        change[*b as usize]
            .abs()
            .total_cmp(&change[*a as usize].abs())
            .then(a.cmp(b))
    };
    if k < order.len() {
        order.select_nth_unstable_by(k, larger);
        order.truncate(k);
    }
    order.sort_unstable();
    let mut out = Vec::with_capacity(k * 8);
    order
        .iter()
        .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
    order
        .iter()
        .for_each(|&i| out.extend_from_slice(&change[i as usize].to_le_bytes()));
    out
}

/// Appends `base` with the top-k pairs added to `out`, refusing indices out of range or out of
/// order; whether every changed value is finite (the base, a published model, is).
fn rebuild_top_k(bytes: &[u8], base: &[f32], out: &mut Vec<f32>) -> Result<bool, ParamsError> {
    out.extend_from_slice(base);
    let (indices, kept) = bytes.split_at(bytes.len() / 2);
    let mut previous: Option<u32> = None;
    let mut finite = true;
    for (i, v) in indices.chunks_exact(4).zip(kept.chunks_exact(4)) {
        let index = u32::from_le_bytes([i[0], i[1], i[2], i[3]]);
        if index as usize >= out.len() || previous.is_some_and(|p| index <= p) {
            return Err(ParamsError::BadCode(format!(
                "top-k index {index} is out of range or not after the one before it"
            )));
        }
        previous = Some(index);
        let value = &mut out[index as usize];
        *value += f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        finite &= value.is_finite();
    }
    Ok(finite)
}

impl fmt::Display for UpdateCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateCodec::TopK { per_million } => {
                write!(f, "topk:{}", f64::from(*per_million) / 1e6)
            }
            other => f.write_str(other.kind()),
        }
    }
}

impl FromStr for UpdateCodec {
    type Err = ParamsError;

    /// `f32`, `f16`, `bf16`, `int8`, or `topk:FRACTION` (0 < FRACTION ≤ 1, e.g. `topk:0.01`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(fraction) = s.strip_prefix("topk:") {
            let parsed: f64 = fraction
                .parse()
                .map_err(|_| ParamsError::UnknownEncoding(s.to_string()))?;
            let per_million = (parsed * 1e6).round();
            if !(parsed > 0.0 && parsed <= 1.0 && per_million >= 1.0) {
                return Err(ParamsError::UnknownEncoding(format!(
                    "{s}: the fraction must be in (0, 1] and at least 1e-6"
                )));
            }
            return Ok(UpdateCodec::TopK {
                per_million: per_million as u32,
            });
        }
        Ok(match s {
            "f32" => UpdateCodec::F32,
            "f16" => UpdateCodec::F16,
            "bf16" => UpdateCodec::Bf16,
            "int8" => UpdateCodec::Int8,
            other => return Err(ParamsError::UnknownEncoding(other.to_string())),
        })
    }
}

impl From<UpdateCodec> for String {
    fn from(codec: UpdateCodec) -> Self {
        codec.to_string()
    }
}

impl TryFrom<String> for UpdateCodec {
    type Error = ParamsError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
