//! memrnn-cuda: memrnn's CUDA backend.
//!
//! - Hand-written fused RNN / GRU / LSTM recurrences (`kernels/*.cu`, compiled to PTX by
//!   `cargo xtask ptx` and embedded here, so building needs no CUDA toolkit): a persistent
//!   cooperative kernel that keeps W_hh's slices in shared memory for all `T` steps with
//!   one grid-wide sync per step, forward and backward, and a one-launch-per-step fallback
//!   when they do not fit ([`RecurrencePath`]). `W_hh` may be stored in bf16 or f16
//!   ([`CudaBackend::with_precision`]): the same kernels read 2-byte weights and widen
//!   them to f32, so twice the hidden size stays on chip; arithmetic stays f32.
//! - cuBLAS for the input products and the weight gradients over all `T·B` rows.
//! - Ensembles (`Backend::ensemble_*`): the recurrences of many networks of one shape in
//!   one cooperative launch per group of co-resident members, the input products and
//!   weight gradients in one `cublasSgemmBatched` per product, clipped Adam in one launch
//!   ([`CudaBackend::ensemble_plan`] says how a given ensemble is launched).
//! - [`CudaBackend`] implements [`memrnn_core::Backend`] with tensors in device memory.
//! - With the `sim` feature, [`CudaBackend::simulated`] runs the same host code and the
//!   kernels' own source on a simulated device on the CPU ([`SimProps`]), so the CUDA
//!   backend is tested on every machine; see `sim/README.md` for what it does not cover.
//!
//! Without a driver or GPU, [`CudaBackend::new`] returns an error (never panics);
//! [`testing::gpu_or_skip`] turns that into a loud skip in tests.

mod backend;
mod blas;
mod device;
mod kernels;
mod ops;
pub mod ptx;
pub mod testing;

#[cfg(all(test, feature = "sim"))]
mod ensemble_tests;

pub use backend::{CudaBackend, CudaCache, CudaTensor};
#[cfg(feature = "sim")]
pub use device::sim::SimProps;
pub use ops::ensemble::{EnsembleLaunches, EnsemblePlans};
pub use ops::recurrence::RecurrencePath;
