//! Training: Adam on the objective of [`crate::objective`], generic over the backend.
//!
//! One step: draw the batch ([`crate::task::make_batch`]), `Backend::seq_forward`, the
//! readout and cross-entropy on the host, `Backend::seq_backward` (no input gradient),
//! plus the speed penalty's gradient when one is set, global-norm clipping over all
//! parameters (recurrent and readout), then `Backend::adam_update` for the recurrent
//! parameters and the host Adam for the readout.
//!
//! Outputs, under `out_dir` with a run name `name`:
//! - `name.safetensors`: the checkpoint, every `checkpoint_every` steps and at the end. One
//!   file holds the weights (PyTorch names), Adam's moments (tensors `memrnn.state.*`,
//!   which model loaders ignore) and the step they belong to (metadata
//!   `memrnn.train.config`, `memrnn.train.step`, `memrnn.train.stage`,
//!   `memrnn.train.stage_start`, `memrnn.train.acc_ema`, `memrnn.train.adam_step`), so they
//!   are committed together: the file is written beside the old one, synced, and renamed
//!   over it. A failed or killed save leaves the previous checkpoint whole (and a failed
//!   one leaves no temporary file).
//! - `name.metrics.jsonl`: one JSON object per `log_every` steps (step, loss, ce,
//!   penalty, report_acc, silence_acc, grad_norm, stage, t_max, vocab, elapsed_s). Lines
//!   are held back until a checkpoint covering their steps is saved (the checkpoint also
//!   carries them, `memrnn.train.metrics_pending`), so the file never describes steps
//!   that no checkpoint holds; a run that starts (fresh, or resumed at step N) first drops
//!   lines for steps after its start and restores those its checkpoint carries.
//!
//! A NaN / infinite loss, or one above `diverge_loss`, stops the run with
//! [`TrainError::Diverged`]; nothing is written after the last good step, so the
//! checkpoint on disk is the last good one.

use crate::error::{config_err, Result, TrainError};
use crate::objective::{readout_ce, speed_penalty_grad, SpeedPenalty};
use crate::task::{self, Curriculum, DigitSet, Stage, StageSchedule, TaskConfig, CLASSES};
use memrnn_core::checkpoint::{load_checkpoint, read_tensors, save_checkpoint_with_state};
use memrnn_core::{
    adam_update_host, AdamConfig, AdamState, Backend, CellDims, CellKind, Model, Readout,
    SeqUpstream,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Metadata keys of a training checkpoint.
pub const META_CONFIG: &str = "memrnn.train.config";
pub const META_STEP: &str = "memrnn.train.step";
pub const META_STAGE: &str = "memrnn.train.stage";
pub const META_STAGE_START: &str = "memrnn.train.stage_start";
pub const META_ACC_EMA: &str = "memrnn.train.acc_ema";
pub const META_ADAM_STEP: &str = "memrnn.train.adam_step";
/// The speed penalty a run was trained with (`λ on V's source`), when it had one.
pub const META_PENALTY: &str = "memrnn.train.penalty";
/// Metrics lines of the steps this checkpoint covers that were not yet in the metrics file.
pub const META_METRICS_PENDING: &str = "memrnn.train.metrics_pending";

/// The optimiser's tensors inside a training checkpoint.
pub const STATE_PARAMS_M: &str = "memrnn.state.adam.params.m";
pub const STATE_PARAMS_V: &str = "memrnn.state.adam.params.v";
pub const STATE_READOUT_M: &str = "memrnn.state.adam.readout.m";
pub const STATE_READOUT_V: &str = "memrnn.state.adam.readout.v";

/// Seed salt of the speed penalty's inputs (kept apart from the task's streams).
const PENALTY_SALT: u64 = 0x5EED_5EED_0000_0002;

/// Everything a training run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub cell: CellKind,
    pub hidden: usize,
    pub batch: usize,
    /// Total training steps (a resumed run continues to this count).
    pub steps: u64,
    /// Seeds the initialisation and the task stream.
    pub seed: u64,
    pub adam: AdamConfig,
    /// Global-norm gradient clipping; `None` for none.
    pub clip: Option<f32>,
    pub task: TaskConfig,
    pub curriculum: Curriculum,
    pub schedule: StageSchedule,
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// A loss above this (or NaN) stops the run as diverged.
    pub diverge_loss: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            cell: CellKind::Gru,
            hidden: 64,
            batch: 64,
            steps: 1500,
            seed: 1,
            adam: AdamConfig::default(),
            clip: Some(1.0),
            task: TaskConfig::default(),
            curriculum: Curriculum::None,
            schedule: StageSchedule::default(),
            log_every: 50,
            checkpoint_every: 500,
            diverge_loss: 100.0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.task.validate()?;
        self.adam.validate()?;
        if self.steps == 0 || self.steps > crate::limits::MAX_STEPS {
            return config_err(format!(
                "{} training steps: give 1 to {} (0 would write an untrained network as if trained)",
                self.steps,
                crate::limits::MAX_STEPS
            ));
        }
        if self.hidden == 0 || self.hidden > 1 << 16 {
            return config_err(format!(
                "hidden size {}: it must be 1 to 65536",
                self.hidden
            ));
        }
        if self.batch == 0 || self.batch > 1 << 20 {
            return config_err(format!("batch size {}: it must be 1 to 2^20", self.batch));
        }
        if let Some(c) = self.clip {
            if !(c.is_finite() && c > 0.0) {
                return config_err(format!(
                    "gradient clip {c} (--clip): it must be a positive, finite norm; 0 turns \
                     clipping off"
                ));
            }
        }
        if self.log_every == 0 || self.checkpoint_every == 0 {
            return config_err("log_every and checkpoint_every must be at least 1");
        }
        if let StageSchedule::Accuracy { threshold, .. } = self.schedule {
            if !(0.0..=1.0).contains(&threshold) {
                return config_err(format!(
                    "stage accuracy threshold {threshold}: it must be in [0, 1]"
                ));
            }
        }
        if let StageSchedule::Every(0) = self.schedule {
            return config_err("a stage schedule of every 0 steps makes no sense: use ≥ 1");
        }
        if self.diverge_loss.is_nan() || self.diverge_loss <= 0.0 {
            return config_err("diverge_loss must be positive");
        }
        Ok(())
    }

    /// [`Self::validate`], then the memory a training step on inputs of size `input` (with
    /// `penalty_points` points of a speed penalty) would allocate against this machine's.
    pub fn validate_for(&self, input: usize, penalty_points: usize) -> Result<()> {
        self.validate()?;
        let cell = CellDims::new(self.cell, input, self.hidden)?;
        let need = crate::limits::train_bytes(&cell, self.task.t_max, self.batch, penalty_points);
        crate::limits::MemoryBudget::detect()?.check(
            &format!(
                "training a {} cell (input {input}, hidden {}) on batches of {} sequences of {} steps",
                self.cell, self.hidden, self.batch, self.task.t_max
            ),
            need,
            "lower --batch or --hidden (or --t-max)",
        )
    }

    /// The settings a resumed run must share with the checkpoint it continues (the
    /// network, its batches and its curriculum); the learning rate, clipping, step count,
    /// logging and divergence limit may change. Names the first that differs.
    pub fn check_resumable_as(&self, saved: &TrainConfig) -> Result<()> {
        let diff: Vec<(&str, String, String)> = [
            (
                "cell (--cell)",
                format!("{}", saved.cell),
                format!("{}", self.cell),
            ),
            (
                "hidden size (--hidden)",
                saved.hidden.to_string(),
                self.hidden.to_string(),
            ),
            (
                "batch size (--batch)",
                saved.batch.to_string(),
                self.batch.to_string(),
            ),
            (
                "seed (--seed)",
                saved.seed.to_string(),
                self.seed.to_string(),
            ),
            (
                "task (--t-max)",
                format!("{:?}", saved.task),
                format!("{:?}", self.task),
            ),
            (
                "curriculum (--curriculum)",
                format!("{:?}", saved.curriculum),
                format!("{:?}", self.curriculum),
            ),
            (
                "curriculum schedule (--stage-every / --stage-acc / --stage-min-steps)",
                format!("{:?}", saved.schedule),
                format!("{:?}", self.schedule),
            ),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .collect();
        if let Some((what, a, b)) = diff.first() {
            return config_err(format!(
                "the checkpoint was trained with {what} {a}, but this run asks for {b}: a resumed \
                 run must draw the same batches and curriculum; pass the checkpoint's value (its \
                 settings are in its metadata, memrnn.train.config), or fine-tune from it with \
                 --init instead"
            ));
        }
        Ok(())
    }
}

/// One step's numbers.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StepStats {
    pub step: u64,
    /// `L_CE + penalty`.
    pub loss: f64,
    pub ce: f64,
    /// `λ Σ S` (0 without a penalty).
    pub penalty: f64,
    /// `Σ S` over the penalty's points (0 without a penalty).
    pub speed_sum: f64,
    pub report_acc: f64,
    pub silence_acc: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub t_max: usize,
    pub vocab: usize,
    pub stage: usize,
}

/// What a finished run reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub last: StepStats,
    /// Report accuracy averaged over the last log window.
    pub report_acc: f64,
    pub silence_acc: f64,
    pub seconds: f64,
    pub checkpoint: Option<PathBuf>,
}

/// Where a run writes.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub dir: PathBuf,
    pub name: String,
    /// Show an indicatif progress bar.
    pub progress: bool,
}

impl RunOutput {
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(format!("{}.safetensors", self.name))
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join(format!("{}.metrics.jsonl", self.name))
    }

    /// The name must be a plain file-name stem ([`crate::limits::check_run_name`]) and the
    /// folder must not be an existing file.
    pub fn validate(&self) -> Result<()> {
        crate::limits::check_run_name(&self.name)?;
        if self.dir.exists() && !self.dir.is_dir() {
            return config_err(format!(
                "output folder {} is a file, not a folder; give --out a folder",
                self.dir.display()
            ));
        }
        Ok(())
    }
}

/// A network being trained on a backend.
pub struct Trainer<'a, B: Backend> {
    backend: &'a B,
    set: &'a DigitSet,
    pub cfg: TrainConfig,
    pub cell: CellDims,
    params: B::Tensor,
    adam: AdamState<B::Tensor>,
    pub readout: Readout,
    ro_m: Vec<f32>,
    ro_v: Vec<f32>,
    ro_step: u64,
    /// Steps done.
    pub step: u64,
    stages: Vec<Stage>,
    pub stage: usize,
    stage_start: u64,
    acc_ema: f64,
    penalty: Option<SpeedPenalty>,
    penalty_seed: u64,
    /// Metrics lines of steps after the last saved checkpoint (written with the next one).
    pending_metrics: Vec<String>,
}

impl<'a, B: Backend> Trainer<'a, B> {
    /// A fresh network (PyTorch's default initialisation from `cfg.seed`).
    pub fn new(backend: &'a B, set: &'a DigitSet, cfg: TrainConfig) -> Result<Self> {
        // Before the parameters are allocated.
        cfg.validate_for(set.input_size(), 0)?;
        let cell = CellDims::new(cfg.cell, set.input_size(), cfg.hidden)?;
        let mut model = Model::init(cell, cfg.seed);
        model.readout = Some(Readout::init(CLASSES, cfg.hidden, cfg.seed ^ 0xAB)?);
        Self::from_model(backend, set, cfg, model)
    }

    /// Continues from `model` (fresh optimiser, step 0, first stage): fine-tuning.
    pub fn from_model(
        backend: &'a B,
        set: &'a DigitSet,
        cfg: TrainConfig,
        model: Model,
    ) -> Result<Self> {
        cfg.validate_for(set.input_size(), 0)?;
        let want = CellDims::new(cfg.cell, set.input_size(), cfg.hidden)?;
        check_model(&model, &want)?;
        let readout = model.readout.clone().ok_or_else(|| {
            TrainError::Config("the model has no readout; train one with `memrnn train`".into())
        })?;
        let n_ro = readout.weight.len() + readout.bias.len();
        let stages = cfg.curriculum.stages(&cfg.task);
        Ok(Trainer {
            backend,
            set,
            cell: want,
            params: backend.upload(&model.params)?,
            adam: backend.adam_state(model.params.len())?,
            readout,
            ro_m: vec![0.0; n_ro],
            ro_v: vec![0.0; n_ro],
            ro_step: 0,
            step: 0,
            stages,
            stage: 0,
            stage_start: 0,
            acc_ema: 0.0,
            penalty: None,
            penalty_seed: cfg.seed ^ PENALTY_SALT,
            pending_metrics: vec![],
            cfg,
        })
    }

    /// Resumes from a checkpoint written by [`Trainer::run`]: its weights, optimiser
    /// state, step and curriculum stage, all from the one file. Refuses (saying what to do)
    /// a checkpoint without optimiser state or step, one whose optimiser state does not
    /// fit its weights, one whose settings differ from `cfg` where a resumed run must keep
    /// them ([`TrainConfig::check_resumable_as`]), and one already at or past `cfg.steps`.
    pub fn resume(
        backend: &'a B,
        set: &'a DigitSet,
        cfg: TrainConfig,
        path: &Path,
    ) -> Result<Self> {
        let ck = load_checkpoint(path)?;
        let at = |m: String| TrainError::Config(format!("resuming from {}: {m}", path.display()));
        let mut t = Self::from_model(backend, set, cfg, ck.model).map_err(|e| match e {
            TrainError::Config(m) => at(m),
            other => other,
        })?;
        let old_sidecar = path.with_extension("adam.safetensors");
        let fine_tune = format!(
            "to continue from its weights with a fresh optimiser (step count from 0), use \
             --init {} instead of --resume{}",
            path.display(),
            if old_sidecar.is_file() {
                format!(
                    " ({} beside it is the optimiser file of memrnn's old two-file checkpoints, \
                     which is not resumed: the two files could disagree)",
                    old_sidecar.display()
                )
            } else {
                String::new()
            }
        );
        let get = |k: &str| -> Result<String> {
            ck.metadata.get(k).cloned().ok_or_else(|| {
                at(format!(
                    "it has no {k} metadata, so it was not written by this version of \
                     `memrnn train` and holds no step or optimiser state to resume; {fine_tune}"
                ))
            })
        };
        let num = |k: &str| -> Result<u64> {
            get(k)?.parse().map_err(|_| {
                at(format!(
                    "its {k} metadata is not a whole number (corrupt?); {fine_tune}"
                ))
            })
        };
        let saved = train_config_from_metadata(&ck.metadata)
            .map_err(&at)?
            .ok_or_else(|| at(format!("it holds no training configuration; {fine_tune}")))?;
        t.cfg.check_resumable_as(&saved).map_err(|e| match e {
            TrainError::Config(m) => at(m),
            other => other,
        })?;
        t.step = num(META_STEP)?;
        let stage = num(META_STAGE)? as usize;
        if stage >= t.stages.len() {
            return Err(at(format!(
                "its curriculum stage {stage} does not exist ({} stages); {fine_tune}",
                t.stages.len()
            )));
        }
        t.stage = stage;
        t.stage_start = num(META_STAGE_START)?;
        t.acc_ema = get(META_ACC_EMA)?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                at(format!(
                    "its {META_ACC_EMA} metadata is not a number; {fine_tune}"
                ))
            })?;
        if let Some(p) = ck.metadata.get(META_PENALTY) {
            let lambda: f32 = p
                .split_whitespace()
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(f32::NAN);
            if lambda != 0.0 {
                return Err(at(format!(
                    "it was fine-tuned with the speed penalty λ = {p}, and a resumed run cannot \
                     restore the penalty's points V (they are not stored): it would continue \
                     without the penalty; fine-tune again with --init {} --lambda {lambda}",
                    path.display()
                )));
            }
        }
        let adam_step = num(META_ADAM_STEP)?;
        if adam_step != t.step {
            return Err(at(format!(
                "its optimiser state belongs to step {adam_step} but its weights to step {}; \
                 the file is inconsistent; {fine_tune}",
                t.step
            )));
        }
        if t.step >= t.cfg.steps {
            // A run killed between its last save and the metrics append: complete the
            // metrics file beside the checkpoint from the lines the checkpoint carries.
            let metrics = path.with_extension("metrics.jsonl");
            if metrics.is_file() {
                if let Some(p) = ck.metadata.get(META_METRICS_PENDING) {
                    let pending: Vec<String> = serde_json::from_str(p).unwrap_or_default();
                    sync_metrics(&metrics, t.step, &pending)?;
                }
            }
            return Err(at(format!(
                "it is already at step {} and --steps is {}: nothing to do; pass a larger \
                 --steps to train further",
                t.step, t.cfg.steps
            )));
        }
        let (tensors, _) = read_tensors(path)?;
        let take = |name: &str, len: usize, nonneg: bool| -> Result<Vec<f32>> {
            match tensors.get(name) {
                None => Err(at(format!(
                    "it holds no optimiser state ({name} is missing); {fine_tune}"
                ))),
                Some(h) if h.data.len() != len => Err(at(format!(
                    "optimiser tensor {name} holds {} values but the weights need {len}; \
                     the file is inconsistent; {fine_tune}",
                    h.data.len()
                ))),
                Some(h)
                    if h.data
                        .iter()
                        .any(|&v| !v.is_finite() || (nonneg && v < 0.0)) =>
                {
                    Err(at(format!(
                        "optimiser tensor {name} holds {} values; {fine_tune}",
                        if nonneg {
                            "non-finite or negative"
                        } else {
                            "non-finite"
                        }
                    )))
                }
                Some(h) => Ok(h.to_f32()),
            }
        };
        let n = t.cell.layout().len();
        let n_ro = t.ro_m.len();
        let (pm, pv) = (
            take(STATE_PARAMS_M, n, false)?,
            take(STATE_PARAMS_V, n, true)?,
        );
        t.ro_m = take(STATE_READOUT_M, n_ro, false)?;
        t.ro_v = take(STATE_READOUT_V, n_ro, true)?;
        t.adam.m = backend.upload(&pm)?;
        t.adam.v = backend.upload(&pv)?;
        t.adam.step = adam_step;
        t.ro_step = adam_step;
        if let Some(p) = ck.metadata.get(META_METRICS_PENDING) {
            t.pending_metrics = serde_json::from_str(p).map_err(|e| {
                at(format!(
                    "its {META_METRICS_PENDING} metadata is not a list of lines ({e})"
                ))
            })?;
        }
        Ok(t)
    }

    /// Adds (or with `None` removes) the speed penalty. Its inputs are drawn from
    /// `penalty_seed` (defaults to a salt of the training seed).
    pub fn set_penalty(&mut self, penalty: Option<SpeedPenalty>) -> Result<()> {
        if let Some(p) = &penalty {
            crate::objective::check_lambda(p.lambda)?;
            p.set.check(&self.cell)?;
            self.cfg.validate_for(self.cell.input, p.set.n)?;
        }
        self.penalty = penalty;
        Ok(())
    }

    /// The delay-period inputs `[N, I]` of the speed penalty's points at the current step
    /// (noise drawn afresh each step, trigger 0), or `None` without a penalty.
    pub fn penalty_inputs(&self) -> Option<Vec<f32>> {
        self.penalty.as_ref().map(|p| {
            task::delay_inputs(
                &self.cfg.task,
                self.cell.input,
                self.penalty_seed,
                self.step,
                p.set.n,
            )
        })
    }

    pub fn current_stage(&self) -> Stage {
        self.stages[self.stage]
    }

    pub fn params(&self) -> &B::Tensor {
        &self.params
    }

    /// Training steps taken so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The network as a host model.
    pub fn model(&self) -> Result<Model> {
        Ok(Model {
            cell: self.cell,
            params: self.backend.download(&self.params)?,
            readout: Some(self.readout.clone()),
        })
    }

    /// The loss and gradients of one batch, without updating anything: `(stats,
    /// dparams, dreadout)` with `dreadout = [dW_out | db_out]`.
    pub fn gradients(&self, batch: &task::Batch) -> Result<(StepStats, Vec<f32>, Vec<f32>)> {
        let b = self.backend;
        let x = b.upload(&batch.x)?;
        let fwd = b.seq_forward(&self.cell, &self.params, batch.shape, &x, None)?;
        let h = b.download(&fwd.h_seq)?;
        let ce = readout_ce(
            &h,
            self.cell.hidden,
            &self.readout.weight,
            &self.readout.bias,
            &batch.targets,
            &batch.weights,
        );
        let dh = b.upload(&ce.dh)?;
        let g = b.seq_backward(
            &self.cell,
            &self.params,
            batch.shape,
            &x,
            &fwd,
            SeqUpstream {
                dh_seq: Some(&dh),
                ds_final: None,
            },
            false,
        )?;
        let mut dparams = b.download(&g.dparams)?;
        let (mut penalty, mut speed_sum) = (0.0, 0.0);
        if let (Some(p), Some(xs)) = (&self.penalty, self.penalty_inputs()) {
            let (v, s, d) = speed_penalty_grad(b, &self.cell, &self.params, p, &xs)?;
            penalty = v;
            speed_sum = s;
            dparams.iter_mut().zip(&d).for_each(|(a, &v)| *a += v);
        }
        let mut dro = ce.dw;
        dro.extend_from_slice(&ce.db);
        let stage = self.current_stage();
        let stats = StepStats {
            step: self.step,
            loss: ce.loss + penalty,
            ce: ce.loss,
            penalty,
            speed_sum,
            report_acc: ce.accuracy.report(),
            silence_acc: ce.accuracy.silence(),
            grad_norm: 0.0,
            t_max: stage.t_max,
            vocab: stage.vocab,
            stage: self.stage,
        };
        Ok((stats, dparams, dro))
    }

    /// One training step. Divergence is reported as an error naming `checkpoint`.
    pub fn train_step(&mut self, checkpoint: &str) -> Result<StepStats> {
        let stage = self.current_stage();
        let batch = task::make_batch(
            self.set,
            &self.cfg.task,
            stage,
            self.cfg.seed,
            self.step,
            self.cfg.batch,
        )?;
        let (mut stats, mut dparams, mut dro) = self.gradients(&batch)?;
        let diverged = |reason: String| TrainError::Diverged {
            step: self.step,
            reason,
            checkpoint: checkpoint.to_string(),
        };
        if !stats.loss.is_finite() {
            return Err(diverged(format!("the loss is {}", stats.loss)));
        }
        if stats.loss > self.cfg.diverge_loss {
            return Err(diverged(format!(
                "the loss {:.3e} exceeds the divergence limit {:.3e}",
                stats.loss, self.cfg.diverge_loss
            )));
        }
        let norm = dparams
            .iter()
            .chain(&dro)
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() {
            return Err(diverged(format!("the gradient norm is {norm}")));
        }
        stats.grad_norm = norm;
        if let Some(c) = self.cfg.clip {
            if norm > c as f64 {
                let s = (c as f64 / norm) as f32;
                dparams
                    .iter_mut()
                    .chain(dro.iter_mut())
                    .for_each(|v| *v *= s);
            }
        }
        let g = self.backend.upload(&dparams)?;
        self.backend
            .adam_update(&mut self.params, &g, &mut self.adam, &self.cfg.adam)?;
        let mut ro: Vec<f32> = self.readout.weight.clone();
        ro.extend_from_slice(&self.readout.bias);
        adam_update_host(
            &mut ro,
            &dro,
            &mut self.ro_m,
            &mut self.ro_v,
            self.ro_step,
            &self.cfg.adam,
        );
        self.ro_step += 1;
        let nw = self.readout.weight.len();
        self.readout.weight.copy_from_slice(&ro[..nw]);
        self.readout.bias.copy_from_slice(&ro[nw..]);
        self.step += 1;
        self.acc_ema = if self.step == self.stage_start + 1 {
            stats.report_acc
        } else {
            0.9 * self.acc_ema + 0.1 * stats.report_acc
        };
        self.maybe_advance_stage();
        Ok(stats)
    }

    fn maybe_advance_stage(&mut self) {
        if self.stage + 1 >= self.stages.len() {
            return;
        }
        let in_stage = self.step - self.stage_start;
        let go = match self.cfg.schedule {
            StageSchedule::Every(n) => in_stage >= n,
            StageSchedule::Accuracy {
                threshold,
                min_steps,
            } => in_stage >= min_steps && self.acc_ema >= threshold,
        };
        if go {
            self.stage += 1;
            self.stage_start = self.step;
            self.acc_ema = 0.0;
        }
    }

    /// Writes the checkpoint: weights, Adam state, step and the metrics lines not yet in
    /// the metrics file, in one atomic write (see the module docs).
    pub fn save(&self, out: &RunOutput) -> Result<PathBuf> {
        out.validate()?;
        std::fs::create_dir_all(&out.dir).map_err(|e| TrainError::io(&out.dir, e))?;
        let err = |e: serde_json::Error| TrainError::Config(e.to_string());
        let mut meta = BTreeMap::new();
        meta.insert(
            META_CONFIG.to_string(),
            serde_json::to_string(&self.cfg).map_err(err)?,
        );
        meta.insert(META_STEP.to_string(), self.step.to_string());
        meta.insert(META_STAGE.to_string(), self.stage.to_string());
        meta.insert(META_STAGE_START.to_string(), self.stage_start.to_string());
        meta.insert(META_ACC_EMA.to_string(), self.acc_ema.to_string());
        meta.insert(META_ADAM_STEP.to_string(), self.adam.step.to_string());
        if let Some(p) = &self.penalty {
            meta.insert(
                META_PENALTY.to_string(),
                format!("{} on {}", p.lambda, p.set.source),
            );
        }
        meta.insert(
            META_METRICS_PENDING.to_string(),
            serde_json::to_string(&self.pending_metrics).map_err(err)?,
        );
        let path = out.checkpoint();
        let m = self.backend.download(&self.adam.m)?;
        let v = self.backend.download(&self.adam.v)?;
        save_checkpoint_with_state(
            &path,
            &self.model()?,
            &meta,
            &[
                (STATE_PARAMS_M, vec![m.len()], &m),
                (STATE_PARAMS_V, vec![v.len()], &v),
                (STATE_READOUT_M, vec![self.ro_m.len()], &self.ro_m),
                (STATE_READOUT_V, vec![self.ro_v.len()], &self.ro_v),
            ],
        )?;
        Ok(path)
    }

    /// Trains up to `cfg.steps`, logging, checkpointing and stopping on divergence.
    pub fn run(&mut self, out: &RunOutput) -> Result<TrainSummary> {
        self.run_tracked(out, 0, |_| Ok(()))
    }

    /// [`Self::run`], calling `track` with the trainer before the first step and after
    /// every `every` steps (never when `every` is 0): how diagnostics are recorded along
    /// training (`memrnn train --track-every N`) to see when the memories form.
    pub fn run_tracked(
        &mut self,
        out: &RunOutput,
        every: u64,
        mut track: impl FnMut(&Self) -> Result<()>,
    ) -> Result<TrainSummary> {
        out.validate()?;
        if self.step >= self.cfg.steps {
            return config_err(format!(
                "the network is already at step {} and the run is for {} steps: nothing to \
                 train; pass a larger --steps",
                self.step, self.cfg.steps
            ));
        }
        std::fs::create_dir_all(&out.dir).map_err(|e| TrainError::io(&out.dir, e))?;
        // Temporary files left by a killed save of this run hold nothing: remove them.
        for stale in [
            out.checkpoint().with_extension("safetensors.tmp"),
            out.metrics().with_extension("jsonl.tmp"),
        ] {
            if stale.is_file() {
                std::fs::remove_file(&stale).map_err(|e| TrainError::io(&stale, e))?;
            }
        }
        // The metrics file describes the steps the state we start from covers: drop lines
        // after it (a killed run's, or a previous run's), restore those our checkpoint
        // carries.
        let metrics_path = out.metrics();
        let pending = std::mem::take(&mut self.pending_metrics);
        let mut metrics = sync_metrics(&metrics_path, self.step, &pending)?;
        if every > 0 && self.step % every == 0 {
            track(self)?;
        }
        let pb = if out.progress {
            let pb = indicatif::ProgressBar::new(self.cfg.steps);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb.set_prefix(out.name.clone());
            pb.set_position(self.step);
            pb
        } else {
            indicatif::ProgressBar::hidden()
        };
        let start = Instant::now();
        let mut last_ckpt: Option<PathBuf> = out.checkpoint().is_file().then(|| out.checkpoint());
        let (mut win_rep, mut win_sil, mut win_n) = (0.0, 0.0, 0u64);
        let mut last = StepStats::default();
        while self.step < self.cfg.steps {
            let ck_name = last_ckpt
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none (no checkpoint was written before the failure)".into());
            let stats = match self.train_step(&ck_name) {
                Ok(s) => s,
                Err(e) => {
                    pb.abandon_with_message("diverged");
                    return Err(e);
                }
            };
            last = stats;
            win_rep += stats.report_acc;
            win_sil += stats.silence_acc;
            win_n += 1;
            if self.step % self.cfg.log_every == 0 || self.step == self.cfg.steps {
                let mut v =
                    serde_json::to_value(stats).map_err(|e| TrainError::Config(e.to_string()))?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("step".into(), self.step.into());
                    o.insert("report_acc_window".into(), (win_rep / win_n as f64).into());
                    o.insert("elapsed_s".into(), start.elapsed().as_secs_f64().into());
                }
                self.pending_metrics.push(v.to_string());
                pb.set_message(format!(
                    "loss {:.3} report {:.2} silence {:.3} T {} vocab {}",
                    stats.loss,
                    win_rep / win_n as f64,
                    win_sil / win_n as f64,
                    stats.t_max,
                    stats.vocab
                ));
                if self.step < self.cfg.steps {
                    win_rep = 0.0;
                    win_sil = 0.0;
                    win_n = 0;
                }
            }
            if self.step % self.cfg.checkpoint_every == 0 && self.step < self.cfg.steps {
                last_ckpt = Some(self.save_and_log(out, &mut metrics, &metrics_path)?);
            }
            if every > 0 && self.step % every == 0 {
                track(self)?;
            }
            pb.set_position(self.step);
        }
        pb.finish();
        let ck = self.save_and_log(out, &mut metrics, &metrics_path)?;
        let n = win_n.max(1) as f64;
        Ok(TrainSummary {
            steps: self.step,
            last,
            report_acc: win_rep / n,
            silence_acc: win_sil / n,
            seconds: start.elapsed().as_secs_f64(),
            checkpoint: Some(ck),
        })
    }
}

/// Keeps the lines of a JSON-lines file (metrics, tracking) whose `step` is at most
/// `max_step`, up to the first line that is not a whole JSON object with a step (a line cut
/// short by a kill, or a later run's), rewriting the file atomically when anything is
/// dropped. Returns the last kept step (`None` when none is kept or there is no file).
pub fn repair_jsonl(path: &Path, max_step: u64) -> Result<Option<u64>> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    let mut keep = String::new();
    let mut last = None;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        match line_step(line.trim_end()) {
            Some(s) if s <= max_step && last.is_none_or(|l| s > l) => {
                keep.push_str(line);
                last = Some(s);
            }
            _ => break,
        }
    }
    if keep.len() != text.len() {
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, &keep)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                TrainError::io(path, e)
            })?;
    }
    Ok(last)
}

/// Makes the metrics file describe exactly the steps up to `step`: drops later lines
/// ([`repair_jsonl`]), appends those of `pending` (lines a checkpoint at `step` carries)
/// that it lacks, and returns it open for appending.
fn sync_metrics(path: &Path, step: u64, pending: &[String]) -> Result<std::fs::File> {
    let kept = repair_jsonl(path, step)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    for l in pending {
        if line_step(l).is_some_and(|s| kept.is_none_or(|k| s > k) && s <= step) {
            writeln!(f, "{l}").map_err(|e| TrainError::io(path, e))?;
        }
    }
    Ok(f)
}

/// The `step` of one JSON-lines record.
fn line_step(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
}

impl<B: Backend> Trainer<'_, B> {
    /// Saves, and only then appends the metrics lines the checkpoint covers.
    fn save_and_log(
        &mut self,
        out: &RunOutput,
        metrics: &mut std::fs::File,
        metrics_path: &Path,
    ) -> Result<PathBuf> {
        let ck = self.save(out).map_err(|e| {
            let path = out.checkpoint();
            let kept = match load_checkpoint(&path) {
                Ok(c) => format!(
                    "{} still holds step {}, unchanged",
                    path.display(),
                    c.metadata.get(META_STEP).map_or("?", String::as_str)
                ),
                Err(_) => format!("no checkpoint was written to {}", path.display()),
            };
            TrainError::SaveFailed {
                step: self.step,
                reason: match e {
                    TrainError::Core(memrnn_core::Error::Io { path, source }) => {
                        format!("{}: {source}", path.display())
                    }
                    other => other.to_string(),
                },
                kept,
            }
        })?;
        for l in self.pending_metrics.drain(..) {
            writeln!(metrics, "{l}").map_err(|e| TrainError::io(metrics_path, e))?;
        }
        Ok(ck)
    }
}

/// Fails unless `model` is a `want` cell with an 11-class readout, naming both.
pub fn check_model(model: &Model, want: &CellDims) -> Result<()> {
    model.validate()?;
    if model.cell != *want {
        return config_err(format!(
            "the checkpoint holds a {} cell with input {} and hidden {}, but this run needs a {} cell \
             with input {} and hidden {}; pass the matching --cell / --hidden (or another data set \
             with matching image size), or start a fresh run",
            model.cell.kind, model.cell.input, model.cell.hidden, want.kind, want.input, want.hidden
        ));
    }
    if let Some(r) = &model.readout {
        if r.classes != CLASSES {
            return config_err(format!(
                "the checkpoint's readout has {} classes; the delayed-classification task needs {CLASSES}",
                r.classes
            ));
        }
    }
    Ok(())
}

/// Fails unless `model` fits the delayed-classification task on `set`: inputs of the data's
/// size (pixels + trigger) and, when it has a readout (required when `needs_readout`), one
/// of [`CLASSES`] classes ("nothing" and the ten digits). Every command that uses a
/// checkpoint calls this before running.
pub fn check_task_model(model: &Model, set: &DigitSet, needs_readout: bool) -> Result<()> {
    model.validate()?;
    if model.cell.input != set.input_size() {
        return config_err(format!(
            "the checkpoint's {} cell reads inputs of size {}, but the task on this data gives \
             {} ({} pixels + the trigger); use the data set it was trained on (--mnist-dir)",
            model.cell.kind,
            model.cell.input,
            set.input_size(),
            set.pixels
        ));
    }
    match &model.readout {
        None if needs_readout => config_err(
            "the checkpoint has no readout (readout.weight / readout.bias): this command needs \
             a network trained on the task; train one with `memrnn train`",
        ),
        Some(r) if r.classes != CLASSES => config_err(format!(
            "the checkpoint's readout has {} classes, but the delayed-classification task has \
             {CLASSES} (\"nothing\" and the ten digits): it was trained for another task, so its \
             answers here would mean nothing",
            r.classes
        )),
        _ => Ok(()),
    }
}

/// The training configuration stored in a checkpoint's metadata, if any (`None` also when
/// it does not parse: use [`train_config_from_metadata`] to tell the two apart).
pub fn config_from_metadata(meta: &BTreeMap<String, String>) -> Option<TrainConfig> {
    train_config_from_metadata(meta).ok().flatten()
}

/// The training configuration stored in a checkpoint's metadata: `Ok(None)` when there is
/// none (a PyTorch state dict), an error naming the problem when it is there but does not
/// parse, has unknown keys, or is invalid.
pub fn train_config_from_metadata(
    meta: &BTreeMap<String, String>,
) -> std::result::Result<Option<TrainConfig>, String> {
    let Some(text) = meta.get(META_CONFIG) else {
        return Ok(None);
    };
    let c: TrainConfig = crate::limits::from_json_strict(text)
        .map_err(|e| format!("its {META_CONFIG} metadata is not a training configuration: {e}"))?;
    c.validate()
        .map_err(|e| format!("its {META_CONFIG} metadata holds an invalid configuration: {e}"))?;
    Ok(Some(c))
}
