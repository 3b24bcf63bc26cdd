use std::fmt;
use std::str::FromStr;

use half::f16;
use serde::{Deserialize, Serialize};

use crate::{Layout, ParamSet, ParamsError};

/// How tensor values are laid out on the wire.
///
/// Encoded bytes carry only values, in layout order; the layout itself is agreed beforehand
/// (it is the round's model), so a decoder knows exactly how many bytes to expect and refuses
/// anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Encoding {
    /// IEEE-754 single precision, little-endian: exact.
    #[default]
    F32,
    /// IEEE-754 half precision, little-endian: half the bytes, about 3 significant digits.
    F16,
}

impl Encoding {
    /// Bytes per value.
    pub fn bytes_per_value(self) -> usize {
        match self {
            Encoding::F32 => 4,
            Encoding::F16 => 2,
        }
    }

    /// The encoding's name, as in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::F32 => "f32",
            Encoding::F16 => "f16",
        }
    }

    /// Encodes the values of `params`.
    pub fn encode(self, params: &ParamSet) -> Vec<u8> {
        let values = params.values();
        let width = self.bytes_per_value();
        // Sized once and written in place: a loop the compiler turns into wide stores.
        let mut out = vec![0u8; values.len() * width];
        match self {
            Encoding::F32 => {
                for (o, v) in out.chunks_exact_mut(4).zip(values) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
            Encoding::F16 => {
                for (o, v) in out.chunks_exact_mut(2).zip(values) {
                    o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
                }
            }
        }
        out
    }

    /// Decodes untrusted bytes into `layout`, refusing a wrong length and non-finite values.
    pub fn decode(self, layout: &Layout, bytes: &[u8]) -> Result<ParamSet, ParamsError> {
        let expected = layout
            .num_values()
            .checked_mul(self.bytes_per_value())
            .ok_or(ParamsError::LayoutMismatch)?;
        if bytes.len() != expected {
            return Err(ParamsError::EncodedLength {
                expected,
                actual: bytes.len(),
                encoding: self.name(),
            });
        }
        let values: Vec<f32> = match self {
            Encoding::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Encoding::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        let params = ParamSet::from_values(layout.clone(), values)?;
        params.check_finite()?;
        Ok(params)
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = ParamsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Encoding::F32),
            "f16" => Ok(Encoding::F16),
            other => Err(ParamsError::UnknownEncoding(other.to_string())),
        }
    }
}
