//! The readout's weighted softmax cross-entropy (MATH.md §5), one row at a time, generic
//! over f32 and f64: the definition `Backend::readout_ce` is tested against (and that is
//! tested against finite differences in f64).

use memrnn_core::Real;

/// What [`readout_ce`] returns: the loss `(1 / rows) Σ_r w_r CE_r`, the accuracy counts
/// `[report_correct, report_total, silence_correct, silence_total]`, `∂L/∂h [rows, H]`
/// and `∂L/∂[W_out | b_out]`.
pub struct RefCe<T> {
    pub loss: T,
    pub counts: [usize; 4],
    pub dh: Vec<T>,
    pub dreadout: Vec<T>,
}

/// The readout `W_out h + b_out` and its weighted cross-entropy against class targets;
/// `readout = [W_out (C × H) | b_out (C)]`. Panics on a target outside `0..C` (the
/// reference is called with valid ones).
pub fn readout_ce<T: Real>(
    hidden: usize,
    classes: usize,
    h: &[T],
    readout: &[T],
    targets: &[usize],
    weights: &[T],
) -> RefCe<T> {
    let rows = targets.len();
    let (w, b) = readout.split_at(classes * hidden);
    let mut loss = T::zero();
    let mut counts = [0usize; 4];
    let mut dh = vec![T::zero(); rows * hidden];
    let mut dreadout = vec![T::zero(); readout.len()];
    let inv_rows = T::one() / T::from_f64(rows.max(1) as f64);
    for (r, &tgt) in targets.iter().enumerate() {
        assert!(
            tgt < classes,
            "reference readout_ce: target {tgt} of row {r}"
        );
        let hr = &h[r * hidden..(r + 1) * hidden];
        let y: Vec<T> = (0..classes)
            .map(|c| {
                let row = &w[c * hidden..(c + 1) * hidden];
                b[c] + row.iter().zip(hr).map(|(&a, &x)| a * x).sum::<T>()
            })
            .collect();
        let mut arg = 0;
        for c in 1..classes {
            if y[c] > y[arg] {
                arg = c;
            }
        }
        let mx = y[arg];
        let z: T = y.iter().map(|&v| (v - mx).exp()).sum();
        loss = loss + weights[r] * (z.ln() + mx - y[tgt]) * inv_rows;
        let k = if tgt == 0 { 2 } else { 0 };
        counts[k] += (arg == tgt) as usize;
        counts[k + 1] += 1;
        for c in 0..classes {
            let p = (y[c] - mx).exp() / z;
            let onehot = if c == tgt { T::one() } else { T::zero() };
            let g = weights[r] * inv_rows * (p - onehot);
            dreadout[classes * hidden + c] = dreadout[classes * hidden + c] + g;
            for j in 0..hidden {
                dh[r * hidden + j] = dh[r * hidden + j] + g * w[c * hidden + j];
                dreadout[c * hidden + j] = dreadout[c * hidden + j] + g * hr[j];
            }
        }
    }
    RefCe {
        loss,
        counts,
        dh,
        dreadout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memrnn_testkit::{rng, uniform};

    /// Central differences of the f64 loss against `dh` and `dreadout`, every coordinate,
    /// at odd sizes with zero and heavy weights.
    #[test]
    fn gradients_match_finite_differences() {
        let seed = 0x5EAD_u64;
        let mut r = rng(seed);
        for &(hidden, classes, rows) in &[(1usize, 1usize, 1usize), (3, 11, 5), (7, 4, 9)] {
            let h: Vec<f64> = uniform(&mut r, rows * hidden, -1.0, 1.0);
            let ro: Vec<f64> = uniform(&mut r, classes * hidden + classes, -1.0, 1.0);
            let weights: Vec<f64> = (0..rows).map(|i| [1.0, 0.0, 19.0][i % 3]).collect();
            let targets: Vec<usize> = (0..rows).map(|i| (i * 7 + 3) % classes).collect();
            let base = readout_ce(hidden, classes, &h, &ro, &targets, &weights);
            let eps = 1e-6;
            let loss =
                |h: &[f64], ro: &[f64]| readout_ce(hidden, classes, h, ro, &targets, &weights).loss;
            for i in 0..h.len() {
                let (mut hp, mut hm) = (h.clone(), h.clone());
                hp[i] += eps;
                hm[i] -= eps;
                let fd = (loss(&hp, &ro) - loss(&hm, &ro)) / (2.0 * eps);
                assert!(
                    (fd - base.dh[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "dh[{i}] (H {hidden}, C {classes}, rows {rows}; seed {seed}): {} vs FD {fd}",
                    base.dh[i]
                );
            }
            for i in 0..ro.len() {
                let (mut rp, mut rm) = (ro.clone(), ro.clone());
                rp[i] += eps;
                rm[i] -= eps;
                let fd = (loss(&h, &rp) - loss(&h, &rm)) / (2.0 * eps);
                assert!(
                    (fd - base.dreadout[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "dreadout[{i}] (H {hidden}, C {classes}, rows {rows}; seed {seed}): {} vs FD {fd}",
                    base.dreadout[i]
                );
            }
        }
    }
}
