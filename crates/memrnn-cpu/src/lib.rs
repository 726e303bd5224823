//! memrnn-cpu: the CPU backend.
//!
//! - [`reference`](mod@reference): plain loops, generic over f32 and f64, the definition every other
//!   backend is tested against (and that is tested against finite differences and
//!   PyTorch).
//! - [`fast`]: the f32 fast path: SGEMM for the large products, a register-tiled
//!   recurrent product fused with the gates, AVX2 + FMA chosen at run time with a
//!   portable fallback, rayon over batch rows; results independent of the thread count.
//! - [`lm`]: the Levenberg–Marquardt slow-point search (analytic one-step Jacobians, f64
//!   normal equations, rayon over candidates); [`lm_krylov`]: its matrix-free solver
//!   (CG from Jacobian products batched over chunks of candidates through SGEMM).
//! - [`CpuBackend`]: the [`memrnn_core::Backend`] implementation on top of the fast path.
//!
//! ```
//! use memrnn_core::{Backend, CellDims, CellKind, Model, SeqShape, SeqUpstream};
//! use memrnn_cpu::CpuBackend;
//!
//! # fn main() -> memrnn_core::Result<()> {
//! let cell = CellDims::new(CellKind::Gru, 785, 200)?; // input 785, hidden 200
//! let model = Model::init(cell, 42); // PyTorch's default initialisation, seeded
//! let shape = SeqShape::new(20, 128)?; // T = 20 steps of B = 128 rows
//! let be = CpuBackend::new(); // or memrnn_cuda::CudaBackend::new(0)?
//! let params = be.upload(&model.params)?;
//! let x = be.upload(&vec![0.5f32; shape.rows() * cell.input])?; // [T, B, I]
//! let fwd = be.seq_forward(&cell, &params, shape, &x, None)?; // h_seq [T, B, H], s_final [B, S]
//! let dh = be.upload(&vec![1e-3f32; shape.rows() * cell.hidden])?; // ∂L/∂h_t on every step
//! let up = SeqUpstream { dh_seq: Some(&dh), ds_final: None };
//! let grads = be.seq_backward(&cell, &params, shape, &x, &fwd, up, false)?; // no ∂L/∂x
//! assert_eq!(be.len(&grads.dparams), model.params.len());
//! // The speed ‖F(s, x̄) − s‖² of every final state under a constant input x̄.
//! let x_bar = be.upload(&vec![0.1307f32; shape.batch * cell.input])?;
//! let speeds = be.step_speed(&cell, &params, &fwd.s_final, &x_bar, shape.batch)?;
//! assert_eq!(be.len(&speeds), shape.batch);
//! # Ok(())
//! # }
//! ```

pub mod backend;
#[macro_use]
pub mod fast;
pub mod lm;
pub mod lm_krylov;
pub mod reference;
pub mod slowpoints;

pub use backend::CpuBackend;
pub use fast::simd::SimdLevel;
pub use fast::{FastOptions, FwdSplit, PanelFormat};

/// The README's Library API examples, run as doctests (`cargo test -p memrnn-cpu --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
