//! The λ sweep over seeds: the speed penalty's effect with its spread.
//!
//! For each seed: train the base network once; then fine-tune it at each λ of the list
//! (λ = 0 is the control; the same steps, batches and seed for every λ) with the penalty on
//! each regularisation target ([`Target`]); evaluate every network against delay and find
//! its per-class slow points. The report gives, per (target, λ), the mean accuracy at each
//! delay over seeds with its 95% t-interval, and the paired difference to the same seed's
//! control with its interval.
//!
//! Output folder (each network one result file, so a job resumes and shards merge; see
//! [`crate::jobs`]):
//!
//! ```text
//! out/
//!   plan.json                       the settings and the shard
//!   nets/s<seed>-<name>.json        one network's result (the report is built from these)
//!   nets/s<seed>-<name>.safetensors its checkpoint (+ .metrics.jsonl)
//!   timing.jsonl                    seconds per network (not part of the report)
//!   sweep.json, sweep.txt           the report (only once every network is done)
//!   delay_<target>.svg              accuracy vs delay, a band per λ
//!   longest_vs_lambda.svg           accuracy at the longest delay vs λ, with error bars
//! ```

use crate::ensemble::EnsembleTrainer;
use crate::error::{config_err, Result, TrainError};
use crate::eval::{evaluate_ensemble, EvalConfig};
use crate::jobs::{self, Shard};
use crate::objective::SpeedPenalty;
use crate::pipeline::{build_v, VSource};
use crate::slow::class_slow_points_ensemble;
use crate::stats::{mean_ci95, paired_diff, MeanCi};
use crate::task::{Curriculum, DigitSet};
use crate::train::{RunOutput, TrainConfig, Trainer};
use crate::vset;
use memrnn_core::{Backend, Model};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the speed penalty's points `V` come from during fine-tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The base network's per-class slow points, found once (the ICML paper's choice).
    SlowPoints,
    /// The base network's per-class mean delay states (the paper's "centre of mass").
    ClassMeans,
    /// States along the base network's delay trajectories.
    Trajectory,
    /// The per-class slow points re-found on the network being fine-tuned every `every`
    /// steps, so the penalty follows them as they move.
    Refound { every: u64 },
}

impl Target {
    pub fn name(&self) -> String {
        match self {
            Target::SlowPoints => "slow-points".into(),
            Target::ClassMeans => "class-means".into(),
            Target::Trajectory => "trajectory".into(),
            Target::Refound { every } => format!("refound-{every}"),
        }
    }

    /// The source of `V` (the initial one for [`Target::Refound`]) at training delay `delay`.
    pub fn v_source(&self, delay: usize) -> VSource {
        match self {
            Target::SlowPoints | Target::Refound { .. } => VSource::SlowPoints {
                trials: 1000,
                delay,
                copies: 10,
            },
            Target::ClassMeans => VSource::ClassMeans {
                trials: 1000,
                delay,
                copies: 10,
            },
            Target::Trajectory => VSource::Trajectory { n: 100, delay },
        }
    }
}

impl std::str::FromStr for Target {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Target> {
        let every = |n: &str| -> Result<Target> {
            match n.parse::<u64>() {
                Ok(every) if every >= 1 => Ok(Target::Refound { every }),
                _ => config_err(format!(
                    "target {s:?}: refound needs a number of steps ≥ 1 between searches, e.g. refound-100"
                )),
            }
        };
        match s {
            "slow-points" | "slowpoints" => Ok(Target::SlowPoints),
            "class-means" | "centre-of-mass" | "center-of-mass" => Ok(Target::ClassMeans),
            "trajectory" | "trajectories" => Ok(Target::Trajectory),
            _ => match s
                .strip_prefix("refound-")
                .or_else(|| s.strip_prefix("refound:"))
            {
                Some(n) => every(n),
                None => config_err(format!(
                    "unknown target {s:?}: expected slow-points, class-means, trajectory or \
                     refound-N (slow points re-found every N fine-tuning steps)"
                )),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The base networks' training (its seed is replaced by each of `seeds`).
    pub train: TrainConfig,
    pub seeds: Vec<u64>,
    /// Must hold 0 (the control).
    pub lambdas: Vec<f32>,
    pub targets: Vec<Target>,
    pub finetune_steps: u64,
    pub finetune_lr: f32,
    pub eval: EvalConfig,
    pub out_dir: PathBuf,
    pub shard: Shard,
    /// Stop after this many networks (a time-boxed job; run again to continue).
    pub max_networks: Option<usize>,
    /// Networks trained together as one ensemble, at most ([`crate::EnsembleTrainer`]):
    /// the base networks (one per seed), then the fine-tunes with a fixed penalty and the
    /// controls (refound targets, which re-find their points between segments, train one
    /// by one); `None`: a worker's whole share at once; `Some(1)`: one after another. The
    /// results do not depend on it.
    pub ensemble: Option<usize>,
    pub progress: bool,
}

/// One network's result: what the report is built from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NetResult {
    pub name: String,
    pub seed: u64,
    /// `None` for the base network and the control.
    pub target: Option<String>,
    /// `None` for the base network.
    pub lambda: Option<f32>,
    pub delays: Vec<usize>,
    pub accuracy: Vec<f64>,
    /// `S` at the network's own per-class slow points, digit order.
    pub slow_point_speed_sq: Vec<f32>,
    pub slow_point_median: f64,
}

/// A network of the design.
#[derive(Clone, Debug, PartialEq)]
struct Net {
    seed: u64,
    target: Option<Target>,
    lambda: Option<f32>,
}

impl Net {
    fn file_stem(&self) -> String {
        format!("s{}-{}", self.seed, self.label())
    }
    fn label(&self) -> String {
        match (self.target, self.lambda) {
            (_, None) => "base".into(),
            (None, Some(_)) => "control".into(),
            (Some(t), Some(l)) => format!("{}-l{l}", t.name()),
        }
    }
}

impl SweepConfig {
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.eval.validate()?;
        if self.seeds.is_empty() || self.targets.is_empty() {
            return config_err(
                "a sweep needs at least one seed (--seeds) and one target (--targets)",
            );
        }
        for l in &self.lambdas {
            crate::objective::check_lambda(*l)?;
        }
        if !self.lambdas.contains(&0.0) {
            return config_err(
                "the sweep reports each λ against the λ = 0 control: include 0 in --lambdas",
            );
        }
        if self.lambdas.len() < 2 {
            return config_err("--lambdas holds only the control 0: add a positive λ, e.g. 0,0.01");
        }
        dup("seed", &self.seeds)?;
        dup("λ", &self.lambdas)?;
        dup("target", &self.targets)?;
        if self.finetune_steps == 0 || self.finetune_steps > crate::limits::MAX_STEPS {
            return config_err(format!(
                "{} fine-tuning steps: give 1 to {}",
                self.finetune_steps,
                crate::limits::MAX_STEPS
            ));
        }
        for t in &self.targets {
            if let Target::Refound { every } = t {
                if *every >= self.finetune_steps {
                    return config_err(format!(
                        "refound-{every} re-finds the slow points every {every} steps, but \
                         fine-tuning is {} steps: it would never re-find them; give N below \
                         --finetune-steps",
                        self.finetune_steps
                    ));
                }
            }
        }
        if self.max_networks == Some(0) {
            return config_err(
                "--max-networks 0 would run nothing: give at least 1, or leave it out",
            );
        }
        jobs::check_ensemble_size(self.ensemble)?;
        TrainConfig {
            adam: memrnn_core::AdamConfig {
                lr: self.finetune_lr,
                ..self.train.adam
            },
            ..self.train.clone()
        }
        .validate()
    }

    /// What must match for a folder to be resumed or shards to be merged.
    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "sweep",
            "train": self.train,
            "seeds": self.seeds,
            "lambdas": self.lambdas,
            "targets": self.targets.iter().map(Target::name).collect::<Vec<_>>(),
            "finetune_steps": self.finetune_steps,
            "finetune_lr": self.finetune_lr,
            "eval": self.eval,
        })
    }

    /// Every network of the design, seed by seed: base, control, then target × λ > 0.
    fn nets(&self, seed: u64) -> Vec<Net> {
        let mut v = vec![
            Net {
                seed,
                target: None,
                lambda: None,
            },
            Net {
                seed,
                target: None,
                lambda: Some(0.0),
            },
        ];
        for &t in &self.targets {
            for &l in self.lambdas.iter().filter(|&&l| l > 0.0) {
                v.push(Net {
                    seed,
                    target: Some(t),
                    lambda: Some(l),
                });
            }
        }
        v
    }

    fn nets_dir(&self) -> PathBuf {
        self.out_dir.join("nets")
    }

    fn base_config(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            seed,
            ..self.train.clone()
        }
    }

    /// Fine-tuning: the pipeline's (seed + 1, fine-tuning rate, no curriculum).
    fn finetune_config(&self, seed: u64) -> TrainConfig {
        let mut c = self.base_config(seed);
        c.steps = self.finetune_steps;
        c.seed = seed.wrapping_add(1);
        c.adam.lr = self.finetune_lr;
        c.curriculum = Curriculum::None;
        c
    }
}

fn dup<T: PartialEq + std::fmt::Debug>(what: &str, v: &[T]) -> Result<()> {
    if let Some((_, x)) = v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)) {
        return config_err(format!(
            "{what} {x:?} is listed twice: the same networks would be trained twice and counted twice"
        ));
    }
    Ok(())
}

/// How a run ended.
#[derive(Debug)]
pub enum SweepOutcome {
    /// Every network is done: the report.
    Finished(Box<SweepReport>),
    /// This shard's networks are done (merge the shards for the report), or the run
    /// stopped at `--max-networks`.
    Partial { done: usize, total: usize },
}

/// Runs the sweep (this shard's share of it), one worker per backend.
pub fn run_sweep<B: Backend>(
    backends: &[B],
    set: &DigitSet,
    cfg: &SweepConfig,
) -> Result<SweepOutcome> {
    cfg.validate()?;
    let cell = memrnn_core::CellDims::new(cfg.train.cell, set.input_size(), cfg.train.hidden)?;
    cfg.train
        .validate_for(set.input_size(), set.image_count(), 0)?;
    cfg.eval.validate_for(&cell, set.image_count())?;
    std::fs::create_dir_all(cfg.nets_dir()).map_err(|e| TrainError::io(cfg.nets_dir(), e))?;
    jobs::check_or_write_plan(&cfg.out_dir, &cfg.settings(), cfg.shard)?;

    let mine: Vec<u64> = cfg
        .seeds
        .iter()
        .enumerate()
        .filter(|(i, _)| cfg.shard.takes(*i))
        .map(|(_, &s)| s)
        .collect();
    let result_path = |n: &Net| cfg.nets_dir().join(format!("{}.json", n.file_stem()));
    let all: Vec<Net> = mine.iter().flat_map(|&s| cfg.nets(s)).collect();
    let is_done =
        |n: &Net| -> Result<bool> { Ok(jobs::read_json::<NetResult>(&result_path(n))?.is_some()) };
    // Bases first: every fine-tune needs its seed's base checkpoint.
    let mut todo = vec![];
    for n in all.iter().filter(|n| n.lambda.is_none()) {
        if !is_done(n)? {
            todo.push(n.clone());
        }
    }
    for n in all.iter().filter(|n| n.lambda.is_some()) {
        if !is_done(n)? {
            todo.push(n.clone());
        }
    }
    if let Some(m) = cfg.max_networks {
        todo.truncate(m);
    }
    let cost = |n: &Net| {
        if n.lambda.is_none() {
            cfg.train.steps
        } else {
            cfg.finetune_steps
        }
    };
    let pb = jobs::job_progress(cfg.progress, todo.iter().map(cost).sum(), "sweep");
    let timing = std::sync::Mutex::new(());
    let bases: Vec<Net> = todo
        .iter()
        .filter(|n| n.lambda.is_none())
        .cloned()
        .collect();
    let tunes: Vec<Net> = todo
        .iter()
        .filter(|n| n.lambda.is_some())
        .cloned()
        .collect();
    // One line of timing.jsonl: a network's seconds (for an ensemble's base networks,
    // the ensemble's training seconds and its size, plus the network's own analysis).
    let log_time = |b: &B, n: &Net, seconds: f64, ensemble: usize| -> Result<()> {
        let _g = timing.lock();
        use std::io::Write;
        let path = cfg.out_dir.join("timing.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        writeln!(
            f,
            "{}",
            serde_json::json!({"network": n.file_stem(), "seconds": seconds, "backend": b.name(), "ensemble": ensemble})
        )
        .map_err(|e| TrainError::io(&path, e))
    };
    // A network's result file, progress and timing line.
    let record = |b: &B, n: &Net, r: &NetResult, start: std::time::Instant, size: usize| {
        jobs::write_atomic(&result_path(n), &jobs::to_json(r)?)?;
        pb.inc(cost(n));
        log_time(b, n, start.elapsed().as_secs_f64(), size)
    };
    // An ensemble's networks, analysed together (evaluation and slow points in one call
    // each) and each recorded on its own: one network failing stops only it, the others'
    // results are kept, and the first error is returned.
    let finish_all = |b: &B, nets: &[Net], trained: Vec<Result<Model>>, start| -> Result<()> {
        let mut first_err = None;
        for (n, r) in nets.iter().zip(analyse_nets(b, set, cfg, nets, trained)?) {
            if let Err(e) = r.and_then(|r| record(b, n, &r, start, nets.len())) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    };
    let ensembles = jobs::ensemble_chunks(&bases, backends.len(), cfg.ensemble);
    jobs::run_jobs(backends, &ensembles, |b, nets| {
        let start = std::time::Instant::now();
        pb.set_message(format!("{} base network(s)", nets.len()));
        finish_all(b, nets, train_bases(b, set, cfg, nets)?, start)
    })?;
    // Fine-tunes with a fixed penalty (and the controls) as ensembles too; those that
    // re-find their points between segments one by one.
    let (fixed, refound): (Vec<Net>, Vec<Net>) = tunes
        .into_iter()
        .partition(|n| !matches!(n.target, Some(Target::Refound { .. })));
    let ensembles = jobs::ensemble_chunks(&fixed, backends.len(), cfg.ensemble);
    jobs::run_jobs(backends, &ensembles, |b, nets| {
        let start = std::time::Instant::now();
        pb.set_message(format!("{} fine-tuned network(s)", nets.len()));
        finish_all(b, nets, train_tunes(b, set, cfg, nets)?, start)
    })?;
    jobs::run_jobs(backends, &refound, |b, n| {
        let start = std::time::Instant::now();
        pb.set_message(n.file_stem());
        let model = run_tune(b, set, cfg, n)?;
        finish_all(b, std::slice::from_ref(n), vec![Ok(model)], start)
    })?;
    pb.finish_and_clear();

    let done = all.iter().filter(|n| is_done(n).unwrap_or(false)).count();
    if cfg.shard.count > 1 || done < all.len() {
        return Ok(SweepOutcome::Partial {
            done,
            total: all.len(),
        });
    }
    Ok(SweepOutcome::Finished(Box::new(write_report(cfg)?)))
}

/// Trains the base networks `nets` as one ensemble, each writing its checkpoint and
/// metrics under `nets/`; each one's trained model, or what stopped it.
fn train_bases<B: Backend>(
    b: &B,
    set: &DigitSet,
    cfg: &SweepConfig,
    nets: &[Net],
) -> Result<Vec<Result<Model>>> {
    let cfgs = nets.iter().map(|n| cfg.base_config(n.seed)).collect();
    let outs: Vec<RunOutput> = nets
        .iter()
        .map(|n| RunOutput {
            dir: cfg.nets_dir(),
            name: n.file_stem(),
            progress: false,
        })
        .collect();
    EnsembleTrainer::new(b, set, cfgs)?.run_models(&outs)
}

/// Fine-tunes `nets` (each from its seed's base checkpoint, with its own penalty; no
/// refound target: those re-find their points between segments) as one ensemble.
fn train_tunes<B: Backend>(
    b: &B,
    set: &DigitSet,
    cfg: &SweepConfig,
    nets: &[Net],
) -> Result<Vec<Result<Model>>> {
    let mut cfgs = vec![];
    let mut bases = vec![];
    let mut penalties = vec![];
    for n in nets {
        let base = load_base(cfg, n.seed)?;
        penalties.push(tune_penalty(b, set, cfg, n, &base)?);
        cfgs.push(cfg.finetune_config(n.seed));
        bases.push(base);
    }
    let outs: Vec<RunOutput> = nets
        .iter()
        .map(|n| RunOutput {
            dir: cfg.nets_dir(),
            name: n.file_stem(),
            progress: false,
        })
        .collect();
    let mut ens = EnsembleTrainer::from_models(b, set, cfgs, bases)?;
    for (t, p) in ens.members.iter_mut().zip(penalties) {
        if p.is_some() {
            t.set_penalty(p)?;
        }
    }
    ens.run_models(&outs)
}

/// A seed's base network, from its checkpoint.
fn load_base(cfg: &SweepConfig, seed: u64) -> Result<Model> {
    let base_stem = Net {
        seed,
        target: None,
        lambda: None,
    }
    .file_stem();
    let path = cfg.nets_dir().join(format!("{base_stem}.safetensors"));
    Ok(memrnn_core::checkpoint::load_checkpoint(&path)
        .map_err(|e| {
            TrainError::Config(format!(
                "the base network of seed {seed} ({}): {e}; delete its result file \
                 nets/{base_stem}.json to retrain it",
                path.display()
            ))
        })?
        .model)
}

/// The speed penalty a fine-tune starts with: none for the control, else `λ` on its
/// target's points `V`, found on the base network.
fn tune_penalty<B: Backend>(
    b: &B,
    set: &DigitSet,
    cfg: &SweepConfig,
    n: &Net,
    base: &Model,
) -> Result<Option<SpeedPenalty>> {
    match (n.target, n.lambda) {
        (Some(target), Some(lambda)) => {
            let delay = cfg.train.task.t_max;
            let v = build_v(
                b,
                base,
                set,
                &cfg.base_config(n.seed),
                target.v_source(delay),
            )?;
            Ok(Some(SpeedPenalty::new(lambda, v)?))
        }
        _ => Ok(None),
    }
}

/// Fine-tunes one network from its seed's base checkpoint.
fn run_tune<B: Backend>(b: &B, set: &DigitSet, cfg: &SweepConfig, n: &Net) -> Result<Model> {
    let out = RunOutput {
        dir: cfg.nets_dir(),
        name: n.file_stem(),
        progress: false,
    };
    match n.lambda {
        None => config_err(format!(
            "internal: {} is a base network, trained with the ensemble of bases",
            n.file_stem()
        )),
        Some(lambda) => finetune(b, set, cfg, n, lambda, load_base(cfg, n.seed)?, &out),
    }
}

/// Evaluates the trained networks `nets` and finds their per-class slow points, as one
/// ensemble (one evaluation and one slow-point search for all, each network's numbers
/// exactly what it gets alone): each one's result, or what stopped it.
fn analyse_nets<B: Backend>(
    b: &B,
    set: &DigitSet,
    cfg: &SweepConfig,
    nets: &[Net],
    trained: Vec<Result<Model>>,
) -> Result<Vec<Result<NetResult>>> {
    let delay = cfg.train.task.t_max;
    let task = &cfg.train.task;
    let mut out: Vec<Option<Result<NetResult>>> = (0..nets.len()).map(|_| None).collect();
    let mut ready = vec![];
    for (i, m) in trained.into_iter().enumerate() {
        match m {
            Ok(m) => ready.push((i, m)),
            Err(e) => out[i] = Some(Err(e)),
        }
    }
    let models: Vec<&Model> = ready.iter().map(|r| &r.1).collect();
    let evals = evaluate_ensemble(b, &models, set, task, &cfg.eval, None)?;
    // (index into ready, evaluation, class means)
    let mut evaluated = vec![];
    for (j, r) in evals.into_iter().enumerate() {
        let (i, m) = &ready[j];
        let seed = nets[*i].seed ^ 0x7E57;
        let r = r.and_then(|r| {
            Ok((
                r,
                vset::class_mean_states(b, m, set, task, 500, delay, seed)?,
            ))
        });
        match r {
            Ok((r, means)) => evaluated.push((j, r, means)),
            Err(e) => out[*i] = Some(Err(e)),
        }
    }
    let models: Vec<&Model> = evaluated.iter().map(|e| &ready[e.0].1).collect();
    let means: Vec<&crate::SpeedSet> = evaluated.iter().map(|e| &e.2).collect();
    let finder = memrnn_slowpoints::FinderConfig::default();
    let slow = class_slow_points_ensemble(b, &models, task, &means, &finder)?;
    for ((j, r, _), slow) in evaluated.iter().zip(slow) {
        let i = ready[*j].0;
        let n = &nets[i];
        out[i] = Some(slow.map(|slow| NetResult {
            name: n.label(),
            seed: n.seed,
            target: n.target.map(|t| t.name()),
            lambda: n.lambda,
            delays: r.delays.clone(),
            accuracy: r.accuracy.clone(),
            slow_point_median: slow.median_speed_sq(),
            slow_point_speed_sq: slow.speed_sq,
        }));
    }
    Ok(out
        .into_iter()
        .map(|r| r.unwrap_or_else(|| config_err("internal: a network was never analysed")))
        .collect())
}

fn finetune<B: Backend>(
    b: &B,
    set: &DigitSet,
    cfg: &SweepConfig,
    n: &Net,
    lambda: f32,
    base: Model,
    out: &RunOutput,
) -> Result<Model> {
    let ft = cfg.finetune_config(n.seed);
    let base_cfg = cfg.base_config(n.seed);
    let delay = cfg.train.task.t_max;
    let penalty = tune_penalty(b, set, cfg, n, &base)?;
    let mut t = Trainer::from_model(b, set, ft.clone(), base)?;
    let (Some(target), Some(_)) = (n.target, &penalty) else {
        // The control: no penalty at all (λ = 0 adds nothing to the gradient).
        t.run(out)?;
        return t.model();
    };
    t.set_penalty(penalty)?;
    match target {
        Target::Refound { every } => {
            // Segments of `every` steps; the batches are keyed by step, so they are those
            // of one uninterrupted run. Between segments the slow points are re-found on
            // the network as it is now.
            let mut upto = 0;
            while upto < ft.steps {
                if upto > 0 {
                    let now = t.model()?;
                    let v = build_v(b, &now, set, &base_cfg, target.v_source(delay))?;
                    t.set_penalty(Some(SpeedPenalty::new(lambda, v)?))?;
                }
                upto = (upto + every).min(ft.steps);
                t.cfg.steps = upto;
                t.run(out)?;
            }
        }
        _ => {
            t.run(out)?;
        }
    }
    t.model()
}

/// Statistics of one group of networks (one per seed) over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct GroupStats {
    pub label: String,
    pub target: Option<String>,
    pub lambda: Option<f32>,
    /// Per delay: the mean accuracy over seeds and its 95% interval.
    pub accuracy: Vec<MeanCi>,
    /// Accuracy at the longest delay, per seed (seed order).
    pub longest_per_seed: Vec<f64>,
    /// Per delay: the paired difference to the same seed's control (empty for the
    /// control and the base network).
    pub diff_to_control: Vec<MeanCi>,
    /// At the longest delay, per seed.
    pub diff_longest_per_seed: Vec<f64>,
    /// log10 of the median `S` at the network's own per-class slow points.
    pub log10_slow_point_median: MeanCi,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub settings: serde_json::Value,
    pub seeds: Vec<u64>,
    pub delays: Vec<usize>,
    pub groups: Vec<GroupStats>,
    /// The penalised group with the highest mean accuracy at the longest delay.
    pub best_at_longest: Option<String>,
}

/// Reads every network's result file and writes the report (JSON, table, plots).
pub fn write_report(cfg: &SweepConfig) -> Result<SweepReport> {
    let mut results: Vec<(Net, NetResult)> = vec![];
    for &s in &cfg.seeds {
        for n in cfg.nets(s) {
            let p = cfg.nets_dir().join(format!("{}.json", n.file_stem()));
            let r = jobs::read_json::<NetResult>(&p)?.ok_or_else(|| {
                TrainError::Config(format!(
                    "{} is missing: the sweep is not finished (run it again to resume, or merge \
                     every shard)",
                    p.display()
                ))
            })?;
            results.push((n, r));
        }
    }
    let report = build_report(cfg, &results)?;
    jobs::write_atomic(&cfg.out_dir.join("sweep.json"), &jobs::to_json(&report)?)?;
    jobs::write_atomic(&cfg.out_dir.join("sweep.txt"), &report.table())?;
    crate::sweep_plot::plot_delay_bands(&cfg.out_dir, cfg, &report)?;
    crate::sweep_plot::plot_longest_vs_lambda(
        &cfg.out_dir.join("longest_vs_lambda.svg"),
        cfg,
        &report,
    )?;
    Ok(report)
}

fn build_report(cfg: &SweepConfig, results: &[(Net, NetResult)]) -> Result<SweepReport> {
    let delays = results
        .first()
        .map(|(_, r)| r.delays.clone())
        .unwrap_or_default();
    if let Some((_, r)) = results.iter().find(|(_, r)| r.delays != delays) {
        return config_err(format!(
            "network {} (seed {}) was evaluated at other delays than the rest",
            r.name, r.seed
        ));
    }
    let group = |target: Option<Target>, lambda: Option<f32>| -> Vec<&NetResult> {
        cfg.seeds
            .iter()
            .filter_map(|&s| {
                results
                    .iter()
                    .find(|(n, _)| n.seed == s && n.target == target && n.lambda == lambda)
                    .map(|(_, r)| r)
            })
            .collect()
    };
    let control = group(None, Some(0.0));
    let mut keys = vec![(None, None), (None, Some(0.0))];
    for &t in &cfg.targets {
        for &l in cfg.lambdas.iter().filter(|&&l| l > 0.0) {
            keys.push((Some(t), Some(l)));
        }
    }
    let last = delays.len().saturating_sub(1);
    let mut groups = vec![];
    for (target, lambda) in keys {
        let rs = group(target, lambda);
        let acc_at = |rs: &[&NetResult], i: usize| -> Vec<f64> {
            rs.iter().map(|r| r.accuracy[i]).collect()
        };
        let accuracy = (0..delays.len())
            .map(|i| mean_ci95(&acc_at(&rs, i)))
            .collect();
        let penalised = target.is_some();
        let diff_to_control: Vec<MeanCi> = if penalised {
            (0..delays.len())
                .map(|i| paired_diff(&acc_at(&rs, i), &acc_at(&control, i)).1)
                .collect()
        } else {
            vec![]
        };
        let diff_longest_per_seed = if penalised && !delays.is_empty() {
            paired_diff(&acc_at(&rs, last), &acc_at(&control, last)).0
        } else {
            vec![]
        };
        let logs: Vec<f64> = rs
            .iter()
            .map(|r| r.slow_point_median.max(1e-30).log10())
            .collect();
        groups.push(GroupStats {
            label: Net {
                seed: 0,
                target,
                lambda,
            }
            .label(),
            target: target.map(|t| t.name()),
            lambda,
            accuracy,
            longest_per_seed: if delays.is_empty() {
                vec![]
            } else {
                acc_at(&rs, last)
            },
            diff_to_control,
            diff_longest_per_seed,
            log10_slow_point_median: mean_ci95(&logs),
        });
    }
    let best_at_longest = groups
        .iter()
        .filter(|g| g.target.is_some())
        .filter_map(|g| g.accuracy.last().map(|a| (a.mean, &g.label)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| l.clone());
    Ok(SweepReport {
        settings: cfg.settings(),
        seeds: cfg.seeds.clone(),
        delays,
        groups,
        best_at_longest,
    })
}

fn fmt_ci(m: &MeanCi) -> String {
    match m.ci95 {
        Some((lo, hi)) => format!("{:+.3} [{:+.3}, {:+.3}]", m.mean, lo, hi),
        None => format!("{:+.3} [n = {}]", m.mean, m.n),
    }
}

fn fmt_acc(m: &MeanCi) -> String {
    match m.ci95 {
        Some((lo, hi)) => format!("{:.3} [{:.3}, {:.3}]", m.mean, lo, hi),
        None => format!("{:.3}", m.mean),
    }
}

impl SweepReport {
    /// The table: per group, accuracy at the training delay's neighbour and the longest
    /// delay (mean [95% CI] over seeds), the paired difference to the control there, and
    /// whether that interval excludes 0.
    pub fn table(&self) -> String {
        let Some(&longest) = self.delays.last() else {
            return "no delays\n".into();
        };
        let last = self.delays.len() - 1;
        // A middle column: the first delay from 100 on short of the longest, else the
        // middle one.
        let mid = self
            .delays
            .iter()
            .position(|&d| d >= 100 && d < longest)
            .unwrap_or(last / 2);
        let mut s = format!(
            "{} seeds ({}); 95% t-intervals over seeds; Δ = paired difference to the same seed's λ = 0 control\n",
            self.seeds.len(),
            self.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        );
        s += &format!(
            "{:<22} {:>26} {:>26} {:>30} {:>8} {:>12}\n",
            "network",
            format!("acc@{}", self.delays[mid]),
            format!("acc@{longest}"),
            format!("Δ acc@{longest}"),
            "Δ ≠ 0?",
            "log10 S med"
        );
        for g in &self.groups {
            let (diff, robust) = match g.diff_to_control.last() {
                Some(d) => (
                    fmt_ci(d),
                    match d.ci95 {
                        Some((lo, _)) if lo > 0.0 => "gain",
                        Some((lo, hi)) if hi < 0.0 && lo < hi => "loss",
                        Some(_) => "no",
                        None => "-",
                    },
                ),
                None => ("-".into(), ""),
            };
            s += &format!(
                "{:<22} {:>26} {:>26} {:>30} {:>8} {:>12.2}\n",
                g.label,
                fmt_acc(&g.accuracy[mid]),
                fmt_acc(&g.accuracy[last]),
                diff,
                robust,
                g.log10_slow_point_median.mean
            );
        }
        s += &format!("\naccuracy at delay {longest} per seed:\n{:<22}", "network");
        for seed in &self.seeds {
            s += &format!(" {:>8}", format!("s{seed}"));
        }
        s.push('\n');
        for g in &self.groups {
            s += &format!("{:<22}", g.label);
            for a in &g.longest_per_seed {
                s += &format!(" {:>8.3}", a);
            }
            s.push('\n');
        }
        if let Some(b) = &self.best_at_longest {
            s += &format!("\nhighest mean accuracy at delay {longest} among the penalised: {b}\n");
        }
        s
    }
}

/// Combines shard folders into `out` and writes the report, exactly as an unsharded run
/// would: the result files are copied (the checkpoints stay in the shard folders).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<SweepReport> {
    let settings = jobs::check_shards(dirs)?;
    let mut cfg = config_from_settings(&settings)?;
    cfg.out_dir = out.to_path_buf();
    cfg.shard = Shard::default();
    if jobs::normalise(&cfg.settings())? != settings {
        return config_err("the shards' settings could not be read back exactly: merge them with the same memrnn version that ran them");
    }
    jobs::check_or_write_plan(out, &settings, Shard::default())?;
    let src: Vec<PathBuf> = dirs.iter().map(|d| d.join("nets")).collect();
    for &s in &cfg.seeds {
        for n in cfg.nets(s) {
            let name = format!("{}.json", n.file_stem());
            if !jobs::merge_file(&src, &name, &cfg.nets_dir())? {
                return config_err(format!(
                    "no shard holds nets/{name}: finish that shard (run it again) before merging"
                ));
            }
        }
    }
    write_report(&cfg)
}

/// The sweep's configuration as recorded in a plan's settings (for `merge`).
pub fn config_from_settings(v: &serde_json::Value) -> Result<SweepConfig> {
    let bad = |what: &str| TrainError::Config(format!("plan.json: {what} missing or unreadable"));
    if v.get("kind").and_then(|k| k.as_str()) != Some("sweep") {
        return config_err(
            "plan.json: not a sweep's folder (a study's? merge it with `memrnn study merge`)",
        );
    }
    let get = |k: &str| v.get(k).cloned().ok_or_else(|| bad(k));
    let targets: Vec<String> =
        serde_json::from_value(get("targets")?).map_err(|_| bad("targets"))?;
    Ok(SweepConfig {
        train: serde_json::from_value(get("train")?).map_err(|_| bad("train"))?,
        seeds: serde_json::from_value(get("seeds")?).map_err(|_| bad("seeds"))?,
        lambdas: serde_json::from_value(get("lambdas")?).map_err(|_| bad("lambdas"))?,
        targets: targets
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<Target>>>()?,
        finetune_steps: serde_json::from_value(get("finetune_steps")?)
            .map_err(|_| bad("finetune_steps"))?,
        finetune_lr: serde_json::from_value(get("finetune_lr")?).map_err(|_| bad("finetune_lr"))?,
        eval: serde_json::from_value(get("eval")?).map_err(|_| bad("eval"))?,
        out_dir: PathBuf::new(),
        shard: Shard::default(),
        max_networks: None,
        ensemble: None,
        progress: false,
    })
}
