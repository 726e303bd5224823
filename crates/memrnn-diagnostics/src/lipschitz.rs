//! The local Lipschitz constant of the state map along trajectories (Ribeiro, Tiels,
//! Aguirre & Schön): `‖J_t‖₂`, the largest singular value of the one-step Jacobian
//! `J_t = ∂F/∂s` at `(s_{t−1}, x_t)`, by power iteration on `JᵀJ` with one
//! Jacobian–vector and one vector–Jacobian product per iteration, batched over every
//! (step, trial) point still iterating.

use crate::linalg::{norm, quantile, random_unit_rows};
use crate::net::Net;
use memrnn_core::{Backend, Error, Result, SeqShape};
use serde::{Deserialize, Serialize};

/// How `‖J‖₂` is estimated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LipschitzConfig {
    /// Power iterations per point at most.
    pub max_iters: usize,
    /// A point stops when its estimate changed by at most `rel_tol` times itself.
    pub rel_tol: f64,
    /// Evaluate every `stride`-th step only (1: every step).
    pub stride: usize,
    /// Points per batched product.
    pub chunk: usize,
    /// Seed of the random start vectors.
    pub seed: u64,
}

impl Default for LipschitzConfig {
    fn default() -> Self {
        LipschitzConfig {
            max_iters: 100,
            rel_tol: 1e-6,
            stride: 1,
            chunk: 4096,
            seed: 0x11b5,
        }
    }
}

impl LipschitzConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_iters == 0 || self.stride == 0 || self.chunk == 0 {
            return Err(Error::InvalidArgument(format!(
                "Lipschitz estimation needs max_iters, stride and chunk ≥ 1; got {self:?}"
            )));
        }
        if !(self.rel_tol.is_finite() && self.rel_tol >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "Lipschitz rel_tol must be finite and ≥ 0, got {}",
                self.rel_tol
            )));
        }
        Ok(())
    }
}

/// `‖J_t‖₂` along trajectories, and its distribution over time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LipschitzReport {
    /// What the numbers are, in words.
    pub definition: String,
    /// `L̂ = max_{t, b} ‖J_t‖₂` over every evaluated step and trial.
    pub lipschitz: f64,
    /// The step (1-based: `J_t` maps `s_{t−1}` to `s_t`) and trial where `L̂` is reached.
    pub argmax_step: usize,
    pub argmax_trial: usize,
    /// The evaluated steps `t` (1-based).
    pub steps: Vec<usize>,
    /// `max_b ‖J_t‖₂` per evaluated step.
    pub per_step_max: Vec<f64>,
    /// The median over trials of `‖J_t‖₂` per evaluated step.
    pub per_step_median: Vec<f64>,
    /// Quantiles (0, 0.05, 0.25, 0.5, 0.75, 0.95, 1) of `‖J_t‖₂` over all points.
    pub quantiles: Vec<(f64, f64)>,
    /// Points whose power iteration used `max_iters` without meeting `rel_tol` (their
    /// value is still a lower bound on `‖J‖₂`).
    pub unconverged: usize,
}

pub(crate) const LIPSCHITZ_DEF: &str = "‖J_t‖₂: the largest singular value of the one-step state Jacobian J_t = ∂F/∂s at (s_{t−1}, x_t), by power iteration on JᵀJ (a lower bound that converges to it); L̂ = max over steps and trials; per step the max and median over trials.";

/// `‖J_n‖₂` at `N` points `states [N, S]`, `x [N, I]`: the estimates and whether each
/// converged.
pub fn spectral_norms<B: Backend>(
    net: &Net<'_, B>,
    states: &[f32],
    x: &[f32],
    n: usize,
    cfg: &LipschitzConfig,
) -> Result<(Vec<f64>, Vec<bool>)> {
    cfg.validate()?;
    let (sd, id) = (net.state_size(), net.cell.input);
    let mut sigma = vec![0f64; n];
    let mut conv = vec![false; n];
    for start in (0..n).step_by(cfg.chunk) {
        let m = cfg.chunk.min(n - start);
        let mut v = random_unit_rows(cfg.seed ^ start as u64, m, sd);
        let mut active: Vec<usize> = (0..m).collect();
        let mut prev = vec![0f64; m];
        for _ in 0..cfg.max_iters {
            if active.is_empty() {
                break;
            }
            let a = active.len();
            let (mut s_b, mut x_b, mut v_b) = (
                Vec::with_capacity(a * sd),
                Vec::with_capacity(a * id),
                Vec::with_capacity(a * sd),
            );
            for &i in &active {
                let g = start + i;
                s_b.extend_from_slice(&states[g * sd..(g + 1) * sd]);
                x_b.extend_from_slice(&x[g * id..(g + 1) * id]);
                v_b.extend_from_slice(&v[i * sd..(i + 1) * sd]);
            }
            let jv = net.jvp(&s_b, &x_b, &v_b, a)?;
            let jtjv = net.vjp(&s_b, &x_b, &jv, a)?;
            let mut still = Vec::with_capacity(a);
            for (r, &i) in active.iter().enumerate() {
                let est = norm(&jv[r * sd..(r + 1) * sd]);
                sigma[start + i] = est;
                let w = &jtjv[r * sd..(r + 1) * sd];
                let nw = norm(w);
                let done = est == 0.0 || nw == 0.0 || (est - prev[i]).abs() <= cfg.rel_tol * est;
                prev[i] = est;
                if done {
                    conv[start + i] = true;
                } else {
                    for (o, &wv) in v[i * sd..(i + 1) * sd].iter_mut().zip(w) {
                        *o = (wv as f64 / nw) as f32;
                    }
                    still.push(i);
                }
            }
            active = still;
        }
    }
    Ok((sigma, conv))
}

/// `‖J_t‖₂` along the trajectories of `x [T, B, I]` from `s0 [B, S]` (zeros when `None`),
/// at every `cfg.stride`-th step.
pub fn lipschitz<B: Backend>(
    net: &Net<'_, B>,
    x: &[f32],
    shape: SeqShape,
    s0: Option<&[f32]>,
    cfg: &LipschitzConfig,
) -> Result<LipschitzReport> {
    cfg.validate()?;
    let traj = net.trajectory(x, shape, s0)?;
    let (sd, id, b) = (net.state_size(), net.cell.input, shape.batch);
    let steps: Vec<usize> = (0..shape.steps).step_by(cfg.stride).collect();
    let mut states = Vec::with_capacity(steps.len() * b * sd);
    let mut xs = Vec::with_capacity(steps.len() * b * id);
    for &t in &steps {
        states.extend_from_slice(&traj[t * b * sd..(t + 1) * b * sd]);
        xs.extend_from_slice(&x[t * b * id..(t + 1) * b * id]);
    }
    let n = steps.len() * b;
    let (sigma, conv) = spectral_norms(net, &states, &xs, n, cfg)?;
    let mut best = (f64::NEG_INFINITY, 0, 0);
    let mut per_step_max = Vec::with_capacity(steps.len());
    let mut per_step_median = Vec::with_capacity(steps.len());
    for (k, &t) in steps.iter().enumerate() {
        let row = &sigma[k * b..(k + 1) * b];
        for (trial, &v) in row.iter().enumerate() {
            if v > best.0 {
                best = (v, t + 1, trial);
            }
        }
        per_step_max.push(row.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        per_step_median.push(quantile(row, 0.5));
    }
    let quantiles = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
        .iter()
        .map(|&q| (q, quantile(&sigma, q)))
        .collect();
    Ok(LipschitzReport {
        definition: LIPSCHITZ_DEF.into(),
        lipschitz: best.0,
        argmax_step: best.1,
        argmax_trial: best.2,
        steps: steps.iter().map(|t| t + 1).collect(),
        per_step_max,
        per_step_median,
        quantiles,
        unconverged: conv.iter().filter(|c| !**c).count(),
    })
}
