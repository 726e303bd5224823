//! The study: the ICML paper's central figure. Train an ensemble (cells × curricula ×
//! seeds), find each network's per-class slow points, measure its report accuracy far
//! beyond the training delay, and report how slow-point speed predicts extrapolation:
//! Spearman's rank correlation with a seeded bootstrap 95% interval, per cell and pooled,
//! at each long delay, and a scatter plot of speed against long-delay accuracy. The
//! paper's claim is a strong negative correlation (slower slow points, longer memory).
//!
//! Output folder (each network's result one file, so a study resumes, shards and merges;
//! see [`crate::jobs`]):
//!
//! ```text
//! out/
//!   plan.json                          the settings and the shard
//!   nets/<cell>-<curriculum>-s<seed>.json         one network's row
//!   nets/<cell>-<curriculum>-s<seed>.safetensors  its checkpoint
//!   study.json, study.txt              every row and the correlations
//!   study.svg, study_d<delay>.svg      scatter plots (study.svg: the longest delay)
//! ```

use crate::ensemble::EnsembleTrainer;
use crate::error::{config_err, Result, TrainError};
use crate::eval::{evaluate_ensemble, EvalConfig};
use crate::jobs::{self, Shard};
use crate::slow::class_slow_points_ensemble;
use crate::stats::{spearman_bootstrap, RhoCi};
use crate::task::{Curriculum, DigitSet};
use crate::train::{RunOutput, TrainConfig};
use crate::vset;
use memrnn_core::{Backend, CellKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::stats::spearman;

/// Bootstrap resamples per interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

#[derive(Clone, Debug)]
pub struct StudyConfig {
    pub cells: Vec<CellKind>,
    pub curricula: Vec<Curriculum>,
    pub seeds: Vec<u64>,
    /// The template every network is trained with (cell, curriculum and seed replaced).
    pub train: TrainConfig,
    /// Accuracy is reported at the training delay and at each of these.
    pub long_delays: Vec<usize>,
    pub eval_trials: usize,
    pub out_dir: PathBuf,
    pub shard: Shard,
    /// Stop after this many networks (run again to continue).
    pub max_networks: Option<usize>,
    /// Networks of one cell trained together as one ensemble, at most
    /// ([`crate::EnsembleTrainer`]); `None`: a worker's whole share of a cell at once;
    /// `Some(1)`: one after another. The results do not depend on it.
    pub ensemble: Option<usize>,
    pub progress: bool,
}

/// One network of the ensemble.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StudyRow {
    pub cell: CellKind,
    pub curriculum: Curriculum,
    pub seed: u64,
    /// Median over the ten classes of `S` at the class slow points.
    pub slow_point_speed_sq: f64,
    /// Report accuracy at the longest training delay (`T_max − 1`).
    pub acc_train_delay: f64,
    /// Report accuracy at each of the long delays (their order).
    pub acc_long: Vec<f64>,
    /// The memory diagnostics on delay-period trajectories (64 trials × 30 steps, the
    /// digit at step 0): the largest local Lipschitz constant L̂ of the state map along
    /// them, and the largest Lyapunov exponent (after a 5-step transient).
    pub lipschitz: Option<f64>,
    pub lyapunov_max: Option<f64>,
    /// A linear probe's accuracy reading the digit from the hidden state at log-spaced
    /// lags up to the longest long delay, and the memory span it gives.
    pub memory: crate::memprobe::LongMemory,
}

/// The indicators whose rank correlation with accuracy the study reports.
pub const INDICATORS: [&str; 4] = ["slow-point speed", "lipschitz", "lyapunov", "memory span"];

impl StudyRow {
    /// The value of indicator `i` of [`INDICATORS`] (NaN where it was not measured).
    pub fn indicator(&self, i: usize) -> f64 {
        match i {
            0 => self.slow_point_speed_sq,
            1 => self.lipschitz.unwrap_or(f64::NAN),
            2 => self.lyapunov_max.unwrap_or(f64::NAN),
            _ => self.memory.span as f64,
        }
    }
}

/// ρ(indicator, accuracy at `delay`) over the networks of `scope`.
#[derive(Clone, Debug, Serialize)]
pub struct Correlation {
    /// One of [`INDICATORS`].
    pub indicator: String,
    /// "pooled" or a cell's name.
    pub scope: String,
    pub delay: usize,
    pub spearman: RhoCi,
}

#[derive(Clone, Debug, Serialize)]
pub struct StudyReport {
    pub settings: serde_json::Value,
    pub rows: Vec<StudyRow>,
    pub long_delays: Vec<usize>,
    pub correlations: Vec<Correlation>,
    /// The scatter plot at the longest delay (not in the JSON: it names this folder).
    #[serde(skip)]
    pub svg: PathBuf,
}

fn rho_text(r: &RhoCi) -> String {
    match (r.rho, r.ci95) {
        (Some(rho), Some((lo, hi))) => format!("{rho:+.3} [{lo:+.3}, {hi:+.3}]"),
        (Some(rho), None) => format!("{rho:+.3} [no interval]"),
        _ => "undefined (constant)".into(),
    }
}

impl StudyReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<6} {:<10} {:>5} {:>16} {:>8} {:>8} {:>8} {:>10}",
            "cell", "curriculum", "seed", "S slow pts (med)", "L̂", "λ_max", "mem span", "acc@train"
        );
        for d in &self.long_delays {
            s += &format!(" {:>10}", format!("acc@{d}"));
        }
        s.push('\n');
        for r in &self.rows {
            s += &format!(
                "{:<6} {:<10} {:>5} {:>16.3e} {:>8} {:>8} {:>8} {:>10.3}",
                r.cell.name(),
                format!("{:?}", r.curriculum).to_lowercase(),
                r.seed,
                r.slow_point_speed_sq,
                r.lipschitz.map_or("-".into(), |v| format!("{v:.3}")),
                r.lyapunov_max.map_or("-".into(), |v| format!("{v:+.3}")),
                format!(
                    "{}{}",
                    if r.memory.past_window { "≥" } else { "" },
                    r.memory.span
                ),
                r.acc_train_delay,
            );
            for a in &r.acc_long {
                s += &format!(" {:>10.3}", a);
            }
            s.push('\n');
        }
        s += &format!(
            "\nSpearman ρ(indicator, accuracy at the delay) with a bootstrap 95% interval ({BOOTSTRAP_RESAMPLES} resamples):\n{:<17} {:<8} {:>6} {:>5} {:>26}\n",
            "indicator", "scope", "delay", "n", "ρ [95% CI]"
        );
        for c in &self.correlations {
            s += &format!(
                "{:<17} {:<8} {:>6} {:>5} {:>26}\n",
                c.indicator,
                c.scope,
                c.delay,
                c.spearman.n,
                rho_text(&c.spearman)
            );
        }
        s
    }
}

fn net_name(cell: CellKind, curriculum: Curriculum, seed: u64) -> String {
    format!(
        "{}-{}-s{seed}",
        cell.name(),
        format!("{curriculum:?}").to_lowercase()
    )
}

impl StudyConfig {
    pub fn validate(&self) -> Result<()> {
        if self.cells.is_empty() || self.curricula.is_empty() || self.seeds.is_empty() {
            return config_err("a study needs at least one cell, one curriculum and one seed");
        }
        fn dup<T: PartialEq + std::fmt::Debug>(what: &str, v: &[T]) -> Result<()> {
            if let Some((_, x)) = v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)) {
                let x = format!("{x:?}").to_lowercase();
                return config_err(format!(
                    "{what} {x} is listed twice: the study would train the same network twice \
                     and count it as two"
                ));
            }
            Ok(())
        }
        dup("cell", &self.cells)?;
        dup("curriculum", &self.curricula)?;
        dup("seed", &self.seeds)?;
        dup("long delay", &self.long_delays)?;
        self.train.validate()?;
        if self.eval_trials == 0 || self.eval_trials > crate::limits::MAX_TRIALS {
            return config_err(format!(
                "{} evaluation trials: give 1 to {}",
                self.eval_trials,
                crate::limits::MAX_TRIALS
            ));
        }
        if self.long_delays.is_empty() {
            return config_err("no long delay: give at least one (--long-delays 200,1000)");
        }
        for &d in &self.long_delays {
            if d > crate::eval::MAX_DELAY {
                return config_err(format!(
                    "long delay {d}: at most {}",
                    crate::eval::MAX_DELAY
                ));
            }
            if d < self.train.task.t_max {
                return config_err(format!(
                    "the long delay ({d}) must be beyond the training delays (T_max = {})",
                    self.train.task.t_max
                ));
            }
        }
        if self.max_networks == Some(0) {
            return config_err(
                "--max-networks 0 would run nothing: give at least 1, or leave it out",
            );
        }
        crate::jobs::check_ensemble_size(self.ensemble)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "study",
            "cells": self.cells,
            "curricula": self.curricula,
            "seeds": self.seeds,
            "train": self.train,
            "long_delays": self.long_delays,
            "eval_trials": self.eval_trials,
        })
    }

    /// Every network in the canonical order (cell, curriculum, seed).
    fn nets(&self) -> Vec<(CellKind, Curriculum, u64)> {
        let mut v = vec![];
        for &c in &self.cells {
            for &k in &self.curricula {
                for &s in &self.seeds {
                    v.push((c, k, s));
                }
            }
        }
        v
    }

    fn nets_dir(&self) -> PathBuf {
        self.out_dir.join("nets")
    }

    fn eval(&self) -> EvalConfig {
        let mut delays = vec![self.train.task.t_max - 1];
        delays.extend(&self.long_delays);
        EvalConfig {
            delays,
            trials: self.eval_trials,
            ..EvalConfig::default()
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum StudyOutcome {
    Finished(Box<StudyReport>),
    /// A shard's networks are done (merge for the report), or `--max-networks` stopped it.
    Partial {
        done: usize,
        total: usize,
    },
}

/// Trains, analyses and evaluates every network of the ensemble (this shard's share),
/// one worker per backend.
pub fn run_study<B: Backend>(
    backends: &[B],
    set: &DigitSet,
    cfg: &StudyConfig,
) -> Result<StudyOutcome> {
    cfg.validate()?;
    std::fs::create_dir_all(cfg.nets_dir()).map_err(|e| TrainError::io(cfg.nets_dir(), e))?;
    jobs::check_or_write_plan(&cfg.out_dir, &cfg.settings(), cfg.shard)?;
    let path = |(c, k, s): (CellKind, Curriculum, u64)| {
        cfg.nets_dir().join(format!("{}.json", net_name(c, k, s)))
    };
    let mine: Vec<_> = cfg
        .nets()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| cfg.shard.takes(*i))
        .map(|(_, n)| n)
        .collect();
    let mut todo = vec![];
    for &n in &mine {
        if jobs::read_json::<StudyRow>(&path(n))?.is_none() {
            todo.push(n);
        }
    }
    if let Some(m) = cfg.max_networks {
        todo.truncate(m);
    }
    let pb = jobs::job_progress(cfg.progress, todo.len() as u64 * cfg.train.steps, "study");
    let eval = cfg.eval();
    // Ensembles of one cell (one shape), split among the workers.
    let mut ensembles = vec![];
    for &cell in &cfg.cells {
        let of_cell: Vec<_> = todo.iter().copied().filter(|n| n.0 == cell).collect();
        ensembles.extend(jobs::ensemble_chunks(
            &of_cell,
            backends.len(),
            cfg.ensemble,
        ));
    }
    jobs::run_jobs(backends, &ensembles, |b, nets| {
        let trained = train_nets(b, set, cfg, nets)?;
        let rows = analyse_nets(b, set, cfg, &eval, nets, trained)?;
        let mut first_err = None;
        for (&(cell, curriculum, seed), row) in nets.iter().zip(rows) {
            let name = net_name(cell, curriculum, seed);
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    // One network failing stops only it: the others' results are kept.
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            jobs::write_atomic(&path((cell, curriculum, seed)), &jobs::to_json(&row)?)?;
            pb.inc(cfg.train.steps);
            if cfg.progress {
                pb.println(format!(
                    "study: {name}: S {:.3e}, accuracy {:.3} at the training delay, {:?} at {:?}",
                    row.slow_point_speed_sq, row.acc_train_delay, row.acc_long, cfg.long_delays
                ));
            }
        }
        first_err.map_or(Ok(()), Err)
    })?;
    pb.finish_and_clear();
    let mut done = 0;
    for &n in &mine {
        done += jobs::read_json::<StudyRow>(&path(n))?.is_some() as usize;
    }
    if cfg.shard.count > 1 || done < mine.len() {
        return Ok(StudyOutcome::Partial {
            done,
            total: mine.len(),
        });
    }
    Ok(StudyOutcome::Finished(Box::new(write_report(cfg)?)))
}

/// Trains the networks `nets` (all of one cell) as one ensemble, each writing its
/// checkpoint and metrics under `nets/`; each one's trained model, or what stopped it.
fn train_nets<B: Backend>(
    backend: &B,
    set: &DigitSet,
    cfg: &StudyConfig,
    nets: &[(CellKind, Curriculum, u64)],
) -> Result<Vec<Result<memrnn_core::Model>>> {
    let cfgs = nets
        .iter()
        .map(|&(cell, curriculum, seed)| {
            let mut tc = cfg.train.clone();
            tc.cell = cell;
            tc.curriculum = curriculum;
            tc.seed = seed;
            tc
        })
        .collect();
    let outs: Vec<RunOutput> = nets
        .iter()
        .map(|&(c, k, s)| RunOutput {
            dir: cfg.nets_dir(),
            name: net_name(c, k, s),
            progress: false,
        })
        .collect();
    EnsembleTrainer::new(backend, set, cfgs)?.run_models(&outs)
}

/// The trained networks' rows (each its class slow points, accuracy far beyond the
/// training delay, memory diagnostics and probe), or what stopped each: the slow-point
/// searches and the evaluation of the ensemble run together (each network's numbers
/// exactly what it gets analysed alone), the rest network by network. One network failing
/// stops only it.
fn analyse_nets<B: Backend>(
    backend: &B,
    set: &DigitSet,
    cfg: &StudyConfig,
    eval: &EvalConfig,
    nets: &[(CellKind, Curriculum, u64)],
    trained: Vec<Result<memrnn_core::Model>>,
) -> Result<Vec<Result<StudyRow>>> {
    let mut rows: Vec<Option<Result<StudyRow>>> = (0..nets.len()).map(|_| None).collect();
    // Each network's class means (its own trials): (network, model, means).
    let mut ready = vec![];
    for (i, (&(_, _, seed), model)) in nets.iter().zip(trained).enumerate() {
        let r = model.and_then(|m| {
            let task = &cfg.train.task;
            let means = vset::class_mean_states(backend, &m, set, task, 500, 20, seed ^ 0x7E57)?;
            Ok((m, means))
        });
        match r {
            Ok((m, means)) => ready.push((i, m, means)),
            Err(e) => rows[i] = Some(Err(e)),
        }
    }
    let models: Vec<&memrnn_core::Model> = ready.iter().map(|r| &r.1).collect();
    let means: Vec<&crate::SpeedSet> = ready.iter().map(|r| &r.2).collect();
    let slow = class_slow_points_ensemble(
        backend,
        &models,
        &cfg.train.task,
        &means,
        &memrnn_slowpoints::FinderConfig::default(),
    )?;
    // A network whose search failed is not evaluated (as analysed alone).
    let mut searched = vec![];
    for (j, s) in slow.into_iter().enumerate() {
        match s {
            Ok(s) => searched.push((j, s)),
            Err(e) => rows[ready[j].0] = Some(Err(e)),
        }
    }
    let to_eval: Vec<&memrnn_core::Model> = searched.iter().map(|(j, _)| &ready[*j].1).collect();
    let evals = evaluate_ensemble(backend, &to_eval, set, &cfg.train.task, eval, None)?;
    for ((j, slow), r) in searched.iter().zip(evals) {
        let (i, model, _) = &ready[*j];
        let (cell, curriculum, seed) = nets[*i];
        let net = (cell, curriculum, seed);
        rows[*i] = Some(r.and_then(|r| row_of(backend, set, cfg, net, model, slow, &r)));
    }
    Ok(rows
        .into_iter()
        .map(|r| r.unwrap_or_else(|| config_err("internal: a network was never analysed")))
        .collect())
}

/// A network's row from its slow points and evaluation: its memory diagnostics and probe
/// added.
fn row_of<B: Backend>(
    backend: &B,
    set: &DigitSet,
    cfg: &StudyConfig,
    (cell, curriculum, seed): (CellKind, Curriculum, u64),
    model: &memrnn_core::Model,
    slow: &crate::slow::ClassSlowPoints,
    r: &crate::EvalResult,
) -> Result<StudyRow> {
    let diag = diagnostics(backend, model, set, cfg, seed)?;
    let longest = cfg.long_delays.iter().copied().max().unwrap_or(1);
    let memory = crate::memprobe::long_memory(
        backend,
        model,
        set,
        &cfg.train.task,
        1000,
        longest,
        seed ^ 0x3E3,
    )?;
    Ok(StudyRow {
        memory,
        lipschitz: diag.lipschitz.as_ref().map(|l| l.lipschitz),
        lyapunov_max: diag
            .lyapunov
            .as_ref()
            .and_then(|l| l.exponents.first().copied()),
        cell,
        curriculum,
        seed,
        slow_point_speed_sq: slow.median_speed_sq(),
        acc_train_delay: r.at(cfg.train.task.t_max - 1),
        acc_long: cfg.long_delays.iter().map(|&d| r.at(d)).collect(),
    })
}

/// L̂ and the Lyapunov exponents on delay-period trajectories (as `memrnn train
/// --track-every` records them): 64 trials × 30 steps, the digit at step 0.
fn diagnostics<B: Backend>(
    backend: &B,
    model: &memrnn_core::Model,
    set: &DigitSet,
    cfg: &StudyConfig,
    seed: u64,
) -> Result<memrnn_diagnostics::DiagnosticsReport> {
    let (trials, steps) = (64, 30);
    let (x, _) = vset::delay_sequences(set, &cfg.train.task, trials, steps, seed ^ 0x7AC)?;
    let inputs = memrnn_diagnostics::DiagnoseInputs {
        x,
        shape: memrnn_core::SeqShape::new(steps, trials)?,
        s0: None,
        labels: None,
        classes: 10,
        constant_input: None,
    };
    let dcfg = memrnn_diagnostics::DiagnoseConfig {
        attractors: None,
        memory: None,
        lyapunov: Some(memrnn_diagnostics::LyapunovConfig {
            transient: 5,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(memrnn_diagnostics::diagnose(
        backend, model, &inputs, &dcfg,
    )?)
}

/// Reads every network's row and writes the report (JSON, table, scatter plots).
pub fn write_report(cfg: &StudyConfig) -> Result<StudyReport> {
    let mut rows = vec![];
    for (c, k, s) in cfg.nets() {
        let p = cfg.nets_dir().join(format!("{}.json", net_name(c, k, s)));
        rows.push(jobs::read_json::<StudyRow>(&p)?.ok_or_else(|| {
            TrainError::Config(format!(
                "{} is missing: the study is not finished (run it again to resume, or merge \
                 every shard)",
                p.display()
            ))
        })?);
    }
    let mut correlations = vec![];
    let mut scopes: Vec<Option<CellKind>> = vec![None];
    if cfg.cells.len() > 1 {
        scopes.extend(cfg.cells.iter().map(|&c| Some(c)));
    }
    for (si, scope) in scopes.iter().enumerate() {
        let sel: Vec<&StudyRow> = rows
            .iter()
            .filter(|r| scope.is_none_or(|c| r.cell == c))
            .collect();
        for (ii, name) in INDICATORS.iter().enumerate() {
            // Networks where the indicator was measured (a non-finite value is left out,
            // and the count `n` says so).
            let pairs: Vec<(f64, &StudyRow)> = sel
                .iter()
                .map(|r| (r.indicator(ii), *r))
                .filter(|(v, _)| v.is_finite())
                .collect();
            let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            for (di, &delay) in cfg.long_delays.iter().enumerate() {
                let accs: Vec<f64> = pairs.iter().map(|p| p.1.acc_long[di]).collect();
                // A fixed seed per (indicator, scope, delay): the same rows give the same
                // interval.
                let seed = 0xB007_5EED ^ ((ii as u64) << 40) ^ ((si as u64) << 32) ^ delay as u64;
                correlations.push(Correlation {
                    indicator: name.to_string(),
                    scope: scope.map_or("pooled".to_string(), |c| c.name().to_string()),
                    delay,
                    spearman: spearman_bootstrap(&xs, &accs, BOOTSTRAP_RESAMPLES, seed),
                });
            }
        }
    }
    let mut svg = PathBuf::new();
    let longest = cfg.long_delays.iter().copied().max().unwrap_or(0);
    for (di, &delay) in cfg.long_delays.iter().enumerate() {
        let rho = correlations
            .iter()
            .find(|c| c.indicator == INDICATORS[0] && c.scope == "pooled" && c.delay == delay)
            .map(|c| rho_text(&c.spearman))
            .unwrap_or_default();
        let p = cfg.out_dir.join(format!("study_d{delay}.svg"));
        plot_scatter(&p, &rows, di, delay, &rho)?;
        if delay == longest {
            svg = cfg.out_dir.join("study.svg");
            plot_scatter(&svg, &rows, di, delay, &rho)?;
        }
    }
    let report = StudyReport {
        settings: cfg.settings(),
        rows,
        long_delays: cfg.long_delays.clone(),
        correlations,
        svg,
    };
    jobs::write_atomic(&cfg.out_dir.join("study.json"), &jobs::to_json(&report)?)?;
    jobs::write_atomic(&cfg.out_dir.join("study.txt"), &report.table())?;
    Ok(report)
}

/// Combines shard folders into `out` and writes the report, exactly as an unsharded run
/// would (the result files are copied; the checkpoints stay in the shard folders).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<StudyReport> {
    let settings = jobs::check_shards(dirs)?;
    let bad = |what: &str| TrainError::Config(format!("plan.json: {what} missing or unreadable"));
    if settings.get("kind").and_then(|k| k.as_str()) != Some("study") {
        return config_err(
            "plan.json: not a study's folder (a sweep's? merge it with `memrnn sweep merge`)",
        );
    }
    let get =
        |k: &str| -> Result<serde_json::Value> { settings.get(k).cloned().ok_or_else(|| bad(k)) };
    let cfg = StudyConfig {
        cells: serde_json::from_value(get("cells")?).map_err(|_| bad("cells"))?,
        curricula: serde_json::from_value(get("curricula")?).map_err(|_| bad("curricula"))?,
        seeds: serde_json::from_value(get("seeds")?).map_err(|_| bad("seeds"))?,
        train: serde_json::from_value(get("train")?).map_err(|_| bad("train"))?,
        long_delays: serde_json::from_value(get("long_delays")?).map_err(|_| bad("long_delays"))?,
        eval_trials: serde_json::from_value(get("eval_trials")?).map_err(|_| bad("eval_trials"))?,
        out_dir: out.to_path_buf(),
        shard: Shard::default(),
        max_networks: None,
        ensemble: None,
        progress: false,
    };
    if jobs::normalise(&cfg.settings())? != settings {
        return config_err("the shards' settings could not be read back exactly: merge them with the same memrnn version that ran them");
    }
    jobs::check_or_write_plan(out, &settings, Shard::default())?;
    let src: Vec<PathBuf> = dirs.iter().map(|d| d.join("nets")).collect();
    for (c, k, s) in cfg.nets() {
        let name = format!("{}.json", net_name(c, k, s));
        if !jobs::merge_file(&src, &name, &cfg.nets_dir())? {
            return config_err(format!(
                "no shard holds nets/{name}: finish that shard (run it again) before merging"
            ));
        }
    }
    write_report(&cfg)
}

/// Slow-point speed (log scale) against accuracy at a long delay, one mark per network,
/// coloured by cell; the legend in a strip beside the plot.
fn plot_scatter(path: &Path, rows: &[StudyRow], di: usize, delay: usize, rho: &str) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: String| TrainError::io(path, std::io::Error::other(e));
    let pos: Vec<f64> = rows
        .iter()
        .map(|r| r.slow_point_speed_sq)
        .filter(|s| s.is_finite() && *s > 0.0)
        .collect();
    let lo = pos.iter().copied().fold(f64::INFINITY, f64::min).min(1e-8);
    let hi = pos.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let root = SVGBackend::new(path, (950, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (left, right) = root.split_horizontally(800);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!("slow-point speed vs memory: pooled ρ = {rho}"),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo / 2.0..hi * 2.0).log_scale(), 0f64..1.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("median S at the class slow points (log scale)")
        .y_desc(format!("report accuracy at delay {delay}"))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let mut legend_y = 60;
    for (kind, color) in [
        (CellKind::Rnn, GREEN),
        (CellKind::Gru, BLUE),
        (CellKind::Lstm, RED),
    ] {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| {
                r.cell == kind && r.slow_point_speed_sq > 0.0 && r.slow_point_speed_sq.is_finite()
            })
            .map(|r| (r.slow_point_speed_sq, r.acc_long[di]))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(|e| err(e.to_string()))?;
        right
            .draw(&Circle::new((15, legend_y), 5, color.filled()))
            .map_err(|e| err(e.to_string()))?;
        right
            .draw(&Text::new(
                kind.name(),
                (28, legend_y - 7),
                ("sans-serif", 14),
            ))
            .map_err(|e| err(e.to_string()))?;
        legend_y += 24;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ranks;

    #[test]
    fn spearman_known_answers() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Monotone but not linear: still ±1.
        assert!((spearman(&[1e-6, 1e-4, 1e-2, 1.0], &[0.9, 0.5, 0.3, 0.1]) + 1.0).abs() < 1e-12);
        // Ties averaged: x = [1, 2, 2, 3] ranks [1, 2.5, 2.5, 4].
        assert_eq!(ranks(&[1.0, 2.0, 2.0, 3.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert!(spearman(&[1.0, 1.0], &[2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0], &[2.0]).is_nan());
    }
}
