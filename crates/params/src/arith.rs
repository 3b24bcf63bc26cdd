use rayon::prelude::*;

use crate::{ParamSet, ParamsError};

/// Values per block: 16 KiB of output stays in L1 while every input streams through it once.
const BLOCK: usize = 4096;
/// Below this much work (values × inputs), threads cost more than they save.
const PARALLEL_WORK: usize = 1 << 20;

/// `out = Σ wᵢ·xᵢ` over equally long slices, reading each input exactly once.
///
/// The work is cut into blocks small enough that the output block stays in cache while the
/// inputs stream past it, so the pass runs at memory bandwidth; large buffers are split across
/// threads. Panics if a slice's length differs from `out`'s (callers check layouts first).
pub fn weighted_sum_into(out: &mut [f32], inputs: &[(&[f32], f32)]) {
    assert!(inputs.iter().all(|(x, _)| x.len() == out.len()));
    let block = |(i, dst): (usize, &mut [f32])| {
        let start = i * BLOCK;
        let end = start + dst.len();
        match inputs.split_first() {
            None => dst.fill(0.0),
            Some(((x0, w0), rest)) => {
                for (d, x) in dst.iter_mut().zip(&x0[start..end]) {
                    *d = w0 * x;
                }
                for (x, w) in rest {
                    for (d, x) in dst.iter_mut().zip(&x[start..end]) {
                        *d += w * x;
                    }
                }
            }
        }
    };
    if out.len() * inputs.len().max(1) >= PARALLEL_WORK && out.len() >= 2 * BLOCK {
        out.par_chunks_mut(BLOCK).enumerate().for_each(block);
    } else {
        out.chunks_mut(BLOCK).enumerate().for_each(block);
    }
}

/// The weighted mean `Σ wᵢ·xᵢ / Σ wᵢ` of parameter sets with one layout (FedAvg's rule when
/// the weights are sample counts).
pub fn weighted_mean(inputs: &[(&ParamSet, f64)]) -> Result<ParamSet, ParamsError> {
    let (first, _) = inputs.first().ok_or(ParamsError::Empty)?;
    let total: f64 = inputs.iter().map(|(_, w)| *w).sum();
    let weights_ok = inputs.iter().all(|(_, w)| w.is_finite() && *w >= 0.0);
    if !weights_ok || !total.is_finite() || total <= 0.0 {
        return Err(ParamsError::BadWeights);
    }
    let mut scaled = Vec::with_capacity(inputs.len());
    for (p, w) in inputs {
        first.check_same_layout(p)?;
        scaled.push((p.values(), (w / total) as f32));
    }
    let mut out = ParamSet::zeros(first.layout().clone());
    weighted_sum_into(out.values_mut(), &scaled);
    Ok(out)
}

/// Transposes a row-major `[rows, cols]` matrix: how PyTorch's `[out, in]` linear weights
/// and the `[in, out]` that burn multiplies by meet.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(values.len(), rows * cols);
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}
