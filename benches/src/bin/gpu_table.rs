//! Prints memrnn's CUDA timings for the named shapes as JSON lines (one per cell, shape,
//! pass and recurrence path), for `benches/compare/gpu_torch.py` to set beside cuDNN's.
//! Each figure is the median over `--reps` runs after warm-up, each run ended by a
//! stream synchronisation; inputs are uploaded once and are fresh random data (no zeros).
//!
//! `gpu_table [--reps N] [--shapes paper,long,small-batch,wide] [--cells gru,lstm]`
//! Without a GPU it prints why and exits with status 2.

use memrnn_benches::{
    arg, device_forward, device_train, forward_flops, median_secs, shape, train_flops, BenchData,
    DeviceData,
};
use memrnn_core::{Backend, CellKind};
use memrnn_cuda::{CudaBackend, RecurrencePath};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps").unwrap_or(20);
    let shapes: String =
        arg(&args, "--shapes").unwrap_or_else(|| "paper,long,small-batch,wide".into());
    let cells: String = arg(&args, "--cells").unwrap_or_else(|| "gru,lstm".into());
    let be = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gpu_table: no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("backend: {}", be.name());
    for s in shapes.split(',') {
        let Some(sh) = shape(s) else {
            eprintln!("unknown shape {s}");
            std::process::exit(2);
        };
        for c in cells.split(',') {
            let kind: CellKind = c.parse().unwrap_or_else(|e| panic!("{e}"));
            let data = BenchData::new(kind, &sh, 1);
            let dev = DeviceData::upload(&be, &data).unwrap_or_else(|e| panic!("upload: {e}"));
            for path in [RecurrencePath::Auto, RecurrencePath::Step] {
                be.set_recurrence_path(path);
                let sync = || be.synchronize().unwrap_or_else(|e| panic!("sync: {e}"));
                let fwd = median_secs(3, reps, || {
                    device_forward(&be, &dev);
                    sync()
                });
                // The long shape is an evaluation shape: forward only.
                let train = (s != "long").then(|| {
                    median_secs(3, reps, || {
                        device_train(&be, &dev);
                        sync()
                    })
                });
                let rows = [
                    Some(("fwd", fwd, forward_flops(kind, &sh))),
                    train.map(|t| ("train", t, train_flops(kind, &sh))),
                ];
                for (pass, secs, flops) in rows.into_iter().flatten() {
                    println!(
                        "{{\"impl\":\"memrnn\",\"cell\":\"{kind}\",\"shape\":\"{s}\",\"pass\":\"{pass}\",\"path\":\"{path:?}\",\"ms\":{:.4},\"gflops\":{:.1}}}",
                        secs * 1e3,
                        flops / secs / 1e9
                    );
                }
            }
        }
    }
}
