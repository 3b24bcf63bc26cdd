//! Weighted averaging (FedAvg's inner loop) against a plain memory copy of the same bytes.
//!
//! Criterion prints throughput in GB/s for both, so the ratio to memory bandwidth is read off
//! the same run: `cargo bench -p harambee-params`.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use harambee_params::weighted_sum_into;

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    group.sample_size(20);
    // The 2NN (199,210 values) and a 10M-value model; 10 inputs each.
    for &n in &[199_210usize, 10_000_000] {
        let inputs: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32; n]).collect();
        let mut out = vec![0.0f32; n];
        let bytes_moved = (inputs.len() + 1) * n * 4;
        group.throughput(Throughput::Bytes(bytes_moved as u64));
        group.bench_with_input(BenchmarkId::new("weighted_sum", n), &n, |b, _| {
            let refs: Vec<(&[f32], f32)> = inputs.iter().map(|v| (v.as_slice(), 0.1)).collect();
            b.iter(|| weighted_sum_into(&mut out, &refs));
        });
        // Baseline: copy the same number of bytes (each input once into the output).
        group.bench_with_input(BenchmarkId::new("memcpy_baseline", n), &n, |b, _| {
            b.iter(|| {
                for x in &inputs {
                    out.copy_from_slice(x);
                }
                std::hint::black_box(&out);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
