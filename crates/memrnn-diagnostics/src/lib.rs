//! memrnn-diagnostics: measures of memory in recurrent networks (MATH.md §7), generic over
//! any [`memrnn_core::Backend`].
//!
//! - [`lipschitz`](mod@lipschitz): the local Lipschitz constant `‖J_t‖₂` of the state map along
//!   trajectories (Ribeiro, Tiels, Aguirre & Schön), by power iteration with
//!   Jacobian–vector ([`Backend::step_jvp`](memrnn_core::Backend::step_jvp)) and
//!   vector–Jacobian (one-step backpropagation) products.
//! - [`lyapunov`](mod@lyapunov): Lyapunov exponents under an input sequence, with QR
//!   re-orthonormalisation, and the convergence of the estimate.
//! - [`attractors`](mod@attractors): fixed points and cycles under a constant input, with basins and
//!   orbit-diagram data.
//! - [`memory`]: memory curves (Zhang, Li, Hua & Song): a ridge linear probe's accuracy
//!   at reading the input of `d` steps ago from the state, against `d`.
//! - [`report`]: [`diagnose`] runs them all and returns a [`DiagnosticsReport`]
//!   (serde JSON, SVG plots through [`plot`]).
//! - [`constructed`]: hand-built networks with known answers.
//!
//! ```
//! use memrnn_core::{CellDims, CellKind, Model, SeqShape};
//! use memrnn_cpu::CpuBackend;
//! use memrnn_diagnostics::{diagnose, DiagnoseConfig, DiagnoseInputs};
//!
//! # fn main() -> memrnn_core::Result<()> {
//! let model = Model::init(CellDims::new(CellKind::Gru, 3, 8)?, 1);
//! let shape = SeqShape::new(50, 4)?;
//! let inputs = DiagnoseInputs {
//!     x: vec![0.1; shape.rows() * 3],
//!     shape,
//!     s0: None,
//!     labels: None,
//!     classes: 0,
//!     constant_input: None,
//! };
//! let mut cfg = DiagnoseConfig::default();
//! cfg.attractors.as_mut().unwrap().transient = 100;
//! let report = diagnose(&CpuBackend::new(), &model, &inputs, &cfg)?;
//! assert!(report.lipschitz.unwrap().lipschitz > 0.0);
//! // report.write_all(Path::new("diagnostics"))?; // report.json + SVGs
//! # Ok(())
//! # }
//! ```

pub mod attractors;
pub mod constructed;
mod linalg;
pub mod lipschitz;
pub mod lyapunov;
pub mod memory;
pub mod net;
pub mod plot;
pub mod report;

pub use attractors::{
    attractors, Attractor, AttractorConfig, AttractorReport, OrbitDiagram, OrbitRun, Projection,
};
pub use lipschitz::{lipschitz, spectral_norms, LipschitzConfig, LipschitzReport};
pub use lyapunov::{lyapunov, LyapunovConfig, LyapunovReport};
pub use memory::{memory_curve, memory_curve_of, MemoryConfig, MemoryCurve, ProbeData};
pub use net::Net;
pub use report::{diagnose, DiagnoseConfig, DiagnoseInputs, DiagnosticsReport};
