//! Times the batched slow-point iterations on the CPU backend: GRU (PyTorch's default
//! initialisation), `K` candidates, a fixed number of Adam iterations with stopping turned
//! off (every candidate runs every iteration, as a FixedPointFinder-style PyTorch loop
//! does), and prints ms per iteration and the final median speed `√S`.
//!
//! ```text
//! cargo run --release -p memrnn-slowpoints --example bench_finder -- \
//!     [--hidden 200] [--input 785] [--candidates 4096] [--iters 500] [--threads 2] \
//!     [--reps 3] [--seed 0] [--save DIR] [--json]
//! ```
//!
//! `--save DIR` writes the model (`DIR/model.safetensors`, PyTorch's names) and the
//! problem (`DIR/problem.safetensors`: `x_bar [I]`, `candidates [K, H]`) so that
//! `benches/compare/slowpoints_torch.py` runs the very same search.

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::checkpoint::{save_checkpoint, write_tensors};
use memrnn_core::{Backend, CellDims, CellKind, Model};
use memrnn_cpu::CpuBackend;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::time::Instant;

struct Args {
    hidden: usize,
    input: usize,
    candidates: usize,
    iters: u32,
    threads: usize,
    reps: usize,
    seed: u64,
    save: Option<std::path::PathBuf>,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        hidden: 200,
        input: 785,
        candidates: 4096,
        iters: 500,
        threads: 2,
        reps: 3,
        seed: 0,
        save: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--hidden" => a.hidden = num(&val)? as usize,
            "--input" => a.input = num(&val)? as usize,
            "--candidates" => a.candidates = num(&val)? as usize,
            "--iters" => a.iters = num(&val)? as u32,
            "--threads" => a.threads = num(&val)? as usize,
            "--reps" => a.reps = num(&val)?.max(1) as usize,
            "--seed" => a.seed = num(&val)?,
            "--save" => a.save = Some(val.into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse()?;
    let cell = CellDims::new(CellKind::Gru, a.input, a.hidden)?;
    let model = Model::init(cell, a.seed);
    // The delay-period input: pixels at the noise mean, trigger 0.
    let mut x_bar = vec![0.1307f32; a.input];
    if let Some(last) = x_bar.last_mut() {
        *last = 0.0;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed ^ 0xC0FFEE);
    let cands: Vec<f32> = (0..a.candidates * a.hidden)
        .map(|_| rng.random_range(-0.5f32..0.5))
        .collect();
    if let Some(dir) = &a.save {
        std::fs::create_dir_all(dir)?;
        save_checkpoint(&dir.join("model.safetensors"), &model, &BTreeMap::new())?;
        write_tensors(
            &dir.join("problem.safetensors"),
            &[
                ("x_bar", vec![a.input], &x_bar),
                ("candidates", vec![a.candidates, a.hidden], &cands),
            ],
            &BTreeMap::new(),
        )?;
    }
    let be = CpuBackend::new().with_threads(a.threads)?;
    let cfg = SlowPointConfig {
        max_iters: a.iters,
        tol: 0.0,
        stall_window: 0,
        ..SlowPointConfig::default()
    };
    let (params, x) = (be.upload(&model.params)?, be.upload(&x_bar)?);
    let mut times = Vec::new();
    let mut median_speed = f32::NAN;
    for _ in 0..a.reps {
        let mut search = SlowPointSearch::new(&be, &cell, &cands)?;
        let t0 = Instant::now();
        be.slow_point_iterations(&cell, &params, &x, &mut search, &cfg)?;
        times.push(t0.elapsed().as_secs_f64());
        let mut sp: Vec<f32> = search.status.iter().map(|s| s.speed_sq.sqrt()).collect();
        sp.sort_by(f32::total_cmp);
        median_speed = sp[sp.len() / 2];
    }
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    let ms_per_iter = 1e3 * t / a.iters.max(1) as f64;
    if a.json {
        println!(
            "{{\"backend\": \"{}\", \"hidden\": {}, \"input\": {}, \"candidates\": {}, \"iters\": {}, \"ms_per_iter\": {:.4}, \"median_speed\": {:e}}}",
            be.name(),
            a.hidden,
            a.input,
            a.candidates,
            a.iters,
            ms_per_iter,
            median_speed
        );
    } else {
        println!(
            "memrnn {}: GRU I{} H{} K{}: {} iterations in {:.3} s (median of {}) = {:.3} ms/iteration; median speed √S {:.4e}",
            be.name(),
            a.input,
            a.hidden,
            a.candidates,
            a.iters,
            t,
            a.reps,
            ms_per_iter,
            median_speed
        );
    }
    Ok(())
}
