//! The building blocks shared by the hand-written models: dense layers, ReLU, softmax
//! cross-entropy. Matrices are row-major; weights follow PyTorch (`[out, in]`).

use super::gemm::{View, matmul};

/// `z[batch, out] = x[batch, in] · Wᵀ + b`.
///
/// Computed as `zᵀ = W · xᵀ`: with a small batch the tall weight matrix makes the better
/// left operand for the gemm kernel (about 1.5× faster at batch 10, measured), and the
/// transpose back is `out × batch` values, nothing next to the product.
pub(super) fn dense_forward(z: &mut Vec<f32>, x: &[f32], batch: usize, w: &[f32], b: &[f32]) {
    let (out, inp) = (b.len(), w.len() / b.len());
    let mut zt = vec![0.0f32; out * batch];
    matmul(
        &mut zt,
        View::new(w, out, inp),
        View::new(x, batch, inp).t(),
        false,
    );
    z.clear();
    z.resize(batch * out, 0.0);
    for (o, (row, bias)) in zt.chunks_exact(batch.max(1)).zip(b).enumerate() {
        for (i, v) in row.iter().enumerate() {
            z[i * out + o] = v + bias;
        }
    }
}

/// Sets `dW = dzᵀ · x` and `db = Σ dz` (each parameter's gradient is written once per step,
/// so nothing needs zeroing first), and when asked `dx = dz · W`.
pub(super) fn dense_backward(
    dz: &[f32],
    x: &[f32],
    batch: usize,
    w: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    dx: Option<&mut Vec<f32>>,
) {
    let (out, inp) = (db.len(), w.len() / db.len());
    matmul(
        dw,
        View::new(dz, batch, out).t(),
        View::new(x, batch, inp),
        false,
    );
    db.fill(0.0);
    for row in dz.chunks_exact(out) {
        db.iter_mut().zip(row).for_each(|(g, d)| *g += d);
    }
    if let Some(dx) = dx {
        dx.resize(batch * inp, 0.0);
        matmul(dx, View::new(dz, batch, out), View::new(w, out, inp), false);
    }
}

pub(super) fn relu(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = x.max(0.0));
}

/// `grad *= (activation > 0)`: ReLU's derivative, read off its output.
pub(super) fn relu_backward(grad: &mut [f32], activation: &[f32]) {
    grad.iter_mut().zip(activation).for_each(|(g, a)| {
        if *a <= 0.0 {
            *g = 0.0;
        }
    });
}

/// Mean softmax cross-entropy: turns `logits` into `d loss / d logits` in place and returns
/// the summed (not averaged) loss, so callers can average over any number of batches.
pub(super) fn softmax_cross_entropy(logits: &mut [f32], labels: &[u32], classes: usize) -> f32 {
    let batch = labels.len();
    let mut loss = 0.0f32;
    for (row, &label) in logits.chunks_exact_mut(classes).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = exp(*v - max);
            sum += *v;
        }
        let p_label = row[label as usize] / sum;
        loss -= ln(p_label.max(f32::MIN_POSITIVE));
        for v in row.iter_mut() {
            *v /= sum * batch as f32;
        }
        row[label as usize] -= 1.0 / batch as f32;
    }
    loss
}

/// `eˣ`: the platform's in fast training; in reproducible training the portable `libm`'s, since
/// the C library may pick another implementation on another CPU (glibc has an FMA variant).
fn exp(x: f32) -> f32 {
    if super::fixed::current().is_some() {
        libm::expf(x)
    } else {
        x.exp()
    }
}

/// `ln x`, chosen as [`exp`] is.
fn ln(x: f32) -> f32 {
    if super::fixed::current().is_some() {
        libm::logf(x)
    } else {
        x.ln()
    }
}

/// Summed cross-entropy and the number of correct arg-max predictions, per class.
pub(super) fn score(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    per_class: &mut [(usize, usize)],
) -> f64 {
    let mut loss = 0.0f64;
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|v| f64::from(v - max).exp()).sum();
        loss -= f64::from(row[label as usize] - max) - sum.ln();
        let predicted = row
            .iter()
            .enumerate()
            .fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
        let entry = &mut per_class[label as usize];
        entry.1 += 1;
        if predicted == label as usize {
            entry.0 += 1;
        }
    }
    loss
}
