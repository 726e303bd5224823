//! Training: Adam on the objective of [`crate::objective`], generic over the backend.
//!
//! One step, all on the backend: draw the batch (`task_batch`, the same numbers as
//! [`crate::task::make_batch`], from the digits uploaded once), `seq_forward`,
//! `readout_ce`, `seq_backward` (no input gradient), the speed penalty's gradient when one
//! is set, and `clip_adam_update`: global-norm clipping and Adam over the recurrent
//! parameters and the readout together, guarded against divergence. The network and the
//! optimiser state live on the backend; each step's numbers are filed in a record there
//! that [`Trainer::run`] reads back at its logging, checkpoint and tracking intervals (and
//! [`Trainer::train_step`] after every step), replaying the host's bookkeeping step by
//! step. Under a curriculum that advances on accuracy the record is read after every step
//! while stages remain (the next batch depends on it).
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
//!   penalty, report_acc, silence_acc, grad_norm, stage, t_max, vocab, elapsed_s,
//!   precision: the storage of W_hh, also in the checkpoint as `memrnn.train.precision`). Lines
//!   are held back until a checkpoint covering their steps is saved (the checkpoint also
//!   carries them, `memrnn.train.metrics_pending`), so the file never describes steps
//!   that no checkpoint holds; a run that starts (fresh, or resumed at step N) first drops
//!   lines for steps after its start and restores those its checkpoint carries.
//!
//! A NaN / infinite loss, or one above `diverge_loss`, or a non-finite gradient norm,
//! stops the run with [`TrainError::Diverged`] naming the first bad step; nothing is
//! written after the last good step, so the checkpoint on disk is the last good one. The
//! backend's guard skips the bad step's update and every one after it until the record is
//! read, so the trainer is then back at the state before the bad step (its step count,
//! stage and Adam step counts rewound), as if it had stopped there.

use crate::error::{config_err, Result, TrainError};
use crate::objective::SpeedPenalty;
use crate::step::{
    batch_gradients, ensemble_batch_gradients, targets_f32, GradArgs, PenaltyArgs, StepGrads,
    StepRow, RECORD_ROWS, RECORD_WIDTH, REC_CLIP, REC_SPEED,
};
use crate::task::{self, Curriculum, DigitSet, Stage, StageSchedule, TaskConfig, CLASSES};
use memrnn_core::checkpoint::{load_checkpoint, read_tensors, save_checkpoint_with_state};
use memrnn_core::ensemble::MemberAdam;
use memrnn_core::{
    AdamConfig, AdamGroup, AdamState, Backend, CellDims, CellKind, DigitTable, Model, Readout,
    SeqShape, StepGuard, TaskBatchSpec, CE_STATS, CLIP_NORM_LEN,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
/// The storage precision of `W_hh` the run trained with (`Backend::precision`: f32,
/// bf16, f16; master weights and Adam state are f32 whatever it is). Absent means f32.
pub const META_PRECISION: &str = "memrnn.train.precision";
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
    /// `penalty_points` points of a speed penalty), drawn from a digit table of `images`
    /// images, would allocate against this machine's.
    pub fn validate_for(&self, input: usize, images: usize, penalty_points: usize) -> Result<()> {
        self.validate_within(
            input,
            images,
            penalty_points,
            &crate::limits::MemoryBudget::detect()?,
        )
    }

    /// [`Self::validate_for`] against a given `budget`.
    pub fn validate_within(
        &self,
        input: usize,
        images: usize,
        penalty_points: usize,
        budget: &crate::limits::MemoryBudget,
    ) -> Result<()> {
        self.validate()?;
        let cell = CellDims::new(self.cell, input, self.hidden)?;
        let table = crate::limits::digit_table_bytes(images, input.saturating_sub(1));
        let need = crate::limits::train_bytes(&cell, self.task.t_max, self.batch, penalty_points)
            .saturating_add(table);
        budget.check(
            &format!(
                "training a {} cell (input {input}, hidden {}) on batches of {} sequences of {} \
                 steps, drawn from {images} digit images (their f32 table alone {})",
                self.cell,
                self.hidden,
                self.batch,
                self.task.t_max,
                crate::limits::human(table.min(u64::MAX as u128) as u64)
            ),
            need,
            "lower --batch or --hidden (or --t-max), or train on fewer images",
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
    /// `[W_out | b_out]`.
    readout: B::Tensor,
    /// The digits' images, uploaded once (and shared by the members of an ensemble);
    /// batches are drawn from them on the backend.
    digits: Arc<DigitTable<B::Tensor>>,
    ro_adam: AdamState<B::Tensor>,
    /// Steps done (including those not yet read back from the record).
    pub step: u64,
    stages: Vec<Stage>,
    pub stage: usize,
    stage_start: u64,
    acc_ema: f64,
    penalty: Option<SpeedPenalty>,
    /// The penalty's points `V` on the backend.
    penalty_states: Option<B::Tensor>,
    penalty_seed: u64,
    /// Metrics lines of steps after the last saved checkpoint (written with the next one).
    pending_metrics: Vec<String>,
    /// `[RECORD_ROWS, RECORD_WIDTH]`: the numbers of the steps not yet read back.
    record: B::Tensor,
    /// `[1]`: the step's loss, for the divergence guard.
    step_loss: B::Tensor,
    /// `[1]`: the guard's halt flag.
    halted: B::Tensor,
    /// `[1]`: zero (the record's `Σ S` without a penalty).
    zero: B::Tensor,
    /// The host's view of each step in the record, in order.
    unread: Vec<Unread>,
}

/// What the host knew when it ran a step whose numbers are still in the record.
#[derive(Clone, Copy, Debug)]
struct Unread {
    /// Steps done before it.
    step: u64,
    stage: usize,
    stage_start: u64,
    adam_step: u64,
    /// The curriculum advanced after it (by the step-count schedule).
    advanced: bool,
}

impl<'a, B: Backend> Trainer<'a, B> {
    /// A fresh network (PyTorch's default initialisation from `cfg.seed`).
    pub fn new(backend: &'a B, set: &'a DigitSet, cfg: TrainConfig) -> Result<Self> {
        let model = fresh_model(set, &cfg)?;
        Self::from_model_sharing(backend, set, cfg, model, None)
    }

    /// Continues from `model` (fresh optimiser, step 0, first stage): fine-tuning.
    pub fn from_model(
        backend: &'a B,
        set: &'a DigitSet,
        cfg: TrainConfig,
        model: Model,
    ) -> Result<Self> {
        Self::from_model_sharing(backend, set, cfg, model, None)
    }

    /// [`Self::new`] with the digits already on the backend (`digits`, from
    /// [`crate::task::digit_table`] on the same `set`): how an ensemble's members share one copy.
    pub(crate) fn new_sharing(
        backend: &'a B,
        set: &'a DigitSet,
        cfg: TrainConfig,
        digits: Arc<DigitTable<B::Tensor>>,
    ) -> Result<Self> {
        let model = fresh_model(set, &cfg)?;
        Self::from_model_sharing(backend, set, cfg, model, Some(digits))
    }

    pub(crate) fn from_model_sharing(
        backend: &'a B,
        set: &'a DigitSet,
        cfg: TrainConfig,
        model: Model,
        digits: Option<Arc<DigitTable<B::Tensor>>>,
    ) -> Result<Self> {
        cfg.validate_for(set.input_size(), set.image_count(), 0)?;
        let want = CellDims::new(cfg.cell, set.input_size(), cfg.hidden)?;
        check_model(&model, &want)?;
        let readout = model.readout.as_ref().ok_or_else(|| {
            TrainError::Config("the model has no readout; train one with `memrnn train`".into())
        })?;
        let mut ro = readout.weight.clone();
        ro.extend_from_slice(&readout.bias);
        let stages = cfg.curriculum.stages(&cfg.task);
        Ok(Trainer {
            backend,
            set,
            cell: want,
            params: backend.upload(&model.params)?,
            adam: backend.adam_state(model.params.len())?,
            ro_adam: backend.adam_state(ro.len())?,
            readout: backend.upload(&ro)?,
            digits: match digits {
                Some(d) => d,
                None => Arc::new(crate::task::digit_table(backend, set)?),
            },
            step: 0,
            stages,
            stage: 0,
            stage_start: 0,
            acc_ema: 0.0,
            penalty: None,
            penalty_states: None,
            penalty_seed: cfg.seed ^ PENALTY_SALT,
            pending_metrics: vec![],
            record: backend.zeros(RECORD_ROWS * RECORD_WIDTH)?,
            step_loss: backend.zeros(1)?,
            halted: backend.zeros(1)?,
            zero: backend.zeros(1)?,
            unread: vec![],
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
        // Precision: a run continues in the precision it trained with (absent: f32,
        // checkpoints from before precisions existed).
        let trained_in = match ck.metadata.get(META_PRECISION) {
            Some(p) => p
                .parse::<memrnn_core::Precision>()
                .map_err(|e| at(format!("its {META_PRECISION} metadata: {e}")))?,
            None => memrnn_core::Precision::F32,
        };
        if trained_in != backend.precision() {
            return Err(at(format!(
                "it trained with W_hh in {trained_in}, this run stores W_hh in {}: resume with \
                 --precision {trained_in}, or {fine_tune}",
                backend.precision()
            )));
        }
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
        let n_ro = backend.len(&t.readout);
        let (pm, pv) = (
            take(STATE_PARAMS_M, n, false)?,
            take(STATE_PARAMS_V, n, true)?,
        );
        let (rm, rv) = (
            take(STATE_READOUT_M, n_ro, false)?,
            take(STATE_READOUT_V, n_ro, true)?,
        );
        t.adam.m = backend.upload(&pm)?;
        t.adam.v = backend.upload(&pv)?;
        t.adam.step = adam_step;
        t.ro_adam.m = backend.upload(&rm)?;
        t.ro_adam.v = backend.upload(&rv)?;
        t.ro_adam.step = adam_step;
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
            self.cfg
                .validate_for(self.cell.input, self.set.image_count(), p.set.n)?;
        }
        self.penalty_states = match &penalty {
            Some(p) => Some(self.backend.upload(&p.set.states)?),
            None => None,
        };
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
        let ro = self.backend.download(&self.readout)?;
        let nw = CLASSES * self.cell.hidden;
        Ok(Model {
            cell: self.cell,
            params: self.backend.download(&self.params)?,
            readout: Some(Readout {
                classes: CLASSES,
                hidden: self.cell.hidden,
                weight: ro[..nw].to_vec(),
                bias: ro[nw..].to_vec(),
            }),
        })
    }

    /// The loss and gradients of one batch, without updating anything: `(stats,
    /// dparams, dreadout)` with `dreadout = [dW_out | db_out]` (computed on the backend,
    /// then downloaded; `grad_norm` is left 0).
    pub fn gradients(&self, batch: &task::Batch) -> Result<(StepStats, Vec<f32>, Vec<f32>)> {
        let b = self.backend;
        let (x, targets, weights) = (
            b.upload(&batch.x)?,
            b.upload(&targets_f32(batch))?,
            b.upload(&batch.weights)?,
        );
        let xs = match self.penalty_inputs() {
            Some(xs) => Some(b.upload(&xs)?),
            None => None,
        };
        let g = batch_gradients(
            b,
            &self.cell,
            &self.params,
            &self.readout,
            batch.shape,
            &x,
            &targets,
            &weights,
            self.penalty_args(xs.as_ref()),
        )?;
        let mut row = b.download(&g.ce_stats)?;
        row.push(match &g.speed_sum {
            Some(s) => b.download(s)?[0],
            None => 0.0,
        });
        row.extend_from_slice(&[0.0; CLIP_NORM_LEN]);
        let stats = self.stats_of(&StepRow::read(&row, 0), self.step, self.stage);
        Ok((stats, b.download(&g.dparams)?, b.download(&g.dreadout)?))
    }

    fn penalty_args<'t>(&'t self, x: Option<&'t B::Tensor>) -> Option<PenaltyArgs<'t, B::Tensor>> {
        match (&self.penalty, &self.penalty_states, x) {
            (Some(penalty), Some(states), Some(x)) => Some(PenaltyArgs { penalty, states, x }),
            _ => None,
        }
    }

    /// The [`StepStats`] of step `step` (steps done before it) at curriculum stage `stage`.
    fn stats_of(&self, row: &StepRow, step: u64, stage: usize) -> StepStats {
        let lambda = self.penalty.as_ref().map_or(0.0, |p| p.lambda as f64);
        let penalty = lambda * row.speed_sum;
        let st = self.stages[stage];
        StepStats {
            step,
            loss: row.ce + penalty,
            ce: row.ce,
            penalty,
            speed_sum: row.speed_sum,
            report_acc: row.report_acc(),
            silence_acc: row.silence_acc(),
            grad_norm: row.grad_norm,
            t_max: st.t_max,
            vocab: st.vocab,
            stage,
        }
    }

    /// One training step, its numbers read back at once. Divergence is reported as an
    /// error naming `checkpoint`.
    pub fn train_step(&mut self, checkpoint: &str) -> Result<StepStats> {
        self.step_on_backend()?;
        let stats = self.read_record(checkpoint)?;
        stats
            .last()
            .copied()
            .ok_or_else(|| TrainError::Config("internal: a training step left no record".into()))
    }

    /// `n` training steps, their numbers read back only when the record fills, when the
    /// curriculum needs the accuracy, and after the last (no logging, no checkpoints: what
    /// [`Self::run`] does between its intervals, for benchmarks and library use).
    pub fn train_steps(&mut self, n: u64, checkpoint: &str) -> Result<Vec<StepStats>> {
        let mut out = Vec::new();
        for k in 0..n {
            self.step_on_backend()?;
            out.extend(self.read_when_needed(k + 1 == n, checkpoint)?);
        }
        Ok(out)
    }

    /// Reads the record back when `last`, when it is full, or when the curriculum needs
    /// the accuracy (what [`Self::train_steps`] does after each step).
    pub(crate) fn read_when_needed(
        &mut self,
        last: bool,
        checkpoint: &str,
    ) -> Result<Vec<StepStats>> {
        if last || self.unread.len() >= RECORD_ROWS || self.needs_each_step() {
            self.read_record(checkpoint)
        } else {
            Ok(vec![])
        }
    }

    /// Whether the curriculum's next move depends on this step's accuracy: then every
    /// step is read back before the next is drawn.
    fn needs_each_step(&self) -> bool {
        self.stage + 1 < self.stages.len()
            && matches!(self.cfg.schedule, StageSchedule::Accuracy { .. })
    }

    /// One step on the backend: draws the batch there, reads nothing back; its numbers go
    /// to the record (read with [`Self::read_record`], which must come before the record
    /// is full or the curriculum needs the accuracy). The one-member case of
    /// [`Self::steps_together`].
    fn step_on_backend(&mut self) -> Result<()> {
        let b = self.backend;
        match Self::steps_together(b, &mut [self])?.pop() {
            Some(r) => r,
            None => config_err("internal: a training step gave no outcome"),
        }
    }

    /// The next step's batch and its shape; refuses when the record is full.
    fn next_spec(&self) -> Result<(TaskBatchSpec, SeqShape)> {
        if self.unread.len() >= RECORD_ROWS {
            return config_err("internal: the step record is full; read it first");
        }
        let stage = self.current_stage();
        let task = &self.cfg.task;
        let spec = TaskBatchSpec {
            seed: self.cfg.seed,
            step: self.step,
            t_max: stage.t_max,
            vocab: stage.vocab,
            delta_min: task.delta_min,
            batch: self.cfg.batch,
            noise_mean: task.noise_mean,
            noise_std: task.noise_std,
        };
        Ok((spec, SeqShape::new(stage.t_max, self.cfg.batch)?))
    }

    /// The speed penalty's inputs of the next step, drawn on the backend.
    fn penalty_x(&self) -> Result<Option<B::Tensor>> {
        let task = &self.cfg.task;
        Ok(match &self.penalty {
            Some(p) => Some(self.backend.delay_inputs(
                self.penalty_seed,
                self.step,
                p.set.n,
                self.set.pixels,
                task.noise_mean,
                task.noise_std,
            )?),
            None => None,
        })
    }

    /// One training step of every trainer of `ts` (all on `b`), through the backend's
    /// ensemble operations: one call per operation for the trainers that share a cell, a
    /// sequence length (their curriculum stages may differ) and a digit table, and one
    /// clipped Adam update for those that share clipping and Adam's settings. Each
    /// trainer's step is exactly what it would take alone (the ensemble operations'
    /// contract). The outer error stops every trainer; an inner one (the backend refused
    /// that trainer's numbers) stops only that trainer, which then took no step.
    pub(crate) fn steps_together(b: &B, ts: &mut [&mut Self]) -> Result<Vec<Result<()>>> {
        let n = ts.len();
        let mut outcome: Vec<Result<()>> = (0..n).map(|_| Ok(())).collect();
        let specs: Vec<(TaskBatchSpec, SeqShape)> =
            ts.iter().map(|t| t.next_spec()).collect::<Result<_>>()?;
        let mut grads: Vec<Option<StepGrads<B::Tensor>>> = (0..n).map(|_| None).collect();
        let view: &[&mut Self] = ts;
        let groups = group_by(n, |i, j| {
            specs[i].1 == specs[j].1
                && view[i].cell == view[j].cell
                && Arc::ptr_eq(&view[i].digits, &view[j].digits)
        });
        for g in &groups {
            let lead: &Self = view[g[0]];
            let gspecs: Vec<TaskBatchSpec> = g.iter().map(|&i| specs[i].0).collect();
            let batches = b.ensemble_task_batch(&lead.digits, &gspecs)?;
            let xs: Vec<Option<B::Tensor>> = g
                .iter()
                .map(|&i| view[i].penalty_x())
                .collect::<Result<_>>()?;
            let args: Vec<GradArgs<'_, B::Tensor>> = g
                .iter()
                .zip(&batches)
                .zip(&xs)
                .map(|((&i, batch), x)| GradArgs {
                    params: &view[i].params,
                    readout: &view[i].readout,
                    x: &batch.x,
                    targets: &batch.targets,
                    weights: &batch.weights,
                    penalty: view[i].penalty_args(x.as_ref()),
                })
                .collect();
            let shape = specs[g[0]].1;
            match ensemble_batch_gradients(b, &lead.cell, shape, &args) {
                Ok(gs) => g.iter().zip(gs).for_each(|(&i, gr)| grads[i] = Some(gr)),
                Err(e) if g.len() == 1 => outcome[g[0]] = Err(e),
                Err(_) => {
                    // The backend refused some member's numbers (a non-finite gradient,
                    // say): each member on its own, so that only those stop.
                    for (k, &i) in g.iter().enumerate() {
                        let one = std::slice::from_ref(&args[k]);
                        match ensemble_batch_gradients(b, &lead.cell, shape, one) {
                            Ok(mut gs) => grads[i] = gs.pop(),
                            Err(e) => outcome[i] = Err(e),
                        }
                    }
                }
            }
        }
        // The guards' losses, L_CE + λ Σ S, and what the host knew before each step.
        let mut unread: Vec<Option<Unread>> = (0..n).map(|_| None).collect();
        for (i, t) in ts.iter_mut().enumerate() {
            if let Some(g) = &grads[i] {
                b.copy_into(&mut t.step_loss, 0, &g.ce_stats, 0, 1)?;
                if let (Some(p), Some(s)) = (&t.penalty, &g.speed_sum) {
                    b.axpy(&mut t.step_loss, p.lambda, s)?;
                }
                unread[i] = Some(Unread {
                    step: t.step,
                    stage: t.stage,
                    stage_start: t.stage_start,
                    adam_step: t.adam.step,
                    advanced: false,
                });
            }
        }
        let active: Vec<usize> = (0..n).filter(|&i| grads[i].is_some()).collect();
        let view: &[&mut Self] = ts;
        let updates = group_by(active.len(), |a, c| {
            let (x, y) = (&view[active[a]].cfg, &view[active[c]].cfg);
            x.clip == y.clip && x.adam == y.adam
        });
        let mut clips: Vec<Option<B::Tensor>> = (0..n).map(|_| None).collect();
        for u in updates {
            let members_of: Vec<usize> = u.iter().map(|&a| active[a]).collect();
            let (clip, adam) = (ts[members_of[0]].cfg.clip, ts[members_of[0]].cfg.adam);
            let mut members: Vec<MemberAdam<'_, B::Tensor>> = ts
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| members_of.contains(i))
                .filter_map(|(i, t)| grads[i].as_ref().map(|g| t.member_adam(g)))
                .collect();
            let out = b.ensemble_clip_adam_update(&mut members, clip, &adam)?;
            drop(members);
            for (i, c) in members_of.into_iter().zip(out) {
                clips[i] = Some(c);
            }
        }
        for (i, t) in ts.iter_mut().enumerate() {
            if let (Some(g), Some(c), Some(u)) = (&grads[i], &clips[i], unread[i]) {
                t.file_step(g, c, u)?;
            }
        }
        Ok(outcome)
    }

    /// This trainer's clipped, guarded Adam update over its parameters and readout.
    fn member_adam<'s>(&'s mut self, g: &'s StepGrads<B::Tensor>) -> MemberAdam<'s, B::Tensor> {
        MemberAdam {
            groups: vec![
                AdamGroup {
                    params: &mut self.params,
                    grad: &g.dparams,
                    state: &mut self.adam,
                },
                AdamGroup {
                    params: &mut self.readout,
                    grad: &g.dreadout,
                    state: &mut self.ro_adam,
                },
            ],
            guard: Some(StepGuard {
                loss: &self.step_loss,
                // A limit beyond f32's range becomes ∞: then only a non-finite loss trips.
                max_loss: self.cfg.diverge_loss as f32,
                halted: &mut self.halted,
            }),
        }
    }

    /// Files a step's numbers into the record and moves the step count (and the
    /// curriculum, when it moves by step count) on.
    fn file_step(
        &mut self,
        g: &StepGrads<B::Tensor>,
        clip: &B::Tensor,
        unread: Unread,
    ) -> Result<()> {
        let b = self.backend;
        let row = self.unread.len() * RECORD_WIDTH;
        b.copy_into(&mut self.record, row, &g.ce_stats, 0, CE_STATS)?;
        if let Some(s) = &g.speed_sum {
            b.copy_into(&mut self.record, row + REC_SPEED, s, 0, 1)?;
        } else {
            b.copy_into(&mut self.record, row + REC_SPEED, &self.zero, 0, 1)?;
        }
        b.copy_into(&mut self.record, row + REC_CLIP, clip, 0, CLIP_NORM_LEN)?;
        self.unread.push(unread);
        self.step += 1;
        if !self.needs_each_step() && self.stage_due() {
            self.stage += 1;
            self.stage_start = self.step;
            if let Some(u) = self.unread.last_mut() {
                u.advanced = true;
            }
        }
        Ok(())
    }

    /// Reads the record back and replays the unread steps on the host: their stats, the
    /// accuracy average driving the curriculum, and the divergence stop at the first step
    /// the guard skipped (rewinding the trainer to just before it).
    fn read_record(&mut self, checkpoint: &str) -> Result<Vec<StepStats>> {
        if self.unread.is_empty() {
            return Ok(vec![]);
        }
        let record = self.backend.download(&self.record)?;
        let unread = std::mem::take(&mut self.unread);
        let mut out = Vec::with_capacity(unread.len());
        for (k, u) in unread.iter().enumerate() {
            let row = StepRow::read(&record, k);
            let stats = self.stats_of(&row, u.step, u.stage);
            if row.skipped {
                // Back to the state before the bad step: the guard skipped its update and
                // every later one.
                self.step = u.step;
                self.stage = u.stage;
                self.stage_start = u.stage_start;
                self.adam.step = u.adam_step;
                self.ro_adam.step = u.adam_step;
                self.halted = self.backend.zeros(1)?;
                // The host path's order: the loss, its limit, then the gradient norm.
                let reason = if !stats.loss.is_finite() {
                    format!("the loss is {}", stats.loss)
                } else if stats.loss > self.cfg.diverge_loss || row.grad_norm.is_finite() {
                    format!(
                        "the loss {:.3e} exceeds the divergence limit {:.3e}",
                        stats.loss, self.cfg.diverge_loss
                    )
                } else {
                    format!("the gradient norm is {}", row.grad_norm)
                };
                return Err(TrainError::Diverged {
                    step: u.step,
                    reason,
                    checkpoint: checkpoint.to_string(),
                });
            }
            self.acc_ema = if u.step + 1 == u.stage_start + 1 {
                stats.report_acc
            } else {
                0.9 * self.acc_ema + 0.1 * stats.report_acc
            };
            if u.advanced {
                self.acc_ema = 0.0;
            }
            out.push(stats);
        }
        if self.needs_each_step() && self.stage_due() {
            self.stage += 1;
            self.stage_start = self.step;
            self.acc_ema = 0.0;
        }
        Ok(out)
    }

    /// The curriculum's schedule says to move to the next stage now.
    fn stage_due(&self) -> bool {
        if self.stage + 1 >= self.stages.len() {
            return false;
        }
        let in_stage = self.step - self.stage_start;
        match self.cfg.schedule {
            StageSchedule::Every(n) => in_stage >= n,
            StageSchedule::Accuracy {
                threshold,
                min_steps,
            } => in_stage >= min_steps && self.acc_ema >= threshold,
        }
    }

    /// Writes the checkpoint: weights, Adam state, step and the metrics lines not yet in
    /// the metrics file, in one atomic write (see the module docs).
    pub fn save(&self, out: &RunOutput) -> Result<PathBuf> {
        out.validate()?;
        if !self.unread.is_empty() {
            // A checkpoint must never hold a step whose numbers (and divergence check)
            // were not read: `run` reads the record first.
            return config_err("internal: saving with training steps not yet read back");
        }
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
        meta.insert(
            META_PRECISION.to_string(),
            self.backend.precision().to_string(),
        );
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
        let rm = self.backend.download(&self.ro_adam.m)?;
        let rv = self.backend.download(&self.ro_adam.v)?;
        save_checkpoint_with_state(
            &path,
            &self.model()?,
            &meta,
            &[
                (STATE_PARAMS_M, vec![m.len()], &m),
                (STATE_PARAMS_V, vec![v.len()], &v),
                (STATE_READOUT_M, vec![rm.len()], &rm),
                (STATE_READOUT_V, vec![rv.len()], &rv),
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
        let mut log = self.run_begin(out)?;
        if every > 0 && self.step % every == 0 {
            track(self)?;
        }
        while self.step < self.cfg.steps {
            if let Err(e) = self.step_on_backend() {
                log.pb.abandon_with_message("failed");
                return Err(e);
            }
            self.run_after_step(out, &mut log, every, &mut track)?;
        }
        self.run_end(out, log)
    }

    /// The start of [`Self::run_tracked`]: checks, the output folder, the metrics file
    /// made to describe exactly the steps the state we start from covers, the progress bar.
    pub(crate) fn run_begin(&mut self, out: &RunOutput) -> Result<RunLog> {
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
        let metrics = sync_metrics(&metrics_path, self.step, &pending)?;
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
        Ok(RunLog {
            metrics,
            metrics_path,
            pb,
            start: Instant::now(),
            last_ckpt: out.checkpoint().is_file().then(|| out.checkpoint()),
            win_rep: 0.0,
            win_sil: 0.0,
            win_n: 0,
            last: StepStats::default(),
        })
    }

    /// After each step of [`Self::run_tracked`]: reads the record back where the host
    /// needs the numbers (a log line, a checkpoint, a tracking point, the end, a full
    /// record, or a curriculum that moves on accuracy), logs, checkpoints and tracks.
    /// Divergence is an error (the trainer rewound to before the bad step).
    pub(crate) fn run_after_step(
        &mut self,
        out: &RunOutput,
        log: &mut RunLog,
        every: u64,
        track: &mut impl FnMut(&Self) -> Result<()>,
    ) -> Result<()> {
        let s = self.step;
        let due = |n: u64| n > 0 && s % n == 0;
        if !(due(self.cfg.log_every)
            || due(self.cfg.checkpoint_every)
            || due(every)
            || s == self.cfg.steps
            || self.unread.len() >= RECORD_ROWS
            || self.needs_each_step())
        {
            return Ok(());
        }
        let ck_name = log
            .last_ckpt
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none (no checkpoint was written before the failure)".into());
        let steps = match self.read_record(&ck_name) {
            Ok(v) => v,
            Err(e) => {
                log.pb.abandon_with_message("diverged");
                return Err(e);
            }
        };
        for stats in steps {
            log.last = stats;
            log.win_rep += stats.report_acc;
            log.win_sil += stats.silence_acc;
            log.win_n += 1;
            // Steps done after this one, as the host path counted them.
            let done = stats.step + 1;
            if done % self.cfg.log_every == 0 || done == self.cfg.steps {
                let win = log.win_n as f64;
                let mut v =
                    serde_json::to_value(stats).map_err(|e| TrainError::Config(e.to_string()))?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("step".into(), done.into());
                    o.insert("report_acc_window".into(), (log.win_rep / win).into());
                    o.insert("elapsed_s".into(), log.start.elapsed().as_secs_f64().into());
                    o.insert("precision".into(), self.backend.precision().name().into());
                }
                self.pending_metrics.push(v.to_string());
                log.pb.set_message(format!(
                    "loss {:.3} report {:.2} silence {:.3} T {} vocab {}",
                    stats.loss,
                    log.win_rep / win,
                    log.win_sil / win,
                    stats.t_max,
                    stats.vocab
                ));
                if done < self.cfg.steps {
                    log.win_rep = 0.0;
                    log.win_sil = 0.0;
                    log.win_n = 0;
                }
            }
        }
        if self.step % self.cfg.checkpoint_every == 0 && self.step < self.cfg.steps {
            log.last_ckpt = Some(self.save_and_log(out, &mut log.metrics, &log.metrics_path)?);
        }
        if every > 0 && self.step % every == 0 {
            track(self)?;
        }
        log.pb.set_position(self.step);
        Ok(())
    }

    /// The end of [`Self::run_tracked`]: the last checkpoint and the summary.
    pub(crate) fn run_end(&mut self, out: &RunOutput, mut log: RunLog) -> Result<TrainSummary> {
        log.pb.finish();
        let ck = self.save_and_log(out, &mut log.metrics, &log.metrics_path)?;
        let n = log.win_n.max(1) as f64;
        Ok(TrainSummary {
            steps: self.step,
            last: log.last,
            report_acc: log.win_rep / n,
            silence_acc: log.win_sil / n,
            seconds: log.start.elapsed().as_secs_f64(),
            checkpoint: Some(ck),
        })
    }
}

/// A run's bookkeeping between steps ([`Trainer::run_begin`] to [`Trainer::run_end`]):
/// the metrics file, the progress bar and the current log window.
pub(crate) struct RunLog {
    metrics: std::fs::File,
    metrics_path: PathBuf,
    pub(crate) pb: indicatif::ProgressBar,
    start: Instant,
    last_ckpt: Option<PathBuf>,
    win_rep: f64,
    win_sil: f64,
    win_n: u64,
    last: StepStats,
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

/// A fresh network for `cfg` on `set` (PyTorch's default initialisation from `cfg.seed`),
/// after checking the configuration (before the parameters are allocated).
fn fresh_model(set: &DigitSet, cfg: &TrainConfig) -> Result<Model> {
    cfg.validate_for(set.input_size(), set.image_count(), 0)?;
    let cell = CellDims::new(cfg.cell, set.input_size(), cfg.hidden)?;
    let mut model = Model::init(cell, cfg.seed);
    model.readout = Some(Readout::init(CLASSES, cfg.hidden, cfg.seed ^ 0xAB)?);
    Ok(model)
}

/// Groups `0..n` by `same` (an equivalence), each group in order, groups in the order of
/// their first member.
fn group_by(n: usize, same: impl Fn(usize, usize) -> bool) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = vec![];
    for i in 0..n {
        match groups.iter_mut().find(|g| same(g[0], i)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
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
