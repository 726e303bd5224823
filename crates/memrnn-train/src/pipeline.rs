//! The whole experiment: train a network, find its slow points, fine-tune it with the
//! speed penalty on a constant set V (by default its per-class slow points) and, as a
//! control, with `λ = 0` (same steps, same seed, same batches), evaluate all three far
//! beyond the training delay and measure each one's per-class slow points, and write a
//! report folder:
//!
//! ```text
//! out/
//!   base.safetensors, base.metrics.jsonl  the checkpoint (weights + Adam state) and metrics
//!   speed.safetensors ...            fine-tuned with λ > 0
//!   control.safetensors ...          fine-tuned with λ = 0
//!   slow_points_base.{safetensors,json}  the trained network's slow points (finder report)
//!   v_states.json                    the constant set V used
//!   eval_{base,speed,control}.json   extrapolation results
//!   extrapolation.svg                the three curves
//!   summary.json, summary.txt        the table printed at the end
//! ```

use crate::error::{config_err, Result, TrainError};
use crate::eval::{evaluate, plot_curves, EvalConfig, EvalResult};
use crate::objective::{mean_speed, SpeedPenalty, SpeedSet};
use crate::slow::{class_slow_points_with, find_task_slow_points};
use crate::task::{delay_inputs, DigitSet};
use crate::train::{RunOutput, TrainConfig, TrainSummary, Trainer};
use crate::vset;
use memrnn_core::{Backend, Model};
use memrnn_slowpoints::FinderConfig;
use serde::Serialize;
use std::path::PathBuf;

/// Where `V` comes from until the slow-point finder is wired in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum VSource {
    /// Per-class mean states `delay` steps after the image, from `trials` trials, each
    /// repeated `copies` times (each copy its own noise input).
    ClassMeans {
        trials: usize,
        delay: usize,
        copies: usize,
    },
    /// `n` states from delay-period trajectories within `delay` steps of the image.
    Trajectory { n: usize, delay: usize },
    /// The per-class slow points (MATH.md §5 (a), the ICML paper's choice): each class's
    /// mean state `delay` steps after the image (from `trials` trials) moved down the
    /// speed by the default finder's search (`crate::slow::class_slow_points_with`:
    /// Levenberg–Marquardt), each repeated `copies` times.
    SlowPoints {
        trials: usize,
        delay: usize,
        copies: usize,
    },
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub train: TrainConfig,
    /// The slow-point finder run on the trained network (its report goes to
    /// `slow_points_base.*`).
    pub finder: FinderConfig,
    /// Candidates for that finder taken from delay trajectories (besides the 10 class means).
    pub finder_trajectory_candidates: usize,
    pub finetune_steps: u64,
    /// Learning rate while fine-tuning.
    pub finetune_lr: f32,
    pub lambda: f32,
    pub v_source: VSource,
    pub eval: EvalConfig,
    pub out_dir: PathBuf,
    pub progress: bool,
}

impl PipelineConfig {
    /// Every setting, before anything runs: the training and evaluation configs, a
    /// positive λ (with λ = 0 the "speed" network would be the control), at least one
    /// fine-tuning step, and the finder's settings.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.eval.validate()?;
        crate::objective::check_lambda(self.lambda)?;
        if self.lambda == 0.0 {
            return config_err(
                "λ = 0: the speed-regularised network would be the λ = 0 control itself; give a                  positive λ (--lambda), e.g. 0.01",
            );
        }
        if self.finetune_steps == 0 || self.finetune_steps > crate::limits::MAX_STEPS {
            return config_err(format!(
                "{} fine-tuning steps: give 1 to {} (0 would report the trained network                  three times under three names)",
                self.finetune_steps,
                crate::limits::MAX_STEPS
            ));
        }
        crate::train::TrainConfig {
            adam: memrnn_core::AdamConfig {
                lr: self.finetune_lr,
                ..self.train.adam
            },
            ..self.train.clone()
        }
        .validate()?;
        crate::options::SlowPointOptions {
            candidates: self.finder_trajectory_candidates,
            delay: self.train.task.t_max,
            mean_trials: 500,
            finder: self.finder,
            seed: 0,
        }
        .validate()
    }
}

/// One row of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub name: String,
    pub lambda: Option<f32>,
    /// Accuracy at the delays of the summary columns.
    pub accuracy: Vec<(usize, f64)>,
    /// Mean speed `S` over the (fixed) set `V`.
    pub speed_on_v: f64,
    /// Mean speed `S` at the network's own class means.
    pub speed_own_means: f64,
    /// `S` at the network's own per-class slow points (Adam from its class means), digit
    /// order: the speeds per class before (base) and after fine-tuning (speed, control).
    pub slow_point_speed_sq: Vec<f32>,
    /// Their median.
    pub slow_point_median: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PipelineReport {
    pub backend: String,
    pub train: TrainSummary,
    pub rows: Vec<SummaryRow>,
    pub v_source: String,
    pub v_points: usize,
    /// The base network's slow points: the finder's table.
    pub slow_points: String,
    pub svg: PathBuf,
    pub seconds: f64,
    /// Evaluation trials per delay (for the uncertainty of one run's accuracies).
    pub eval_trials: usize,
}

impl PipelineReport {
    /// `S` at each network's per-class slow points, one column per digit.
    pub fn slow_point_table(&self) -> String {
        let mut s = format!("{:<10}", "S at slow pt");
        for d in 0..self.rows.first().map_or(0, |r| r.slow_point_speed_sq.len()) {
            s += &format!(" {:>9}", format!("digit {d}"));
        }
        s.push('\n');
        for r in &self.rows {
            s += &format!("{:<10}", r.name);
            for v in &r.slow_point_speed_sq {
                s += &format!(" {:>9.2e}", v);
            }
            s.push('\n');
        }
        s
    }

    /// How sure this one run is of the penalty's effect at the longest delay: the
    /// difference speed − control with a 95% interval from the evaluation trials alone
    /// (normal approximation to two binomial proportions, as if the two evaluations were
    /// independent: they share trials, so this is conservative), and the reminder that
    /// seeds vary far more than trials do.
    pub fn gain_line(&self) -> Option<String> {
        let at_longest = |name: &str| {
            let r = self.rows.iter().find(|r| r.name == name)?;
            r.accuracy.last().copied()
        };
        let ((d, speed), (_, control)) = (at_longest("speed")?, at_longest("control")?);
        let (diff, half) = crate::stats::accuracy_diff_ci95(speed, control, self.eval_trials);
        Some(format!(
            "speed − control at delay {d}: {diff:+.3} ± {:.3} (95%, from the {} evaluation trials \
             only). One seed: how much the penalty helps varies from seed to seed far more \
             than that; `memrnn sweep` measures the paired gain over seeds with its interval \
             (benches/RESULTS.md has this configuration's and a larger one's).",
            half, self.eval_trials
        ))
    }

    pub fn table(&self) -> String {
        let mut s = format!("{:<10} {:>8}", "network", "lambda");
        if let Some(r) = self.rows.first() {
            for (d, _) in &r.accuracy {
                s += &format!(" {:>9}", format!("acc@{d}"));
            }
        }
        s += &format!(
            " {:>11} {:>12} {:>14}\n",
            "S on V", "S own means", "S slow pts med"
        );
        for r in &self.rows {
            let l = r
                .lambda
                .map(|l| format!("{l}"))
                .unwrap_or_else(|| "-".into());
            s += &format!("{:<10} {:>8}", r.name, l);
            for (_, a) in &r.accuracy {
                s += &format!(" {:>9.3}", a);
            }
            s += &format!(
                " {:>11.3e} {:>12.3e} {:>14.3e}\n",
                r.speed_on_v, r.speed_own_means, r.slow_point_median
            );
        }
        s
    }
}

fn write_json(path: &std::path::Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

/// Builds `V` for `model` from `src`.
pub fn build_v<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    cfg: &TrainConfig,
    src: VSource,
) -> Result<SpeedSet> {
    let seed = cfg.seed ^ 0x7E57;
    match src {
        VSource::ClassMeans {
            trials,
            delay,
            copies,
        } => {
            if copies == 0 {
                return config_err("class-mean copies must be at least 1");
            }
            Ok(
                vset::class_mean_states(backend, model, set, &cfg.task, trials, delay, seed)?
                    .replicate(copies),
            )
        }
        VSource::Trajectory { n, delay } => {
            vset::trajectory_states(backend, model, set, &cfg.task, n, delay, seed)
        }
        VSource::SlowPoints {
            trials,
            delay,
            copies,
        } => {
            if copies == 0 {
                return config_err("slow-point copies must be at least 1");
            }
            let means =
                vset::class_mean_states(backend, model, set, &cfg.task, trials, delay, seed)?;
            let slow = class_slow_points_with(
                backend,
                model,
                &cfg.task,
                &means,
                &FinderConfig::default(),
            )?;
            Ok(slow.states.replicate(copies))
        }
    }
}

/// Runs the pipeline (see the module docs).
pub fn run_pipeline<B: Backend>(
    backend: &B,
    set: &DigitSet,
    cfg: &PipelineConfig,
) -> Result<PipelineReport> {
    cfg.validate()?;
    let cell = memrnn_core::CellDims::new(cfg.train.cell, set.input_size(), cfg.train.hidden)?;
    cfg.train
        .validate_for(set.input_size(), set.image_count(), 0)?;
    cfg.eval.validate_for(&cell, set.image_count())?;
    let start = std::time::Instant::now();
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| TrainError::io(&cfg.out_dir, e))?;
    let out = |name: &str| RunOutput {
        dir: cfg.out_dir.clone(),
        name: name.to_string(),
        progress: cfg.progress,
    };

    // 1. Train.
    let mut base_t = Trainer::new(backend, set, cfg.train.clone())?;
    let train = base_t.run(&out("base"))?;
    let base = base_t.model()?;

    // 2. The slow points of the trained network (full finder: class means and delay
    //    trajectories as candidates, Jacobians, eigenvalues), and the constant set V.
    let means = vset::class_mean_states(
        backend,
        &base,
        set,
        &cfg.train.task,
        500,
        20,
        cfg.train.seed ^ 0x7E57,
    )?;
    let finder = find_task_slow_points(
        backend,
        &base,
        set,
        &cfg.train.task,
        &means,
        cfg.finder_trajectory_candidates,
        cfg.train.task.t_max,
        cfg.train.seed ^ 0x51_0F,
        &cfg.finder,
    )?;
    memrnn_slowpoints::write_safetensors(
        &finder,
        &cfg.out_dir.join("slow_points_base.safetensors"),
    )?;
    memrnn_slowpoints::write_summary_json(&finder, &cfg.out_dir.join("slow_points_base.json"))?;
    let finder_table = memrnn_slowpoints::format_table(&finder);
    let v = build_v(backend, &base, set, &cfg.train, cfg.v_source)?;
    write_json(
        &cfg.out_dir.join("v_states.json"),
        &serde_json::json!({"source": v.source, "n": v.n, "state_size": v.state_size, "states": v.states}),
    )?;

    // 3. Fine-tune with λ and the λ = 0 control: same steps, seed and batches.
    let mut ft_cfg = cfg.train.clone();
    ft_cfg.steps = cfg.finetune_steps;
    ft_cfg.seed = cfg.train.seed.wrapping_add(1);
    ft_cfg.adam.lr = cfg.finetune_lr;
    ft_cfg.curriculum = crate::task::Curriculum::None;
    ft_cfg.checkpoint_every = ft_cfg.checkpoint_every.max(1);
    let mut tuned = vec![];
    for (name, lambda) in [("speed", cfg.lambda), ("control", 0.0)] {
        let mut t = Trainer::from_model(backend, set, ft_cfg.clone(), base.clone())?;
        t.set_penalty(Some(SpeedPenalty::new(lambda, v.clone())?))?;
        t.run(&out(name))?;
        tuned.push((name, Some(lambda), t.model()?));
    }

    // 4. Evaluate.
    let mut nets = vec![("base", None, base)];
    nets.extend(tuned);
    let xs = delay_inputs(&cfg.train.task, set.input_size(), 0x5BEED, 0, v.n);
    let pb = if cfg.progress {
        let n =
            (cfg.eval.trials.div_ceil(cfg.eval.batch) * cfg.eval.delays.len() * nets.len()) as u64;
        let pb = indicatif::ProgressBar::new(n);
        pb.set_prefix("eval");
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut results: Vec<(String, EvalResult)> = vec![];
    let mut rows = vec![];
    let d_max = cfg.eval.delays.iter().copied().max().unwrap_or(1);
    let mut cols = vec![cfg.train.task.t_max - 1, 100, d_max];
    cols.retain(|&d| d <= d_max);
    cols.dedup();
    for (name, lambda, model) in &nets {
        let r = evaluate(backend, model, set, &cfg.train.task, &cfg.eval, Some(&pb))?;
        write_json(&cfg.out_dir.join(format!("eval_{name}.json")), &r)?;
        let params = backend.upload(&model.params)?;
        let s_v = mean_speed(backend, &model.cell, &params, &v, &xs)?;
        let own = vset::class_mean_states(
            backend,
            model,
            set,
            &cfg.train.task,
            500,
            20,
            cfg.train.seed ^ 0x7E57,
        )?;
        let xo = delay_inputs(&cfg.train.task, set.input_size(), 0x5BEED, 1, own.n);
        let s_own = mean_speed(backend, &model.cell, &params, &own, &xo)?;
        let own_slow = class_slow_points_with(backend, model, &cfg.train.task, &own, &cfg.finder)?;
        rows.push(SummaryRow {
            name: name.to_string(),
            lambda: *lambda,
            accuracy: cols.iter().map(|&d| (d, r.at(d))).collect(),
            speed_on_v: s_v,
            speed_own_means: s_own,
            slow_point_speed_sq: own_slow.speed_sq.clone(),
            slow_point_median: own_slow.median_speed_sq(),
        });
        results.push((name.to_string(), r));
    }
    pb.finish_and_clear();
    let svg = cfg.out_dir.join("extrapolation.svg");
    let curves: Vec<(&str, &EvalResult)> = results.iter().map(|(n, r)| (n.as_str(), r)).collect();
    plot_curves(
        &svg,
        &format!(
            "{} H{}: report accuracy vs delay (trained at T={})",
            cfg.train.cell, cfg.train.hidden, cfg.train.task.t_max
        ),
        &curves,
    )?;
    let report = PipelineReport {
        backend: backend.name(),
        train,
        rows,
        v_source: v.source.clone(),
        v_points: v.n,
        slow_points: finder_table,
        svg,
        seconds: start.elapsed().as_secs_f64(),
        eval_trials: cfg.eval.trials,
    };
    write_json(&cfg.out_dir.join("summary.json"), &report)?;
    let txt = cfg.out_dir.join("summary.txt");
    let text = format!(
        "{}{}\n{}\n{}",
        report.table(),
        report.gain_line().map(|l| l + "\n").unwrap_or_default(),
        report.slow_point_table(),
        report.slow_points
    );
    std::fs::write(&txt, text).map_err(|e| TrainError::io(&txt, e))?;
    Ok(report)
}
