//! Logistic regression and the 2NN, forward and backward by hand.

use harambee_params::Layout;

use super::Net;
use super::layers::{dense_backward, dense_forward, relu, relu_backward, softmax_cross_entropy};

/// Linear layers with ReLU between them; parameters `layers.{i}.weight` / `layers.{i}.bias`.
pub(super) struct Mlp {
    /// (weight offset, weight len, bias offset, bias len) per layer.
    layers: Vec<(usize, usize, usize, usize)>,
    classes: usize,
}

impl Mlp {
    pub(super) fn new(layout: &Layout) -> Self {
        let specs = layout.tensors();
        let layers: Vec<_> = specs
            .chunks_exact(2)
            .map(|p| (p[0].offset, p[0].len, p[1].offset, p[1].len))
            .collect();
        let classes = layers.last().map_or(0, |l| l.3);
        Self { layers, classes }
    }
}

#[derive(Default)]
pub(super) struct Scratch {
    /// Input, then each layer's output (after ReLU for hidden layers).
    acts: Vec<Vec<f32>>,
    grad: Vec<f32>,
    next: Vec<f32>,
}

impl Net for Mlp {
    type Scratch = Scratch;

    fn classes(&self) -> usize {
        self.classes
    }

    fn forward(&self, params: &[f32], x: &[f32], batch: usize, s: &mut Scratch) -> Vec<f32> {
        s.acts.resize_with(self.layers.len() + 1, Vec::new);
        s.acts[0].clear();
        s.acts[0].extend_from_slice(x);
        for (l, &(wo, wl, bo, bl)) in self.layers.iter().enumerate() {
            let (done, rest) = s.acts.split_at_mut(l + 1);
            dense_forward(
                &mut rest[0],
                &done[l],
                batch,
                &params[wo..wo + wl],
                &params[bo..bo + bl],
            );
            if l + 1 < self.layers.len() {
                relu(&mut rest[0]);
            }
        }
        s.acts[self.layers.len()].clone()
    }

    fn loss_and_grad(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u32],
        grad: &mut [f32],
        s: &mut Scratch,
    ) -> f32 {
        let batch = labels.len();
        let mut logits = self.forward(params, x, batch, s);
        let loss = softmax_cross_entropy(&mut logits, labels, self.classes);
        s.grad = logits;
        for (l, &(wo, wl, bo, bl)) in self.layers.iter().enumerate().rev() {
            let (dw, rest) = grad[wo..].split_at_mut(wl);
            let db = &mut rest[bo - wo - wl..bo - wo - wl + bl];
            let want_dx = l > 0;
            dense_backward(
                &s.grad,
                &s.acts[l],
                batch,
                &params[wo..wo + wl],
                (dw, db),
                want_dx.then_some(&mut s.next),
            );
            if want_dx {
                relu_backward(&mut s.next, &s.acts[l]);
                std::mem::swap(&mut s.grad, &mut s.next);
            }
        }
        loss
    }
}
