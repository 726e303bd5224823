//! Dev-only helpers shared by memrnn's tests: seeded random data (the seed is printed on
//! failure and can be forced with `MEMRNN_TEST_SEED`), relative errors in norm, NaN
//! poisoning, the awkward shapes every backend is tested on, and [`conformance`]: the one
//! suite every backend runs ([`backend_conformance!`] instantiates it); [`Counting`], a
//! backend wrapper that counts host transfers.

pub mod conformance;
pub mod counting;

pub use counting::Counting;

use memrnn_core::{CellDims, CellKind, Real, SeqShape};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The seed for a test: `MEMRNN_TEST_SEED` if set, else `default` mixed with the test's
/// name, so that every test draws different data but each run is reproducible.
pub fn test_seed(name: &str, default: u64) -> u64 {
    if let Some(s) = std::env::var("MEMRNN_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return s;
    }
    name.bytes().fold(default ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// A seeded generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` values uniform in `[lo, hi)`.
pub fn uniform<T: Real>(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.random_range(lo..hi)))
        .collect()
}

/// `‖got − want‖ / ‖want‖` in f64 (absolute when `want` is zero).
pub fn rel_err_norm<A: Real, B: Real>(got: &[A], want: &[B]) -> f64 {
    assert_eq!(got.len(), want.len(), "rel_err_norm: lengths differ");
    let mut diff = 0.0f64;
    let mut norm = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g.as_f64(), w.as_f64());
        if !g.is_finite() {
            return f64::INFINITY;
        }
        diff += (g - w) * (g - w);
        norm += w * w;
    }
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

/// Panics with the seed, the quantity and both errors unless `rel_err_norm < tol`.
#[track_caller]
pub fn assert_close<A: Real, B: Real>(what: &str, got: &[A], want: &[B], tol: f64, seed: u64) {
    let err = rel_err_norm(got, want);
    assert!(
        err < tol,
        "{what}: relative error in norm {err:e} ≥ {tol:e} (seed {seed}; rerun with MEMRNN_TEST_SEED={seed})"
    );
}

/// Panics unless every element of `got` equals `want`'s within `abs` or within `rel`
/// times the larger magnitude (`approx::relative_eq!`; NaN is never close): for values
/// compared one by one (a fixed point's coordinates, a Jacobian's entries), where one
/// element far off must fail even if the norm-wise error of [`assert_close`] is small.
/// The message names the first element that is off, both values, and how many are off;
/// put the seed into `what` when the inputs are random.
#[track_caller]
pub fn assert_all_close<A: Real, B: Real>(what: &str, got: &[A], want: &[B], abs: f64, rel: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let off = |(g, w): (&A, &B)| {
        let (g, w) = (g.as_f64(), w.as_f64());
        !approx::relative_eq!(g, w, epsilon = abs, max_relative = rel)
    };
    let bad = got.iter().zip(want).filter(|&p| off(p)).count();
    if let Some(i) = got.iter().zip(want).position(off) {
        panic!(
            "{what}: element {i} is {} but should be {} (within {abs:e} or {rel:e} relative); \
             {bad} of {} elements are off",
            got[i].as_f64(),
            want[i].as_f64(),
            got.len()
        );
    }
}

/// Fills a buffer with NaN, so an element a kernel forgets to write fails the comparison.
pub fn poison(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = f32::NAN);
}

/// One test case: a cell and a sequence shape.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub cell: CellDims,
    pub shape: SeqShape,
}

/// Awkward sizes: ones, odd sizes, sizes just off the SIMD width (8) and the row tiles.
pub fn awkward_cases(kind: CellKind) -> Vec<Case> {
    // (input, hidden, batch, steps)
    const SIZES: [(usize, usize, usize, usize); 9] = [
        (1, 1, 1, 1),
        (1, 3, 2, 4),
        (3, 1, 5, 3),
        (5, 7, 3, 5),
        (4, 9, 1, 2),
        (9, 8, 7, 3),
        (2, 17, 13, 2),
        (16, 15, 4, 6),
        (33, 24, 11, 3),
    ];
    SIZES
        .iter()
        .map(|&(i, h, b, t)| Case {
            cell: CellDims::new(kind, i, h).expect("valid test dims"),
            shape: SeqShape::new(t, b).expect("valid test shape"),
        })
        .collect()
}

/// Random parameters at PyTorch's initial scale (`U(−1/√H, 1/√H)`), scaled by `gain`
/// so that tests can push gates into saturation.
pub fn random_params<T: Real>(rng: &mut ChaCha8Rng, cell: &CellDims, gain: f64) -> Vec<T> {
    let k = gain / (cell.hidden as f64).sqrt();
    uniform(rng, cell.layout().len(), -k, k)
}

#[cfg(test)]
mod tests {
    use super::assert_all_close;

    #[test]
    fn all_close_accepts_values_within_either_tolerance() {
        assert_all_close("abs", &[1.0f32, 2.0], &[1.0f64 + 1e-7, 2.0], 1e-6, 0.0);
        assert_all_close("rel", &[1000.0f64], &[1000.5f64], 0.0, 1e-3);
    }

    #[test]
    #[should_panic(expected = "x: element 1 is 2.5 but should be 2")]
    fn all_close_names_the_first_element_that_is_off() {
        assert_all_close("x", &[1.0f64, 2.5, 9.0], &[1.0f64, 2.0, 3.0], 1e-3, 1e-3);
    }

    #[test]
    #[should_panic(expected = "element 0 is NaN")]
    fn all_close_never_accepts_nan() {
        assert_all_close("nan", &[f32::NAN], &[0.0f64], 1e9, 1.0);
    }
}
