//! Ensemble training throughput: E networks of one shape trained as one ensemble
//! ([`memrnn_train::EnsembleTrainer`]), for each E of `--ensembles`, in networks·steps per
//! second, with the scaling against E = 1 (`speed-up / E`: 1 is perfectly linear). Each
//! repetition times `--steps` ensemble steps (the record read back once, at the end);
//! the figure is the median over `--reps` repetitions after one warm-up repetition.
//!
//! `cargo run --release -p memrnn-benches --bin ensemble_throughput -- [--backend cpu|cuda|cuda-sim]
//!  [--ensembles 1,8,32,64] [--shape paper|run|tiny] [--steps 20] [--reps 5] [--threads N]
//!  [--sim-props small|h100] [--plan-only]`
//!
//! Shapes (T 20, the bundled digits' 785 inputs): paper = GRU H 200, batch 128; run = GRU
//! H 64, batch 64; tiny = GRU H 8, batch 4 (a check that the command runs, not a figure).
//! With `--backend cuda` it also projects the paper's 40-network study's training
//! (140,000 steps each) from the largest E's throughput. On the CUDA backends each row
//! also says how the recurrences ran (`CudaBackend::ensemble_plan`): members per
//! cooperative launch × launches and blocks per member, forward and backward, or member by
//! member (the single-network kernels); `--sim-props h100` plans on the simulated H100
//! (`--backend cuda-sim`; slow, for the plan and a run check, not a figure); `--plan-only`
//! prints the plans without training.

use memrnn_core::{Backend, CellKind};
use memrnn_train::idx::load_bundled;
use memrnn_train::task::DigitSet;
use memrnn_train::train::TrainConfig;
use memrnn_train::EnsembleTrainer;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    Some(v.parse().unwrap_or_else(|_| {
        eprintln!("{name} {v}: not a valid value");
        std::process::exit(2)
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn shape(name: &str) -> (usize, usize) {
    match name {
        "paper" => (200, 128),
        "run" => (64, 64),
        "tiny" => (8, 4),
        other => {
            eprintln!("--shape {other}: use paper, run or tiny");
            std::process::exit(2)
        }
    }
}

/// How a backend runs the recurrences of E networks at H `hidden`, batch `batch` (None:
/// nothing to say, e.g. the CPU).
type PlanFn<'a> = &'a dyn Fn(usize, usize, usize) -> Option<String>;

fn cuda_plan(b: &memrnn_cuda::CudaBackend) -> impl Fn(usize, usize, usize) -> Option<String> + '_ {
    move |e, hidden, batch| {
        let cell = memrnn_core::CellDims::new(CellKind::Gru, 1, hidden).ok()?;
        Some(match b.ensemble_plan(&cell, batch, e) {
            Ok(p) => p.to_string(),
            Err(err) => format!("no plan: {err}"),
        })
    }
}

fn bench<B: Backend>(
    b: &B,
    plan: PlanFn<'_>,
    set: &DigitSet,
    sizes: &[usize],
    shape_name: &str,
    steps: u64,
    reps: usize,
) {
    let (hidden, batch) = shape(shape_name);
    println!("backend: {}", b.name());
    if steps == 0 {
        println!("recurrence launches at GRU H {hidden}, batch {batch}:");
        for &e in sizes {
            let p = plan(e, hidden, batch).unwrap_or_else(|| "-".into());
            println!("E {e}: {p}");
        }
        return;
    }
    println!(
        "shape {shape_name}: GRU H {hidden}, batch {batch}, T 20, I {}; {steps} steps per repetition, median of {reps}",
        set.input_size()
    );
    println!(
        "| E | ms per ensemble step | networks·steps/s | scaling: rate / (E × the first size's rate per network); 1 = linear | recurrence launches |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let mut one = None;
    let mut last = 0.0;
    for &e in sizes {
        let cfgs: Vec<TrainConfig> = (0..e)
            .map(|i| TrainConfig {
                cell: CellKind::Gru,
                hidden,
                batch,
                steps: 1_000_000,
                seed: 1 + i as u64,
                ..TrainConfig::default()
            })
            .collect();
        let mut ens = EnsembleTrainer::new(b, set, cfgs).unwrap_or_else(|err| {
            eprintln!("E = {e}: {err}");
            std::process::exit(1)
        });
        let mut times = vec![];
        for rep in 0..=reps {
            let clock = Instant::now();
            let outcomes = ens.train_steps(steps).unwrap_or_else(|err| {
                eprintln!("E = {e}: {err}");
                std::process::exit(1)
            });
            let secs = clock.elapsed().as_secs_f64();
            if let Some((i, Err(err))) = outcomes.iter().enumerate().find(|(_, r)| r.is_err()) {
                eprintln!("E = {e}: member {i} stopped: {err}");
                std::process::exit(1);
            }
            if rep > 0 {
                times.push(secs);
            }
        }
        let secs = median(times);
        let rate = (e as u64 * steps) as f64 / secs;
        // One network's throughput at the first size (E = 1 in the default list).
        let base = *one.get_or_insert(rate / e as f64);
        println!(
            "| {e} | {:.2} | {rate:.1} | {:.2} | {} |",
            secs * 1e3 / steps as f64,
            rate / (base * e as f64),
            plan(e, hidden, batch).unwrap_or_else(|| "-".into())
        );
        last = rate;
    }
    if last > 0.0 {
        println!(
            "projected training of the paper's 40-network study (140,000 steps each) at {:.1} networks·steps/s: {:.1} min",
            last,
            40.0 * 140_000.0 / last / 60.0
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps").unwrap_or(5);
    let plan_only = args.iter().any(|a| a == "--plan-only");
    let steps: u64 = if plan_only {
        0
    } else {
        arg(&args, "--steps").unwrap_or(20)
    };
    let shape_name: String = arg(&args, "--shape").unwrap_or_else(|| "paper".into());
    let backend: String = arg(&args, "--backend").unwrap_or_else(|| "cpu".into());
    let sizes: Vec<usize> = arg::<String>(&args, "--ensembles")
        .unwrap_or_else(|| "1,8,32,64".into())
        .split(',')
        .map(|s| match s.trim().parse() {
            Ok(e) if e >= 1 => e,
            _ => {
                eprintln!("--ensembles {s}: give sizes ≥ 1, e.g. 1,8,32,64");
                std::process::exit(2)
            }
        })
        .collect();
    if reps == 0 || (steps == 0 && !plan_only) {
        eprintln!("--reps and --steps must be at least 1");
        std::process::exit(2);
    }
    let set = DigitSet::new(load_bundled().expect("bundled digits")).expect("digits");
    match backend.as_str() {
        "cpu" => {
            let mut b = memrnn_cpu::CpuBackend::new();
            if let Some(n) = arg::<usize>(&args, "--threads") {
                b = b.with_threads(n).expect("threads");
            }
            bench(&b, &|_, _, _| None, &set, &sizes, &shape_name, steps, reps)
        }
        "cuda" => {
            let b = memrnn_cuda::CudaBackend::new(0).expect("a CUDA device");
            bench(&b, &cuda_plan(&b), &set, &sizes, &shape_name, steps, reps);
        }
        #[cfg(feature = "sim")]
        "cuda-sim" => {
            let props = match arg::<String>(&args, "--sim-props").as_deref() {
                None | Some("small") => memrnn_cuda::SimProps::small(),
                Some("h100") => memrnn_cuda::SimProps::h100_like(),
                Some(other) => {
                    eprintln!("--sim-props {other}: use small or h100");
                    std::process::exit(2)
                }
            };
            let b = memrnn_cuda::CudaBackend::simulated(props).expect("the simulated device");
            bench(&b, &cuda_plan(&b), &set, &sizes, &shape_name, steps, reps);
        }
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
