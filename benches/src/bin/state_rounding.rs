//! Does storing the carried hidden state in bf16 / f16 destroy the memory? For each
//! checkpoint, accuracy against delay (the checkpoint's own task, the trials of
//! `memrnn eval --eval-seed`) under the storage modes of `StorageMode::standard`, side by
//! side on the same inputs: f32; `W_hh` in bf16 (memrnn's `--precision bf16`); `W_hh`
//! and the carried `h` rounded to bf16 after every step (LSTM: and a variant rounding
//! `c` too); the same in f16. With each mode, over the delay period (the steps after
//! the image, up to the longest delay): the fraction of (row, step) pairs where the
//! carried state did not change at all (`frozen s`; `frozen h` for `h` alone, `frozen
//! el` per element) and the median `‖s_{t+1} − s_t‖_∞`. See
//! `memrnn_train::state_rounding`. Not a timing: an experiment.
//!
//! `cargo run --release -p memrnn-benches --bin state_rounding -- --checkpoint A.safetensors
//!  [--checkpoint B.safetensors …] [--delays 19,100,200,500,1000] [--trials 1000]
//!  [--batch 500] [--eval-seed 59297] [--threads N] [--mnist-dir DIR] [--out DIR]
//!  [--noise-std S]`
//!
//! `--noise-std` replaces the task's noise std (`0`: a constant input during the delay,
//! the setting of the slow-point analysis, where a rounded state can settle exactly);
//! without it, the checkpoint's own task.
//!
//! Prints a table per checkpoint; with `--out`, writes `<stem>.state_rounding.json` (every
//! mode's full result) there (`<stem>.noise<S>.state_rounding.json` with `--noise-std`). The data: `--mnist-dir`, else `./data` when it holds MNIST,
//! else the bundled digits (as `memrnn`). The f32 and `w:… h:f32` rows equal
//! `memrnn eval --checkpoint A --delays … --trials … --eval-batch …` (with
//! `--precision bf16` / `f16`) exactly (tested in memrnn-train/tests/state_rounding.rs).

use memrnn_core::checkpoint::load_checkpoint;
use memrnn_core::Precision;
use memrnn_cpu::CpuBackend;
use memrnn_train::eval::EvalConfig;
use memrnn_train::idx::{load_bundled, load_mnist_dir, IMAGE_FILES};
use memrnn_train::state_rounding::{evaluate_storage, storage_table, StorageMode};
use memrnn_train::task::{DigitSet, TaskConfig};
use memrnn_train::train::train_config_from_metadata;
use std::path::{Path, PathBuf};

fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("state_rounding: {what}");
    std::process::exit(1)
}

fn value<'a>(args: &'a [String], i: usize, name: &str) -> &'a str {
    args.get(i + 1)
        .map(String::as_str)
        .unwrap_or_else(|| fail(format!("{name} needs a value")))
}

fn parse<T: std::str::FromStr>(v: &str, name: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| fail(format!("{name} {v}: not a valid value")))
}

struct Args {
    checkpoints: Vec<PathBuf>,
    delays: Vec<usize>,
    trials: usize,
    batch: usize,
    seed: u64,
    threads: Option<usize>,
    mnist_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    /// Replaces the task's delay-period noise std (0: a constant input, the slow-point
    /// analysis's setting, where a rounded state can settle exactly).
    noise_std: Option<f32>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        checkpoints: vec![],
        delays: vec![19, 100, 200, 500, 1000],
        trials: 1000,
        batch: 500,
        seed: EvalConfig::default().seed,
        threads: None,
        mnist_dir: None,
        out: None,
        noise_std: None,
    };
    let mut i = 0;
    while i < argv.len() {
        let name = argv[i].as_str();
        let v = value(&argv, i, name);
        match name {
            "--checkpoint" => a.checkpoints.push(PathBuf::from(v)),
            "--delays" => a.delays = v.split(',').map(|d| parse(d.trim(), name)).collect(),
            "--trials" => a.trials = parse(v, name),
            "--batch" => a.batch = parse(v, name),
            "--eval-seed" => a.seed = parse(v, name),
            "--threads" => a.threads = Some(parse(v, name)),
            "--mnist-dir" => a.mnist_dir = Some(PathBuf::from(v)),
            "--out" => a.out = Some(PathBuf::from(v)),
            "--noise-std" => {
                let n: f32 = parse(v, name);
                if !(n.is_finite() && n >= 0.0) {
                    fail(format!("--noise-std {v}: give a finite value ≥ 0"));
                }
                a.noise_std = Some(n)
            }
            _ => fail(format!(
                "unknown argument {name}: expected --checkpoint, --delays, --trials, --batch, \
                 --eval-seed, --threads, --mnist-dir, --out or --noise-std"
            )),
        }
        i += 2;
    }
    if a.checkpoints.is_empty() {
        fail("give at least one --checkpoint PATH.safetensors");
    }
    a
}

fn load_set(dir: Option<&Path>) -> DigitSet {
    let local = PathBuf::from("data");
    let (m, from) = match dir {
        Some(d) => (load_mnist_dir(d), d.display().to_string()),
        None if local.join(IMAGE_FILES[0]).is_file() => {
            (load_mnist_dir(&local), local.display().to_string())
        }
        None => (load_bundled(), "the bundled digits".to_string()),
    };
    let m = m.unwrap_or_else(|e| fail(format!("{from}: {e}")));
    eprintln!("state_rounding: {} digits from {from}", m.len());
    DigitSet::new(m).unwrap_or_else(|e| fail(e))
}

fn main() {
    let a = args();
    let set = load_set(a.mnist_dir.as_deref());
    let backends: Vec<CpuBackend> = Precision::ALL
        .iter()
        .map(|&p| {
            let b = CpuBackend::new().with_precision(p);
            match a.threads {
                Some(n) => b.with_threads(n).unwrap_or_else(|e| fail(e)),
                None => b,
            }
        })
        .collect();
    let refs: Vec<&CpuBackend> = backends.iter().collect();
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).unwrap_or_else(|e| fail(format!("{}: {e}", out.display())));
    }
    for path in &a.checkpoints {
        let ck = load_checkpoint(path).unwrap_or_else(|e| fail(e));
        let mut task = match train_config_from_metadata(&ck.metadata) {
            Ok(Some(c)) => c.task,
            Ok(None) => {
                eprintln!(
                    "state_rounding: {} carries no training configuration: the paper's task",
                    path.display()
                );
                TaskConfig::default()
            }
            Err(e) => fail(format!("{}: {e}", path.display())),
        };
        if let Some(n) = a.noise_std {
            task.noise_std = n;
        }
        let cfg = EvalConfig {
            delays: a.delays.clone(),
            trials: a.trials,
            batch: a.batch,
            // As `memrnn eval`'s defaults (the chunk only bounds evaluate's memory; every
            // mode here steps one step per call).
            chunk: 50,
            read_span: task.t_max.saturating_sub(task.delta_min).max(1),
            seed: a.seed,
        };
        let modes = StorageMode::standard(ck.model.cell.kind);
        let results = evaluate_storage(&refs, &ck.model, &set, &task, &cfg, &modes, None)
            .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
        println!(
            "{} ({:?}, H {}): {} trials, eval seed {}, T_max {}, Δ_min {}, noise {} ± {}",
            path.display(),
            ck.model.cell.kind,
            ck.model.cell.hidden,
            results[0].eval.trials,
            a.seed,
            task.t_max,
            task.delta_min,
            task.noise_mean,
            task.noise_std
        );
        println!("{}", storage_table(&results));
        if let Some(out) = &a.out {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
            let tag = a
                .noise_std
                .map(|n| format!(".noise{n}"))
                .unwrap_or_default();
            let json = out.join(format!("{stem}{tag}.state_rounding.json"));
            let text = serde_json::to_string_pretty(&results).unwrap_or_else(|e| fail(e));
            std::fs::write(&json, text)
                .unwrap_or_else(|e| fail(format!("{}: {e}", json.display())));
        }
    }
}
