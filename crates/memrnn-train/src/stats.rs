//! Statistics over seeds and networks, for the sweep and the study: the mean with a 95%
//! Student-t interval, paired differences to a control, Spearman's ρ with ties, and a
//! seeded (deterministic) percentile-bootstrap interval for ρ.
//!
//! Intervals are `None` where they do not exist (fewer than two values; a constant
//! sample for ρ), never a silent NaN in a report.

use serde::Serialize;

/// A sample's mean and its 95% interval (`mean ± t_{0.975, n−1} · s/√n`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (`n − 1` in the denominator); `None` for `n < 2`.
    pub sd: Option<f64>,
    /// `(low, high)`; `None` for `n < 2`.
    pub ci95: Option<(f64, f64)>,
}

/// `t_{0.975, ν}` for ν = 1..=30 (standard tables, 4 decimals).
const T975: [f64; 30] = [
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
    2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687,
    2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
];

/// The 97.5% quantile of Student's t with `df` degrees of freedom (`df ≥ 1`): the table
/// up to 30, the Cornish–Fisher expansion around the normal's 1.959964 beyond (error
/// below 1e-4 there).
pub fn t975(df: usize) -> f64 {
    assert!(df >= 1, "t975: at least one degree of freedom");
    if df <= 30 {
        return T975[df - 1];
    }
    let z = 1.959_963_984_540_054_f64;
    let v = df as f64;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v * v * v)
}

/// Mean and 95% t-interval of `xs` (non-finite values are the caller's to refuse: they
/// propagate into the mean, so a diverged network is visible, not hidden).
pub fn mean_ci95(xs: &[f64]) -> MeanCi {
    let n = xs.len();
    if n == 0 {
        return MeanCi {
            n,
            mean: f64::NAN,
            sd: None,
            ci95: None,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return MeanCi {
            n,
            mean,
            sd: None,
            ci95: None,
        };
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    let half = t975(n - 1) * sd / (n as f64).sqrt();
    MeanCi {
        n,
        mean,
        sd: Some(sd),
        ci95: Some((mean - half, mean + half)),
    }
}

/// The paired differences `a[i] − control[i]` (one per seed) and their mean with its
/// 95% t-interval. Panics on different lengths (a programming error: pairs are built by
/// seed).
pub fn paired_diff(a: &[f64], control: &[f64]) -> (Vec<f64>, MeanCi) {
    assert_eq!(a.len(), control.len(), "paired_diff: lengths differ");
    let d: Vec<f64> = a.iter().zip(control).map(|(x, c)| x - c).collect();
    let ci = mean_ci95(&d);
    (d, ci)
}

/// Ranks with ties averaged (1-based).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on ranks, ties averaged); NaN when either side
/// is constant or there are fewer than two points.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "spearman: lengths differ");
    if x.len() < 2 {
        return f64::NAN;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx) * (a - mx)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my) * (b - my)).sum();
    if vx == 0.0 || vy == 0.0 {
        f64::NAN
    } else {
        cov / (vx * vy).sqrt()
    }
}

/// splitmix64: a small, fully specified generator, so the bootstrap is reproducible
/// everywhere from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n ≥ 1`), by rejection so no index is favoured.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }
}

/// The `q` quantile (0..=1) of sorted values, linearly interpolated between order
/// statistics (position `q · (n − 1)`).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

/// Spearman's ρ with a percentile-bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RhoCi {
    pub n: usize,
    pub rho: Option<f64>,
    /// `(low, high)`: the 2.5% and 97.5% quantiles of ρ over the resamples; `None` when
    /// ρ itself is undefined or more than 5% of the resamples had no defined ρ. Leaving
    /// those out conditions the bootstrap on the resamples that happen to contain the
    /// few distinct values: with an indicator that is nearly constant (a memory span
    /// saturated at the probe's window in 11 of 12 networks) that interval was biased
    /// enough to exclude ρ itself, so it is not reported.
    pub ci95: Option<(f64, f64)>,
    pub resamples: usize,
    /// Resamples whose ρ was undefined (one side constant) and so left out.
    pub undefined_resamples: usize,
}

/// ρ(x, y) and its bootstrap interval: `resamples` resamples of the pairs with
/// replacement, drawn from splitmix64 seeded by `seed` (the same inputs and seed give
/// the same interval on every machine).
pub fn spearman_bootstrap(x: &[f64], y: &[f64], resamples: usize, seed: u64) -> RhoCi {
    assert_eq!(x.len(), y.len(), "spearman_bootstrap: lengths differ");
    let n = x.len();
    let rho = spearman(x, y);
    let mut out = RhoCi {
        n,
        rho: rho.is_finite().then_some(rho),
        ci95: None,
        resamples,
        undefined_resamples: 0,
    };
    if out.rho.is_none() || resamples == 0 {
        return out;
    }
    let mut rng = SplitMix(seed);
    let mut rhos = Vec::with_capacity(resamples);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.below(n);
            bx[k] = x[i];
            by[k] = y[i];
        }
        let r = spearman(&bx, &by);
        if r.is_finite() {
            rhos.push(r);
        } else {
            out.undefined_resamples += 1;
        }
    }
    if out.undefined_resamples * 20 <= resamples {
        rhos.sort_by(f64::total_cmp);
        out.ci95 = Some((quantile_sorted(&rhos, 0.025), quantile_sorted(&rhos, 0.975)));
    }
    out
}

/// The difference `p1 − p2` of two accuracies measured on `n` trials each, with the
/// half-width of its 95% interval (normal approximation to two independent binomial
/// proportions: conservative when the two share trials).
pub fn accuracy_diff_ci95(p1: f64, p2: f64, n: usize) -> (f64, f64) {
    let n = n.max(1) as f64;
    let se = (p1 * (1.0 - p1) / n + p2 * (1.0 - p2) / n).sqrt();
    (p1 - p2, 1.959964 * se)
}

#[cfg(test)]
mod tests {

    #[test]
    fn accuracy_difference_interval_by_hand() {
        // 0.8 and 0.7 on 500 trials: se = √(0.16/500 + 0.21/500) = 0.0272029.
        let (d, h) = accuracy_diff_ci95(0.8, 0.7, 500);
        assert!((d - 0.1).abs() < 1e-12 && (h - 1.959964 * 0.027202941).abs() < 1e-8);
        assert_eq!(accuracy_diff_ci95(1.0, 0.0, 10), (1.0, 0.0));
    }
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tolerance {tol})");
    }

    #[test]
    fn mean_and_t_interval_by_hand() {
        // [1, 2, 3, 4, 5]: mean 3, s² = (4+1+0+1+4)/4 = 2.5, s/√5 = 0.707107,
        // t(4) = 2.7764, half-width 1.963212 → [1.036788, 4.963212].
        let m = mean_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.n, 5);
        close(m.mean, 3.0, 1e-12);
        close(m.sd.unwrap(), 2.5f64.sqrt(), 1e-12);
        let (lo, hi) = m.ci95.unwrap();
        close(lo, 1.036788, 1e-5);
        close(hi, 4.963212, 1e-5);
        // One value: a mean, no interval; none: NaN mean, no interval.
        let one = mean_ci95(&[0.7]);
        assert_eq!((one.mean, one.sd, one.ci95), (0.7, None, None));
        assert!(mean_ci95(&[]).mean.is_nan() && mean_ci95(&[]).ci95.is_none());
        // A constant sample: zero-width interval.
        assert_eq!(mean_ci95(&[0.5, 0.5, 0.5]).ci95, Some((0.5, 0.5)));
    }

    #[test]
    fn paired_difference_by_hand() {
        // a − c = [0.1, 0.0, 0.2]: mean 0.1, s² = (0 + 0.01 + 0.01)/2 = 0.01, s = 0.1,
        // s/√3 = 0.0577350, t(2) = 4.3027, half 0.248417 → [−0.148417, 0.348417].
        let (d, ci) = paired_diff(&[0.9, 0.8, 0.7], &[0.8, 0.8, 0.5]);
        for (x, want) in d.iter().zip([0.1, 0.0, 0.2]) {
            close(*x, want, 1e-12);
        }
        close(ci.mean, 0.1, 1e-12);
        let (lo, hi) = ci.ci95.unwrap();
        close(lo, -0.148417, 1e-5);
        close(hi, 0.348417, 1e-5);
    }

    #[test]
    fn t_quantiles_table_and_expansion_meet() {
        close(t975(1), 12.7062, 1e-9);
        close(t975(30), 2.0423, 1e-9);
        // Tables: t(40) = 2.0211, t(60) = 2.0003, t(120) = 1.9799.
        close(t975(40), 2.0211, 2e-4);
        close(t975(60), 2.0003, 2e-4);
        close(t975(120), 1.9799, 2e-4);
        // Monotone decreasing towards the normal quantile.
        for df in 1..200 {
            assert!(t975(df) > t975(df + 1), "t975 not decreasing at {df}");
        }
        assert!(t975(100_000) > 1.95996 && t975(100_000) < 1.96);
    }

    #[test]
    fn spearman_with_ties_by_hand() {
        // x = [1, 2, 2, 3] → ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] → ranks [1, 3, 2, 4].
        // Deviations from 2.5: dx = [−1.5, 0, 0, 1.5], dy = [−1.5, 0.5, −0.5, 1.5];
        // Σdx·dy = 4.5, Σdx² = 4.5, Σdy² = 5 → ρ = 4.5 / √22.5 = 0.9486833.
        assert_eq!(ranks(&[1.0, 2.0, 2.0, 3.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 3.0]), vec![3.0, 1.0, 3.0, 3.0]);
        close(
            spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]),
            0.948_683_3,
            1e-7,
        );
        close(
            spearman(&[1e-6, 1e-4, 1e-2, 1.0], &[0.9, 0.5, 0.3, 0.1]),
            -1.0,
            1e-12,
        );
        assert!(spearman(&[1.0, 1.0], &[2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0], &[2.0]).is_nan());
    }

    #[test]
    fn quantiles_interpolate_by_hand() {
        // [10, 20, 30, 40, 50]: q = 0.025 → position 0.1 → 11; q = 0.975 → 3.9 → 49.
        let s = [10.0, 20.0, 30.0, 40.0, 50.0];
        close(quantile_sorted(&s, 0.025), 11.0, 1e-12);
        close(quantile_sorted(&s, 0.975), 49.0, 1e-12);
        close(quantile_sorted(&s, 0.5), 30.0, 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_rho() {
        let seed = 0xB007_u64;
        // Pseudo-random pairs with a monotone trend plus noise.
        let mut g = SplitMix(seed ^ 1);
        let x: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let y: Vec<f64> = x
            .iter()
            .map(|&v| v + 20.0 * (g.next() as f64 / u64::MAX as f64))
            .collect();
        let a = spearman_bootstrap(&x, &y, 2000, seed);
        let b = spearman_bootstrap(&x, &y, 2000, seed);
        assert_eq!(
            a, b,
            "seed {seed}: the same seed must give the same interval"
        );
        let (lo, hi) = a.ci95.unwrap();
        let rho = a.rho.unwrap();
        assert!(
            lo < rho && rho < hi && lo > 0.0 && hi <= 1.0,
            "seed {seed}: {a:?}"
        );
        // Another seed moves the interval a little, not ρ.
        let c = spearman_bootstrap(&x, &y, 2000, seed + 1);
        assert_eq!(c.rho, a.rho);
        assert_ne!(c.ci95, a.ci95);
        // A perfectly monotone relation: every defined resample has ρ = 1.
        let m = spearman_bootstrap(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[2.0, 4.0, 8.0, 16.0, 32.0],
            500,
            7,
        );
        assert_eq!(m.ci95, Some((1.0, 1.0)));
        assert!(
            m.undefined_resamples > 0,
            "some resamples draw one point only"
        );
        // Nearly constant x (11 ties and one other value, like a saturated memory span):
        // about a third of the resamples miss the odd one out, so no interval.
        let mut x = vec![1000.0; 12];
        x[3] = 512.0;
        let y: Vec<f64> = (0..12).map(|i| ((i * 7) % 12) as f64).collect();
        let t = spearman_bootstrap(&x, &y, 2000, seed);
        assert!(t.rho.is_some() && t.ci95.is_none(), "seed {seed}: {t:?}");
        assert!(t.undefined_resamples > 100, "seed {seed}: {t:?}");
        // Undefined ρ: no interval.
        let u = spearman_bootstrap(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 100, 7);
        assert_eq!((u.rho, u.ci95), (None, None));
    }
}
