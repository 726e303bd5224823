//! The delayed-classification task's batches, as every backend draws them (the task is
//! described in memrnn-train's `task` module; the random numbers in [`crate::philox`]).
//!
//! The host pieces here are the definition: [`draw_trial`] (a trial's digit, image, read
//! and report time), [`fill_task_row`] (one `(t, b)` row of the inputs) and
//! [`task_targets`]. `Backend::task_batch` draws a whole batch on the backend from a
//! [`DigitTable`] uploaded once; it must match these bit for bit.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::philox::{self, Stream};

/// One trial's draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trial {
    pub digit: u8,
    /// Index of the image within its digit's images.
    pub image: u32,
    pub t_read: u32,
    pub t_report: u32,
}

/// Draws trial `b` under `key` for sequences of `t_max` steps showing digits `0..vocab`,
/// `counts[d]` images of digit `d` to pick from.
pub fn draw_trial(
    counts: &[u32; 10],
    key: [u32; 2],
    b: u32,
    t_max: usize,
    vocab: usize,
    delta_min: usize,
) -> Trial {
    let x = philox::philox4x32_10([0, b, 0, Stream::TaskTrial as u32], key);
    let digit = philox::below(x[0], vocab as u32);
    let image = philox::below(x[1], counts[digit as usize]);
    let span = (t_max - delta_min) as u32;
    let t_read = philox::below(x[2], span);
    let t_report = t_read + delta_min as u32 + philox::below(x[3], span - t_read);
    Trial {
        digit: digit as u8,
        image,
        t_read,
        t_report,
    }
}

/// Trial `b` of an evaluation-style run under `key` ([`TaskChunkSpec`]): the digit
/// `below(x0, 10)` and image `below(x1, counts[d])` of counter `(0, b, 0, 1)` (what
/// [`draw_trial`] draws with all ten digits), a read time `t_read` shared by the batch and
/// the report time `t_report` (`u32::MAX`: no trigger).
pub fn chunk_trial(counts: &[u32; 10], key: [u32; 2], b: u32, t_read: u32, t_report: u32) -> Trial {
    let x = philox::philox4x32_10([0, b, 0, Stream::TaskTrial as u32], key);
    let digit = philox::below(x[0], 10);
    Trial {
        digit: digit as u8,
        image: philox::below(x[1], counts[digit as usize]),
        t_read,
        t_report,
    }
}

/// Row `(t, b)` of the inputs, `out [P + 1]`: the trial's image (written by `image`) at
/// its read time, noise `mean + std · z` from [`Stream::TaskNoise`] elsewhere, and the
/// trigger (1 at the report time).
#[allow(clippy::too_many_arguments)]
pub fn fill_task_row(
    key: [u32; 2],
    trial: &Trial,
    t: u32,
    b: u32,
    mean: f32,
    std: f32,
    image: impl FnOnce(&Trial, &mut [f32]),
    out: &mut [f32],
) {
    let p = out.len() - 1;
    let (pix, trig) = out.split_at_mut(p);
    if t == trial.t_read {
        image(trial, pix);
    } else {
        philox::fill_normal_row(key, Stream::TaskNoise, t, b, mean, std, pix);
    }
    trig[0] = if t == trial.t_report { 1.0 } else { 0.0 };
}

/// Row `i` of the speed penalty's delay-period inputs, `out [P + 1]`: noise from
/// [`Stream::SpeedInput`] at counter `(j, i, 0, 2)`, trigger 0.
pub fn fill_delay_row(key: [u32; 2], i: u32, mean: f32, std: f32, out: &mut [f32]) {
    let p = out.len() - 1;
    let (pix, trig) = out.split_at_mut(p);
    philox::fill_normal_row(key, Stream::SpeedInput, 0, i, mean, std, pix);
    trig[0] = 0.0;
}

/// `(targets, weights)`, each `[T, B]`: class 0 with weight 1 everywhere but each trial's
/// report step, where the target is `digit + 1` and the weight `T_max − 1`.
pub fn task_targets(trials: &[Trial], t_max: usize) -> (Vec<u8>, Vec<f32>) {
    let batch = trials.len();
    let report_w = (t_max - 1) as f32;
    let mut targets = vec![0u8; t_max * batch];
    let mut weights = vec![1f32; t_max * batch];
    for (b, tr) in trials.iter().enumerate() {
        let k = tr.t_report as usize * batch + b;
        targets[k] = tr.digit + 1;
        weights[k] = report_w;
    }
    (targets, weights)
}

/// What `Backend::task_batch` draws: the batch of training step `step` under `seed`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskBatchSpec {
    pub seed: u64,
    pub step: u64,
    /// Sequence length `T = T_max` of this curriculum stage.
    pub t_max: usize,
    /// Digits `0..vocab` are shown (1 to 10).
    pub vocab: usize,
    /// `Δ_min ≥ 1`, below `t_max`.
    pub delta_min: usize,
    /// Rows `B ≥ 1`.
    pub batch: usize,
    pub noise_mean: f32,
    pub noise_std: f32,
}

impl TaskBatchSpec {
    /// The sizes are sane (the task's config checks them for users; this guards the
    /// kernels' indexing).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("task batch: {m}")));
        if self.delta_min == 0 || self.t_max <= self.delta_min || self.t_max > 1 << 20 {
            return bad(format!(
                "T_max {} and Δ_min {}: need 1 ≤ Δ_min < T_max ≤ 2^20",
                self.t_max, self.delta_min
            ));
        }
        if !(1..=10).contains(&self.vocab) {
            return bad(format!("vocabulary {}: it must be 1 to 10", self.vocab));
        }
        if self.batch == 0 || self.batch > 1 << 24 {
            return bad(format!("batch {}: it must be 1 to 2^24", self.batch));
        }
        if !(self.noise_mean.is_finite() && self.noise_std.is_finite()) {
            return bad("the noise mean and std must be finite".into());
        }
        Ok(())
    }
}

/// What `Backend::task_chunk` draws: steps `t0 .. t0 + len` of the long runs of
/// evaluation and of the diagnostics (`[len, B, P + 1]`), trial `b` by [`chunk_trial`]
/// under the key of `(seed, step)`, rows by [`fill_task_row`] at absolute step `t0 + t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskChunkSpec {
    pub seed: u64,
    /// The batch index the key is drawn for.
    pub step: u64,
    /// Rows `B ≥ 1`.
    pub batch: usize,
    /// First step of the chunk, `len ≥ 1` steps, `t0 + len ≤ 2^31`.
    pub t0: usize,
    pub len: usize,
    /// Every trial's read time (the image's step).
    pub t_read: u32,
    /// Every trial's report time (the trigger's step), `None` for no trigger.
    pub t_report: Option<u32>,
    pub noise_mean: f32,
    pub noise_std: f32,
}

impl TaskChunkSpec {
    /// The sizes are sane (they index the kernels).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("task chunk: {m}")));
        if self.batch == 0 || self.batch > 1 << 24 {
            return bad(format!("batch {}: it must be 1 to 2^24", self.batch));
        }
        if self.len == 0 || self.t0.checked_add(self.len).is_none_or(|e| e > 1 << 31) {
            return bad(format!(
                "steps {}..{}+{}: need at least one step, all below 2^31",
                self.t0, self.t0, self.len
            ));
        }
        if self.t_report == Some(u32::MAX) {
            return bad("report time u32::MAX: give None for no trigger".into());
        }
        if !(self.noise_mean.is_finite() && self.noise_std.is_finite()) {
            return bad("the noise mean and std must be finite".into());
        }
        Ok(())
    }

    /// The chunk's trials on the host (their digits score and group the results).
    pub fn trials(&self, counts: &[u32; 10]) -> Vec<Trial> {
        let key = philox::key(self.seed, self.step);
        let t_report = self.t_report.unwrap_or(u32::MAX);
        (0..self.batch as u32)
            .map(|b| chunk_trial(counts, key, b, self.t_read, t_report))
            .collect()
    }
}

/// A task batch on the backend: `x [T, B, P + 1]`, `targets [T, B]` (class ids as f32),
/// `weights [T, B]`.
pub struct TaskBatch<T> {
    pub x: T,
    pub targets: T,
    pub weights: T,
}

/// The digits' images on the backend, uploaded once: `images [N, P]` (pixel values
/// `k / 255`) grouped by digit in order, `offsets [11]` (as f32: the first image of each
/// digit, then `N`), and the counts on the host, where `task_batch` checks them.
pub struct DigitTable<T> {
    images: T,
    offsets: T,
    counts: [u32; 10],
    pixels: usize,
}

impl<T> DigitTable<T> {
    /// Uploads `images [N, P]` whose first `counts[0]` rows are digit 0's images, the next
    /// `counts[1]` digit 1's, and so on. Every digit needs at least one image, and `N`
    /// must stay below 2²⁴ (the offsets travel as exact f32).
    pub fn new<B: Backend<Tensor = T> + ?Sized>(
        backend: &B,
        images: &[f32],
        counts: [u32; 10],
        pixels: usize,
    ) -> Result<Self> {
        let n: u64 = counts.iter().map(|&c| c as u64).sum();
        if let Some(d) = counts.iter().position(|&c| c == 0) {
            return Err(Error::InvalidArgument(format!(
                "digit table: no image of digit {d}; the task needs all ten digits"
            )));
        }
        if pixels == 0 || n >= 1 << 24 {
            return Err(Error::InvalidArgument(format!(
                "digit table: {n} images of {pixels} pixels; need pixels ≥ 1 and fewer than \
                 2^24 images"
            )));
        }
        crate::check_len("images", n as usize * pixels, images.len(), || {
            format!("[N = {n}, P = {pixels}]")
        })?;
        let mut offsets = vec![0f32; 11];
        for d in 0..10 {
            offsets[d + 1] = offsets[d] + counts[d] as f32;
        }
        Ok(DigitTable {
            images: backend.upload(images)?,
            offsets: backend.upload(&offsets)?,
            counts,
            pixels,
        })
    }

    pub fn images(&self) -> &T {
        &self.images
    }
    pub fn offsets(&self) -> &T {
        &self.offsets
    }
    pub fn counts(&self) -> &[u32; 10] {
        &self.counts
    }
    pub fn pixels(&self) -> usize {
        self.pixels
    }
    /// Where digit `d`'s images start (row index into `images`).
    pub fn offset(&self, d: usize) -> usize {
        self.counts[..d].iter().map(|&c| c as usize).sum()
    }
}
