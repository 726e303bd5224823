//! Typed launchers. [`recurrence`] holds what the three cells share (launch planning, the
//! persistent and per-step recurrence launches); [`ensemble`] the recurrence of many
//! networks per cooperative launch (the co-residency planner); [`small`] launches the small kernels
//! (Adam, clipped Adam over several tensors, axpy, column sums, transpose, speed, fills);
//! [`readout`] the readout's cross-entropy; [`slowpoints`] the batched slow-point
//! search. Every launcher checks the extents its kernel indexes before it launches.

pub(crate) mod ensemble;
pub(crate) mod readout;
pub(crate) mod recurrence;
pub(crate) mod slowpoints;
pub(crate) mod small;
pub(crate) mod task;

use crate::kernels::{self, CellKernels};
use memrnn_core::{CellKind, Precision};

/// How a cell's kernels are called: what its forward caches and whether its backward has
/// distinct input-side and recurrent-side pre-activation gradients.
pub(crate) struct CellSpec {
    /// Values of `H` per (t, b) in the gate cache (`kernels/<cell>.cu` documents them).
    pub ncache: usize,
    /// `dU ≠ dA` (GRU); otherwise the kernels get one buffer for both.
    pub separate_du: bool,
    /// The f32 weight kernels.
    pub kernels: &'static CellKernels,
    /// The same kernels reading bf16 and f16 copies of the weights.
    pub kernels_bf16: &'static CellKernels,
    pub kernels_f16: &'static CellKernels,
}

impl CellSpec {
    /// The recurrence kernels whose weights are stored in `precision`.
    pub fn kernels_for(&self, precision: Precision) -> &'static CellKernels {
        match precision {
            Precision::F32 => self.kernels,
            Precision::Bf16 => self.kernels_bf16,
            Precision::F16 => self.kernels_f16,
        }
    }
}

pub(crate) fn spec(kind: CellKind) -> &'static CellSpec {
    // NCACHE of kernels/rnn.cu (nothing beyond h_seq), gru.cu ([r | z | n | u_n]) and
    // lstm.cu (its four gates).
    const RNN: CellSpec = CellSpec {
        ncache: 0,
        separate_du: false,
        kernels: &kernels::RNN,
        kernels_bf16: &kernels::RNN_BF16,
        kernels_f16: &kernels::RNN_F16,
    };
    const GRU: CellSpec = CellSpec {
        ncache: 4,
        separate_du: true,
        kernels: &kernels::GRU,
        kernels_bf16: &kernels::GRU_BF16,
        kernels_f16: &kernels::GRU_F16,
    };
    const LSTM: CellSpec = CellSpec {
        ncache: 4,
        separate_du: false,
        kernels: &kernels::LSTM,
        kernels_bf16: &kernels::LSTM_BF16,
        kernels_f16: &kernels::LSTM_F16,
    };
    match kind {
        CellKind::Rnn => &RNN,
        CellKind::Gru => &GRU,
        CellKind::Lstm => &LSTM,
    }
}
