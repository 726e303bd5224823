//! memrnn-train: the delayed-classification experiments of Haviv, Rivkind & Barak (ICML
//! 2019), generic over [`memrnn_core::Backend`].
//!
//! - [`idx`]: MNIST in the standard IDX format (gzipped or not), checked.
//! - [`philox`]: the counter-based generator (Philox4x32-10 + an exactly specified
//!   Box–Muller) every backend can reproduce bit for bit.
//! - [`task`]: the task of MATH.md §6, its curricula (none, DeCu, VoCu) and batches.
//! - [`objective`]: readout, weighted cross-entropy (per-step mean) and the speed penalty
//!   over any constant state set `V` ([`objective::SpeedSet`]).
//! - [`vset`]: sources of `V`: per-class mean delay states, trajectory states.
//! - [`train`]: Adam training, clipping, checkpoints, resume, metrics, divergence stops.
//! - [`ensemble`]: many networks trained as one job, each member exactly as alone.
//! - [`eval`]: report accuracy against delay far beyond training; table, JSON, SVG.
//! - [`pipeline`]: train → speed-regularised fine-tuning and λ = 0 control → evaluation.
//! - [`sweep`]: the λ sweep over seeds and regularisation targets, with intervals.
//! - [`jobs`]: per-network result files, resume, shards and merge, workers side by side.
//! - [`memprobe`]: a linear probe's memory at log-spaced lags up to the longest delay.
//! - [`state_rounding`]: accuracy against delay with `W_hh` and the carried state stored
//!   in bf16 / f16, and how often the rounded state stands still.
//! - [`stats`]: means with t-intervals over seeds, paired differences, Spearman ρ and its
//!   seeded bootstrap interval.

pub mod ensemble;
pub mod error;
pub mod eval;
pub mod idx;
pub mod jobs;
pub mod limits;
pub mod memprobe;
pub mod objective;
pub mod options;
pub use memrnn_core::philox;
pub mod pipeline;
pub mod slow;
pub mod state_rounding;
pub mod stats;
mod step;
pub mod study;
pub mod sweep;
mod sweep_plot;
pub mod task;
pub mod train;
pub mod vset;

pub use ensemble::EnsembleTrainer;
pub use error::{Result, TrainError};
pub use eval::{evaluate, evaluate_ensemble, EvalConfig, EvalResult};
pub use idx::{load_mnist_dir, Mnist};
pub use limits::MemoryBudget;
pub use objective::{SpeedPenalty, SpeedSet};
pub use task::{Curriculum, DigitSet, StageSchedule, TaskConfig};
pub use train::{RunOutput, TrainConfig, Trainer};
