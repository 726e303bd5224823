//! The Levenberg–Marquardt (damped Gauss–Newton) slow-point search (MATH.md §4.1):
//! settings, per-candidate status, the per-candidate step logic every backend shares
//! ([`LmCandidate`]), and the default [`Backend::slow_point_lm`] built from existing trait
//! operations ([`slow_point_lm_default`]).
//!
//! For each candidate, with `r(s) = F(s, x̄) − s`, `A = J − I`, `S = ‖r‖²`, the gradient
//! `∇S = 2 Aᵀ r` and the Gauss–Newton matrix `M = AᵀA`, one iteration proposes
//!
//! ```text
//! (M + μ D) δ = −Aᵀ r,     D = diag(M) + mean(diag(M)) · I
//! ```
//!
//! (Marquardt's scaling, plus a floor so that a column of `A` that vanishes, the flat
//! direction at a minimum of `S` above 0, still gets damped), evaluates `S(s + δ)`, and
//! accepts the step if `S` fell (Nielsen's damping update from the gain ratio), or rejects it
//! and raises `μ` (× ν, ν doubling), keeping `M` and `Aᵀr`. Every trial is one iteration.

use crate::backend::{Backend, StopReason};
use crate::cell::{CellDims, SeqShape};
use crate::error::{Error, Result};
pub use crate::lm_krylov::LmSolver;

/// Nielsen's damping update after an accepted step, from the gain ratio
/// `ρ = (S − S_trial) / predicted decrease` (1 when the model predicted none): μ shrinks by
/// up to 3× on a step the model predicted well and grows towards 2× on a poor one. Shared
/// by the dense and the matrix-free searches so that they damp alike.
pub(crate) fn damping_after_accept(mu: f64, speed: f64, trial: f64, pred: f64) -> f64 {
    let rho = if pred > 0.0 {
        (speed - trial) / pred
    } else {
        1.0
    };
    (mu * (1.0 - (2.0 * rho - 1.0).powi(3)).max(1.0 / 3.0)).max(1e-12)
}

/// What both trait-default LM searches start from: the arguments checked, the constant
/// input and the candidates' states on the host, and the candidates still to work on.
pub(crate) fn lm_default_inputs<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    x: &B::Tensor,
    search: &LmSearch<B::Tensor>,
    cfg: &LmConfig,
) -> Result<(Vec<f32>, Vec<f32>, Vec<usize>)> {
    check_lm_args(backend, cell, params, x, search, cfg)?;
    let x_host = backend.download(x)?;
    crate::error::check_finite("x", &x_host)?;
    let states = backend.download(&search.states)?;
    let active = (0..search.k)
        .filter(|&i| search.status[i].stop.is_active())
        .collect();
    Ok((x_host, states, active))
}

/// How a candidate of a slow-point search ended, over both methods: Adam's
/// [`StopReason`]s plus [`SearchStop::Minimum`], which only the LM search reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchStop {
    /// Still iterating (the state before the first call).
    Running,
    /// `S < tol`: a fixed point (to f32's resolution).
    Converged,
    /// A minimum of `S` above `tol`: the search could not lower `S` any further and the
    /// speed's gradient `‖(J − I)ᵀ r‖ / ‖r‖` (that is `‖∇√S‖`) is below
    /// [`LmConfig::min_grad`]. A slow point that is not a fixed point.
    Minimum,
    /// `S` stopped falling with a gradient that is not small.
    Stalled,
    /// Used its `max_iters`; a later call with a larger `max_iters` resumes it.
    MaxIters,
    /// `S` became NaN or infinite; the state is the last one reached.
    NonFinite,
}

impl SearchStop {
    /// Whether a search call works on this candidate.
    pub fn is_active(self) -> bool {
        matches!(self, SearchStop::Running | SearchStop::MaxIters)
    }

    /// A short phrase for tables ("converged", "minimum of S", …).
    pub fn describe(self) -> &'static str {
        match self {
            SearchStop::Running => "running",
            SearchStop::Converged => "converged",
            SearchStop::Minimum => "minimum of S",
            SearchStop::Stalled => "stalled",
            SearchStop::MaxIters => "iteration cap",
            SearchStop::NonFinite => "non-finite",
        }
    }
}

impl From<StopReason> for SearchStop {
    fn from(s: StopReason) -> Self {
        match s {
            StopReason::Running => SearchStop::Running,
            StopReason::Converged => SearchStop::Converged,
            StopReason::Stalled => SearchStop::Stalled,
            StopReason::MaxIters => SearchStop::MaxIters,
            StopReason::NonFinite => SearchStop::NonFinite,
        }
    }
}

/// Settings of the Levenberg–Marquardt search (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmConfig {
    /// The most trial steps a candidate gets (counted over all calls).
    pub max_iters: u32,
    /// Converged when `S < tol` (default 1e-10, as Adam's).
    pub tol: f32,
    /// A candidate that stops making progress is at a *minimum of `S`* when
    /// `‖(J − I)ᵀ r‖ / ‖r‖ ≤ min_grad` there, else *stalled* (default 1e-2: the speed
    /// `√S` changes by at most 1% of the distance moved; f32 rounding of `r` keeps this
    /// measure near 1e-3 at minima with `S` around 1e-6).
    pub min_grad: f32,
    /// Iterations between progress checks; 0 turns them off.
    pub stall_window: u32,
    /// No progress when `S` fell by at most `stall_rel · S_window_start` over a window.
    pub stall_rel: f32,
    /// Before a candidate is declared at a minimum of `S`, two trials at
    /// `s ± probe · max(1, rms(s)) · v` along the flattest direction `v` of `(J − I)ᵀ(J − I)`
    /// (where the Gauss–Newton model sees no curvature): if either lowers `S`, the point
    /// was an inflection or saddle of `S` and the search continues from there (default
    /// 1e-2; 0 turns the probe off).
    pub probe: f32,
    /// The damping `μ` a fresh candidate starts with.
    pub damping_init: f32,
    /// No progress when `μ` must rise above this to find a step that lowers `S` (the
    /// step is then a gradient step shorter than f32 can resolve).
    pub damping_max: f32,
    /// How the damped system is solved: dense factorisations, matrix-free CG
    /// ([`crate::lm_krylov`]), or chosen by size ([`LmSolver::Auto`], the default).
    #[serde(default)]
    pub solver: LmSolver,
    /// The matrix-free solver's most CG steps per trial (default 100).
    #[serde(default = "default_cg_max_iters")]
    pub cg_max_iters: u32,
    /// The matrix-free solver's largest forcing term `η` (CG stops at a relative residual
    /// `η`; default 0.5, the first step's).
    #[serde(default = "default_forcing_max")]
    pub forcing_max: f32,
}

fn default_cg_max_iters() -> u32 {
    100
}

fn default_forcing_max() -> f32 {
    0.5
}

impl Default for LmConfig {
    /// At most 1000 iterations, `tol` 1e-10, `min_grad` 1e-2, progress checks every 20
    /// iterations with a 0.1% threshold, `μ` from 1e-3 up to 1e10, the solver chosen by
    /// size, at most 100 CG steps per trial with forcing terms up to 0.5.
    ///
    /// 1000 iterations, not fewer: on trained networks most candidates creep along curved
    /// valleys of `S` (slow manifolds) and end at minima of `S` after a few hundred
    /// iterations (a GRU H 64 trained 600 steps: median 322, 90% by 648; with a cap of 200
    /// nearly all stopped at the cap). Contracting networks converge in a handful.
    fn default() -> Self {
        LmConfig {
            max_iters: 1000,
            tol: 1e-10,
            min_grad: 1e-2,
            stall_window: 20,
            stall_rel: 1e-3,
            probe: 1e-2,
            damping_init: 1e-3,
            damping_max: 1e10,
            solver: LmSolver::Auto,
            cg_max_iters: default_cg_max_iters(),
            forcing_max: default_forcing_max(),
        }
    }
}

impl LmConfig {
    pub fn validate(&self) -> Result<()> {
        let finite_nonneg = |v: f32| v.is_finite() && v >= 0.0;
        let ok = finite_nonneg(self.tol)
            && finite_nonneg(self.min_grad)
            && finite_nonneg(self.probe)
            && finite_nonneg(self.stall_rel)
            && self.damping_init.is_finite()
            && self.damping_init > 0.0
            && self.damping_max.is_finite()
            && self.damping_max >= self.damping_init
            && self.cg_max_iters >= 1
            && self.forcing_max.is_finite()
            && self.forcing_max > 0.0
            && self.forcing_max < 1.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "a Levenberg–Marquardt search needs tol, min_grad, stall_rel ≥ 0, 0 < damping_init ≤ damping_max, cg_max_iters ≥ 1 and 0 < forcing_max < 1, all finite; got {self:?}"
            )))
        }
    }
}

/// One candidate's progress in an LM search, kept on the host.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmStatus {
    /// Trial steps taken so far.
    pub iters: u32,
    /// `S` at the current state (NaN before the first evaluation).
    pub speed_sq: f32,
    /// `S` at the start of the current progress window.
    pub window_speed_sq: f32,
    /// `‖(J − I)ᵀ r‖ / ‖r‖` at the current state (NaN before the first Jacobian).
    pub grad_speed: f32,
    /// The damping `μ`, kept across calls.
    pub damping: f32,
    pub stop: SearchStop,
}

impl LmStatus {
    /// A fresh candidate with the damping `cfg.damping_init`.
    pub fn new(cfg: &LmConfig) -> Self {
        LmStatus {
            iters: 0,
            speed_sq: f32::NAN,
            window_speed_sq: f32::NAN,
            grad_speed: f32::NAN,
            damping: cfg.damping_init,
            stop: SearchStop::Running,
        }
    }
}

/// `K` candidates of an LM search: states where the backend computes, status on the host.
pub struct LmSearch<T> {
    /// `K`.
    pub k: usize,
    /// `[K, S]`, updated in place.
    pub states: T,
    /// `[K]`.
    pub status: Vec<LmStatus>,
}

impl<T> LmSearch<T> {
    /// A fresh search from `candidates [K, S]`; the same checks as
    /// [`SlowPointSearch::new`](crate::backend::SlowPointSearch::new).
    pub fn new<B: Backend<Tensor = T> + ?Sized>(
        backend: &B,
        cell: &CellDims,
        candidates: &[f32],
        cfg: &LmConfig,
    ) -> Result<Self> {
        let k = crate::checks::check_candidates(cell, candidates)?;
        Ok(LmSearch {
            k,
            states: backend.upload(candidates)?,
            status: vec![LmStatus::new(cfg); k],
        })
    }
}

/// Checks the arguments of [`Backend::slow_point_lm`]; for backends' use.
pub fn check_lm_args<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    x: &B::Tensor,
    search: &LmSearch<B::Tensor>,
    cfg: &LmConfig,
) -> Result<()> {
    cfg.validate()?;
    cell.layout().check("params", backend.len(params))?;
    crate::error::check_len("x", cell.input, backend.len(x), || {
        format!("one constant input [I={}]", cell.input)
    })?;
    let (sd, k) = (cell.state_size(), search.k);
    if k == 0 {
        return Err(Error::InvalidArgument(
            "a slow-point search needs at least one candidate state (K = 0)".into(),
        ));
    }
    crate::error::check_len("states", k * sd, backend.len(&search.states), || {
        format!("[K={k}, S={sd}]")
    })?;
    crate::error::check_len("status", k, search.status.len(), || {
        format!("one per candidate, K={k}")
    })
}

/// What a candidate needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmNext {
    /// The Jacobian `J` at [`LmCandidate::state`] (then [`LmCandidate::jacobian`] or
    /// [`LmCandidate::gram_ready`]).
    Jacobian,
    /// `F` at [`LmCandidate::trial_state`] (then [`LmCandidate::trial`]).
    Trial,
    /// Stopped; the status says why.
    Done,
}

/// One candidate's LM iterations as a state machine driven by its backend, which supplies
/// `F(s)` and `J(s)`; the decisions (acceptance, damping, stopping) are made here, so
/// every backend makes the same ones. Work buffers are `O(S²)` f64; reuse one per thread.
pub struct LmCandidate {
    sd: usize,
    s: Vec<f32>,
    trial: Vec<f32>,
    /// `r = F(s) − s` (f64, exact from the f32 values).
    r: Vec<f64>,
    /// `A = J − I`, row-major.
    a: Vec<f64>,
    /// `M = AᵀA` (the lower triangle is read).
    m: Vec<f64>,
    /// `g = Aᵀ r`.
    g: Vec<f64>,
    d: Vec<f64>,
    chol: Vec<f64>,
    delta: Vec<f64>,
    speed: f64,
    pred: f64,
    mu: f64,
    nu: f64,
    /// 0, or which probe of [`LmConfig::probe`] is pending (1: `+v`, 2: `−v`).
    probe: u8,
    probe_len: f64,
}

impl LmCandidate {
    /// Buffers for states of `sd` values.
    pub fn new(sd: usize) -> Self {
        LmCandidate {
            sd,
            s: vec![0.0; sd],
            trial: vec![0.0; sd],
            r: vec![0.0; sd],
            a: vec![0.0; sd * sd],
            m: vec![0.0; sd * sd],
            g: vec![0.0; sd],
            d: vec![0.0; sd],
            chol: vec![0.0; sd * sd],
            delta: vec![0.0; sd],
            speed: f64::NAN,
            pred: 0.0,
            mu: 1e-3,
            nu: 2.0,
            probe: 0,
            probe_len: 0.0,
        }
    }

    /// The current (accepted) state.
    pub fn state(&self) -> &[f32] {
        &self.s
    }

    /// The state of the pending trial.
    pub fn trial_state(&self) -> &[f32] {
        &self.trial
    }

    /// `r = F(s) − s` at the current state.
    pub fn residual(&self) -> &[f64] {
        &self.r
    }

    /// `Aᵀ r = ½ ∇S` at the current state (after the Jacobian).
    pub fn half_gradient(&self) -> &[f64] {
        &self.g
    }

    /// Starts (or resumes) a candidate at state `s` with `f = F(s)`.
    pub fn start(&mut self, s: &[f32], f: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> LmNext {
        self.s.copy_from_slice(s);
        self.mu = st.damping as f64;
        self.nu = 2.0;
        self.probe = 0;
        self.set_point(f, st);
        if let Some(done) = self.terminal(st, cfg) {
            return done;
        }
        if st.iters == 0 || !st.window_speed_sq.is_finite() {
            st.window_speed_sq = st.speed_sq;
        }
        if st.iters >= cfg.max_iters {
            st.stop = SearchStop::MaxIters;
            return LmNext::Done;
        }
        st.stop = SearchStop::Running;
        LmNext::Jacobian
    }

    fn set_point(&mut self, f: &[f32], st: &mut LmStatus) {
        let mut sq = 0.0f64;
        for ((r, &f), &s) in self.r.iter_mut().zip(f).zip(&self.s) {
            *r = f as f64 - s as f64;
            sq += *r * *r;
        }
        self.speed = sq;
        st.speed_sq = sq as f32;
    }

    /// Non-finite or converged at the current point.
    fn terminal(&self, st: &mut LmStatus, cfg: &LmConfig) -> Option<LmNext> {
        if !self.speed.is_finite() || !st.speed_sq.is_finite() {
            st.stop = SearchStop::NonFinite;
            return Some(LmNext::Done);
        }
        if st.speed_sq < cfg.tol || self.speed == 0.0 {
            st.stop = SearchStop::Converged;
            return Some(LmNext::Done);
        }
        None
    }

    /// Supplies the Jacobian `J` (`[S, S]`, row `i` = `∂F_i/∂s`) at the current state:
    /// forms `A = J − I` and `M = AᵀA` here, then proposes a step.
    pub fn jacobian(&mut self, j: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> LmNext {
        let n = self.sd;
        {
            let (a, m) = self.a_and_gram_mut();
            fill_a(j, a, n);
            gram_lower(a, m, n);
        }
        self.gram_ready(st, cfg)
    }

    /// For backends that form `A` and `M` themselves: `A = J − I` (row-major `[S, S]`) and
    /// `M = AᵀA` (at least its lower triangle) are to be written into these buffers, then
    /// [`LmCandidate::gram_ready`] called.
    pub fn a_and_gram_mut(&mut self) -> (&mut [f64], &mut [f64]) {
        (&mut self.a, &mut self.m)
    }

    /// `A` and `M` are in place: forms `g = Aᵀr`, the speed's gradient and the damping
    /// matrix, and proposes a step.
    pub fn gram_ready(&mut self, st: &mut LmStatus, cfg: &LmConfig) -> LmNext {
        let n = self.sd;
        half_gradient(&self.a, &self.r, &mut self.g, n);
        let gn = self.g.iter().map(|v| v * v).sum::<f64>().sqrt();
        st.grad_speed = (gn / self.speed.sqrt()) as f32;
        let mean = (0..n).map(|i| self.m[i * n + i]).sum::<f64>() / n as f64;
        let floor = if mean > 0.0 && mean.is_finite() {
            mean
        } else {
            1.0
        };
        for i in 0..n {
            self.d[i] = self.m[i * n + i] + floor;
        }
        self.nu = 2.0;
        self.propose(st, cfg)
    }

    fn no_progress(&mut self, st: &mut LmStatus, cfg: &LmConfig) -> LmNext {
        st.damping = self.mu as f32;
        if st.grad_speed > cfg.min_grad {
            st.stop = SearchStop::Stalled;
            return LmNext::Done;
        }
        // A small gradient: a minimum of S, unless S falls a short way along the
        // direction the Gauss–Newton model is blind to (an inflection or saddle of S).
        if cfg.probe > 0.0 && st.iters < cfg.max_iters {
            self.flattest_direction();
            let rms =
                (self.s.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / self.sd as f64).sqrt();
            self.probe_len = cfg.probe as f64 * rms.max(1.0);
            self.probe = 1;
            return self.probe_trial(1.0, st);
        }
        st.stop = SearchStop::Minimum;
        LmNext::Done
    }

    /// The trial `s + sign · probe_len · v`.
    fn probe_trial(&mut self, sign: f64, st: &mut LmStatus) -> LmNext {
        let step = sign * self.probe_len;
        for ((t, &s), &v) in self.trial.iter_mut().zip(&self.s).zip(&self.delta) {
            *t = (s as f64 + step * v) as f32;
        }
        st.iters += 1;
        LmNext::Trial
    }

    /// The unit eigenvector of `M = AᵀA` with the smallest eigenvalue (inverse iteration
    /// from a fixed start), into `delta`.
    fn flattest_direction(&mut self) {
        let n = self.sd;
        let mean = (0..n).map(|i| self.m[i * n + i]).sum::<f64>() / n as f64;
        let ones = vec![1.0; n];
        let mut shift = 1e-10 * mean.max(1e-30);
        let mut x: Vec<f64> = (0..n).map(|i| 1.0 + 0.01 * (i % 7) as f64).collect();
        let norm = |v: &mut [f64]| {
            let l = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if l > 0.0 && l.is_finite() {
                v.iter_mut().for_each(|a| *a /= l);
            }
        };
        norm(&mut x);
        for _ in 0..4 {
            let neg: Vec<f64> = x.iter().map(|v| -v).collect();
            let mut tries = 0;
            while !damped_solve(
                &self.m,
                &ones,
                shift,
                &neg,
                &mut self.chol,
                &mut self.delta,
                n,
            ) {
                shift *= 100.0;
                tries += 1;
                if tries > 20 {
                    break;
                }
            }
            if tries > 20 {
                break;
            }
            x.copy_from_slice(&self.delta);
            norm(&mut x);
        }
        self.delta.copy_from_slice(&x);
    }

    fn raise_damping(&mut self) {
        self.mu *= self.nu;
        self.nu *= 2.0;
    }

    /// Solves for the next trial, raising `μ` while the damped matrix is not positive
    /// definite.
    fn propose(&mut self, st: &mut LmStatus, cfg: &LmConfig) -> LmNext {
        loop {
            if st.iters >= cfg.max_iters {
                st.stop = SearchStop::MaxIters;
                st.damping = self.mu as f32;
                return LmNext::Done;
            }
            if self.mu > cfg.damping_max as f64 {
                return self.no_progress(st, cfg);
            }
            if damped_solve(
                &self.m,
                &self.d,
                self.mu,
                &self.g,
                &mut self.chol,
                &mut self.delta,
                self.sd,
            ) {
                break;
            }
            self.raise_damping();
        }
        // Predicted decrease of the Gauss–Newton model: −gᵀδ + μ δᵀDδ (both ≥ 0).
        let mut pred = 0.0;
        for i in 0..self.sd {
            pred += -self.g[i] * self.delta[i] + self.mu * self.d[i] * self.delta[i].powi(2);
        }
        self.pred = pred;
        for ((t, &s), &dl) in self.trial.iter_mut().zip(&self.s).zip(&self.delta) {
            *t = (s as f64 + dl) as f32;
        }
        st.iters += 1;
        st.damping = self.mu as f32;
        LmNext::Trial
    }

    /// Supplies `f = F(trial)`: accepts the trial if `S` fell, else raises the damping and
    /// proposes again.
    pub fn trial(&mut self, f: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> LmNext {
        let mut sq = 0.0f64;
        for (&f, &t) in f.iter().zip(&self.trial) {
            let e = f as f64 - t as f64;
            sq += e * e;
        }
        let accepted = sq.is_finite() && sq < self.speed;
        if self.probe > 0 {
            if accepted {
                // Escaped: continue from the probe with fresh damping and window.
                self.probe = 0;
                self.mu = cfg.damping_init as f64;
                self.nu = 2.0;
                std::mem::swap(&mut self.s, &mut self.trial);
                self.set_point(f, st);
                st.damping = self.mu as f32;
                st.window_speed_sq = st.speed_sq;
                if let Some(done) = self.terminal(st, cfg) {
                    return done;
                }
                if st.iters >= cfg.max_iters {
                    st.stop = SearchStop::MaxIters;
                    return LmNext::Done;
                }
                return LmNext::Jacobian;
            }
            if self.probe == 1 && st.iters < cfg.max_iters {
                self.probe = 2;
                return self.probe_trial(-1.0, st);
            }
            self.probe = 0;
            st.stop = SearchStop::Minimum;
            return LmNext::Done;
        }
        if accepted {
            self.mu = damping_after_accept(self.mu, self.speed, sq, self.pred);
            self.nu = 2.0;
            std::mem::swap(&mut self.s, &mut self.trial);
            self.set_point(f, st);
            st.damping = self.mu as f32;
            if let Some(done) = self.terminal(st, cfg) {
                return done;
            }
        } else {
            self.raise_damping();
            st.damping = self.mu as f32;
        }
        if cfg.stall_window > 0 && st.iters % cfg.stall_window == 0 {
            if st.window_speed_sq - st.speed_sq <= cfg.stall_rel * st.window_speed_sq {
                return self.no_progress(st, cfg);
            }
            st.window_speed_sq = st.speed_sq;
        }
        if accepted {
            if st.iters >= cfg.max_iters {
                st.stop = SearchStop::MaxIters;
                return LmNext::Done;
            }
            LmNext::Jacobian
        } else {
            self.propose(st, cfg)
        }
    }
}

/// `Σ a_i b_i` with eight partial sums (so that it vectorises), in a fixed order.
#[allow(clippy::needless_range_loop)] // eight lanes, written out for the vectoriser
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `A = J − I` in f64.
fn fill_a(j: &[f32], a: &mut [f64], n: usize) {
    for (dst, &src) in a.iter_mut().zip(j) {
        *dst = src as f64;
    }
    for i in 0..n {
        a[i * n + i] -= 1.0;
    }
}

/// The lower triangle of `M = AᵀA` (`A [n, n]` row-major), as rank-one updates by rows.
pub fn gram_lower(a: &[f64], m: &mut [f64], n: usize) {
    m.iter_mut().for_each(|v| *v = 0.0);
    for k in 0..n {
        let row = &a[k * n..(k + 1) * n];
        for i in 0..n {
            let aki = row[i];
            if aki == 0.0 {
                continue;
            }
            for (mv, &akj) in m[i * n..i * n + i + 1].iter_mut().zip(&row[..=i]) {
                *mv += aki * akj;
            }
        }
    }
}

/// `g = Aᵀ r` (half the gradient of `S = ‖r‖²` when `A = J − I`, `r = F(s) − s`).
pub fn half_gradient(a: &[f64], r: &[f64], g: &mut [f64], n: usize) {
    g.iter_mut().for_each(|v| *v = 0.0);
    for k in 0..n {
        let rk = r[k];
        for (gv, &akj) in g.iter_mut().zip(&a[k * n..(k + 1) * n]) {
            *gv += akj * rk;
        }
    }
}

/// Solves `(M + μ·diag(d)) δ = −g` by Cholesky (lower triangle of `M` read; `chol`
/// scratch `[n, n]`). False when the matrix is not numerically positive definite.
pub fn damped_solve(
    m: &[f64],
    d: &[f64],
    mu: f64,
    g: &[f64],
    chol: &mut [f64],
    delta: &mut [f64],
    n: usize,
) -> bool {
    for i in 0..n {
        for j in 0..=i {
            let (li, lj) = (i * n, j * n);
            let mut v = m[li + j] - dot(&chol[li..li + j], &chol[lj..lj + j]);
            if i == j {
                v += mu * d[i];
                if v <= 0.0 || !v.is_finite() {
                    return false;
                }
                chol[li + i] = v.sqrt();
            } else {
                chol[li + j] = v / chol[lj + j];
            }
        }
    }
    // L y = −g.
    for i in 0..n {
        let li = i * n;
        delta[i] = (-g[i] - dot(&chol[li..li + i], &delta[..i])) / chol[li + i];
    }
    // Lᵀ δ = y, by rows of L.
    for i in (0..n).rev() {
        let li = i * n;
        delta[i] /= chol[li + i];
        let di = delta[i];
        for k in 0..i {
            delta[k] -= chol[li + k] * di;
        }
    }
    delta.iter().all(|v| v.is_finite())
}

/// Candidates per block of the default search: `M`, `A` and the Cholesky factor of each
/// candidate in a block are held at once (about 64 MiB of f64 in all).
fn lm_block(sd: usize) -> usize {
    ((1usize << 23) / (4 * sd * sd)).max(1)
}

/// The dense default of [`Backend::slow_point_lm`] (what it runs for
/// [`LmSolver::Dense`]), on top of `seq_forward` (one step, for `F`) and `step_jacobian`: per round, one batched Jacobian call for the candidates whose
/// step was accepted and one batched forward for the trials; the factorisations run on
/// the host. Correct on every backend, and the definition fused versions are tested
/// against; it moves the states and Jacobians to the host every round.
pub fn slow_point_lm_default<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    x: &B::Tensor,
    search: &mut LmSearch<B::Tensor>,
    cfg: &LmConfig,
) -> Result<()> {
    let sd = cell.state_size();
    let (x_host, mut states, active) = lm_default_inputs(backend, cell, params, x, search, cfg)?;
    let forward = |rows: &[f32], n: usize| -> Result<Vec<f32>> {
        let xs: Vec<f32> = x_host
            .iter()
            .copied()
            .cycle()
            .take(n * cell.input)
            .collect();
        let fwd = backend.seq_forward(
            cell,
            params,
            SeqShape::new(1, n)?,
            &backend.upload(&xs)?,
            Some(&backend.upload(rows)?),
        )?;
        backend.download(&fwd.s_final)
    };
    let jacobians = |rows: &[f32], n: usize| -> Result<Vec<f32>> {
        let xs: Vec<f32> = x_host
            .iter()
            .copied()
            .cycle()
            .take(n * cell.input)
            .collect();
        let j = backend.step_jacobian(
            cell,
            params,
            &backend.upload(rows)?,
            &backend.upload(&xs)?,
            n,
        )?;
        backend.download(&j)
    };
    for block in active.chunks(lm_block(sd)) {
        let mut cands: Vec<LmCandidate> = block.iter().map(|_| LmCandidate::new(sd)).collect();
        let rows: Vec<f32> = block
            .iter()
            .flat_map(|&i| states[i * sd..(i + 1) * sd].iter().copied())
            .collect();
        let f = forward(&rows, block.len())?;
        let mut next: Vec<LmNext> = cands
            .iter_mut()
            .zip(block)
            .enumerate()
            .map(|(b, (c, &i))| {
                c.start(
                    &rows[b * sd..(b + 1) * sd],
                    &f[b * sd..(b + 1) * sd],
                    &mut search.status[i],
                    cfg,
                )
            })
            .collect();
        loop {
            let want_j: Vec<usize> = (0..block.len())
                .filter(|&b| next[b] == LmNext::Jacobian)
                .collect();
            if !want_j.is_empty() {
                let rows: Vec<f32> = want_j
                    .iter()
                    .flat_map(|&b| cands[b].state().iter().copied())
                    .collect();
                let j = jacobians(&rows, want_j.len())?;
                for (q, &b) in want_j.iter().enumerate() {
                    next[b] = cands[b].jacobian(
                        &j[q * sd * sd..(q + 1) * sd * sd],
                        &mut search.status[block[b]],
                        cfg,
                    );
                }
            }
            let want_t: Vec<usize> = (0..block.len())
                .filter(|&b| next[b] == LmNext::Trial)
                .collect();
            if want_t.is_empty() {
                if want_j.is_empty() {
                    break;
                }
                continue;
            }
            let rows: Vec<f32> = want_t
                .iter()
                .flat_map(|&b| cands[b].trial_state().iter().copied())
                .collect();
            let f = forward(&rows, want_t.len())?;
            for (q, &b) in want_t.iter().enumerate() {
                next[b] =
                    cands[b].trial(&f[q * sd..(q + 1) * sd], &mut search.status[block[b]], cfg);
            }
        }
        for (c, &i) in cands.iter().zip(block) {
            states[i * sd..(i + 1) * sd].copy_from_slice(c.state());
        }
    }
    search.states = backend.upload(&states)?;
    Ok(())
}
