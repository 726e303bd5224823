//! Typed launchers. [`recurrence`] holds what the three cells share (launch planning, the
//! persistent and per-step recurrence launches); [`rnn`], [`gru`], [`lstm`] describe each
//! cell's kernels; [`adam`] launches the small kernels.

pub(crate) mod adam;
pub(crate) mod gru;
pub(crate) mod lstm;
pub(crate) mod recurrence;
pub(crate) mod rnn;
pub(crate) mod slowpoints;

use crate::device::{CellFns, Kernels};
use memrnn_core::CellKind;

/// How a cell's kernels are called: what its forward caches and whether its backward has
/// distinct input-side and recurrent-side pre-activation gradients.
pub(crate) struct CellSpec {
    /// Values of `H` per (t, b) in the gate cache (`kernels/<cell>.cu` documents them).
    pub ncache: usize,
    /// `dU ≠ dA` (GRU); otherwise the kernels get one buffer for both.
    pub separate_du: bool,
    pub fns: fn(&Kernels) -> &CellFns,
}

pub(crate) fn spec(kind: CellKind) -> &'static CellSpec {
    match kind {
        CellKind::Rnn => &rnn::SPEC,
        CellKind::Gru => &gru::SPEC,
        CellKind::Lstm => &lstm::SPEC,
    }
}
