use crate::{Digest, Layout, ParamsError, TensorSpec};

/// An ordered set of named f32 tensors: a model's parameters or an update to them.
///
/// The values of all tensors live in one contiguous buffer in layout order, so whole-set
/// arithmetic is a single pass over memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSet {
    layout: Layout,
    values: Vec<f32>,
}

impl ParamSet {
    /// All zeros, in the given layout.
    pub fn zeros(layout: Layout) -> Self {
        let values = vec![0.0; layout.num_values()];
        Self { layout, values }
    }

    /// Wraps values that follow `layout`, checking the count.
    pub fn from_values(layout: Layout, values: Vec<f32>) -> Result<Self, ParamsError> {
        if values.len() != layout.num_values() {
            return Err(ParamsError::LengthMismatch {
                expected: layout.num_values(),
                actual: values.len(),
            });
        }
        Ok(Self { layout, values })
    }

    /// Builds a set from `(name, shape, values)` triples, in order.
    pub fn from_tensors<N: Into<String>>(
        tensors: impl IntoIterator<Item = (N, Vec<usize>, Vec<f32>)>,
    ) -> Result<Self, ParamsError> {
        let mut specs = Vec::new();
        let mut values = Vec::new();
        for (name, shape, data) in tensors {
            specs.push((name.into(), shape));
            values.extend_from_slice(&data);
        }
        let layout = Layout::new(specs)?;
        Self::from_values(layout, values)
    }

    /// The names and shapes.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// All values, in layout order.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// All values, mutable, in layout order.
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// Gives the buffer back.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// One tensor's values, by name.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.layout
            .get(name)
            .map(|s| &self.values[s.offset..s.offset + s.len])
    }

    /// Each tensor's spec with its values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorSpec, &[f32])> {
        self.layout
            .tensors()
            .iter()
            .map(|s| (s, &self.values[s.offset..s.offset + s.len]))
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the set holds no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Checks that `other` has the same names and shapes.
    pub fn check_same_layout(&self, other: &ParamSet) -> Result<(), ParamsError> {
        if self.layout.same_as(&other.layout) {
            Ok(())
        } else {
            Err(ParamsError::LayoutMismatch)
        }
    }

    /// `self - other`, elementwise: the update that turns `other` into `self`.
    pub fn sub(&self, other: &ParamSet) -> Result<ParamSet, ParamsError> {
        self.check_same_layout(other)?;
        let values = self
            .values
            .iter()
            .zip(&other.values)
            .map(|(a, b)| a - b)
            .collect();
        Ok(ParamSet {
            layout: self.layout.clone(),
            values,
        })
    }

    /// `self += alpha * x`, elementwise.
    pub fn axpy(&mut self, alpha: f32, x: &ParamSet) -> Result<(), ParamsError> {
        self.check_same_layout(x)?;
        for (a, b) in self.values.iter_mut().zip(&x.values) {
            *a += alpha * b;
        }
        Ok(())
    }

    /// `self *= factor`, elementwise.
    pub fn scale(&mut self, factor: f32) {
        for v in &mut self.values {
            *v *= factor;
        }
    }

    /// The L2 norm of all values together, accumulated in f64 so large models stay exact enough.
    pub fn l2_norm(&self) -> f64 {
        // Eight independent partial sums let the compiler vectorise the loop.
        let mut acc = [0f64; 8];
        let chunks = self.values.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                acc[i] += f64::from(c[i]) * f64::from(c[i]);
            }
        }
        let tail: f64 = rest.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        (acc.iter().sum::<f64>() + tail).sqrt()
    }

    /// Scales the set down so its L2 norm is at most `bound`; returns the factor applied (1 when
    /// it was already inside the bound).
    pub fn clip_l2(&mut self, bound: f64) -> f64 {
        let norm = self.l2_norm();
        if norm <= bound || norm == 0.0 {
            return 1.0;
        }
        let factor = bound / norm;
        self.scale(factor as f32);
        factor
    }

    /// Fails on the first NaN or infinite value, naming the tensor: untrusted updates must pass
    /// this before they are combined.
    pub fn check_finite(&self) -> Result<(), ParamsError> {
        // A branch-free pass per chunk vectorises; the exact position is looked for only in a
        // chunk that failed, which a valid update never has.
        let all_finite = |chunk: &[f32]| chunk.iter().fold(true, |ok, v| ok & v.is_finite());
        if self.values.chunks(1024).all(all_finite) {
            return Ok(());
        }
        for (spec, values) in self.iter() {
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(ParamsError::NonFinite {
                    name: spec.name.clone(),
                    index,
                });
            }
        }
        Ok(())
    }

    /// The canonical SHA-256 digest (see [`Digest`] for the exact bytes hashed).
    pub fn digest(&self) -> Digest {
        Digest::of_params(self)
    }
}
