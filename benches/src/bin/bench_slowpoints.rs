//! GPU benchmark of the fused slow-point search (TARGETS.md: GRU H 200, 4096 candidates,
//! 10,000 Adam iterations), for `benches/compare/slowpoints_torch_gpu.py`.
//!
//! ```text
//! cargo build --release -p memrnn-benches --bin bench_slowpoints
//! bench_slowpoints [--candidates 4096] [--hidden 200] [--input 785] [--iters 10000]
//!                  [--dump DIR]
//! ```
//!
//! The network is PyTorch's default initialisation (U(−1/√H, 1/√H)), the input x̄ the
//! delayed-classification task's delay input (every pixel at the noise mean 0.1307,
//! trigger 0), the candidates uniform in (−0.9, 0.9), all from a fixed seed. Two runs: the
//! default stopping rule (tol 1e-10, stall checks every 500 iterations) and "full" (no
//! stopping: every candidate takes all its iterations, the like-for-like comparison with a
//! FixedPointFinder that runs every candidate to the end). Each prints a line of text and
//! one JSON line; `--dump DIR` writes params.f32, x.f32, candidates.f32 (raw little-endian)
//! so the PyTorch script runs the very same problem.

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch, StopReason};
use memrnn_core::{Backend, CellDims, CellKind};
use memrnn_cuda::CudaBackend;
use std::time::Instant;

/// splitmix64 → uniform f32 in [lo, hi).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32))
            .collect()
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn write_f32(path: &std::path::Path, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let k = arg(&args, "--candidates", 4096);
    let h = arg(&args, "--hidden", 200);
    let i = arg(&args, "--input", 785);
    let iters = arg(&args, "--iters", 10_000) as u32;
    let gpu = match CudaBackend::new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("bench_slowpoints: no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    let cell = CellDims::new(CellKind::Gru, i, h).expect("valid dims");
    let mut rng = Rng(0x5EED_5107);
    let scale = 1.0 / (h as f32).sqrt();
    let params = rng.uniform(cell.layout().len(), -scale, scale);
    let mut x = vec![0.1307f32; i];
    if let Some(last) = x.last_mut() {
        *last = 0.0;
    }
    let candidates = rng.uniform(k * cell.state_size(), -0.9, 0.9);
    if let Some(p) = args.iter().position(|a| a == "--dump") {
        let dir = std::path::PathBuf::from(args.get(p + 1).expect("--dump takes a directory"));
        std::fs::create_dir_all(&dir).expect("creating the dump directory");
        write_f32(&dir.join("params.f32"), &params);
        write_f32(&dir.join("x.f32"), &x);
        write_f32(&dir.join("candidates.f32"), &candidates);
    }
    let gp = gpu.upload(&params).expect("upload");
    let gx = gpu.upload(&x).expect("upload");
    let default = SlowPointConfig {
        max_iters: iters,
        ..SlowPointConfig::default()
    };
    let full = SlowPointConfig {
        tol: 0.0,
        stall_window: 0,
        ..default
    };
    println!(
        "# {} | GRU I {i} H {h} | K {k} | max {iters} iterations",
        gpu.name()
    );
    // Warm-up: module load, allocations, clocks.
    {
        let mut s = SlowPointSearch::new(&gpu, &cell, &candidates[..cell.state_size() * k.min(64)])
            .expect("search");
        let warm = SlowPointConfig {
            max_iters: 200,
            ..full
        };
        gpu.slow_point_iterations(&cell, &gp, &gx, &mut s, &warm)
            .expect("warm-up");
        gpu.synchronize().expect("sync");
    }
    for (label, cfg) in [("default", default), ("full", full)] {
        let mut s = SlowPointSearch::new(&gpu, &cell, &candidates).expect("search");
        gpu.synchronize().expect("sync");
        let t0 = Instant::now();
        gpu.slow_point_iterations(&cell, &gp, &gx, &mut s, &cfg)
            .expect("search");
        gpu.synchronize().expect("sync");
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut speeds: Vec<f32> = s
            .status
            .iter()
            .map(|st| st.speed_sq.max(0.0).sqrt())
            .collect();
        speeds.sort_by(|a, b| a.total_cmp(b));
        let median = speeds[speeds.len() / 2];
        let total_iters: u64 = s.status.iter().map(|st| st.iters as u64).sum();
        let count = |r: StopReason| s.status.iter().filter(|st| st.stop == r).count();
        println!(
            "{label}: {ms:.1} ms, median final speed {median:.3e}, {total_iters} candidate-iterations \
             (converged {}, stalled {}, max-iters {}, non-finite {})",
            count(StopReason::Converged),
            count(StopReason::Stalled),
            count(StopReason::MaxIters),
            count(StopReason::NonFinite)
        );
        println!(
            "{{\"bench\":\"slowpoints\",\"run\":\"{label}\",\"device\":\"{}\",\"candidates\":{k},\"hidden\":{h},\"input\":{i},\"max_iters\":{iters},\"ms\":{ms:.3},\"median_speed\":{median:e},\"candidate_iters\":{total_iters}}}",
            gpu.name()
        );
    }
}
