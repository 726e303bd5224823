//! The types of the training step's backend operations beyond the recurrence: the
//! readout's softmax cross-entropy ([`ReadoutCe`], [`CeStat`]) and Adam with global-norm
//! clipping over several parameter tensors at once ([`AdamGroup`], [`ClipNorm`]).
//! The operations themselves are [`Backend`](crate::Backend) methods; their argument
//! checks are in [`crate::checks`].

use crate::backend::AdamState;

/// The slots of [`ReadoutCe::stats`], in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeStat {
    /// `L_CE = (1 / rows) Σ_r w_r · CE_r` (the per-step mean of MATH.md §5).
    Loss = 0,
    /// Rows with a class target (`y ≠ 0`) whose argmax is the target.
    ReportCorrect = 1,
    /// Rows with a class target.
    ReportTotal = 2,
    /// Rows with target 0 ("nothing") whose argmax is 0.
    SilenceCorrect = 3,
    /// Rows with target 0.
    SilenceTotal = 4,
}

/// How many values [`ReadoutCe::stats`] holds.
pub const CE_STATS: usize = 5;

/// The readout's weighted softmax cross-entropy over `rows` hidden states and its
/// gradients ([`Backend::readout_ce`](crate::Backend::readout_ce)).
pub struct ReadoutCe<T> {
    /// `∂L_CE/∂h`, `[rows, H]` (zero on rows whose weight is 0).
    pub dh: T,
    /// `∂L_CE/∂[W_out | b_out]`, `[C·H + C]`: the readout's layout.
    pub dreadout: T,
    /// `[CE_STATS]`, indexed by [`CeStat`]; the counts are whole numbers (exact in f32
    /// below 2²⁴ rows).
    pub stats: T,
}

/// The most groups one [`Backend::clip_adam_update`](crate::Backend::clip_adam_update)
/// takes (the CUDA kernels carry that many in their parameter struct).
pub const MAX_ADAM_GROUPS: usize = 4;

/// One parameter tensor of [`Backend::clip_adam_update`](crate::Backend::clip_adam_update):
/// its values, gradient and Adam state.
pub struct AdamGroup<'a, T> {
    pub params: &'a mut T,
    pub grad: &'a T,
    pub state: &'a mut AdamState<T>,
}

/// How many values the tensor [`Backend::clip_adam_update`](crate::Backend::clip_adam_update)
/// returns holds: `[norm, scale, skipped]`, by [`ClipNorm`].
pub const CLIP_NORM_LEN: usize = 3;

/// The slots of the tensor `clip_adam_update` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipNorm {
    /// The global gradient norm before clipping.
    Norm = 0,
    /// The factor the gradients were multiplied by (1 without clipping or below the limit).
    Scale = 1,
    /// 1 when the update was skipped (a non-finite norm, or the [`StepGuard`] tripped), else 0.
    Skipped = 2,
}

/// The divergence guard of [`Backend::clip_adam_update`](crate::Backend::clip_adam_update):
/// the update is skipped, and `halted` set to 1, when `halted` already holds a non-zero
/// value or the step's loss `loss[0]` is NaN, infinite or above `max_loss`. Because
/// `halted` stays set, every later update is skipped too: a training loop that reads its
/// numbers back only now and then still stops at the first bad step, with the parameters
/// and moments of the step before it.
pub struct StepGuard<'a, T> {
    /// `[1]`: the step's loss.
    pub loss: &'a T,
    pub max_loss: f32,
    /// `[1]`: 0 while training is healthy.
    pub halted: &'a mut T,
}

/// The clip scale the host path used: `c / ‖g‖` (in f64, rounded to f32) when the norm
/// exceeds the limit `c`, else 1. Every backend computes the scale this way from its norm.
pub fn clip_scale(norm: f64, clip: Option<f32>) -> f32 {
    match clip {
        Some(c) if norm > c as f64 => (c as f64 / norm) as f32,
        _ => 1.0,
    }
}
