//! Criterion benches of the CPU backend's GRU: forward pass and training step (forward +
//! backward, no input gradient) at TARGETS.md's CPU shapes; see
//! `memrnn_benches::criterion_cpu_cell`.

use criterion::{criterion_group, criterion_main, Criterion};
use memrnn_core::CellKind;

fn bench(c: &mut Criterion) {
    memrnn_benches::criterion_cpu_cell(c, CellKind::Gru);
}

criterion_group!(benches, bench);
criterion_main!(benches);
