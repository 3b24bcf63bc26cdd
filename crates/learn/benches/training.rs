//! Local training, the fast kernels against reproducible ones: 25 AdamW steps of the 2NN at
//! batch 10 on the bundled MNIST, with `gemm`'s kernels and with the fixed-order kernels on
//! every instruction set this CPU runs, in the same run: `cargo bench -p harambee-learn`.
//! (`harambee bench --verification` gives the same comparison for whole worker rounds.)
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{Criterion, criterion_group, criterion_main};
use harambee_learn::{
    Kernel, ModelKind, NativeTrainer, Optimizer, Trainer, digit_names, load_idx_dir,
};
use harambee_strategy::FitConfig;

fn training(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let Ok(split) = load_idx_dir(&dir, digit_names()) else {
        eprintln!("no MNIST at {}: nothing to measure", dir.display());
        return;
    };
    let data = &split.train;
    let indices: Vec<usize> = (0..data.len()).step_by(4).collect();
    let config = FitConfig {
        epochs: 1,
        batch_size: 10,
        learning_rate: 1e-3,
        proximal_mu: 0.0,
        local_steps: 25,
    };
    let mut group = c.benchmark_group("2nn_25_steps");
    group.sample_size(20);
    let optimizer = Optimizer::AdamW { weight_decay: 0.0 };
    let kernels = std::iter::once(None).chain(Kernel::available().into_iter().map(Some));
    for kernel in kernels {
        let trainer = NativeTrainer::new(ModelKind::Mlp2nn, data, optimizer)
            .expect("the 2NN fits MNIST")
            .reproducible(kernel);
        let global = trainer.init(1);
        let name = kernel.map_or("fast_gemm", Kernel::name);
        group.bench_function(name, |b| {
            b.iter(|| trainer.train(&global, data, &indices, &config, 7));
        });
    }
    group.finish();
}

criterion_group!(benches, training);
criterion_main!(benches);
