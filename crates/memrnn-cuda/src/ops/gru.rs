//! Launch description of `kernels/gru.cu` (Gru cell): its four entry points and what its
//! forward caches for the backward pass. The launches themselves are shared by the three
//! cells and live in [`super::recurrence`].

use super::CellSpec;
use crate::device::{CellFns, Kernels};

fn fns(k: &Kernels) -> &CellFns {
    &k.gru
}

/// `NCACHE` = 4 values of H per (t, b) in the gate cache; `separate_du` = true.
pub(crate) const SPEC: CellSpec = CellSpec {
    ncache: 4,
    separate_du: true,
    fns,
};
