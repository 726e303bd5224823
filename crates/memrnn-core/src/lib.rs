//! memrnn-core: what every memrnn crate shares and no backend owns.
//!
//! - [`CellKind`] / [`CellDims`] / [`SeqShape`]: the cells (tanh RNN, GRU, LSTM) and the
//!   sizes of a call, validated.
//! - [`ParamLayout`]: PyTorch's parameter layout (`weight_ih_l0`, `weight_hh_l0`,
//!   `bias_ih_l0`, `bias_hh_l0`, gate blocks in PyTorch's order), flat.
//! - [`Model`] / [`Readout`] and [`checkpoint`]: parameters, PyTorch's default
//!   initialisation, and safetensors checkpoints that exchange with PyTorch by name.
//! - [`Backend`]: the trait the CPU and CUDA backends implement; [`lm`]: the shared
//!   logic of its Levenberg–Marquardt slow-point search.
//! - [`Error`]: one error type whose messages name the problem and the fix.
//! - [`checks`]: the argument checks of every `Backend` operation, shared by the backends.
//!
//! The equations are in `MATH.md` (the project's copy of the design's contract).

pub mod backend;
pub mod cell;
pub mod checkpoint;
pub mod checks;
pub mod error;
pub mod lm;
pub mod model;
pub mod real;

pub use backend::{
    adam_update_host, AdamConfig, AdamState, Backend, SeqForward, SeqGrads, SeqUpstream, SpeedGrad,
};
pub use cell::{CellDims, CellKind, ParamBlock, ParamLayout, ParamView, ParamViewMut, SeqShape};
pub use checks::{
    check_adam_update, check_cell, check_seq_backward, check_seq_forward, check_shape,
    check_slow_point_iterations, check_step_jacobian, check_step_jvp, check_step_speed,
    check_step_speed_grad, ForwardInfo, SearchLens, UpstreamLens,
};
pub use error::{check_finite, check_len, Error, Result};
pub use lm::{LmConfig, LmSearch, LmStatus, SearchStop};
pub use model::{init_params, Model, Readout};
pub use real::Real;
