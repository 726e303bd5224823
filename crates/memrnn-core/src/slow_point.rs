//! The Adam slow-point search policy (MATH.md §4), apart from the [`Backend`] trait that
//! runs it: the settings ([`SlowPointConfig`]), when a candidate stops ([`StopReason`],
//! [`CandidateStatus::check`]), the state of a batched search ([`SlowPointSearch`]) and
//! the host-side default of [`Backend::slow_point_iterations`]
//! ([`slow_point_iterations_default`]). The Levenberg–Marquardt search is in
//! [`crate::lm`]. Everything here is also reachable as `memrnn_core::backend::…`, where
//! it used to live.

use crate::backend::{adam_update_host, check_slow_point_args, AdamConfig, Backend};
use crate::cell::CellDims;
use crate::error::{Error, Result};

/// Settings of a batched slow-point search (MATH.md §4): Adam on each candidate's speed
/// `S(s) = ‖F(s, x̄) − s‖²`, every candidate on its own.
///
/// Each iteration of a running candidate evaluates `S` at its current state, then stops it
/// when `S < tol` ([`StopReason::Converged`]), when `S` is not finite
/// ([`StopReason::NonFinite`]), when, at an iteration count that is a positive multiple of
/// `stall_window`, `S` has fallen by no more than `stall_rel` times its value one window
/// earlier ([`StopReason::Stalled`]), or when the candidate has had `max_iters` Adam
/// updates ([`StopReason::MaxIters`]); otherwise it takes one Adam step with its own
/// moments and step count. So the reported `S` is always that of the returned state.
/// [`CandidateStatus::check`] is this rule, for every backend to call or mirror.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlowPointConfig {
    pub adam: AdamConfig,
    /// The most Adam updates a candidate gets (counted over all calls).
    pub max_iters: u32,
    /// Converged when `S < tol`.
    pub tol: f32,
    /// Iterations between stall checks; 0 turns them off.
    pub stall_window: u32,
    /// Stalled when `S` fell by at most `stall_rel · S_window_start` over a window.
    pub stall_rel: f32,
}

impl Default for SlowPointConfig {
    /// lr 1e-2, at most 10,000 iterations, `tol` 1e-10 (about f32's floor for `S` at
    /// `H` in the hundreds), stall checks every 1,000 iterations with a 0.1% threshold;
    /// memrnn-slowpoints' docs say why.
    fn default() -> Self {
        SlowPointConfig {
            adam: AdamConfig {
                lr: 1e-2,
                ..AdamConfig::default()
            },
            max_iters: 10_000,
            tol: 1e-10,
            stall_window: 1000,
            stall_rel: 1e-3,
        }
    }
}

impl SlowPointConfig {
    pub fn validate(&self) -> Result<()> {
        self.adam.validate()?;
        let ok = self.tol.is_finite()
            && self.tol >= 0.0
            && self.stall_rel.is_finite()
            && self.stall_rel >= 0.0;
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "a slow-point search needs tol ≥ 0 and stall_rel ≥ 0, both finite; got {self:?}"
            )));
        }
        Ok(())
    }
}

/// Why a candidate of a slow-point search stopped (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Still iterating (the state before the first call).
    Running,
    /// `S < tol`.
    Converged,
    /// `S` stopped falling (see [`SlowPointConfig::stall_rel`]).
    Stalled,
    /// Used its `max_iters` updates; a later call with a larger `max_iters` resumes it.
    MaxIters,
    /// `S` became NaN or infinite; the state is the last one reached.
    NonFinite,
}

impl StopReason {
    /// Whether a call to [`Backend::slow_point_iterations`] works on this candidate.
    pub fn is_active(self) -> bool {
        matches!(self, StopReason::Running | StopReason::MaxIters)
    }
}

/// One candidate's progress, kept on the host and exchanged once per call.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CandidateStatus {
    /// Adam updates applied so far (also Adam's step count for bias correction).
    pub iters: u32,
    /// `S` at the current state (NaN before the first evaluation).
    pub speed_sq: f32,
    /// `S` at the start of the current stall window.
    pub window_speed_sq: f32,
    pub stop: StopReason,
}

impl Default for CandidateStatus {
    fn default() -> Self {
        CandidateStatus {
            iters: 0,
            speed_sq: f32::NAN,
            window_speed_sq: f32::NAN,
            stop: StopReason::Running,
        }
    }
}

impl CandidateStatus {
    /// The per-iteration decision of [`SlowPointConfig`]'s docs, given `S` at the current
    /// state: records it and returns whether the candidate takes an Adam step now.
    /// Every backend's `slow_point_iterations` makes exactly this decision.
    pub fn check(&mut self, speed_sq: f32, cfg: &SlowPointConfig) -> bool {
        // A candidate resumed after `MaxIters` is at the iteration count (and state) where
        // it stopped, whose stall check was made then: it is not made twice.
        let resumed = self.stop == StopReason::MaxIters;
        self.speed_sq = speed_sq;
        if !speed_sq.is_finite() {
            self.stop = StopReason::NonFinite;
            return false;
        }
        if speed_sq < cfg.tol {
            self.stop = StopReason::Converged;
            return false;
        }
        if self.iters == 0 || !self.window_speed_sq.is_finite() {
            self.window_speed_sq = speed_sq;
        } else if !resumed && cfg.stall_window > 0 && self.iters % cfg.stall_window == 0 {
            if self.window_speed_sq - speed_sq <= cfg.stall_rel * self.window_speed_sq {
                self.stop = StopReason::Stalled;
                return false;
            }
            self.window_speed_sq = speed_sq;
        }
        if self.iters >= cfg.max_iters {
            self.stop = StopReason::MaxIters;
            return false;
        }
        self.stop = StopReason::Running;
        true
    }
}

/// `K` candidates of a slow-point search: states and Adam moments where the backend
/// computes, per-candidate status on the host.
pub struct SlowPointSearch<T> {
    /// `K`.
    pub k: usize,
    /// `[K, S]`, updated in place.
    pub states: T,
    /// Adam's first moments, `[K, S]`.
    pub m: T,
    /// Adam's second moments, `[K, S]`.
    pub v: T,
    /// `[K]`.
    pub status: Vec<CandidateStatus>,
}

impl<T> SlowPointSearch<T> {
    /// A fresh search from `candidates [K, S]` (zero moments, nothing run yet).
    /// Fails on no candidates, a length that is not `K·S`, or a non-finite value.
    pub fn new<B: Backend<Tensor = T> + ?Sized>(
        backend: &B,
        cell: &CellDims,
        candidates: &[f32],
    ) -> Result<Self> {
        let sd = cell.state_size();
        let k = crate::checks::check_candidates(cell, candidates)?;
        Ok(SlowPointSearch {
            k,
            states: backend.upload(candidates)?,
            m: backend.zeros(k * sd)?,
            v: backend.zeros(k * sd)?,
            status: vec![CandidateStatus::default(); k],
        })
    }
}

/// The default [`Backend::slow_point_iterations`], on top of `step_speed_grad`: correct,
/// and the definition the fused versions are tested against, but it moves the active
/// states to and from the host on every iteration.
pub fn slow_point_iterations_default<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    x: &B::Tensor,
    search: &mut SlowPointSearch<B::Tensor>,
    cfg: &SlowPointConfig,
) -> Result<()> {
    check_slow_point_args(backend, cell, params, x, search, cfg)?;
    let sd = cell.state_size();
    // The same value checks as the fused searches: finite parameters and input.
    crate::error::check_finite("params", &backend.download(params)?)?;
    let x_host = backend.download(x)?;
    crate::error::check_finite("x", &x_host)?;
    let mut states = backend.download(&search.states)?;
    let mut m = backend.download(&search.m)?;
    let mut v = backend.download(&search.v)?;
    let mut active: Vec<usize> = (0..search.k)
        .filter(|&i| search.status[i].stop.is_active())
        .collect();
    let mut batch = Vec::new();
    let mut xs = Vec::new();
    while !active.is_empty() {
        let n = active.len();
        batch.clear();
        xs.clear();
        for &i in &active {
            batch.extend_from_slice(&states[i * sd..(i + 1) * sd]);
            xs.extend_from_slice(&x_host);
        }
        let g = backend.step_speed_grad(
            cell,
            params,
            &backend.upload(&batch)?,
            &backend.upload(&xs)?,
            n,
            false,
        )?;
        let speed = backend.download(&g.speed)?;
        let grad = backend.download(&g.dstate)?;
        let mut still = Vec::with_capacity(n);
        for (j, &i) in active.iter().enumerate() {
            let st = &mut search.status[i];
            if !st.check(speed[j], cfg) {
                continue;
            }
            let r = i * sd..(i + 1) * sd;
            adam_update_host(
                &mut states[r.clone()],
                &grad[j * sd..(j + 1) * sd],
                &mut m[r.clone()],
                &mut v[r],
                st.iters as u64,
                &cfg.adam,
            );
            st.iters += 1;
            still.push(i);
        }
        active = still;
    }
    search.states = backend.upload(&states)?;
    search.m = backend.upload(&m)?;
    search.v = backend.upload(&v)?;
    Ok(())
}
