//! Eigenvalues of Jacobians through `faer` (real Schur form, f64).

use crate::finder::Eigenvalue;
use memrnn_core::{Error, Result};

/// The eigenvalues of the row-major `n × n` matrix `a`, computed in f64 with `faer`,
/// sorted by magnitude, largest first (ties: larger real part, then larger imaginary part
/// first, so conjugate pairs come out in a fixed order).
pub fn eigenvalues_sorted(a: &[f32], n: usize) -> Result<Vec<Eigenvalue>> {
    if a.len() != n * n {
        return Err(Error::shape(
            "matrix",
            n * n,
            a.len(),
            format!("[{n}, {n}]"),
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j] as f64);
    let vals = m.eigenvalues().map_err(|e| Error::Backend {
        backend: "faer".into(),
        reason: format!("the eigenvalue iteration of a {n}×{n} Jacobian did not converge ({e:?})"),
    })?;
    let mut out: Vec<Eigenvalue> = vals
        .iter()
        .map(|c| Eigenvalue { re: c.re, im: c.im })
        .collect();
    out.sort_by(|x, y| {
        y.abs()
            .total_cmp(&x.abs())
            .then(y.re.total_cmp(&x.re))
            .then(y.im.total_cmp(&x.im))
    });
    Ok(out)
}
