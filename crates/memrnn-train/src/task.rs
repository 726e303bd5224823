//! The delayed-classification task (MATH.md §6) and its curricula.
//!
//! Input size `P + 1` (785 for MNIST): the `P` pixels in `[0, 1]` (`u8 / 255` in f32) and
//! a trigger bit. Each trial (batch row `b`) draws, from Philox stream
//! [`Stream::TaskTrial`] at counter `(0, b, 0, 1)` → `(x0, x1, x2, x3)`:
//! - the digit `d = below(x0, vocab)` (VoCu shows digits `0..vocab` only),
//! - the image `below(x1, count_d)`-th image of digit `d` in file order,
//! - the read time `t_a = below(x2, T_max − Δ_min)`,
//! - the report time `t_s = t_a + Δ_min + below(x3, T_max − Δ_min − t_a)`,
//!
//! so `t_a ~ U[0, T_max − Δ_min)` and `t_s ~ U[t_a + Δ_min, T_max)`. At `t_a` the pixels are
//! the image; at every other step they are noise `mean + std · z` from
//! [`Stream::TaskNoise`] at counter `(i / 4, b, t, 0)` (see [`crate::philox`]). The trigger is
//! 1 at `t_s` only. Sequences are `T = T_max` steps long, time-major `[T, B, P + 1]`.
//!
//! Targets: class 0 ("nothing to report") at every step but `t_s`, where it is `d + 1`
//! (11 classes). Weights: 1 at every step, `T_max − 1` at the report step, so that
//! report and silence weigh alike.

use crate::error::{config_err, Result, TrainError};
use crate::idx::Mnist;
use crate::philox;
use memrnn_core::{task_gen, SeqShape};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Classes of the readout: "nothing" and the ten digits.
pub const CLASSES: usize = 11;

/// The task's fixed parameters (the paper's values by default).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// `T_max` at the end of any curriculum (sequence length, 20 in the paper).
    pub t_max: usize,
    /// `Δ_min`: the shortest delay between read and report (4).
    pub delta_min: usize,
    /// Noise pixel mean (MNIST's pixel mean, 0.1307).
    pub noise_mean: f32,
    /// Noise pixel standard deviation (0.3081).
    pub noise_std: f32,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            t_max: 20,
            delta_min: 4,
            noise_mean: 0.1307,
            noise_std: 0.3081,
        }
    }
}

impl TaskConfig {
    pub fn validate(&self) -> Result<()> {
        if self.delta_min == 0 {
            return config_err(
                "Δ_min (--delta-min) must be at least 1: the report comes after the read",
            );
        }
        if self.t_max <= self.delta_min || self.t_max > 1 << 20 {
            return config_err(format!(
                "T_max = {} with Δ_min = {}: T_max must exceed Δ_min (and stay below 2^20) so that a read and a report fit",
                self.t_max, self.delta_min
            ));
        }
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0 && self.noise_mean.is_finite()) {
            return config_err(format!(
                "noise mean {} and std {}: both must be finite and the std ≥ 0",
                self.noise_mean, self.noise_std
            ));
        }
        Ok(())
    }
}

/// A curriculum: how `T_max` and the vocabulary grow in stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Curriculum {
    /// The final task from the start.
    #[default]
    None,
    /// DeCu: `T_max` = 6, 8, …, up to the final `T_max`, all ten digits.
    Delay,
    /// VoCu: digits `0..2`, `0..3`, …, `0..10`, final `T_max`.
    Vocab,
}

impl std::str::FromStr for Curriculum {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Curriculum::None),
            "delay" | "decu" => Ok(Curriculum::Delay),
            "vocab" | "vocu" => Ok(Curriculum::Vocab),
            other => config_err(format!(
                "unknown curriculum {other:?}: expected none, delay (DeCu) or vocab (VoCu)"
            )),
        }
    }
}

/// When a curriculum moves to its next stage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageSchedule {
    /// Every `n` training steps.
    Every(u64),
    /// When the running report accuracy (an exponential average, weight 0.1 per step)
    /// reaches `threshold`, after at least `min_steps` in the stage.
    Accuracy { threshold: f64, min_steps: u64 },
}

impl Default for StageSchedule {
    fn default() -> Self {
        StageSchedule::Accuracy {
            threshold: 0.9,
            min_steps: 200,
        }
    }
}

/// One stage of a curriculum: the task a batch is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub t_max: usize,
    /// Digits `0..vocab` are shown.
    pub vocab: usize,
}

impl Curriculum {
    /// Its stages for the final task `task`.
    pub fn stages(self, task: &TaskConfig) -> Vec<Stage> {
        match self {
            Curriculum::None => vec![Stage {
                t_max: task.t_max,
                vocab: 10,
            }],
            Curriculum::Delay => {
                let first = (task.delta_min + 2).max(6);
                let mut v: Vec<Stage> = (first..task.t_max)
                    .step_by(2)
                    .map(|t_max| Stage { t_max, vocab: 10 })
                    .collect();
                v.push(Stage {
                    t_max: task.t_max,
                    vocab: 10,
                });
                v
            }
            Curriculum::Vocab => (2..=10)
                .map(|vocab| Stage {
                    t_max: task.t_max,
                    vocab,
                })
                .collect(),
        }
    }
}

/// The images grouped by digit, as the task samples them.
#[derive(Clone, Debug)]
pub struct DigitSet {
    /// Pixels per image.
    pub pixels: usize,
    /// `images[d]`: indices into `data` of the images of digit `d`, in file order.
    by_class: [Vec<u32>; 10],
    data: Mnist,
}

impl DigitSet {
    pub fn new(data: Mnist) -> Result<Self> {
        let mut by_class: [Vec<u32>; 10] = Default::default();
        for (i, &l) in data.labels.iter().enumerate() {
            by_class[l as usize].push(i as u32);
        }
        if let Some(d) = (0..10).find(|&d| by_class[d].is_empty()) {
            return Err(TrainError::data(
                "<digits>",
                format!("the data set has no image of digit {d}; the task needs all ten digits"),
            ));
        }
        Ok(DigitSet {
            pixels: data.pixels(),
            by_class,
            data,
        })
    }

    /// The task's input size: pixels + trigger.
    pub fn input_size(&self) -> usize {
        self.pixels + 1
    }

    /// Images in all.
    pub fn image_count(&self) -> usize {
        self.by_class.iter().map(Vec::len).sum()
    }

    pub fn count(&self, digit: usize) -> usize {
        self.by_class[digit].len()
    }

    /// Images per digit.
    pub fn counts(&self) -> [u32; 10] {
        std::array::from_fn(|d| self.by_class[d].len() as u32)
    }

    /// Every image as pixel values `k / 255`, grouped by digit in file order (`[N, P]`):
    /// what [`memrnn_core::DigitTable::new`] uploads.
    pub fn images_by_digit(&self) -> Vec<f32> {
        let lut = pixel_lut();
        (0..10)
            .flat_map(|d| (0..self.count(d)).map(move |k| (d, k)))
            .flat_map(|(d, k)| self.image(d, k).iter().map(|&v| lut[v as usize]))
            .collect()
    }

    /// The `k`-th image of `digit`.
    pub fn image(&self, digit: usize, k: usize) -> &[u8] {
        self.data.image(self.by_class[digit][k] as usize)
    }

    pub fn mnist(&self) -> &Mnist {
        &self.data
    }
}

pub use memrnn_core::task_gen::Trial;

/// `set`'s images uploaded to `backend` once, for `task_batch` and `task_chunk`.
pub fn digit_table<B: memrnn_core::Backend>(
    backend: &B,
    set: &DigitSet,
) -> Result<memrnn_core::DigitTable<B::Tensor>> {
    Ok(memrnn_core::DigitTable::new(
        backend,
        &set.images_by_digit(),
        set.counts(),
        set.pixels,
    )?)
}

/// Draws trial `b` of `(seed, step)` for a stage (see the module docs).
pub fn draw_trial(set: &DigitSet, key: [u32; 2], b: u32, stage: Stage, delta_min: usize) -> Trial {
    task_gen::draw_trial(&set.counts(), key, b, stage.t_max, stage.vocab, delta_min)
}

/// A batch of the task.
#[derive(Clone, Debug)]
pub struct Batch {
    pub shape: SeqShape,
    pub input: usize,
    /// `[T, B, P + 1]`.
    pub x: Vec<f32>,
    /// `[T, B]`: the class each step must report.
    pub targets: Vec<u8>,
    /// `[T, B]`: each step's weight in the loss.
    pub weights: Vec<f32>,
    pub trials: Vec<Trial>,
}

/// The 256 pixel values `k / 255` as f32.
fn pixel_lut() -> [f32; 256] {
    std::array::from_fn(|k| k as f32 / 255.0)
}

/// Validates a stage against a task and a batch size.
fn check_stage(task: &TaskConfig, stage: Stage, batch: usize) -> Result<()> {
    task.validate()?;
    if stage.t_max <= task.delta_min {
        return config_err(format!(
            "a stage with T_max = {} cannot fit Δ_min = {}",
            stage.t_max, task.delta_min
        ));
    }
    if !(2..=10).contains(&stage.vocab) && stage.vocab != 1 {
        return config_err(format!(
            "vocabulary of {} digits: it must be 1–10",
            stage.vocab
        ));
    }
    if batch == 0 || batch > 1 << 24 {
        return config_err(format!("batch size {batch}: it must be 1 to 2^24"));
    }
    Ok(())
}

/// The batch of training step `step` under `seed`, for `stage`.
pub fn make_batch(
    set: &DigitSet,
    task: &TaskConfig,
    stage: Stage,
    seed: u64,
    step: u64,
    batch: usize,
) -> Result<Batch> {
    check_stage(task, stage, batch)?;
    let key = philox::key(seed, step);
    let trials: Vec<Trial> = (0..batch as u32)
        .map(|b| draw_trial(set, key, b, stage, task.delta_min))
        .collect();
    let shape = SeqShape::new(stage.t_max, batch)?;
    let input = set.input_size();
    let mut x = vec![0f32; shape.rows() * input];
    fill_inputs(set, task, key, &trials, shape, 0, &mut x);
    let (targets, weights) = task_gen::task_targets(&trials, stage.t_max);
    Ok(Batch {
        shape,
        input,
        x,
        targets,
        weights,
        trials,
    })
}

/// Fills `x [T', B, P + 1]` with steps `t0 .. t0 + T'` of the trials' inputs (image at the
/// read time, noise elsewhere, trigger at the report time), in parallel over rows.
/// Used for training batches (`t0 = 0`) and, chunk by chunk, for long evaluation runs.
pub fn fill_inputs(
    set: &DigitSet,
    task: &TaskConfig,
    key: [u32; 2],
    trials: &[Trial],
    shape: SeqShape,
    t0: usize,
    x: &mut [f32],
) {
    let input = set.input_size();
    let batch = shape.batch;
    debug_assert_eq!(x.len(), shape.rows() * input);
    let lut = pixel_lut();
    x.par_chunks_mut(input).enumerate().for_each(|(row, out)| {
        let t = (t0 + row / batch) as u32;
        let b = row % batch;
        let image = |tr: &Trial, pix: &mut [f32]| {
            let img = set.image(tr.digit as usize, tr.image as usize);
            for (o, &v) in pix.iter_mut().zip(img) {
                *o = lut[v as usize];
            }
        };
        task_gen::fill_task_row(
            key,
            &trials[b],
            t,
            b as u32,
            task.noise_mean,
            task.noise_std,
            image,
            out,
        );
    });
}

/// `n` delay-period inputs `[n, P + 1]` (noise, trigger 0) for `(seed, step)`: row `i`
/// from [`Stream::SpeedInput`] at counter `(j, i, 0, 2)`.
pub fn delay_inputs(task: &TaskConfig, input: usize, seed: u64, step: u64, n: usize) -> Vec<f32> {
    let key = philox::key(seed, step);
    let mut x = vec![0f32; n * input];
    x.par_chunks_mut(input).enumerate().for_each(|(i, out)| {
        task_gen::fill_delay_row(key, i as u32, task.noise_mean, task.noise_std, out);
    });
    x
}
