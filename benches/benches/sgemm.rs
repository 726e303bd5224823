//! The machine's SGEMM ceiling through the gemm crate (what the fast path's large products
//! use): square products on all threads. The fast path's efficiency is measured against it.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memrnn_benches::sgemm_square;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu/sgemm");
    g.sample_size(10);
    for n in [1024usize, 2048] {
        let a: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut out = vec![0.0f32; n * n];
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        g.bench_function(format!("square_{n}"), |bch| {
            bch.iter(|| sgemm_square(n, &a, &b, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
