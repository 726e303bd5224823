//! The one error type every memrnn crate returns.

use std::path::PathBuf;

/// Everything that can go wrong in memrnn, each variant naming the problem and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer's length does not match the shape it is used with.
    #[error("shape mismatch for {what}: expected {expected} elements ({detail}), got {got}")]
    Shape {
        what: String,
        expected: usize,
        got: usize,
        detail: String,
    },
    /// A dimension that must be positive (batch, steps, sizes) is zero, or a size is absurd.
    #[error("invalid dimension: {0}")]
    Dimension(String),
    /// NaN or ±Inf found in data that must be finite.
    #[error("{what} contains a non-finite value ({value}) at index {index}; check the data or the run that produced it")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },
    /// A checkpoint that cannot be read as a memrnn / PyTorch RNN state dict.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    /// An argument outside its valid range (a learning rate ≤ 0, say).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A backend-specific failure (driver missing, kernel launch failed, ...).
    #[error("{backend} backend: {reason}")]
    Backend { backend: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(
        what: impl Into<String>,
        expected: usize,
        got: usize,
        detail: impl Into<String>,
    ) -> Self {
        Error::Shape {
            what: what.into(),
            expected,
            got,
            detail: detail.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Fails with [`Error::Shape`] unless `got == expected`.
pub fn check_len(
    what: &str,
    expected: usize,
    got: usize,
    detail: impl FnOnce() -> String,
) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::shape(what, expected, got, detail()))
    }
}

/// Fails with [`Error::NonFinite`] at the first NaN or infinity in `data`.
pub fn check_finite<T: num_traits::Float>(what: &str, data: &[T]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: data[index].to_f64().unwrap_or(f64::NAN),
        }),
    }
}
