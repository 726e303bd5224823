//! Criterion benches of the CPU backend's RNN forward pass and training step (forward +
//! backward, no input gradient) at TARGETS.md's CPU shapes. Throughput is reported in
//! FLOP/s by the counting of TARGETS.md (criterion shows it as elements/s: 1 element = 1 FLOP).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memrnn_benches::{forward_flops, run_forward, run_train, shape, train_flops, BenchData};
use memrnn_core::CellKind;
use memrnn_cpu::CpuBackend;

const KIND: CellKind = CellKind::Rnn;

fn bench(c: &mut Criterion) {
    let be = CpuBackend::new();
    for name in ["paper", "small-batch"] {
        let sh = shape(name).expect("known shape");
        let data = BenchData::new(KIND, &sh, 7);
        let mut g = c.benchmark_group(format!("cpu/{}/{name}", KIND.name()));
        g.sample_size(10);
        g.throughput(Throughput::Elements(forward_flops(KIND, &sh) as u64));
        g.bench_function("forward", |b| b.iter(|| run_forward(&be, &data)));
        g.throughput(Throughput::Elements(train_flops(KIND, &sh) as u64));
        g.bench_function("train_step", |b| b.iter(|| run_train(&be, &data)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
