//! Storage precision of the recurrent weights `W_hh` (f32, bf16 or f16).
//!
//! Mixed precision in memrnn means *storage* only: a backend running in bf16 or f16 keeps
//! a half-width copy of `W_hh` for the recurrent product and widens each weight to f32
//! when it loads it (exactly: every bf16 and f16 value is an f32 value), so every product,
//! sum and gate is computed in f32. The master weights, their gradients and Adam's state
//! stay f32. A half-precision run is therefore exactly the f32 computation on `W_hh`
//! rounded to the storage format: [`Precision::round_recurrent`] makes those weights,
//! which is how the tests isolate storage rounding from everything else and how backends
//! run the operations that have no half-width kernel of their own.
//!
//! The hidden state carried between steps, and every activation, stays f32 in every
//! precision: carrying it in bf16 freezes part of the state on spurious fixed points of
//! the rounded map and lengthens the measured memory (docs/MATH.md §3.1,
//! docs/state-precision.md), which is the quantity memrnn exists to measure.
//!
//! Rounding is IEEE round-to-nearest-even, the `half` crate's `from_f32`.

use crate::cell::CellDims;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// How the recurrent weights are stored for the recurrent product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE single precision: 24 significand bits.
    #[default]
    F32,
    /// bfloat16: f32's exponent range, 8 significand bits.
    Bf16,
    /// IEEE half precision: 11 significand bits, largest finite value 65504.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    pub const fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Bytes per stored weight.
    pub const fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::Bf16 | Precision::F16 => 2,
        }
    }

    /// Significand bits `p`, the implicit leading bit included.
    pub const fn significand_bits(self) -> u32 {
        match self {
            Precision::F32 => 24,
            Precision::Bf16 => 8,
            Precision::F16 => 11,
        }
    }

    /// The unit roundoff `u = 2^−p`: round-to-nearest moves a value in the normal range
    /// by at most `u` relative.
    pub fn unit_roundoff(self) -> f64 {
        (-(self.significand_bits() as f64)).exp2()
    }

    /// The largest absolute rounding error in the subnormal range (half the spacing of
    /// the subnormals), where the relative bound [`Self::unit_roundoff`] does not hold:
    /// `|w − round(w)| ≤ max(u·|w|, subnormal_abs_error)` for every finite `w` that does
    /// not overflow.
    pub fn subnormal_abs_error(self) -> f64 {
        match self {
            Precision::F32 | Precision::Bf16 => (-150f64).exp2(),
            Precision::F16 => (-25f64).exp2(),
        }
    }

    /// `w` rounded to this format (nearest, ties to even) and widened back to f32.
    /// Values beyond the format's range become infinite (f16 beyond 65504).
    #[inline]
    pub fn round(self, w: f32) -> f32 {
        match self {
            Precision::F32 => w,
            Precision::Bf16 => half::bf16::from_f32(w).to_f32(),
            Precision::F16 => half::f16::from_f32(w).to_f32(),
        }
    }

    /// Checks that every finite weight of `W_hh` in `params` (flat, `cell`'s layout)
    /// stays finite in this format: an error naming the first that overflows (an f16
    /// beyond 65504) and the way out.
    pub fn check_recurrent(self, cell: &CellDims, params: &[f32]) -> Result<()> {
        if self == Precision::F32 {
            return Ok(());
        }
        let layout = cell.layout();
        layout.check("params", params.len())?;
        let w_hh = layout.split(params).w_hh;
        match w_hh
            .iter()
            .position(|w| w.is_finite() && !self.round(*w).is_finite())
        {
            None => Ok(()),
            Some(i) => Err(Error::InvalidArgument(format!(
                "W_hh[{i}] = {} does not fit in {self} (largest finite value {}): \
                 run with --precision bf16 or f32",
                w_hh[i],
                self.max_finite()
            ))),
        }
    }

    /// `params` (flat, `cell`'s layout) with `W_hh` rounded to this format: the weights
    /// a half-precision backend computes with. Borrowed unchanged for f32. A weight that
    /// overflows the format is an error ([`Self::check_recurrent`]).
    pub fn round_recurrent<'a>(self, cell: &CellDims, params: &'a [f32]) -> Result<Cow<'a, [f32]>> {
        self.check_recurrent(cell, params)?;
        if self == Precision::F32 {
            return Ok(Cow::Borrowed(params));
        }
        let mut out = params.to_vec();
        for w in cell.layout().split_mut(&mut out).w_hh.iter_mut() {
            *w = self.round(*w);
        }
        Ok(Cow::Owned(out))
    }

    /// The largest finite value of the format.
    pub fn max_finite(self) -> f32 {
        match self {
            Precision::F32 => f32::MAX,
            Precision::Bf16 => half::bf16::MAX.to_f32(),
            Precision::F16 => half::f16::MAX.to_f32(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            other => Err(Error::InvalidArgument(format!(
                "unknown precision {other:?}: expected one of f32, bf16, f16"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CellKind;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Precision>(&json).unwrap(), p);
        }
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = "f8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("f32, bf16, f16"), "{err}");
    }

    /// The rounding error of every format obeys `max(u·|w|, subnormal_abs_error)`, the
    /// bound the conformance tolerances are derived from, over random values spanning
    /// the normal and subnormal ranges.
    #[test]
    fn rounding_error_is_within_the_stated_bound() {
        let seed = 0x005e_ed15_u64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for p in Precision::ALL {
            for _ in 0..100_000 {
                let e: f32 = rng.random_range(-30.0..15.0);
                let w = rng.random_range(-1.0f32..1.0) * e.exp2();
                let r = p.round(w);
                let err = (r as f64 - w as f64).abs();
                let bound = (p.unit_roundoff() * (w as f64).abs()).max(p.subnormal_abs_error());
                assert!(
                    err <= bound,
                    "seed {seed:#x}: {p}: {w:e} → {r:e}, error {err:e} > {bound:e}"
                );
            }
        }
    }

    #[test]
    fn round_recurrent_touches_only_w_hh_and_refuses_overflow() {
        let cell = CellDims::new(CellKind::Gru, 2, 3).unwrap();
        let layout = cell.layout();
        let params: Vec<f32> = (0..layout.len()).map(|i| 0.1 + i as f32 / 7.0).collect();
        let r = Precision::Bf16.round_recurrent(&cell, &params).unwrap();
        let (a, b) = (layout.split(&params[..]), layout.split(&r[..]));
        assert_eq!(a.w_ih, b.w_ih);
        assert_eq!(a.b_ih, b.b_ih);
        assert_eq!(a.b_hh, b.b_hh);
        assert_ne!(a.w_hh, b.w_hh);
        for (x, y) in a.w_hh.iter().zip(b.w_hh) {
            assert_eq!(*y, half::bf16::from_f32(*x).to_f32());
        }
        assert!(matches!(
            Precision::F32.round_recurrent(&cell, &params).unwrap(),
            Cow::Borrowed(_)
        ));
        let mut big = params.clone();
        layout.split_mut(&mut big).w_hh[4] = 1e5;
        let err = Precision::F16
            .round_recurrent(&cell, &big)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("W_hh[4]") && err.contains("bf16 or f32"),
            "{err}"
        );
        assert!(Precision::Bf16.round_recurrent(&cell, &big).is_ok());
    }
}
