//! memrnn-core: what every memrnn crate shares and no backend owns.
//!
//! - [`CellKind`] / [`CellDims`] / [`SeqShape`]: the cells (tanh RNN, GRU, LSTM) and the
//!   sizes of a call, validated.
//! - [`ParamLayout`]: PyTorch's parameter layout (`weight_ih_l0`, `weight_hh_l0`,
//!   `bias_ih_l0`, `bias_hh_l0`, gate blocks in PyTorch's order), flat.
//! - [`Model`] / [`Readout`] and [`checkpoint`]: parameters, PyTorch's default
//!   initialisation, and safetensors checkpoints that exchange with PyTorch by name.
//! - [`StateDict`] / [`Model::from_state_dict`] / [`Model::load_state_dict`] and
//!   [`state_dict`]: PyTorch's `load_state_dict(strict=…)`, with a [`LoadReport`] of what
//!   was missing, unexpected or mismatched; [`ModelOf`]`<f64>` holds f64 parameters for
//!   the reference.
//! - [`lstm_state`]: PyTorch's separate `h`/`c` `(1, B, H)` and memrnn's `[h | c]` rows.
//! - [`Backend`]: the trait the CPU and CUDA backends implement; [`lm`]: the shared
//!   logic of its Levenberg–Marquardt slow-point search (dense), [`lm_krylov`]: its
//!   matrix-free variant.
//! - [`Precision`]: the storage precision of the recurrent weights (f32, bf16, f16;
//!   f32 arithmetic everywhere).
//! - [`Error`]: one error type whose messages name the problem and the fix.
//! - [`checks`]: the argument checks of every `Backend` operation, shared by the backends.
//! - [`philox`] and [`task_gen`]: the task's counter-based random numbers and batches,
//!   defined once so that every backend draws them bit for bit alike.
//! - [`ensemble`]: E networks of one shape through one call per operation (the
//!   arguments of the `Backend::ensemble_*` operations and their defaults).
//! - [`step`]: the types of the training step's operations (readout cross-entropy,
//!   clipped Adam over several tensors).
//!
//! The equations are in `MATH.md` (the project's copy of the design's contract).

pub mod backend;
pub mod cell;
pub mod checkpoint;
pub mod checks;
pub mod ensemble;
pub mod error;
pub mod lm;
pub mod lm_krylov;
pub mod lstm_state;
pub mod model;
pub mod philox;
pub mod precision;
pub mod real;
pub mod slow_point;
pub mod state_dict;
pub mod step;
pub mod task_gen;

pub use backend::{
    adam_update_host, AdamConfig, AdamState, Backend, SeqForward, SeqGrads, SeqUpstream, SpeedGrad,
};
pub use cell::{CellDims, CellKind, ParamBlock, ParamLayout, ParamView, ParamViewMut, SeqShape};
pub use checks::{
    check_adam_update, check_axpy, check_cell, check_clip_adam_update, check_copy_into,
    check_delay_inputs, check_readout_argmax, check_readout_ce, check_seq_backward,
    check_seq_forward, check_shape, check_slow_point_iterations, check_step_jacobian,
    check_step_jvp, check_step_speed, check_step_speed_grad, ForwardInfo, SearchLens, UpstreamLens,
};
pub use error::{check_finite, check_len, Error, Result};
pub use lm::{LmConfig, LmSearch, LmSolver, LmStatus, SearchStop};
pub use lstm_state::{pack_lstm_grad, pack_lstm_state, split_lstm_state};
pub use model::{init_params, Model, Readout};
pub use precision::Precision;
pub use real::Real;
pub use state_dict::{
    load_state_dict_file, LoadReport, Mismatch, ModelOf, ReadoutOf, StateDict, StateEntry,
    TensorDtype,
};
pub use step::{
    clip_scale, AdamGroup, CeStat, ClipNorm, ReadoutCe, StepGuard, CE_STATS, CLIP_NORM_LEN,
    MAX_ADAM_GROUPS,
};
pub use task_gen::{DigitTable, TaskBatch, TaskBatchSpec, TaskChunkSpec};
