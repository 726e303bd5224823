//! Times the batched slow-point iterations on the CPU backend: GRU (PyTorch's default
//! initialisation), `K` candidates, a fixed number of Adam iterations with stopping turned
//! off (every candidate runs every iteration, as a FixedPointFinder-style PyTorch loop
//! does), and prints ms per iteration and the final median speed `√S`.
//!
//! ```text
//! cargo run --release -p memrnn-benches --bin bench_finder -- \
//!     [--hidden 200] [--input 785] [--candidates 4096] [--iters 500] [--threads 2] \
//!     [--reps 3] [--seed 0] [--save DIR] [--json]
//! ```
//!
//! `--save DIR` writes the model (`DIR/model.safetensors`, PyTorch's names) and the
//! problem (`DIR/problem.safetensors`: `x_bar [I]`, `candidates [K, H]`) so that
//! `benches/compare/slowpoints_torch.py` runs the very same search.
//!
//! `--tts` measures time to solution instead: the Levenberg–Marquardt search
//! (`slow_point_lm`, default settings) runs to its end twice, with the dense solver and
//! with the matrix-free (Krylov) one, and the larger of their final median `S` (at least
//! Adam's `tol`, 1e-10) is the target (or `--target S`), so both reached it; then Adam
//! (lr 1e-2, stopping only at `S < 1e-10`, no stall rule, like the PyTorch loop) runs in
//! blocks of `--check-every` iterations until the median `S` over the candidates is at
//! most the target, or `--adam-max-iters`. It prints the three wall times (the median
//! checks are inside Adam's timed region, as in the PyTorch loop);
//! `slowpoints_torch.py --time-to-solution` adds the PyTorch finder to the same target.
//!
//! `--model PATH` takes a trained GRU checkpoint (`memrnn train`'s `.safetensors`)
//! instead of the random initialisation (`--hidden`/`--input` then come from it), and
//! `--warmup T` moves every candidate `T` steps along `F(·, x̄)` first (delay-period
//! trajectories, where a trained network's slow points are sought).

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::checkpoint::{save_checkpoint, write_tensors};
use memrnn_core::lm::{LmConfig, LmSearch, LmSolver, SearchStop};
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
    tts: bool,
    target: Option<f64>,
    check_every: u32,
    adam_max_iters: u32,
    model: Option<std::path::PathBuf>,
    warmup: usize,
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
        tts: false,
        target: None,
        check_every: 10,
        adam_max_iters: 20_000,
        model: None,
        warmup: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "--tts" {
            a.tts = true;
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
            "--target" => a.target = Some(val.parse().map_err(|e| format!("{flag} {val}: {e}"))?),
            "--check-every" => a.check_every = num(&val)?.max(1) as u32,
            "--adam-max-iters" => a.adam_max_iters = num(&val)? as u32,
            "--model" => a.model = Some(val.into()),
            "--warmup" => a.warmup = num(&val)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = parse()?;
    let model = match &a.model {
        Some(path) => {
            let m = memrnn_core::checkpoint::load_checkpoint(path)?.model;
            if m.cell.kind != CellKind::Gru {
                return Err(format!(
                    "--model {}: a {} network; the PyTorch comparison runs GRUs only (train one with `memrnn train --cell gru`)",
                    path.display(),
                    m.cell.kind
                )
                .into());
            }
            (a.hidden, a.input) = (m.cell.hidden, m.cell.input);
            m
        }
        None => Model::init(CellDims::new(CellKind::Gru, a.input, a.hidden)?, a.seed),
    };
    let cell = model.cell;
    // The delay-period input: pixels at the noise mean, trigger 0.
    let mut x_bar = vec![0.1307f32; a.input];
    if let Some(last) = x_bar.last_mut() {
        *last = 0.0;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed ^ 0xC0FFEE);
    let mut cands: Vec<f32> = (0..a.candidates * a.hidden)
        .map(|_| rng.random_range(-0.5f32..0.5))
        .collect();
    if a.warmup > 0 {
        let be = CpuBackend::new().with_threads(a.threads)?;
        let xs: Vec<f32> = x_bar
            .iter()
            .copied()
            .cycle()
            .take(a.candidates * a.input)
            .collect();
        let (params, xs) = (be.upload(&model.params)?, be.upload(&xs)?);
        for _ in 0..a.warmup {
            let s0 = be.upload(&cands)?;
            let fwd = be.seq_forward(
                &cell,
                &params,
                memrnn_core::SeqShape::new(1, a.candidates)?,
                &xs,
                Some(&s0),
            )?;
            cands = be.download(&fwd.s_final)?;
        }
    }
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
    if a.tts {
        return time_to_solution(&a, &be, &cell, &model, &x_bar, &cands);
    }
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

fn median(mut v: Vec<f32>) -> f64 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2] as f64
}

/// The `--tts` measurement (see the module docs).
fn time_to_solution(
    a: &Args,
    be: &CpuBackend,
    cell: &CellDims,
    model: &Model,
    x_bar: &[f32],
    cands: &[f32],
) -> Result<(), Box<dyn std::error::Error>> {
    let (params, x) = (be.upload(&model.params)?, be.upload(x_bar)?);
    // 1. Levenberg–Marquardt with each solver, to its own end.
    let mut lms = Vec::new();
    for solver in [LmSolver::Dense, LmSolver::Krylov] {
        let lm_cfg = LmConfig {
            solver,
            ..LmConfig::default()
        };
        let mut lm = LmSearch::new(be, cell, cands, &lm_cfg)?;
        let t0 = Instant::now();
        be.slow_point_lm(cell, &params, &x, &mut lm, &lm_cfg)?;
        let t = t0.elapsed().as_secs_f64();
        let count = |r: SearchStop| lm.status.iter().filter(|s| s.stop == r).count();
        lms.push(LmRun {
            solver,
            seconds: t,
            median_s: median(lm.status.iter().map(|s| s.speed_sq).collect()),
            median_iters: median(lm.status.iter().map(|s| s.iters as f32).collect()),
            converged: count(SearchStop::Converged),
            minima: count(SearchStop::Minimum),
            stalled: count(SearchStop::Stalled),
            max_iters: count(SearchStop::MaxIters),
        });
    }
    // Adam stops a candidate at S < tol (1e-10), so a target below that is out of its reach.
    let target = a.target.unwrap_or(
        lms.iter()
            .map(|r| r.median_s)
            .fold(SlowPointConfig::default().tol as f64, f64::max),
    );
    // 2. Adam in blocks until the median S reaches the target.
    let mut cfg = SlowPointConfig {
        max_iters: 0,
        stall_window: 0,
        ..SlowPointConfig::default()
    };
    let mut adam = SlowPointSearch::new(be, cell, cands)?;
    let t0 = Instant::now();
    let mut adam_median = f64::INFINITY;
    while cfg.max_iters < a.adam_max_iters {
        cfg.max_iters = (cfg.max_iters + a.check_every).min(a.adam_max_iters);
        be.slow_point_iterations(cell, &params, &x, &mut adam, &cfg)?;
        adam_median = median(adam.status.iter().map(|s| s.speed_sq).collect());
        if adam_median <= target {
            break;
        }
    }
    let t_adam = t0.elapsed().as_secs_f64();
    let adam_reached = adam_median <= target;
    if a.json {
        let lm_json: Vec<String> = lms
            .iter()
            .map(|r| {
                format!(
                    "\"lm_{n}_s\": {:.4}, \"lm_{n}_median_s\": {:e}, \"lm_{n}_median_iters\": {}, \"lm_{n}_converged\": {}, \"lm_{n}_minima\": {}, \"lm_{n}_stalled\": {}, \"lm_{n}_max_iters\": {}",
                    r.seconds,
                    r.median_s,
                    r.median_iters,
                    r.converged,
                    r.minima,
                    r.stalled,
                    r.max_iters,
                    n = r.solver.name()
                )
            })
            .collect();
        println!(
            "{{\"backend\": \"{}\", \"hidden\": {}, \"input\": {}, \"candidates\": {}, \"target_median_s\": {:e}, {}, \"adam_s\": {:.4}, \"adam_iters\": {}, \"adam_median_s\": {:e}, \"adam_reached\": {}}}",
            be.name(),
            a.hidden,
            a.input,
            a.candidates,
            target,
            lm_json.join(", "),
            t_adam,
            cfg.max_iters,
            adam_median,
            adam_reached
        );
    } else {
        println!(
            "memrnn {}: GRU I{} H{} K{}, time to median S <= {target:.3e}:",
            be.name(),
            a.input,
            a.hidden,
            a.candidates
        );
        for r in &lms {
            println!(
                "  LM ({}): {:.3} s (median S {:.3e}, median {} iterations; {} converged, {} minima of S, {} stalled, {} at the cap)",
                r.solver.name(),
                r.seconds,
                r.median_s,
                r.median_iters,
                r.converged,
                r.minima,
                r.stalled,
                r.max_iters
            );
        }
        println!(
            "  Adam: {t_adam:.3} s, {} iterations, median S {adam_median:.3e}{}",
            cfg.max_iters,
            if adam_reached {
                ""
            } else {
                " (target NOT reached)"
            }
        );
    }
    Ok(())
}

/// One LM search's outcome for `--tts`.
struct LmRun {
    solver: LmSolver,
    seconds: f64,
    median_s: f64,
    median_iters: f64,
    converged: usize,
    minima: usize,
    stalled: usize,
    max_iters: usize,
}
