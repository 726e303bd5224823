//! The scalar type the reference implementation is generic over (f32 and f64).

use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A floating-point scalar: `f32` (what the fast backends compute in) or `f64` (what the
/// reference is checked in against finite differences).
pub trait Real:
    num_traits::Float + Sum + Default + Debug + Display + Send + Sync + 'static
{
    fn from_f64(v: f64) -> Self;
    fn as_f64(self) -> f64;
    /// The logistic sigmoid, written so that it neither overflows nor loses precision
    /// for large |x|.
    fn sigmoid(self) -> Self {
        if self >= Self::zero() {
            Self::one() / (Self::one() + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::one() + e)
        }
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
}

/// Converts a slice between scalar types (f32 ↔ f64).
pub fn convert<A: Real, B: Real>(src: &[A]) -> Vec<B> {
    src.iter().map(|&v| B::from_f64(v.as_f64())).collect()
}
