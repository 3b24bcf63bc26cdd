//! Reproducible numerics: matrix products whose every output is the same bits on any x86-64
//! CPU, at any SIMD width and thread count, so that anyone can replay a worker's training.
//!
//! The `gemm` crate is faster but not replayable: it picks AVX-512, FMA or generic kernels at
//! run time, and its blocking (hence each output's order of additions) follows the cache
//! sizes. Here each output `out[i][j]` is `((a[i][0]·b[0][j]) + a[i][1]·b[1][j]) + …`,
//! summed in ascending `k`, each product rounded before its addition (Rust never fuses a
//! multiply and an add unless told to). The loops run over `j` inside, so a vector lane only
//! ever holds one output: every lane does what the scalar loop does, and the generic, AVX2
//! and AVX-512 builds of the same loop agree bit for bit, which the tests check.

use std::cell::Cell;

use super::gemm::View;
use crate::LearnError;

/// The instruction set a reproducible product runs on. All give the same bits; only their
/// speed differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Baseline x86-64 (SSE2), or plain scalar code elsewhere.
    Generic,
    /// 256-bit vectors (without fused multiply-add).
    Avx2,
    /// 512-bit vectors (without fused multiply-add).
    Avx512,
}

impl Kernel {
    /// The widest kernel this CPU runs, or the one `HARAMBEE_KERNEL` (`generic`, `avx2`,
    /// `avx512`) names, so that an operator or a test can force one.
    pub fn from_env() -> Result<Self, LearnError> {
        match std::env::var("HARAMBEE_KERNEL") {
            Ok(name) => name.parse(),
            Err(_) => Ok(Self::widest()),
        }
    }

    /// The widest kernel this CPU runs.
    pub fn widest() -> Self {
        Self::available().last().copied().unwrap_or(Kernel::Generic)
    }

    /// Every kernel this CPU runs, narrowest first.
    pub fn available() -> Vec<Self> {
        let mut kernels = vec![Kernel::Generic];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        kernels
    }

    /// Its name, as `HARAMBEE_KERNEL` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Generic => "generic",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = LearnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kernel = match s {
            "generic" => Kernel::Generic,
            "avx2" => Kernel::Avx2,
            "avx512" => Kernel::Avx512,
            _ => {
                return Err(LearnError::InvalidSetting(format!(
                    "kernel {s:?}: expected generic, avx2 or avx512"
                )));
            }
        };
        if !Kernel::available().contains(&kernel) {
            return Err(LearnError::InvalidSetting(format!(
                "kernel {s}: this CPU does not run it (it runs {})",
                Kernel::available()
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(kernel)
    }
}

thread_local! {
    /// The kernel of the reproducible training running on this thread, if any. Training is
    /// single-threaded (a trainer parallelises across members, not within a step), so a
    /// thread-local reaches every product of a step without threading a setting through
    /// each layer.
    static REPRODUCIBLE: Cell<Option<Kernel>> = const { Cell::new(None) };
}

/// Runs `f` with every product on this thread computed in fixed order on `kernel`.
pub(super) fn with_kernel<T>(kernel: Option<Kernel>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Kernel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            REPRODUCIBLE.with(|k| k.set(self.0));
        }
    }
    let _restore = Restore(REPRODUCIBLE.with(|k| k.replace(kernel)));
    f()
}

/// The reproducible kernel in force on this thread, if any.
pub(super) fn current() -> Option<Kernel> {
    REPRODUCIBLE.with(Cell::get)
}

/// `out = [out +] a · b` in fixed order (see the module's doc); `out` is row-major
/// `a.rows × b.cols`, and with `accumulate` the finished sum is added to it.
pub(super) fn matmul(out: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool, kernel: Kernel) {
    let (m, n) = (a.rows(), b.cols());
    // The vectors run along the longer side of the output: computing outᵀ = bᵀ·aᵀ gives
    // the same bits (each output sums the same products, commuted, in the same order).
    if m > n {
        let mut transposed = vec![0.0f32; n * m];
        product(&mut transposed, b.t(), a.t(), kernel);
        for (i, row) in out.chunks_exact_mut(n).enumerate() {
            for (j, o) in row.iter_mut().enumerate() {
                let v = transposed[j * m + i];
                *o = if accumulate { *o + v } else { v };
            }
        }
        return;
    }
    if accumulate {
        let mut fresh = vec![0.0f32; m * n];
        product(&mut fresh, a, b, kernel);
        out.iter_mut().zip(&fresh).for_each(|(o, v)| *o += v);
    } else {
        product(out, a, b, kernel);
    }
}

/// A tile of sums held in registers while `k` runs: 4 rows × 32 columns is 8 AVX-512 or 16
/// AVX2 registers (one row for SSE2's 16 narrow ones). Tiles change only which sums are
/// computed together, never the order of additions within one.
const ROWS: usize = 4;
const COLUMNS: usize = 32;

/// `out = a · b`: every sum starts at zero and takes `a[i][p] · b[p][j]` for ascending `p`.
fn product(out: &mut [f32], a: View<'_>, b: View<'_>, kernel: Kernel) {
    // aᵀ and b row-major: a tile reads a row of each per step of `k`.
    let (a_t, b_rows) = (a.t().to_row_major(), b.to_row_major());
    let (m, k) = (a.rows(), a.cols());
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unsafe_code)]
        // SAFETY: `Kernel::Avx2` and `Kernel::Avx512` exist only once `Kernel::available`
        // has seen the CPU run them (`FromStr` and `widest` go through it).
        unsafe {
            match kernel {
                Kernel::Avx2 => return product_avx2(out, &a_t, &b_rows, m, k),
                Kernel::Avx512 => return product_avx512(out, &a_t, &b_rows, m, k),
                Kernel::Generic => {}
            }
        }
    }
    let _ = kernel;
    product_body::<1>(out, &a_t, &b_rows, m, k);
}

/// The product of `a` (given as `a_t`, its transpose row-major, `k × m`) and `b_rows`
/// (`k × n`): one body, compiled once per kernel.
#[inline(always)]
fn product_body<const R: usize>(out: &mut [f32], a_t: &[f32], b_rows: &[f32], m: usize, k: usize) {
    let n = out.len() / m.max(1);
    let full = n - n % COLUMNS;
    let mut i0 = 0;
    while i0 < m {
        let rows = if m - i0 >= R { R } else { 1 };
        for j0 in (0..full).step_by(COLUMNS) {
            if rows == R {
                tile::<R>(out, a_t, b_rows, (m, n, k), (i0, j0));
            } else {
                tile::<1>(out, a_t, b_rows, (m, n, k), (i0, j0));
            }
        }
        for i in i0..i0 + rows {
            for j in full..n {
                let mut sum = 0.0f32;
                for p in 0..k {
                    sum += a_t[p * m + i] * b_rows[p * n + j];
                }
                out[i * n + j] = sum;
            }
        }
        i0 += rows;
    }
}

/// The `R × COLUMNS` sums at (`i0`, `j0`), accumulated in registers over all of `k`.
#[inline(always)]
fn tile<const R: usize>(
    out: &mut [f32],
    a_t: &[f32],
    b_rows: &[f32],
    (m, n, k): (usize, usize, usize),
    (i0, j0): (usize, usize),
) {
    let mut sums = [[0.0f32; COLUMNS]; R];
    for p in 0..k {
        let b = &b_rows[p * n + j0..][..COLUMNS];
        let a = &a_t[p * m + i0..][..R];
        for (row, s) in sums.iter_mut().zip(a) {
            for (y, x) in row.iter_mut().zip(b) {
                *y += s * x;
            }
        }
    }
    for (r, row) in sums.iter().enumerate() {
        out[(i0 + r) * n + j0..][..COLUMNS].copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn product_avx2(out: &mut [f32], a_t: &[f32], b_rows: &[f32], m: usize, k: usize) {
    product_body::<ROWS>(out, a_t, b_rows, m, k);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn product_avx512(out: &mut [f32], a_t: &[f32], b_rows: &[f32], m: usize, k: usize) {
    product_body::<ROWS>(out, a_t, b_rows, m, k);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequential(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0f32;
                for p in 0..k {
                    sum += a[i * k + p] * b[p * n + j];
                }
                out[i * n + j] = sum;
            }
        }
        out
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn every_kernel_gives_the_bits_of_the_sequential_sum_in_either_orientation() {
        // Odd sizes, so vector tails are exercised; m > n and m < n take both orientations.
        for (m, k, n) in [
            (37, 53, 19),
            (5, 41, 67),
            (70, 33, 131),
            (1, 1, 1),
            (3, 0, 4),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos() / 7.0).collect();
            let expected = bits(&sequential(&a, &b, m, k, n));
            for kernel in Kernel::available() {
                let mut out = vec![0.0f32; m * n];
                matmul(
                    &mut out,
                    View::new(&a, m, k),
                    View::new(&b, k, n),
                    false,
                    kernel,
                );
                assert_eq!(bits(&out), expected, "{kernel:?} {m}x{k}x{n}");
                // The same product from transposed storage.
                let (at, bt) = (transpose(&a, m, k), transpose(&b, k, n));
                let mut again = vec![0.0f32; m * n];
                let (av, bv) = (View::new(&at, k, m).t(), View::new(&bt, n, k).t());
                matmul(&mut again, av, bv, false, kernel);
                assert_eq!(bits(&again), expected, "{kernel:?} transposed {m}x{k}x{n}");
            }
        }
    }

    fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| v[(i % rows) * cols + i / rows])
            .collect()
    }

    #[test]
    fn a_kernel_this_cpu_lacks_or_an_unknown_name_is_refused() {
        assert!("sse9".parse::<Kernel>().is_err());
        assert_eq!("generic".parse::<Kernel>().unwrap(), Kernel::Generic);
        assert_eq!(Kernel::widest(), *Kernel::available().last().unwrap());
    }
}
