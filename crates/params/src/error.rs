use thiserror::Error;

/// Everything that can go wrong with parameters: building, combining, decoding, loading.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamsError {
    /// Two tensors share a name in one layout.
    #[error("tensor name {0:?} appears twice in the layout")]
    DuplicateName(String),
    /// A tensor name is empty or too long to encode.
    #[error("tensor name {0:?} is empty or longer than 1024 bytes")]
    BadName(String),
    /// A shape has too many elements to address.
    #[error("tensor {name:?} has a shape whose size overflows")]
    ShapeOverflow {
        /// The tensor's name.
        name: String,
    },
    /// The number of values does not match the layout.
    #[error("expected {expected} values for the layout, got {actual}")]
    LengthMismatch {
        /// Values the layout needs.
        expected: usize,
        /// Values that were given.
        actual: usize,
    },
    /// Two parameter sets with different layouts were combined.
    #[error("parameter sets have different layouts (names or shapes differ)")]
    LayoutMismatch,
    /// Nothing to combine.
    #[error("no parameter sets to combine")]
    Empty,
    /// A weight was negative, NaN or infinite, or all weights were zero.
    #[error("weights must be finite, non-negative and not all zero")]
    BadWeights,
    /// A value is NaN or infinite.
    #[error("tensor {name:?} holds a NaN or infinite value at index {index}")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// The index of the first bad value inside that tensor.
        index: usize,
    },
    /// Encoded bytes have the wrong length for the layout and encoding.
    #[error("encoded update has {actual} bytes, the layout needs {expected} for {encoding}")]
    EncodedLength {
        /// Bytes the layout needs.
        expected: usize,
        /// Bytes received.
        actual: usize,
        /// The encoding's name.
        encoding: &'static str,
    },
    /// An unknown encoding tag.
    #[error("unknown encoding {0:?} (known: f32, f16, bf16, int8, topk:FRACTION)")]
    UnknownEncoding(String),
    /// Compressed bytes that no encoder writes: a bad int8 scale, a top-k index out of range
    /// or out of order.
    #[error("malformed compressed update: {0}")]
    BadCode(String),
    /// A safetensors file could not be read or written.
    #[error("safetensors: {0}")]
    Safetensors(String),
    /// A safetensors tensor is not f32.
    #[error("tensor {name:?} has dtype {dtype}, only F32 is supported")]
    UnsupportedDtype {
        /// The tensor's name.
        name: String,
        /// Its dtype as the file states it.
        dtype: String,
    },
}
