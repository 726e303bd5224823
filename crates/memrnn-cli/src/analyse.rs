//! `memrnn slow-points` and `memrnn diagnose`: analyses of a trained checkpoint on the
//! delayed-classification task.

use crate::{load_data, DataArgs};
use anyhow::{Context, Result};
use clap::Args;
use memrnn_core::backend::SlowPointConfig;
use memrnn_core::checkpoint::load_checkpoint;
use memrnn_core::{Backend, Model, SeqShape};
use memrnn_diagnostics::{diagnose, DiagnoseConfig, DiagnoseInputs};
use memrnn_slowpoints::{format_table, write_safetensors, write_summary_json, FinderConfig};
use memrnn_train::slow::find_task_slow_points;
use memrnn_train::task::{DigitSet, TaskConfig};
use memrnn_train::vset;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SlowPointArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A checkpoint written by `memrnn train` / `memrnn run` (or a PyTorch state dict).
    /// `--model` is accepted as an older name.
    #[arg(long, visible_alias = "model")]
    checkpoint: PathBuf,
    /// Output folder for slow_points.safetensors and slow_points.json.
    #[arg(long, default_value = "slow-points")]
    out: PathBuf,
    /// Candidates from delay trajectories (besides the 10 per-class mean states).
    #[arg(long, default_value_t = 246)]
    candidates: usize,
    /// Trajectory candidates are taken up to this many steps after the image.
    #[arg(long, default_value_t = 20)]
    delay: usize,
    /// Search method: lm (Levenberg–Marquardt, at most --lm-max-iters steps; ends at fixed points
    /// and at minima of S) or adam.
    #[arg(long, default_value = "lm")]
    method: memrnn_slowpoints::SearchMethod,
    /// How --method lm solves its damped Gauss–Newton steps: dense (Jacobian and
    /// Cholesky per candidate), krylov (matrix-free CG from Jacobian–vector products), or
    /// auto (by size: krylov for GRU from H = 85, tanh RNN from H = 29, LSTM from H = 15).
    #[arg(long, default_value = "auto")]
    lm_solver: memrnn_core::LmSolver,
    /// Most LM trial steps per candidate (with --method lm).
    #[arg(long, default_value_t = memrnn_core::LmConfig::default().max_iters)]
    lm_max_iters: u32,
    /// Most Adam iterations per candidate (with --method adam).
    #[arg(long, default_value_t = 10_000)]
    max_iters: u32,
    /// Adam learning rate of the search.
    #[arg(long, default_value_t = 1e-2, allow_negative_numbers = true)]
    lr: f32,
    /// Points with S above this are dropped as not slow.
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    max_speed_sq: f32,
    /// Points closer than this are merged (the slowest kept).
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    dedup_tol: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A checkpoint written by `memrnn train` / `memrnn run` (or a PyTorch state dict).
    /// `--model` is accepted as an older name.
    #[arg(long, visible_alias = "model")]
    checkpoint: PathBuf,
    /// Output folder for report.json and the SVG plots.
    #[arg(long, default_value = "diagnostics")]
    out: PathBuf,
    /// Trials (digit at t = 0, then noise).
    #[arg(long, default_value_t = 400)]
    trials: usize,
    /// Steps per trial.
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// A JSON file with a DiagnoseConfig (which diagnostics, and their settings).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The memory curve beyond the window: a linear probe reads the digit from the
    /// state at log-spaced lags 1, 2, 4, … up to this many steps after it (1,000
    /// trials; written to long_memory.json). 0 skips it.
    #[arg(long, default_value_t = 1000)]
    long_lags: usize,
}

/// A checkpoint that fits the task on `set` (input size, an 11-class readout when it has
/// one), with the task it was trained on.
fn load_model(path: &Path, set: &DigitSet) -> Result<(Model, TaskConfig)> {
    let ck = load_checkpoint(path).with_context(|| format!("loading {}", path.display()))?;
    memrnn_train::train::check_task_model(&ck.model, set, false)
        .with_context(|| format!("{}", path.display()))?;
    let task = checkpoint_task(path, &ck.metadata)?;
    Ok((ck.model, task))
}

/// The task a checkpoint was trained on (its stored training configuration), or the
/// paper's task, said so, for a file without one (a PyTorch state dict). A stored
/// configuration that does not parse is an error, not a silent default.
pub(crate) fn checkpoint_task(
    path: &Path,
    meta: &std::collections::BTreeMap<String, String>,
) -> Result<TaskConfig> {
    match memrnn_train::train::train_config_from_metadata(meta) {
        Ok(Some(c)) => Ok(c.task),
        Ok(None) => {
            let t = TaskConfig::default();
            eprintln!(
                "memrnn: {} carries no training configuration (not written by `memrnn train`): \
                 using the paper's task (T_max {}, Δ_min {})",
                path.display(),
                t.t_max,
                t.delta_min
            );
            Ok(t)
        }
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
}

fn spinner(progress: bool, what: &str) -> indicatif::ProgressBar {
    if !progress {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

pub fn cmd_slow_points<B: Backend>(b: &B, a: SlowPointArgs, progress: bool) -> Result<()> {
    let set = load_data(&a.data)?;
    let (model, task) = load_model(&a.checkpoint, &set)?;
    let cfg = FinderConfig {
        method: a.method,
        lm: memrnn_core::LmConfig {
            solver: a.lm_solver,
            max_iters: a.lm_max_iters,
            ..Default::default()
        },
        search: SlowPointConfig {
            max_iters: a.max_iters,
            adam: memrnn_core::AdamConfig {
                lr: a.lr,
                ..Default::default()
            },
            ..Default::default()
        },
        max_speed_sq: a.max_speed_sq,
        dedup_tol: a.dedup_tol,
        ..Default::default()
    };
    let opts = memrnn_train::options::SlowPointOptions {
        candidates: a.candidates,
        delay: a.delay,
        mean_trials: 1000,
        finder: cfg,
        seed: a.seed,
    };
    opts.validate_for(&model.cell, set.image_count())?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let pb = spinner(
        progress,
        &format!(
            "slow-point search ({}{}): {} candidates, up to {} iterations each",
            a.method,
            match a.method {
                memrnn_slowpoints::SearchMethod::Lm =>
                    format!(", {} solver", a.lm_solver.resolve(&model.cell).name()),
                memrnn_slowpoints::SearchMethod::Adam => String::new(),
            },
            10 + a.candidates,
            match a.method {
                memrnn_slowpoints::SearchMethod::Adam => a.max_iters,
                memrnn_slowpoints::SearchMethod::Lm => cfg.lm.max_iters,
            }
        ),
    );
    let means = vset::class_mean_states(b, &model, &set, &task, 1000, a.delay, a.seed ^ 0x7E57)?;
    let report = find_task_slow_points(
        b,
        &model,
        &set,
        &task,
        &means,
        a.candidates,
        a.delay,
        a.seed,
        &cfg,
    )?;
    pb.finish_and_clear();
    write_safetensors(&report, &a.out.join("slow_points.safetensors"))?;
    write_summary_json(&report, &a.out.join("slow_points.json"))?;
    println!("{}", format_table(&report));
    println!("wrote {}/slow_points.{{safetensors,json}}", a.out.display());
    Ok(())
}

pub fn cmd_diagnose<B: Backend>(b: &B, a: DiagnoseArgs, progress: bool) -> Result<()> {
    let set = load_data(&a.data)?;
    let (model, task) = load_model(&a.checkpoint, &set)?;
    let cfg: DiagnoseConfig = match &a.config {
        None => DiagnoseConfig::default(),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            memrnn_train::options::DiagnoseOptions::config_from_json(&text)
                .with_context(|| format!("--config {}", p.display()))?
        }
    };
    let opts = memrnn_train::options::DiagnoseOptions {
        trials: a.trials,
        steps: a.steps,
        config: cfg.clone(),
        seed: a.seed,
    };
    opts.validate_for(&model.cell)?;
    for n in opts.notes() {
        eprintln!("memrnn: note: {n}");
    }
    let (x, digits) = vset::delay_sequences(&set, &task, a.trials, a.steps, a.seed)?;
    let shape = SeqShape::new(a.steps, a.trials)?;
    // The class shown at each step: the digit at t = 0, nothing after it.
    let mut labels = vec![None; shape.rows()];
    for (b_idx, &d) in digits.iter().enumerate() {
        labels[b_idx] = Some(d as usize);
    }
    let inputs = DiagnoseInputs {
        x,
        shape,
        s0: None,
        labels: Some(labels),
        classes: 10,
        constant_input: Some(memrnn_train::slow::constant_input(&task, model.cell.input)),
    };
    let pb = spinner(
        progress,
        "diagnostics: Lipschitz, Lyapunov, attractors, memory curve",
    );
    let report = diagnose(b, &model, &inputs, &cfg)?;
    pb.finish_and_clear();
    let mut files = report.write_all(&a.out)?;
    println!("{}", report.summary_table());
    if a.long_lags > 0 {
        let pb = spinner(progress, "memory curve at long lags");
        let long = memrnn_train::memprobe::long_memory(
            b,
            &model,
            &set,
            &task,
            1000,
            a.long_lags,
            a.seed ^ 0x3E3,
        )?;
        pb.finish_and_clear();
        println!("{}", long.summary());
        let path = a.out.join("long_memory.json");
        std::fs::write(&path, serde_json::to_string_pretty(&long)?)
            .with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// One line of `memrnn train --track-every`: at training step `step`, the per-class slow
/// points' speeds `S` (Adam from the class means, at most 2,000 iterations) and light
/// diagnostics on 64 delay trials of 30 steps (Lipschitz constant, largest Lyapunov
/// exponent, memory-curve area), as JSON.
pub fn track_line<B: Backend>(
    b: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    step: u64,
) -> Result<serde_json::Value> {
    let means = vset::class_mean_states(b, model, set, task, 300, 20, 0x7E57)?;
    let cfg = SlowPointConfig {
        max_iters: 2000,
        ..Default::default()
    };
    let slow = memrnn_train::slow::class_slow_points(b, model, task, &means, &cfg)?;
    let (trials, steps) = (64, 30);
    let (x, digits) = vset::delay_sequences(set, task, trials, steps, 0x7AC)?;
    let shape = SeqShape::new(steps, trials)?;
    let mut labels = vec![None; shape.rows()];
    for (i, &d) in digits.iter().enumerate() {
        labels[i] = Some(d as usize);
    }
    let inputs = DiagnoseInputs {
        x,
        shape,
        s0: None,
        labels: Some(labels),
        classes: 10,
        constant_input: None,
    };
    let dcfg = DiagnoseConfig {
        attractors: None,
        lyapunov: Some(memrnn_diagnostics::LyapunovConfig {
            transient: 5,
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = diagnose(b, model, &inputs, &dcfg)?;
    Ok(serde_json::json!({
        "step": step,
        "slow_point_speed_sq": slow.speed_sq,
        "slow_point_median": slow.median_speed_sq(),
        "lipschitz": d.lipschitz.as_ref().map(|l| l.lipschitz),
        "lyapunov": d.lyapunov.as_ref().and_then(|l| l.exponents.first().copied()),
        "memory_area": d.memory.as_ref().map(|m| m.area),
    }))
}
