//! The training step, old host path against the backend path, side by side in one run:
//! at the paper's shape (GRU H 200, batch 128, T 20, 785 inputs) and at `memrnn run`'s
//! default (GRU H 64, batch 64, T 20). Each repetition times `--steps` consecutive steps;
//! the figure is the median over `--reps` repetitions (after one warm-up repetition), in
//! ms per step. The backend path reads its numbers back once per repetition (as `memrnn
//! train` does at its logging interval); the old path synchronises every step.
//!
//! `cargo bench -p memrnn-benches --bench train_step -- [--reps 7] [--steps 5]
//!  [--shapes paper,run] [--backend cpu|cuda|cuda-sim] [--threads N]`
//!
//! With `--backend cuda` it also projects the paper's 140,000 training steps from the
//! backend path's ms per step.

#[path = "../../crates/memrnn-train/tests/common/old_host_step.rs"]
mod old_host_step;

use memrnn_core::{Backend, CellKind};
use memrnn_train::idx::load_bundled;
use memrnn_train::task::DigitSet;
use memrnn_train::train::{TrainConfig, Trainer};
use old_host_step::OldHost;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} {v}: not a valid value")),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `(name, hidden, batch)` at T 20 with the bundled digits' 785 inputs.
fn shape(name: &str) -> Option<(usize, usize)> {
    match name {
        "paper" => Some((200, 128)),
        "run" => Some((64, 64)),
        _ => None,
    }
}

fn bench<B: Backend>(b: &B, set: &DigitSet, shapes: &str, reps: usize, steps: u64) {
    println!("backend: {}", b.name());
    println!("| shape | old host path (ms/step) | backend path (ms/step) | speed-up |");
    println!("| --- | --- | --- | --- |");
    for s in shapes.split(',') {
        let Some((hidden, batch)) = shape(s) else {
            eprintln!("unknown shape {s}: use paper or run");
            std::process::exit(2);
        };
        let cfg = TrainConfig {
            cell: CellKind::Gru,
            hidden,
            batch,
            steps: 1_000_000,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(b, set, cfg.clone()).expect("trainer");
        let model = t.model().expect("model");
        let mut old = OldHost::new(b, &model);
        let (mut t_old, mut t_new) = (vec![], vec![]);
        for rep in 0..=reps {
            let clock = Instant::now();
            for _ in 0..steps {
                std::hint::black_box(old.step(b, set, &cfg, &model, None));
            }
            let o = clock.elapsed().as_secs_f64() * 1e3 / steps as f64;
            let clock = Instant::now();
            std::hint::black_box(t.train_steps(steps, "none").expect("steps"));
            let n = clock.elapsed().as_secs_f64() * 1e3 / steps as f64;
            if rep > 0 {
                t_old.push(o);
                t_new.push(n);
            }
        }
        let (o, n) = (median(t_old), median(t_new));
        println!(
            "| {s} (GRU H {hidden}, B {batch}, T 20, I {}) | {o:.2} | {n:.2} | {:.2}× |",
            set.input_size(),
            o / n
        );
        println!(
            "projected 140,000 steps at {s}: backend path {:.1} min, old path {:.1} min",
            n * 140_000.0 / 60_000.0,
            o * 140_000.0 / 60_000.0
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps").unwrap_or(7);
    let steps: u64 = arg(&args, "--steps").unwrap_or(5);
    let shapes: String = arg(&args, "--shapes").unwrap_or_else(|| "paper,run".into());
    let backend: String = arg(&args, "--backend").unwrap_or_else(|| "cpu".into());
    assert!(
        reps >= 1 && steps >= 1,
        "--reps and --steps must be at least 1"
    );
    let set = DigitSet::new(load_bundled().expect("bundled digits")).expect("digits");
    match backend.as_str() {
        "cpu" => {
            let mut b = memrnn_cpu::CpuBackend::new();
            if let Some(n) = arg::<usize>(&args, "--threads") {
                b = b.with_threads(n).expect("threads");
            }
            bench(&b, &set, &shapes, reps, steps)
        }
        "cuda" => bench(
            &memrnn_cuda::CudaBackend::new(0).expect("a CUDA device"),
            &set,
            &shapes,
            reps,
            steps,
        ),
        #[cfg(feature = "sim")]
        "cuda-sim" => bench(
            &memrnn_cuda::CudaBackend::simulated(memrnn_cuda::SimProps::small())
                .expect("the simulated device"),
            &set,
            &shapes,
            reps,
            steps,
        ),
        #[cfg(not(feature = "sim"))]
        "cuda-sim" => {
            eprintln!("--backend cuda-sim needs the simulated device: add `--features sim`");
            std::process::exit(2);
        }
        other => {
            eprintln!("--backend {other}: use cpu, cuda or cuda-sim");
            std::process::exit(2);
        }
    }
}
