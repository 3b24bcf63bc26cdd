//! Encoding and decoding compressed updates against a plain copy of the same f32 bytes.
//!
//! Criterion prints throughput in GB/s of f32 input for each, so the ratio to memory
//! bandwidth is read off the same run: `cargo bench -p harambee-params --bench codec`.
#![allow(missing_docs)] // criterion_group! generates undocumented items.
#![allow(clippy::unwrap_used)] // A benchmark stops loudly on a broken fixture.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use harambee_params::{ParamSet, UpdateCodec};

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.sample_size(20);
    // The 2NN (199,210 values) and a 10M-value model.
    for &n in &[199_210usize, 10_000_000] {
        let base = ParamSet::from_tensors([("w", vec![n], vec![0.5f32; n])]).unwrap();
        let trained: Vec<f32> = (0..n)
            .map(|i| 0.5 + ((i * 7919) % 1000) as f32 * 1e-5)
            .collect();
        let update = ParamSet::from_tensors([("w", vec![n], trained)]).unwrap();
        group.throughput(Throughput::Bytes((n * 4) as u64));
        group.bench_with_input(BenchmarkId::new("copy_baseline", n), &n, |b, _| {
            let mut out = vec![0.0f32; n];
            b.iter(|| {
                out.copy_from_slice(update.values());
                std::hint::black_box(&out);
            });
        });
        // A decoder returns a new model, so it also pays for fresh memory: the same copy
        // into a new buffer is the fair baseline for it.
        group.bench_with_input(BenchmarkId::new("copy_fresh_baseline", n), &n, |b, _| {
            b.iter(|| std::hint::black_box(update.values().to_vec()));
        });
        for name in ["f32", "f16", "bf16", "int8", "topk:0.01"] {
            let codec: UpdateCodec = name.parse().unwrap();
            let (bytes, _) = codec.encode(&base, &update, None).unwrap();
            group.bench_with_input(BenchmarkId::new(format!("encode_{name}"), n), &n, |b, _| {
                b.iter(|| codec.encode(&base, &update, None).unwrap());
            });
            group.bench_with_input(BenchmarkId::new(format!("decode_{name}"), n), &n, |b, _| {
                b.iter(|| codec.decode(&base, &bytes).unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
