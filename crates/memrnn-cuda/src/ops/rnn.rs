//! Launch description of `kernels/rnn.cu` (Rnn cell): its four entry points and what its
//! forward caches for the backward pass. The launches themselves are shared by the three
//! cells and live in [`super::recurrence`].

use super::CellSpec;
use crate::device::{CellFns, Kernels};

fn fns(k: &Kernels) -> &CellFns {
    &k.rnn
}

/// `NCACHE` = 0 values of H per (t, b) in the gate cache; `separate_du` = false.
pub(crate) const SPEC: CellSpec = CellSpec {
    ncache: 0,
    separate_du: false,
    fns,
};
