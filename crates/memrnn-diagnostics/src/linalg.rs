//! Small host-side linear algebra in f64: norms, Gram–Schmidt, a Cholesky solve, order
//! statistics, seeded random directions.

use memrnn_core::{Error, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&a| (a as f64) * (a as f64))
        .sum::<f64>()
        .sqrt()
}

/// `n` rows of `dim` values, each a random unit vector (uniform entries, normalised).
pub(crate) fn random_unit_rows(seed: u64, n: usize, dim: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![0f32; n * dim];
    for row in out.chunks_exact_mut(dim) {
        loop {
            row.iter_mut()
                .for_each(|v| *v = rng.random_range(-1.0f32..1.0));
            let nr = norm(row);
            if nr > 1e-3 {
                row.iter_mut().for_each(|v| *v = (*v as f64 / nr) as f32);
                break;
            }
        }
    }
    out
}

/// Modified Gram–Schmidt on the `k` rows of `v [k, dim]`, in place (f64 inside): returns
/// the diagonal of `R` (the norms before normalising). A row whose norm falls below
/// `floor` (it lies in the span of the earlier ones, or the map collapsed it) is replaced
/// by a fresh random direction orthogonal to the earlier rows and reports `floor`.
pub(crate) fn gram_schmidt(
    v: &mut [f32],
    k: usize,
    dim: usize,
    floor: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k);
    let mut diag = Vec::with_capacity(k);
    for i in 0..k {
        let mut w: Vec<f64> = v[i * dim..(i + 1) * dim]
            .iter()
            .map(|&a| a as f64)
            .collect();
        let mut r = orthogonalise(&mut w, &q);
        if r < floor {
            r = floor;
            loop {
                w.iter_mut().for_each(|a| *a = rng.random_range(-1.0..1.0));
                if orthogonalise(&mut w, &q) > 1e-3 {
                    break;
                }
            }
        }
        let nw = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        w.iter_mut().for_each(|a| *a /= nw);
        for (o, &a) in v[i * dim..(i + 1) * dim].iter_mut().zip(&w) {
            *o = a as f32;
        }
        q.push(w);
        diag.push(r);
    }
    diag
}

/// Removes from `w` its components along the orthonormal `q` (twice, for stability);
/// returns the norm left.
fn orthogonalise(w: &mut [f64], q: &[Vec<f64>]) -> f64 {
    for _ in 0..2 {
        for qi in q {
            let d: f64 = w.iter().zip(qi).map(|(a, b)| a * b).sum();
            w.iter_mut().zip(qi).for_each(|(a, b)| *a -= d * b);
        }
    }
    w.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Solves `A X = B` for symmetric positive definite `A [n, n]` and `B [n, m]` (row-major)
/// by a Cholesky factorisation; `B` is overwritten with `X`.
pub(crate) fn cholesky_solve(a: &mut [f64], n: usize, b: &mut [f64], m: usize) -> Result<()> {
    // A = L Lᵀ, L in the lower triangle of a.
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "the ridge system is not positive definite (pivot {j} is {d:e}): raise the ridge penalty alpha or check the features for NaN"
            )));
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for c in 0..m {
        // L y = b
        for i in 0..n {
            let mut s = b[i * m + c];
            for k in 0..i {
                s -= a[i * n + k] * b[k * m + c];
            }
            b[i * m + c] = s / a[i * n + i];
        }
        // Lᵀ x = y
        for i in (0..n).rev() {
            let mut s = b[i * m + c];
            for k in i + 1..n {
                s -= a[k * n + i] * b[k * m + c];
            }
            b[i * m + c] = s / a[i * n + i];
        }
    }
    Ok(())
}

/// The `q`-quantile (0 ≤ q ≤ 1, linear interpolation) of finite values; NaN when empty.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|a| a.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // A = [[4, 2], [2, 3]], x = [1, -1] ⇒ b = [2, -1].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, -1.0];
        cholesky_solve(&mut a, 2, &mut b, 1).unwrap();
        assert!((b[0] - 1.0).abs() < 1e-12 && (b[1] + 1.0).abs() < 1e-12);
        let mut bad = vec![0.0, 0.0, 0.0, 1.0];
        assert!(cholesky_solve(&mut bad, 2, &mut [1.0, 1.0], 1).is_err());
    }

    #[test]
    fn gram_schmidt_orthonormalises_and_reports_norms() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut v = vec![3.0f32, 0.0, 0.0, 1.0, 2.0, 0.0, 5.0, 0.0, 0.0];
        let d = gram_schmidt(&mut v, 3, 3, 1e-30, &mut rng);
        assert!((d[0] - 3.0).abs() < 1e-6 && (d[1] - 2.0).abs() < 1e-6);
        assert_eq!(d[2], 1e-30); // third row was parallel to the first
        for i in 0..3 {
            for j in 0..3 {
                let dot: f32 = (0..3).map(|c| v[i * 3 + c] * v[j * 3 + c]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "{i} {j} {dot}");
            }
        }
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
