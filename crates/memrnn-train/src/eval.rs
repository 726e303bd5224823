//! Memory extrapolation: report accuracy against the delay `t_s − t_a`, far beyond the
//! training delays (MATH.md §6).
//!
//! Trials come in batches of `batch` rows sharing one read time `t_a` (drawn per batch
//! uniformly in `[0, read_span)`), each row its own digit and image (Philox, keyed by
//! `(seed, batch index)`). A batch runs **one** long trajectory of noise after the image,
//! forward only, in chunks of at most `chunk` steps carrying the state through `s0`, so
//! memory stays bounded whatever the delay; at `t_a + d` for each delay `d` the run
//! branches for one step with the trigger on and the readout's answer is scored. The
//! delays of one batch thus share their trajectories (the curve is that of one set of
//! trials observed at many delays).

use crate::error::{config_err, Result};
use crate::philox::{self, Stream};
use crate::task::{digit_table, DigitSet, TaskConfig};
use memrnn_core::ensemble::SeqArgs;
use memrnn_core::{Backend, Model, SeqForward, SeqShape, TaskChunkSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Longest delay accepted.
pub const MAX_DELAY: usize = 1_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Delays `t_s − t_a` to score (each ≥ 1).
    pub delays: Vec<usize>,
    /// Trials per delay (rounded up to whole batches).
    pub trials: usize,
    /// Rows per forward pass.
    pub batch: usize,
    /// Longest forward chunk.
    pub chunk: usize,
    /// `t_a` is drawn in `[0, read_span)`.
    pub read_span: usize,
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            delays: default_delays(1000),
            trials: 1000,
            batch: 500,
            chunk: 50,
            read_span: 16,
            seed: 0xE7A1,
        }
    }
}

/// 4, 6, 8, 10, 12, 16, 20, … roughly log-spaced up to `max`.
pub fn default_delays(max: usize) -> Vec<usize> {
    let mut v = vec![];
    let mut d = 4f64;
    while (d as usize) <= max {
        let k = d.round() as usize;
        if v.last() != Some(&k) {
            v.push(k);
        }
        d *= 1.3;
    }
    if v.last() != Some(&max) && max >= 4 {
        // A log-spaced point within 10% of `max` would be a second, nearly equal point
        // beside it on every curve (988 next to 1000): `max` replaces it.
        if v.len() > 1 && v.last().is_some_and(|&l| (l as f64) * 1.1 > max as f64) {
            v.pop();
        }
        v.push(max);
    }
    v
}

#[cfg(test)]
mod delay_tests {
    use super::default_delays;

    #[test]
    fn default_delays_are_log_spaced_without_a_near_twin_of_the_longest() {
        let d = default_delays(1000);
        assert_eq!(&d[..4], &[4, 5, 7, 9]);
        assert_eq!(d.last(), Some(&1000));
        // 988 would sit next to 1000: gone; 760 stays.
        assert!(!d.contains(&988) && d.contains(&760), "{d:?}");
        for m in [4, 10, 200, 1000, 10_000, 123_456] {
            let d = default_delays(m);
            assert_eq!(d.last(), Some(&m));
            assert!(d.windows(2).all(|w| w[0] < w[1]), "{d:?}");
            let n = d.len();
            if n > 2 {
                assert!(d[n - 1] as f64 >= 1.1 * d[n - 2] as f64, "{m}: {d:?}");
            }
        }
    }
}

impl EvalConfig {
    pub fn validate(&self) -> Result<()> {
        if self.delays.is_empty() {
            return config_err("no delays to evaluate: give at least one (e.g. --max-delay 1000)");
        }
        if let Some(&d) = self.delays.iter().find(|&&d| d == 0 || d > MAX_DELAY) {
            return config_err(format!(
                "delay {d}: a delay t_s − t_a must be between 1 and {MAX_DELAY} steps (--max-delay, --delays)"
            ));
        }
        if self.trials == 0 || self.batch == 0 || self.chunk == 0 || self.read_span == 0 {
            return config_err("trials, batch, chunk and read span must all be at least 1");
        }
        if self.trials > crate::limits::MAX_TRIALS {
            return config_err(format!(
                "{} trials per delay (--trials): at most {} (the standard error of an accuracy is already \
                 below 0.0002 there; more only costs time)",
                self.trials,
                crate::limits::MAX_TRIALS
            ));
        }
        if self.read_span > MAX_DELAY {
            return config_err(format!(
                "read span {}: at most {MAX_DELAY} steps",
                self.read_span
            ));
        }
        Ok(())
    }

    /// [`Self::validate`], then the memory evaluating a `cell` on a digit table of
    /// `images` images would allocate against this machine's.
    pub fn validate_for(&self, cell: &memrnn_core::CellDims, images: usize) -> Result<()> {
        self.validate_within(cell, images, &crate::limits::MemoryBudget::detect()?)
    }

    /// [`Self::validate_for`] against a given `budget`.
    pub fn validate_within(
        &self,
        cell: &memrnn_core::CellDims,
        images: usize,
        budget: &crate::limits::MemoryBudget,
    ) -> Result<()> {
        self.validate()?;
        let table = crate::limits::digit_table_bytes(images, cell.input.saturating_sub(1));
        let need = crate::limits::eval_bytes(cell, self.batch, self.trials, self.chunk)
            .saturating_add(table);
        budget.check(
            &format!(
                "evaluating in batches of {} rows and chunks of {} steps on {images} digit \
                 images (their f32 table alone {})",
                self.batch.min(self.trials),
                self.chunk,
                crate::limits::human(table.min(u64::MAX as u128) as u64)
            ),
            need,
            "lower --eval-batch or --chunk, or evaluate on fewer images",
        )
    }
}

/// Accuracy per delay, overall and per digit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub delays: Vec<usize>,
    /// Overall report accuracy per delay.
    pub accuracy: Vec<f64>,
    /// `[delay][digit]` accuracy.
    pub per_class: Vec<[f64; 10]>,
    /// Trials per digit (the same at every delay).
    pub counts: [usize; 10],
    pub trials: usize,
}

impl EvalResult {
    /// Accuracy at the delay closest to `d`.
    pub fn at(&self, d: usize) -> f64 {
        let i = (0..self.delays.len())
            .min_by_key(|&i| self.delays[i].abs_diff(d))
            .unwrap_or(0);
        self.accuracy.get(i).copied().unwrap_or(f64::NAN)
    }

    /// A plain-text table: one row per delay, overall then per digit.
    pub fn table(&self) -> String {
        let mut s = format!("{:>7} {:>7} |", "delay", "all");
        for d in 0..10 {
            s += &format!(" {:>5}", d);
        }
        s.push('\n');
        for (i, &d) in self.delays.iter().enumerate() {
            s += &format!("{:>7} {:>7.3} |", d, self.accuracy[i]);
            for c in 0..10 {
                s += &format!(" {:>5.2}", self.per_class[i][c]);
            }
            s.push('\n');
        }
        s
    }

    /// The result of `correct[delay][digit]` right answers at `delays` (ascending, as
    /// [`EvalConfig::sorted_delays`]) out of `counts[digit]` trials per digit.
    pub(crate) fn from_counts(
        delays: &[usize],
        correct: &[[usize; 10]],
        counts: [usize; 10],
    ) -> EvalResult {
        let total: usize = counts.iter().sum();
        EvalResult {
            delays: delays.to_vec(),
            accuracy: correct
                .iter()
                .map(|c| c.iter().sum::<usize>() as f64 / total as f64)
                .collect(),
            per_class: correct
                .iter()
                .map(|c| std::array::from_fn(|d| c[d] as f64 / counts[d].max(1) as f64))
                .collect(),
            counts,
            trials: total,
        }
    }
}

impl EvalConfig {
    /// The delays to score, ascending, each once: the order of [`EvalResult::delays`].
    pub fn sorted_delays(&self) -> Vec<usize> {
        let mut delays = self.delays.clone();
        delays.sort_unstable();
        delays.dedup();
        delays
    }
}

/// One batch of an evaluation: its rows, its read time `t_a`, and the inputs of its long
/// run ([`EvalBatch::chunk`]). Every tool that scores trials the way [`evaluate`] does
/// takes its batches from [`EvalBatch::all`], so they see the same trials.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalBatch {
    /// The batch index (the Philox key's counter).
    pub index: usize,
    pub rows: usize,
    /// The image's step, drawn per batch in `[0, read_span)`.
    pub t_read: u32,
    seed: u64,
    noise_mean: f32,
    noise_std: f32,
}

impl EvalBatch {
    /// The batches of `cfg` (`trials` in batches of `batch` rows, the last one short).
    pub fn all(cfg: &EvalConfig, task: &TaskConfig) -> impl Iterator<Item = EvalBatch> {
        let (cfg, task) = (cfg.clone(), *task);
        (0..cfg.trials.div_ceil(cfg.batch)).map(move |k| {
            let key = philox::key(cfg.seed, k as u64);
            EvalBatch {
                index: k,
                rows: cfg.batch.min(cfg.trials - k * cfg.batch),
                t_read: philox::below(
                    philox::philox4x32_10([0, 0, 0, Stream::Sample as u32], key)[0],
                    cfg.read_span as u32,
                ),
                seed: cfg.seed,
                noise_mean: task.noise_mean,
                noise_std: task.noise_std,
            }
        })
    }

    /// Steps `t0 .. t0 + len` of this batch's run; `t_report` switches the trigger on.
    pub fn chunk(&self, t0: usize, len: usize, t_report: Option<u32>) -> TaskChunkSpec {
        TaskChunkSpec {
            seed: self.seed,
            step: self.index as u64,
            batch: self.rows,
            t0,
            len,
            t_read: self.t_read,
            t_report,
            noise_mean: self.noise_mean,
            noise_std: self.noise_std,
        }
    }
}

/// Scores `model` at every delay of `cfg`. `progress` is advanced by one per scored delay
/// and batch.
///
/// Everything runs on the backend: the digits are uploaded once, each chunk's inputs
/// are drawn there (`task_chunk`, the numbers `fill_inputs` would draw on the host), and
/// each branch step is scored there (`readout_argmax`); what comes back per batch and
/// delay is one class id a row. [`evaluate_ensemble`] of one network.
pub fn evaluate<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    cfg: &EvalConfig,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<EvalResult> {
    evaluate_ensemble(backend, &[model], set, task, cfg, progress)?
        .pop()
        .unwrap_or_else(|| config_err("internal: an evaluation of one network returned none"))
}

/// Checks one network for evaluation; its uploaded parameters and readout
/// `[W_out | b_out]`, and its class count.
pub(crate) fn eval_member<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    cfg: &EvalConfig,
) -> Result<(B::Tensor, B::Tensor, usize)> {
    cfg.validate_for(&model.cell, set.image_count())?;
    crate::train::check_task_model(model, set, true)?;
    let readout = model.readout.as_ref().ok_or_else(|| {
        crate::TrainError::Config(
            "the model has no readout: evaluate a checkpoint written by `memrnn train`".into(),
        )
    })?;
    let mut ro = readout.weight.clone();
    ro.extend_from_slice(&readout.bias);
    Ok((
        backend.upload(&model.params)?,
        backend.upload(&ro)?,
        readout.classes,
    ))
}

/// [`evaluate`] for every network of `models` at once: one task and one configuration,
/// so the networks see the same trials, and each batch's long run is drawn once
/// (`task_chunk`) for all of them; the networks of one cell run each chunk through one
/// `ensemble_seq_forward` (one launch on a GPU, side by side on the CPU), and each
/// network's branch step is scored by its own readout. Each network's result is exactly
/// what [`evaluate`] gives it alone. A network refused (no readout, a shape that does not
/// fit the task, too large for the memory) gets that error and the others go on; a
/// backend failure is the outer error. `progress` advances by one per network, scored
/// delay and batch.
pub fn evaluate_ensemble<B: Backend>(
    backend: &B,
    models: &[&Model],
    set: &DigitSet,
    task: &TaskConfig,
    cfg: &EvalConfig,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Vec<Result<EvalResult>>> {
    cfg.validate()?;
    task.validate()?;
    let mut ends: Vec<Option<Result<EvalResult>>> = (0..models.len()).map(|_| None).collect();
    // (member, parameters, readout, classes) of the networks that evaluate.
    let mut nets = vec![];
    for (i, m) in models.iter().enumerate() {
        match eval_member(backend, m, set, cfg) {
            Ok((p, ro, classes)) => nets.push((i, p, ro, classes)),
            Err(e) => ends[i] = Some(Err(e)),
        }
    }
    if nets.is_empty() {
        // Nothing to run: no long runs drawn for nobody.
        return Ok(ends
            .into_iter()
            .map(|e| e.unwrap_or_else(|| config_err("internal: a network was never evaluated")))
            .collect());
    }
    if nets.len() > 1 {
        check_ensemble_memory(models, set, cfg)?;
    }
    // The networks of one cell step together, in their order.
    let mut groups: Vec<(memrnn_core::CellDims, Vec<usize>)> = vec![];
    for (j, n) in nets.iter().enumerate() {
        let cell = models[n.0].cell;
        match groups.iter_mut().find(|(c, _)| *c == cell) {
            Some((_, g)) => g.push(j),
            None => groups.push((cell, vec![j])),
        }
    }
    let digits = digit_table(backend, set)?;
    let delays = cfg.sorted_delays();
    let mut correct = vec![vec![[0usize; 10]; delays.len()]; nets.len()];
    let mut counts = [0usize; 10];
    for plan in EvalBatch::all(cfg, task) {
        let (rows, t_read) = (plan.rows, plan.t_read);
        let chunk = |t0: usize, len: usize, t_report: Option<u32>| plan.chunk(t0, len, t_report);
        let trials = chunk(0, 1, None).trials(digits.counts());
        for tr in &trials {
            counts[tr.digit as usize] += 1;
        }
        // Each network's state on the main trajectory.
        let mut state: Vec<Option<B::Tensor>> = (0..nets.len()).map(|_| None).collect();
        // Runs `x` (`len` steps) from every network's state; each one's forward pass.
        let run = |x: &B::Tensor, len: usize, state: &[Option<B::Tensor>]| {
            let shape = SeqShape::new(len, rows)?;
            let mut outs: Vec<Option<SeqForward<B::Tensor, B::Cache>>> =
                (0..nets.len()).map(|_| None).collect();
            for (cell, group) in &groups {
                let args: Vec<SeqArgs<'_, B::Tensor>> = group
                    .iter()
                    .map(|&j| SeqArgs {
                        params: &nets[j].1,
                        x,
                        s0: state[j].as_ref(),
                    })
                    .collect();
                for (&j, f) in group
                    .iter()
                    .zip(backend.ensemble_seq_forward(cell, shape, &args)?)
                {
                    outs[j] = Some(f);
                }
            }
            Ok::<_, crate::TrainError>(outs)
        };
        let mut t = 0usize; // steps done on the main trajectory
        for (di, &d) in delays.iter().enumerate() {
            let t_s = t_read as usize + d;
            // Main trajectory up to (not including) t_s.
            while t < t_s {
                let len = (t_s - t).min(cfg.chunk);
                let x = backend.task_chunk(&digits, &chunk(t, len, None))?;
                let outs = run(&x, len, &state)?;
                for (s, f) in state.iter_mut().zip(outs) {
                    *s = f.map(|f| f.s_final);
                }
                t += len;
            }
            // Branch: step t_s with the trigger on (t_s ≤ 2·MAX_DELAY fits a u32).
            let x = backend.task_chunk(&digits, &chunk(t_s, 1, Some(t_s as u32)))?;
            for (j, f) in run(&x, 1, &state)?.into_iter().enumerate() {
                let Some(f) = f else { continue };
                let (i, _, ro, classes) = &nets[j];
                let hidden = models[*i].cell.hidden;
                let pred = backend.readout_argmax(hidden, *classes, &f.h_seq, ro)?;
                let pred = backend.download(&pred)?;
                for (tr, &p) in trials.iter().zip(&pred) {
                    if p as usize == tr.digit as usize + 1 {
                        correct[j][di][tr.digit as usize] += 1;
                    }
                }
                if let Some(pb) = progress {
                    pb.inc(1);
                }
            }
        }
    }
    for (j, n) in nets.iter().enumerate() {
        ends[n.0] = Some(Ok(EvalResult::from_counts(&delays, &correct[j], counts)));
    }
    Ok(ends
        .into_iter()
        .map(|e| e.unwrap_or_else(|| config_err("internal: a network was never evaluated")))
        .collect())
}

/// The memory of evaluating every network of `models` at once (each one's states and
/// chunk outputs live together) against this machine's.
fn check_ensemble_memory(models: &[&Model], set: &DigitSet, cfg: &EvalConfig) -> Result<()> {
    let budget = crate::limits::MemoryBudget::detect()?;
    let mut need = crate::limits::digit_table_bytes(set.image_count(), set.pixels);
    for m in models {
        need = need.saturating_add(crate::limits::eval_bytes(
            &m.cell, cfg.batch, cfg.trials, cfg.chunk,
        ));
    }
    budget.check(
        &format!("evaluating {} networks at once", models.len()),
        need,
        "evaluate fewer networks together (--ensemble N), or lower --eval-batch or --chunk",
    )
}

/// Plots one or more extrapolation curves (accuracy against delay, log-scaled delay axis)
/// into one SVG.
pub fn plot_curves(path: &Path, title: &str, curves: &[(&str, &EvalResult)]) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: String| crate::TrainError::io(path, std::io::Error::other(e));
    let max_d = curves
        .iter()
        .flat_map(|(_, r)| r.delays.iter().copied())
        .max()
        .unwrap_or(10)
        .max(10) as f64;
    let min_d = curves
        .iter()
        .flat_map(|(_, r)| r.delays.iter().copied())
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    // The legend sits in a strip right of the plot, never on the curves.
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (left, right) = root.split_horizontally(800);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((min_d..max_d * 1.05).log_scale(), 0f64..1.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("delay t_s − t_a (steps, log scale)")
        .y_desc("report accuracy")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let mut entries = vec![];
    for (i, (name, r)) in curves.iter().enumerate() {
        let c = colors[i % colors.len()];
        let pts: Vec<(f64, f64)> = r
            .delays
            .iter()
            .zip(&r.accuracy)
            .map(|(&d, &a)| (d as f64, a))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| err(e.to_string()))?;
        entries.push((name.to_string(), c));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(min_d, 0.1), (max_d, 0.1)],
            BLACK.mix(0.3),
        ))
        .map_err(|e| err(e.to_string()))?;
    entries.push(("chance (0.1)".into(), RGBColor(170, 170, 170)));
    crate::sweep_plot::legend(&right, &entries, path)?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
