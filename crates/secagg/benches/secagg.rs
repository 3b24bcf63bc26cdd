//! Cost of secure aggregation's hot parts: the mask stream and a whole round.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::keys_and_shares;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harambee_secagg::Config;
use rand::SeedableRng;

/// The 2NN's parameter count (784·200 + 200 + 200·200 + 200 + 200·10 + 10).
const DIM: usize = 199_210;

fn round(c: &mut Criterion) {
    let mut group = c.benchmark_group("secagg");
    group.sample_size(10);
    for n in [10u32, 30] {
        let config = Config::recommended([5; 32], n, DIM);
        group.throughput(Throughput::Bytes((DIM * 4) as u64 * u64::from(n)));
        group.bench_function(format!("round_{n}_participants_2nn"), |b| {
            b.iter(|| {
                let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
                let (mut clients, mut server, inboxes) = keys_and_shares(&config, &mut rng);
                let input = vec![7u32; DIM];
                for c in &mut clients {
                    server
                        .receive_masked(c.mask_input(&input, &inboxes[&c.id()]).unwrap())
                        .unwrap();
                }
                let survivors = server.close_masked().unwrap();
                for c in &mut clients {
                    server
                        .receive_unmasking(c.unmask(&survivors).unwrap())
                        .unwrap();
                }
                server.finish().unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, round);
criterion_main!(benches);
