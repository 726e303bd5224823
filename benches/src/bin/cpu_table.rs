//! Prints memrnn's CPU timings for the named shapes as JSON lines (one per cell, shape and
//! pass), for `benches/compare/cpu_torch.py` to set beside PyTorch's.
//!
//! `cargo run --release -p memrnn-benches --bin cpu_table -- [--reps N] [--shapes paper,small-batch] [--threads N]`

use memrnn_benches::{
    forward_flops, median_secs, run_forward, run_train, sgemm_square, shape, train_flops, BenchData,
};
use memrnn_core::{Backend, CellKind};
use memrnn_cpu::CpuBackend;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps").unwrap_or(5);
    let shapes: String = arg(&args, "--shapes").unwrap_or_else(|| "paper,small-batch".to_string());
    let cells: String = arg(&args, "--cells").unwrap_or_else(|| "gru,lstm".to_string());
    let mut be = CpuBackend::new();
    if let Some(t) = arg::<usize>(&args, "--threads") {
        be = be.with_threads(t).unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("backend: {}", be.name());
    if args.iter().any(|a| a == "--sgemm") {
        let n = 2048;
        let a: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut c = vec![0.0f32; n * n];
        let secs = median_secs(1, reps, || sgemm_square(n, &a, &b, &mut c));
        let gf = 2.0 * (n * n * n) as f64 / secs / 1e9;
        println!(
            "{{\"impl\":\"memrnn\",\"op\":\"sgemm\",\"n\":{n},\"ms\":{:.3},\"gflops\":{gf:.1}}}",
            secs * 1e3
        );
    }
    for s in shapes.split(',') {
        let Some(sh) = shape(s) else {
            eprintln!("unknown shape {s}");
            std::process::exit(2);
        };
        for c in cells.split(',') {
            let kind: CellKind = c.parse().unwrap_or_else(|e| panic!("{e}"));
            let data = BenchData::new(kind, &sh, 1);
            let fwd = median_secs(1, reps, || run_forward(&be, &data));
            let train = median_secs(1, reps, || run_train(&be, &data));
            for (pass, secs, flops) in [
                ("fwd", fwd, forward_flops(kind, &sh)),
                ("train", train, train_flops(kind, &sh)),
            ] {
                println!(
                    "{{\"impl\":\"memrnn\",\"cell\":\"{kind}\",\"shape\":\"{s}\",\"pass\":\"{pass}\",\"ms\":{:.3},\"gflops\":{:.1}}}",
                    secs * 1e3,
                    flops / secs / 1e9
                );
            }
        }
    }
}
