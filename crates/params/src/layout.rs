use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ParamsError;

/// The longest tensor name accepted, so a hostile layout cannot make the digest huge.
const MAX_NAME_BYTES: usize = 1024;

/// One named tensor's place in a [`crate::ParamSet`]'s buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name, e.g. `fc1.weight`.
    pub name: String,
    /// The tensor's shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Offset of its first value in the flat buffer.
    pub offset: usize,
    /// Number of values (the product of the shape).
    pub len: usize,
}

/// The ordered names and shapes of a model's tensors, shared between parameter sets.
///
/// Cloning is cheap (an `Arc`). Two layouts are equal when names and shapes are equal in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    specs: Arc<[TensorSpec]>,
    total: usize,
}

impl Layout {
    /// Builds a layout from `(name, shape)` pairs, in order.
    pub fn new<N: Into<String>>(
        tensors: impl IntoIterator<Item = (N, Vec<usize>)>,
    ) -> Result<Self, ParamsError> {
        let mut specs: Vec<TensorSpec> = Vec::new();
        let mut offset = 0usize;
        for (name, shape) in tensors {
            let name = name.into();
            if name.is_empty() || name.len() > MAX_NAME_BYTES {
                return Err(ParamsError::BadName(name));
            }
            if specs.iter().any(|s| s.name == name) {
                return Err(ParamsError::DuplicateName(name));
            }
            let len = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| ParamsError::ShapeOverflow { name: name.clone() })?;
            let next = offset
                .checked_add(len)
                .ok_or_else(|| ParamsError::ShapeOverflow { name: name.clone() })?;
            specs.push(TensorSpec {
                name,
                shape,
                offset,
                len,
            });
            offset = next;
        }
        Ok(Self {
            specs: specs.into(),
            total: offset,
        })
    }

    /// The tensors, in order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// The total number of values across all tensors.
    pub fn num_values(&self) -> usize {
        self.total
    }

    /// Looks a tensor up by name.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// True when both share the same allocation or are equal: a fast path for the common case.
    pub(crate) fn same_as(&self, other: &Layout) -> bool {
        Arc::ptr_eq(&self.specs, &other.specs) || self == other
    }
}
