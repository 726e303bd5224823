//! Task-data generation against a training step at the paper shape (GRU, B 128, T 20,
//! I 785, H 200) on the CPU backend: the generation must take under 10% of a step.
//!
//! `cargo bench -p memrnn-benches --bench taskgen` (median of 15 after 3 warm-up runs).

use memrnn_core::CellKind;
use memrnn_cpu::CpuBackend;
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::task::{make_batch, DigitSet, Stage, TaskConfig};
use memrnn_train::train::{TrainConfig, Trainer};
use std::time::Instant;

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[reps / 2]
}

fn main() {
    let set = DigitSet::new(load_mnist_dir(&bundled_data_dir()).expect("data/")).expect("digits");
    let task = TaskConfig::default();
    let stage = Stage {
        t_max: 20,
        vocab: 10,
    };
    let b = CpuBackend::new();
    println!("backend: {}", memrnn_core::Backend::name(&b));
    let mut step = 0u64;
    let gen = median_ms(
        || {
            step += 1;
            std::hint::black_box(make_batch(&set, &task, stage, 1, step, 128).expect("batch"));
        },
        15,
    );
    let normals = 128.0 * 20.0 * 784.0;
    {
        use memrnn_train::philox::{fill_normal_row, fill_normal_row_scalar, key, Stream};
        let mut row = vec![0f32; 784];
        let k = key(1, 2);
        for (name, f) in [
            (
                "vectorised",
                fill_normal_row as fn(_, _, _, _, _, _, &mut [f32]),
            ),
            ("scalar", fill_normal_row_scalar),
        ] {
            let ms = median_ms(
                || {
                    for t in 0..100 {
                        f(k, Stream::TaskNoise, t, 0, 0.1307, 0.3081, &mut row);
                        std::hint::black_box(&row);
                    }
                },
                15,
            );
            println!(
                "one thread, {name:>10}: {:.2} ns per normal sample",
                ms * 1e6 / 78_400.0
            );
        }
    }
    println!(
        "data generation  B128 T20 I785: {gen:8.2} ms  ({:.2} ns per normal sample, {:.1} M samples/s)",
        gen * 1e6 / normals,
        normals / gen / 1e3
    );
    for kind in [CellKind::Gru, CellKind::Lstm] {
        let cfg = TrainConfig {
            cell: kind,
            hidden: 200,
            batch: 128,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(&b, &set, cfg).expect("trainer");
        let train = median_ms(
            || {
                t.train_step("none").expect("step");
            },
            15,
        );
        println!(
            "training step    {kind} H200 (incl. data): {train:8.2} ms  -> data generation is {:.1}% of a step",
            100.0 * gen / train
        );
    }
}
