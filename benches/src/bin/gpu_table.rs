//! Prints memrnn's CUDA timings for the named shapes as JSON lines (one per precision,
//! cell, shape, pass and recurrence path), for `benches/compare/gpu_torch.py` to set
//! beside cuDNN's. Each figure is the median over `--reps` runs after warm-up, each run
//! ended by a stream synchronisation; inputs are uploaded once and are fresh random data
//! (no zeros). `--precisions` stores `W_hh` in each of f32, bf16, f16 in turn (the
//! `_bf16` / `_f16` recurrence kernels; f32 arithmetic throughout).
//!
//! `gpu_table [--reps N] [--shapes paper,long,small-batch,wide] [--cells gru,lstm]
//!  [--precisions f32,bf16,f16] [--backend cuda|cuda-sim]`
//! Without a GPU it prints why and exits with status 2. `--backend cuda-sim` (built with
//! `--features sim`) runs the same code on the simulated device: a check that the table
//! runs (use `--shapes tiny --reps 1`); its timings mean nothing.

use memrnn_benches::{
    arg, device_forward, device_train, forward_flops, median_secs, shape, train_flops, BenchData,
    DeviceData,
};
use memrnn_core::{Backend, CellKind, Precision};
use memrnn_cuda::{CudaBackend, RecurrencePath};

fn fail(why: String) -> ! {
    eprintln!("gpu_table: {why}");
    std::process::exit(2);
}

/// The backend `--backend` names, storing `W_hh` in `precision`.
fn backend(which: &str, precision: Precision) -> CudaBackend {
    let be = match which {
        "cuda" => CudaBackend::new(0).unwrap_or_else(|e| fail(format!("no usable GPU: {e}"))),
        #[cfg(feature = "sim")]
        "cuda-sim" => CudaBackend::simulated(memrnn_cuda::SimProps::h100_like())
            .unwrap_or_else(|e| fail(e.to_string())),
        other => fail(format!(
            "unknown backend {other:?}: give cuda (or cuda-sim, built with --features sim)"
        )),
    };
    be.with_precision(precision)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps").unwrap_or(20);
    let shapes: String =
        arg(&args, "--shapes").unwrap_or_else(|| "paper,long,small-batch,wide".into());
    let cells: String = arg(&args, "--cells").unwrap_or_else(|| "gru,lstm".into());
    let which: String = arg(&args, "--backend").unwrap_or_else(|| "cuda".into());
    let precisions: Vec<Precision> = arg::<String>(&args, "--precisions")
        .unwrap_or_else(|| "f32".into())
        .split(',')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|e| fail(format!("--precisions: {e}")))
        })
        .collect();
    for s in shapes.split(',') {
        if shape(s).is_none() {
            fail(format!(
                "unknown shape {s}: give paper, long, small-batch, wide or tiny"
            ));
        }
    }
    for precision in precisions {
        let be = backend(&which, precision);
        eprintln!("backend: {}", be.name());
        table(&be, precision, &shapes, &cells, reps);
    }
}

/// One precision's rows.
fn table(be: &CudaBackend, precision: Precision, shapes: &str, cells: &str, reps: usize) {
    for s in shapes.split(',') {
        let Some(sh) = shape(s) else {
            fail(format!("unknown shape {s}"));
        };
        for c in cells.split(',') {
            let kind: CellKind = c.parse().unwrap_or_else(|e| panic!("{e}"));
            let data = BenchData::new(kind, &sh, 1);
            let dev = DeviceData::upload(be, &data).unwrap_or_else(|e| panic!("upload: {e}"));
            for path in [RecurrencePath::Auto, RecurrencePath::Step] {
                be.set_recurrence_path(path);
                let sync = || be.synchronize().unwrap_or_else(|e| panic!("sync: {e}"));
                let fwd = median_secs(3, reps, || {
                    device_forward(be, &dev);
                    sync()
                });
                // The long shape is an evaluation shape: forward only.
                let train = (s != "long").then(|| {
                    median_secs(3, reps, || {
                        device_train(be, &dev);
                        sync()
                    })
                });
                let rows = [
                    Some(("fwd", fwd, forward_flops(kind, &sh))),
                    train.map(|t| ("train", t, train_flops(kind, &sh))),
                ];
                for (pass, secs, flops) in rows.into_iter().flatten() {
                    println!(
                        "{{\"impl\":\"memrnn\",\"precision\":\"{precision}\",\"cell\":\"{kind}\",\"shape\":\"{s}\",\"pass\":\"{pass}\",\"path\":\"{path:?}\",\"ms\":{:.4},\"gflops\":{:.1}}}",
                        secs * 1e3,
                        flops / secs / 1e9
                    );
                }
            }
        }
    }
}
