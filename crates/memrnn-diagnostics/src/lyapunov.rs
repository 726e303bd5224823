//! Lyapunov exponents of the input-driven state map: `λ_i = lim (1/T) Σ_t log r_ii(t)`,
//! where `J_t Q_{t−1} = Q_t R_t` re-orthonormalises `k` tangent vectors at every step
//! (for `k = 1`: `λ₁ = lim (1/T) Σ log ‖J_t q_t‖`, `q_{t+1} = J_t q_t / ‖J_t q_t‖`).

use crate::linalg::{gram_schmidt, random_unit_rows};
use crate::net::Net;
use memrnn_core::{Backend, Error, Result, SeqShape};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What a Lyapunov estimate runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LyapunovConfig {
    /// Steps at the start of the sequence that evolve the state and the tangent vectors
    /// but are not averaged (the transient).
    pub transient: usize,
    /// How many exponents (`k ≤ S`): 1 for `λ₁`, more by QR re-orthonormalisation.
    pub exponents: usize,
    /// Seed of the random initial tangent vectors.
    pub seed: u64,
    /// At most this many points in the convergence curve (evenly strided).
    pub curve_points: usize,
}

impl Default for LyapunovConfig {
    fn default() -> Self {
        LyapunovConfig {
            transient: 0,
            exponents: 1,
            seed: 0x1a9,
            curve_points: 1000,
        }
    }
}

/// Lyapunov exponents of the trajectories, averaged over trials, and how the estimate of
/// `λ₁` converged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LyapunovReport {
    pub definition: String,
    /// `λ_1 ≥ … ≥ λ_k` (natural log per step), the mean over trials.
    pub exponents: Vec<f64>,
    /// The standard deviation over trials of each exponent.
    pub std_over_trials: Vec<f64>,
    /// Each trial's exponents, `[B][k]`.
    pub per_trial: Vec<Vec<f64>>,
    /// Steps dropped as transient, and steps averaged after it.
    pub transient: usize,
    pub steps_averaged: usize,
    /// The convergence curve: after `curve_steps[i]` averaged steps, the running estimate
    /// of `λ₁` (mean over trials) was `curve[i]`.
    pub curve_steps: Vec<usize>,
    pub curve: Vec<f64>,
}

pub(crate) const LYAPUNOV_DEF: &str = "Lyapunov exponents λ_i = (1/T) Σ_t log r_ii(t), the diagonal of R in the QR re-orthonormalisation J_t Q_{t−1} = Q_t R_t of k tangent vectors along the input-driven trajectory, after a transient; natural log per step, mean over trials. λ₁ < 0: perturbations (and memory) fade; λ₁ > 0: chaos; λ₁ ≈ 0: long memory.";

/// The floor on `r_ii` (a tangent vector the map collapses to zero counts as `log 1e-30`,
/// about −69, and restarts from a random direction).
pub const COLLAPSE_FLOOR: f64 = 1e-30;

/// The first `cfg.exponents` Lyapunov exponents along the trajectories of `x [T, B, I]`
/// from `s0 [B, S]` (zeros when `None`); needs `T > cfg.transient`.
pub fn lyapunov<B: Backend>(
    net: &Net<'_, B>,
    x: &[f32],
    shape: SeqShape,
    s0: Option<&[f32]>,
    cfg: &LyapunovConfig,
) -> Result<LyapunovReport> {
    let (sd, id, b, k) = (net.state_size(), net.cell.input, shape.batch, cfg.exponents);
    if k == 0 || k > sd {
        return Err(Error::InvalidArgument(format!(
            "asked for {k} Lyapunov exponents of a state of size {sd}: ask for 1 to {sd}"
        )));
    }
    if shape.steps <= cfg.transient {
        return Err(Error::InvalidArgument(format!(
            "the sequences have {} steps, no more than the transient of {}: give longer sequences or a shorter transient",
            shape.steps, cfg.transient
        )));
    }
    shape.check_inputs(&net.cell, x.len(), s0.map(<[f32]>::len))?;
    let mut s = match s0 {
        Some(s) => s.to_vec(),
        None => vec![0f32; b * sd],
    };
    let mut q = random_unit_rows(cfg.seed, b * k, sd);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1));
    let mut sums = vec![0f64; b * k];
    let averaged = shape.steps - cfg.transient;
    let stride = averaged.div_ceil(cfg.curve_points.max(1)).max(1);
    let (mut curve_steps, mut curve) = (Vec::new(), Vec::new());
    let (mut s_rep, mut x_rep) = (Vec::new(), Vec::new());
    for t in 0..shape.steps {
        let xt = &x[t * b * id..(t + 1) * b * id];
        let (sj, xj): (&[f32], &[f32]) = if k == 1 {
            (&s, xt)
        } else {
            s_rep.clear();
            x_rep.clear();
            for r in 0..b {
                for _ in 0..k {
                    s_rep.extend_from_slice(&s[r * sd..(r + 1) * sd]);
                    x_rep.extend_from_slice(&xt[r * id..(r + 1) * id]);
                }
            }
            (&s_rep, &x_rep)
        };
        q = net.jvp(sj, xj, &q, b * k)?;
        s = net.step(&s, xt, b)?;
        let counted = t >= cfg.transient;
        for r in 0..b {
            let diag = gram_schmidt(
                &mut q[r * k * sd..(r + 1) * k * sd],
                k,
                sd,
                COLLAPSE_FLOOR,
                &mut rng,
            );
            if counted {
                for (i, d) in diag.iter().enumerate() {
                    sums[r * k + i] += d.ln();
                }
            }
        }
        if counted {
            let done = t + 1 - cfg.transient;
            if done % stride == 0 || done == averaged {
                let mean: f64 = (0..b).map(|r| sums[r * k]).sum::<f64>() / (b as f64 * done as f64);
                curve_steps.push(done);
                curve.push(mean);
            }
        }
    }
    let per_trial: Vec<Vec<f64>> = (0..b)
        .map(|r| (0..k).map(|i| sums[r * k + i] / averaged as f64).collect())
        .collect();
    let exponents: Vec<f64> = (0..k)
        .map(|i| per_trial.iter().map(|p| p[i]).sum::<f64>() / b as f64)
        .collect();
    let std_over_trials = (0..k)
        .map(|i| {
            let var = per_trial
                .iter()
                .map(|p| (p[i] - exponents[i]).powi(2))
                .sum::<f64>()
                / b as f64;
            var.sqrt()
        })
        .collect();
    Ok(LyapunovReport {
        definition: LYAPUNOV_DEF.into(),
        exponents,
        std_over_trials,
        per_trial,
        transient: cfg.transient,
        steps_averaged: averaged,
        curve_steps,
        curve,
    })
}
