//! Named f32 tensors for federated learning: the values that travel between a coordinator and
//! its participants.
//!
//! A [`ParamSet`] is an ordered list of named tensors with shapes, stored as one contiguous
//! `f32` buffer behind a shared [`Layout`]. Keeping every value in one buffer is what lets the
//! arithmetic the strategies need ([`weighted_mean`], [`ParamSet::axpy`], [`ParamSet::l2_norm`],
//! [`ParamSet::clip_l2`]) stream memory once, without per-tensor or per-element allocation.
//!
//! On top of the values:
//! - a canonical SHA-256 [`Digest`] ([`ParamSet::digest`]), the identity used by the ledger;
//! - wire [`Encoding`]s (`f32`, `f16`) with a strict decoder for untrusted bytes;
//! - compressed updates ([`UpdateCodec`]: f16, bf16, int8 with block scales, top-k), each the
//!   change from the round's base, with error feedback and a strict decoder;
//! - safetensors read and write ([`ParamSet::to_safetensors`], [`ParamSet::from_safetensors`]).
//!
//! ```
//! use harambee_params::{Layout, ParamSet, weighted_mean};
//!
//! let layout = Layout::new([("w", vec![2, 2]), ("b", vec![2])]).unwrap();
//! let a = ParamSet::from_values(layout.clone(), vec![1.0; 6]).unwrap();
//! let b = ParamSet::from_values(layout, vec![4.0; 6]).unwrap();
//! // FedAvg with 1 and 2 samples: (1*1 + 2*4) / 3 = 3.
//! let mean = weighted_mean(&[(&a, 1.0), (&b, 2.0)]).unwrap();
//! assert_eq!(mean.values(), &[3.0; 6]);
//! assert_eq!(mean.digest(), mean.clone().digest());
//! ```

mod arith;
mod codec;
mod digest;
mod encoding;
mod error;
mod layout;
mod safetensors_io;
mod set;

pub use arith::{transpose, weighted_mean, weighted_sum_into};
pub use codec::{INT8_BLOCK, UpdateCodec};
pub use digest::Digest;
pub use encoding::Encoding;
pub use error::ParamsError;
pub use layout::{Layout, TensorSpec};
pub use set::ParamSet;
