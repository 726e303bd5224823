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

/// What [`Backend::clip_adam_update`](crate::Backend::clip_adam_update) leaves on the
/// backend: `[norm, scale]`, the global gradient norm before clipping and the factor the
/// gradients were multiplied by (1 without clipping or below the limit). A non-finite
/// norm means nothing was updated.
pub const CLIP_NORM_LEN: usize = 2;

/// The slots of the clip tensor ([`CLIP_NORM_LEN`] values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipNorm {
    Norm = 0,
    Scale = 1,
}

/// The clip scale the host path used: `c / ‖g‖` (in f64, rounded to f32) when the norm
/// exceeds the limit `c`, else 1. Every backend computes the scale this way from its norm.
pub fn clip_scale(norm: f64, clip: Option<f32>) -> f32 {
    match clip {
        Some(c) if norm > c as f64 => (c as f64 / norm) as f32,
        _ => 1.0,
    }
}
