//! memrnn-cpu: the CPU backend.
//!
//! - [`reference`]: plain loops, generic over f32 and f64, the definition every other
//!   backend is tested against (and that is tested against finite differences and
//!   PyTorch).
//! - [`fast`]: the f32 fast path: SGEMM for the large products, a register-tiled
//!   recurrent product fused with the gates, AVX2 + FMA chosen at run time with a
//!   portable fallback, rayon over batch rows; results independent of the thread count.
//! - [`CpuBackend`]: the [`memrnn_core::Backend`] implementation on top of the fast path.

pub mod backend;
pub mod fast;
pub mod reference;

pub use backend::CpuBackend;
pub use fast::simd::SimdLevel;
pub use fast::FastOptions;
