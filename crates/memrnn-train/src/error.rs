//! The training crate's error: every message names the problem and, where there is one,
//! the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// From memrnn-core or a backend (shapes, checkpoints, arguments).
    #[error(transparent)]
    Core(#[from] memrnn_core::Error),
    /// A data file that is missing, truncated or not what it claims to be.
    #[error("data file {path}: {reason}")]
    Data { path: PathBuf, reason: String },
    /// A configuration value that makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loss went NaN / infinite or blew up; the last good checkpoint is kept.
    #[error(
        "training diverged at step {step}: {reason}. The last good checkpoint is {checkpoint}; \
         resume from it with a lower learning rate (--lr) or tighter gradient clipping (--clip)"
    )]
    Diverged {
        step: u64,
        reason: String,
        checkpoint: String,
    },
    /// A checkpoint could not be written; the previous one (if any) is unchanged.
    #[error(
        "could not save the checkpoint of step {step} ({reason}); {kept}: fix the cause (disk \
         space, permissions, an immutable file) and resume with --resume"
    )]
    SaveFailed {
        step: u64,
        reason: String,
        /// What is on disk now, in words.
        kept: String,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TrainError::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand for a configuration error.
pub(crate) fn config_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(TrainError::Config(msg.into()))
}
