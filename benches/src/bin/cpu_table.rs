//! Prints memrnn's CPU timings for the named shapes as JSON lines (one per cell, shape and
//! pass and storage precision of `W_hh`), for `benches/compare/cpu_torch.py` to set beside
//! PyTorch's.
//!
//! `cargo run --release -p memrnn-benches --bin cpu_table -- [--reps N] [--shapes paper,small-batch] [--threads N] [--simd LEVEL] [--precisions f32,bf16,f16]`
//!
//! `--shapes tiny` runs a tiny shape (checks that everything runs; its timings mean
//! nothing).

use memrnn_benches::{
    arg, device_forward, device_train, forward_flops, median_secs, sgemm_square, shape,
    train_flops, BenchData, DeviceData,
};
use memrnn_core::{Backend, CellKind, Precision};
use memrnn_cpu::CpuBackend;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps").unwrap_or(5);
    let shapes: String = arg(&args, "--shapes").unwrap_or_else(|| "paper,small-batch".to_string());
    let cells: String = arg(&args, "--cells").unwrap_or_else(|| "gru,lstm".to_string());
    let precisions: Vec<Precision> = arg::<String>(&args, "--precisions")
        .unwrap_or_else(|| "f32".to_string())
        .split(',')
        .map(|p| {
            p.parse().unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(2)
            })
        })
        .collect();
    let mut be = CpuBackend::new();
    if let Some(level) = memrnn_benches::simd_arg(&args) {
        be = be.with_simd(level).unwrap_or_else(|e| panic!("{e}"));
    }
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
            for &precision in &precisions {
                let be = be.clone().with_precision(precision);
                let dev = DeviceData::upload(&be, &data).unwrap_or_else(|e| panic!("{e}"));
                let fwd = median_secs(1, reps, || device_forward(&be, &dev));
                let train = median_secs(1, reps, || device_train(&be, &dev));
                for (pass, secs, flops) in [
                    ("fwd", fwd, forward_flops(kind, &sh)),
                    ("train", train, train_flops(kind, &sh)),
                ] {
                    println!(
                        "{{\"impl\":\"memrnn\",\"cell\":\"{kind}\",\"shape\":\"{s}\",\"precision\":\"{precision}\",\"pass\":\"{pass}\",\"ms\":{:.3},\"gflops\":{:.1}}}",
                        secs * 1e3,
                        flops / secs / 1e9
                    );
                }
            }
        }
    }
}
