//! McMahan et al.'s CNN by hand: convolutions as im2col matrix products.
//!
//! Activations inside the convolutional part are stored channel-major, `[C, B, H, W]`, so
//! that one matrix product convolves the whole batch: `out[Cout, B·H·W] = W[Cout, Cin·25] ·
//! col[Cin·25, B·H·W]`. That keeps the products large enough for `gemm` to run near peak at
//! batch 10, which is where burn's generic convolution loses most of its time.

use harambee_params::Layout;

use super::Net;
use super::gemm::{View, matmul};
use super::layers::{dense_backward, dense_forward, relu, relu_backward, softmax_cross_entropy};

const K: usize = 5;
const PAD: usize = 2;

/// Parameter offsets, in the layout's order (the same names and shapes as the burn model).
pub(super) struct Cnn {
    conv1: (usize, usize),
    conv2: (usize, usize),
    fc1: (usize, usize, usize),
    fc2: (usize, usize, usize),
    height: usize,
    width: usize,
    channels: (usize, usize),
    hidden: usize,
    classes: usize,
}

impl Cnn {
    pub(super) fn new(layout: &Layout, image: (usize, usize)) -> Self {
        let off = |name: &str| layout.get(name).map_or(0, |s| s.offset);
        let len = |name: &str| layout.get(name).map_or(0, |s| s.len);
        let classes = len("fc2.bias");
        let c1 = len("conv1.bias");
        Self {
            channels: (c1, len("conv2.bias")),
            hidden: len("fc1.bias"),
            conv1: (off("conv1.weight"), off("conv1.bias")),
            conv2: (off("conv2.weight"), off("conv2.bias")),
            fc1: (off("fc1.weight"), len("fc1.weight"), off("fc1.bias")),
            fc2: (off("fc2.weight"), len("fc2.weight"), off("fc2.bias")),
            height: image.0,
            width: image.1,
            classes,
        }
    }
}

/// Buffers reused across steps, so a step allocates nothing once warm.
#[derive(Default)]
pub(super) struct Scratch {
    col1: Vec<f32>,
    r1: Vec<f32>,
    p1: Vec<f32>,
    idx1: Vec<u32>,
    col2: Vec<f32>,
    r2: Vec<f32>,
    p2: Vec<f32>,
    idx2: Vec<u32>,
    flat: Vec<f32>,
    h1: Vec<f32>,
    logits: Vec<f32>,
    d_h1: Vec<f32>,
    d_flat: Vec<f32>,
    d_r2: Vec<f32>,
    d_col2: Vec<f32>,
    d_p1: Vec<f32>,
    d_r1: Vec<f32>,
}

/// `col[c·25 + ky·5 + kx, b·H·W + y·W + x] = input[c, b, y + ky − 2, x + kx − 2]` (0 outside).
///
/// The padding cells are the same for every batch of one size and are never written, so the
/// buffer is zeroed only when its size changes: that saves a full memset per step.
fn im2col(col: &mut Vec<f32>, input: &[f32], channels: usize, batch: usize, h: usize, w: usize) {
    let plane = batch * h * w;
    let len = channels * K * K * plane;
    if col.len() != len {
        col.clear();
        col.resize(len, 0.0);
    }
    for c in 0..channels {
        for ky in 0..K {
            for kx in 0..K {
                let row = &mut col[((c * K + ky) * K + kx) * plane..][..plane];
                let (x_lo, x_hi) = (PAD.saturating_sub(kx), (w + PAD - kx).min(w));
                for b in 0..batch {
                    for y in 0..h {
                        let sy = y + ky;
                        if sy < PAD || sy >= h + PAD {
                            continue;
                        }
                        let src = &input[((c * batch + b) * h + sy - PAD) * w..][..w];
                        let dst = &mut row[(b * h + y) * w..][..w];
                        dst[x_lo..x_hi].copy_from_slice(&src[x_lo + kx - PAD..x_hi + kx - PAD]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: scatters column gradients back onto the input.
fn col2im(input: &mut Vec<f32>, col: &[f32], channels: usize, batch: usize, h: usize, w: usize) {
    let plane = batch * h * w;
    input.clear();
    input.resize(channels * plane, 0.0);
    for c in 0..channels {
        for ky in 0..K {
            for kx in 0..K {
                let row = &col[((c * K + ky) * K + kx) * plane..][..plane];
                let (x_lo, x_hi) = (PAD.saturating_sub(kx), (w + PAD - kx).min(w));
                for b in 0..batch {
                    for y in 0..h {
                        let sy = y + ky;
                        if sy < PAD || sy >= h + PAD {
                            continue;
                        }
                        let dst = &mut input[((c * batch + b) * h + sy - PAD) * w..][..w];
                        let src = &row[(b * h + y) * w..][..w];
                        for (d, s) in dst[x_lo + kx - PAD..x_hi + kx - PAD]
                            .iter_mut()
                            .zip(&src[x_lo..x_hi])
                        {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// `out[c, b·H·W] = W[c, :] · col + bias[c]`.
fn conv(out: &mut Vec<f32>, col: &[f32], weight: &[f32], bias: &[f32], plane: usize) {
    let (c_out, k) = (bias.len(), weight.len() / bias.len());
    out.clear();
    for &b in bias {
        out.extend(std::iter::repeat_n(b, plane));
    }
    matmul(
        out,
        View::new(weight, c_out, k),
        View::new(col, k, plane),
        true,
    );
}

/// 2×2 max-pool over `[C·B, H, W]` planes, remembering where each maximum came from.
fn max_pool(
    out: &mut Vec<f32>,
    argmax: &mut Vec<u32>,
    input: &[f32],
    planes: usize,
    h: usize,
    w: usize,
) {
    let (oh, ow) = (h / 2, w / 2);
    out.clear();
    argmax.clear();
    out.reserve(planes * oh * ow);
    argmax.reserve(planes * oh * ow);
    for p in 0..planes {
        let base = p * h * w;
        for y in 0..oh {
            let top = &input[base + 2 * y * w..][..w];
            let bottom = &input[base + (2 * y + 1) * w..][..w];
            for x in 0..ow {
                // Ties go to the first candidate, as in PyTorch and burn.
                let (mut best, mut at) = (top[2 * x], 2 * y * w + 2 * x);
                if top[2 * x + 1] > best {
                    (best, at) = (top[2 * x + 1], at + 1);
                }
                if bottom[2 * x] > best {
                    (best, at) = (bottom[2 * x], (2 * y + 1) * w + 2 * x);
                }
                if bottom[2 * x + 1] > best {
                    (best, at) = (bottom[2 * x + 1], (2 * y + 1) * w + 2 * x + 1);
                }
                out.push(best);
                argmax.push((base + at) as u32);
            }
        }
    }
}

fn max_unpool(grad_in: &mut Vec<f32>, grad_out: &[f32], argmax: &[u32], len: usize) {
    grad_in.clear();
    grad_in.resize(len, 0.0);
    for (g, &i) in grad_out.iter().zip(argmax) {
        grad_in[i as usize] += g;
    }
}

impl Cnn {
    /// Forward through the convolutional part and fc1; leaves every activation in `s`.
    fn features(&self, p: &[f32], x: &[f32], batch: usize, s: &mut Scratch) {
        let (h, w) = (self.height, self.width);
        let (c1, c2) = self.channels;
        // Input [B, 1, H, W] is already [1, B, H, W] (one channel).
        im2col(&mut s.col1, x, 1, batch, h, w);
        conv(
            &mut s.r1,
            &s.col1,
            &p[self.conv1.0..self.conv1.1],
            &p[self.conv1.1..self.conv1.1 + c1],
            batch * h * w,
        );
        relu(&mut s.r1);
        max_pool(&mut s.p1, &mut s.idx1, &s.r1, c1 * batch, h, w);
        let (h2, w2) = (h / 2, w / 2);
        im2col(&mut s.col2, &s.p1, c1, batch, h2, w2);
        conv(
            &mut s.r2,
            &s.col2,
            &p[self.conv2.0..self.conv2.1],
            &p[self.conv2.1..self.conv2.1 + c2],
            batch * h2 * w2,
        );
        relu(&mut s.r2);
        max_pool(&mut s.p2, &mut s.idx2, &s.r2, c2 * batch, h2, w2);
        // [C, B, HW] → [B, C·HW], PyTorch's flatten order.
        let hw = (h2 / 2) * (w2 / 2);
        s.flat.clear();
        s.flat.resize(batch * c2 * hw, 0.0);
        for c in 0..c2 {
            for b in 0..batch {
                s.flat[(b * c2 + c) * hw..][..hw]
                    .copy_from_slice(&s.p2[(c * batch + b) * hw..][..hw]);
            }
        }
        let (wo, wl, bo) = self.fc1;
        dense_forward(
            &mut s.h1,
            &s.flat,
            batch,
            &p[wo..wo + wl],
            &p[bo..bo + self.hidden],
        );
        relu(&mut s.h1);
    }
}

impl Net for Cnn {
    type Scratch = Scratch;

    fn classes(&self) -> usize {
        self.classes
    }

    fn forward(&self, p: &[f32], x: &[f32], batch: usize, s: &mut Scratch) -> Vec<f32> {
        self.features(p, x, batch, s);
        let (wo, wl, bo) = self.fc2;
        let mut logits = Vec::new();
        dense_forward(
            &mut logits,
            &s.h1,
            batch,
            &p[wo..wo + wl],
            &p[bo..bo + self.classes],
        );
        logits
    }

    fn loss_and_grad(
        &self,
        p: &[f32],
        x: &[f32],
        labels: &[u32],
        g: &mut [f32],
        s: &mut Scratch,
    ) -> f32 {
        let batch = labels.len();
        let (h, w) = (self.height, self.width);
        let (h2, w2) = (h / 2, w / 2);
        let (c1, c2) = self.channels;
        s.logits = self.forward(p, x, batch, s);
        let loss = softmax_cross_entropy(&mut s.logits, labels, self.classes);

        // fc2 and fc1.
        let (wo, wl, bo) = self.fc2;
        let (dw, db) = split_grads(g, wo, wl, bo, self.classes);
        dense_backward(
            &s.logits,
            &s.h1,
            batch,
            &p[wo..wo + wl],
            (dw, db),
            Some(&mut s.d_h1),
        );
        relu_backward(&mut s.d_h1, &s.h1);
        let (wo, wl, bo) = self.fc1;
        let (dw, db) = split_grads(g, wo, wl, bo, self.hidden);
        dense_backward(
            &s.d_h1,
            &s.flat,
            batch,
            &p[wo..wo + wl],
            (dw, db),
            Some(&mut s.d_flat),
        );

        // [B, C·HW] → [C, B, HW], then through pool2 and ReLU.
        let hw = (h2 / 2) * (w2 / 2);
        let mut d_p2 = vec![0.0; s.d_flat.len()];
        for c in 0..c2 {
            for b in 0..batch {
                d_p2[(c * batch + b) * hw..][..hw]
                    .copy_from_slice(&s.d_flat[(b * c2 + c) * hw..][..hw]);
            }
        }
        max_unpool(&mut s.d_r2, &d_p2, &s.idx2, s.r2.len());
        relu_backward(&mut s.d_r2, &s.r2);

        // conv2: weight and bias gradients, then the gradient of its input through col2im.
        let plane2 = batch * h2 * w2;
        let (wo, bo) = self.conv2;
        let (dw, db) = split_grads(g, wo, bo - wo, bo, c2);
        matmul(
            dw,
            View::new(&s.d_r2, c2, plane2),
            View::new(&s.col2, c1 * K * K, plane2).t(),
            false,
        );
        for (d, row) in db.iter_mut().zip(s.d_r2.chunks_exact(plane2)) {
            *d = row.iter().sum::<f32>();
        }
        s.d_col2.resize(c1 * K * K * plane2, 0.0);
        matmul(
            &mut s.d_col2,
            View::new(&p[wo..bo], c2, c1 * K * K).t(),
            View::new(&s.d_r2, c2, plane2),
            false,
        );
        col2im(&mut s.d_p1, &s.d_col2, c1, batch, h2, w2);

        // pool1, ReLU, conv1 (no gradient for the image itself).
        max_unpool(&mut s.d_r1, &s.d_p1, &s.idx1, s.r1.len());
        relu_backward(&mut s.d_r1, &s.r1);
        let plane1 = batch * h * w;
        let (wo, bo) = self.conv1;
        let (dw, db) = split_grads(g, wo, bo - wo, bo, c1);
        matmul(
            dw,
            View::new(&s.d_r1, c1, plane1),
            View::new(&s.col1, K * K, plane1).t(),
            false,
        );
        for (d, row) in db.iter_mut().zip(s.d_r1.chunks_exact(plane1)) {
            *d = row.iter().sum::<f32>();
        }
        loss
    }
}

/// Disjoint mutable views of a weight's and its bias's gradients (bias stored right after).
fn split_grads(
    g: &mut [f32],
    w_off: usize,
    w_len: usize,
    b_off: usize,
    b_len: usize,
) -> (&mut [f32], &mut [f32]) {
    let (w, rest) = g[w_off..].split_at_mut(w_len);
    (w, &mut rest[b_off - w_off - w_len..][..b_len])
}
