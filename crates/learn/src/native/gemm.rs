//! One safe entry point to the matrix product: the `gemm` crate's, or in reproducible
//! training the fixed-order one of [`super::fixed`].

/// A read-only strided matrix view over a slice.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Its rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Its columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// The element at row `i`, column `j`.
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// Its elements row-major and contiguous: borrowed when stored that way already.
    pub(crate) fn to_row_major(self) -> std::borrow::Cow<'a, [f32]> {
        if self.col_stride == 1 && self.row_stride == self.cols {
            return std::borrow::Cow::Borrowed(&self.data[..self.rows * self.cols]);
        }
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for i in 0..self.rows {
            out.extend((0..self.cols).map(|j| self.at(i, j)));
        }
        std::borrow::Cow::Owned(out)
    }

    /// The transpose, without copying.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `out = [out +] a · b`, with `out` row-major `a.rows × b.cols`, single-threaded (callers
/// parallelise across participants or batches). Inside reproducible training
/// ([`super::fixed::with_kernel`]) it is the fixed-order product instead of `gemm`'s.
pub(crate) fn matmul(out: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    assert_eq!(out.len(), a.rows * b.cols, "output size");
    for v in [&a, &b] {
        // Every element the kernel may read lies inside the slice.
        let last = (v.rows.max(1) - 1) * v.row_stride + (v.cols.max(1) - 1) * v.col_stride;
        assert!(
            v.rows == 0 || v.cols == 0 || last < v.data.len(),
            "view out of bounds"
        );
    }
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    if let Some(kernel) = super::fixed::current() {
        return super::fixed::matmul(out, a, b, accumulate, kernel);
    }
    let (m, n, k) = (a.rows, b.cols, a.cols);
    #[allow(unsafe_code)]
    // SAFETY: the asserts above guarantee that every element addressed through the given
    // strides and sizes (m×k for `a`, k×n for `b`, m×n row-major for `out`) lies inside its
    // slice; `out` is a unique borrow, so it does not alias `a` or `b`; strides fit in isize
    // because they index existing slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_product_with_transposes_and_accumulation() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let expected = naive(&a, &b, m, k, n);
        let mut out = vec![0.0; m * n];
        matmul(&mut out, View::new(&a, m, k), View::new(&b, k, n), false);
        out.iter()
            .zip(&expected)
            .for_each(|(x, y)| assert!((x - y).abs() < 1e-5));
        // (bᵀ aᵀ)ᵀ = a b: compute bᵀ·aᵀ from transposed views of the same storage.
        let mut out_t = vec![0.0; n * m];
        matmul(
            &mut out_t,
            View::new(&b, k, n).t(),
            View::new(&a, m, k).t(),
            false,
        );
        for i in 0..m {
            for j in 0..n {
                assert!((out_t[j * m + i] - expected[i * n + j]).abs() < 1e-5);
            }
        }
        matmul(&mut out, View::new(&a, m, k), View::new(&b, k, n), true);
        out.iter()
            .zip(&expected)
            .for_each(|(x, y)| assert!((x - 2.0 * y).abs() < 1e-4));
    }
}

#[cfg(test)]
mod shapes {
    use super::*;

    /// Prints GFLOP/s of the CNN's products at batch 10 (`cargo test --release -- --ignored`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cnn_product_speeds() {
        for (name, m, k, n, ta, tb) in [
            ("conv1 fwd", 32, 25, 7840, false, false),
            ("conv2 fwd", 64, 800, 1960, false, false),
            ("conv2 dW", 64, 1960, 800, false, true),
            ("conv2 dcol", 800, 64, 1960, true, false),
            ("fc1 fwd", 10, 3136, 512, false, true),
            ("fc1 fwd^T", 512, 3136, 10, false, true),
            ("2nn l1 fwd", 10, 784, 200, false, true),
            ("2nn l1 fwd^T", 200, 784, 10, false, true),
            ("2nn l1 dW", 200, 10, 784, true, false),
            ("2nn l2 dx", 10, 200, 784, false, false),
            ("fc1 dW", 512, 10, 3136, true, false),
            ("fc1 dx", 10, 512, 3136, false, false),
        ] {
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            let mut out = vec![0.0f32; m * n];
            let av = if ta {
                View::new(&a, k, m).t()
            } else {
                View::new(&a, m, k)
            };
            let bv = if tb {
                View::new(&b, n, k).t()
            } else {
                View::new(&b, k, n)
            };
            let reps = 200;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                matmul(&mut out, av, bv, false);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{name:<12} {m}x{k}x{n}: {:.3} ms, {:.1} GFLOP/s",
                s * 1e3,
                2.0 * (m * k * n) as f64 / s / 1e9
            );
        }
    }
}
