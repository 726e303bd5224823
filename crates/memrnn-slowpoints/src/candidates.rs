//! Where a search starts: states the network itself visits (MATH.md §4).
//!
//! Both functions take plain host arrays `[N, S]` (rows of `S = H`, or `2H` for the
//! LSTM's `[h | c]`), such as the delay-period states of a batch of trials that the
//! training crate records.

use memrnn_core::{check_finite, Error, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Splits `states` into rows of `state_size`, failing on an empty array, a length that is
/// not a multiple of `state_size`, or a non-finite value.
fn rows(states: &[f32], state_size: usize) -> Result<usize> {
    if state_size == 0 {
        return Err(Error::Dimension("the state size is 0".into()));
    }
    if states.is_empty() {
        return Err(Error::InvalidArgument(
            "no states given to build slow-point candidates from (N = 0)".into(),
        ));
    }
    if states.len() % state_size != 0 {
        return Err(Error::shape(
            "states",
            states.len().div_ceil(state_size) * state_size,
            states.len(),
            format!("[N, S={state_size}]: the length must be a multiple of S"),
        ));
    }
    check_finite("states", states)?;
    Ok(states.len() / state_size)
}

/// `k` candidates `[k, S]` drawn from the `N` rows of `states` (without replacement while
/// `k ≤ N`; beyond that every row is used `⌊k/N⌋` times and the rest drawn without
/// replacement), each plus independent Gaussian noise of standard deviation `noise_std`
/// (0 for none), from `seed`. FixedPointFinder perturbs its initial states the same way
/// so that candidates started on one trajectory do not all land on the same point.
pub fn sample_candidates(
    states: &[f32],
    state_size: usize,
    k: usize,
    noise_std: f32,
    seed: u64,
) -> Result<Vec<f32>> {
    let n = rows(states, state_size)?;
    if k == 0 {
        return Err(Error::InvalidArgument(
            "asked for 0 slow-point candidates".into(),
        ));
    }
    if !(noise_std.is_finite() && noise_std >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the candidates' noise standard deviation must be finite and ≥ 0, got {noise_std}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picks = Vec::with_capacity(k);
    let mut perm: Vec<usize> = (0..n).collect();
    while picks.len() < k {
        let want = (k - picks.len()).min(n);
        // Partial Fisher–Yates: the first `want` entries become a uniform sample.
        for i in 0..want {
            let j = rng.random_range(i..n);
            perm.swap(i, j);
        }
        picks.extend_from_slice(&perm[..want]);
    }
    let mut out = Vec::with_capacity(k * state_size);
    for &i in &picks {
        out.extend_from_slice(&states[i * state_size..(i + 1) * state_size]);
    }
    if noise_std > 0.0 {
        let mut spare: Option<f64> = None;
        for v in &mut out {
            let z = match spare.take() {
                Some(z) => z,
                None => {
                    // Box–Muller: two independent standard normals from two uniforms.
                    let u1: f64 = 1.0 - rng.random_range(0.0..1.0);
                    let u2: f64 = rng.random_range(0.0..1.0);
                    let r = (-2.0 * u1.ln()).sqrt();
                    let th = std::f64::consts::TAU * u2;
                    spare = Some(r * th.sin());
                    r * th.cos()
                }
            };
            *v += (noise_std as f64 * z) as f32;
        }
    }
    Ok(out)
}

/// Per-class mean states: the ICML paper's initialisation (one candidate per class, the
/// mean of the states of the trials the network reports as that class).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMeans {
    /// The classes present in the labels, ascending.
    pub classes: Vec<usize>,
    /// How many rows each class had.
    pub counts: Vec<usize>,
    /// `[classes.len(), S]`, row `i` the mean of class `classes[i]`.
    pub means: Vec<f32>,
}

/// The mean of the rows of `states [N, S]` grouped by `labels [N]` (accumulated in f64).
pub fn class_mean_states(
    states: &[f32],
    state_size: usize,
    labels: &[usize],
) -> Result<ClassMeans> {
    let n = rows(states, state_size)?;
    if labels.len() != n {
        return Err(Error::shape(
            "labels",
            n,
            labels.len(),
            format!("one label per state row (N = {n})"),
        ));
    }
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut sums = vec![0.0f64; classes.len() * state_size];
    let mut counts = vec![0usize; classes.len()];
    for (row, &label) in states.chunks_exact(state_size).zip(labels) {
        // `classes` holds every label, so the search always succeeds.
        let c = classes.binary_search(&label).unwrap_or(0);
        counts[c] += 1;
        for (s, &v) in sums[c * state_size..(c + 1) * state_size]
            .iter_mut()
            .zip(row)
        {
            *s += v as f64;
        }
    }
    let means = sums
        .chunks_exact(state_size)
        .zip(&counts)
        .flat_map(|(row, &c)| row.iter().map(move |&s| (s / c as f64) as f32))
        .collect();
    Ok(ClassMeans {
        classes,
        counts,
        means,
    })
}
