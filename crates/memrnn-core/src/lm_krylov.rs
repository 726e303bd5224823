//! The matrix-free Levenberg–Marquardt slow-point search (MATH.md §4.1): the same damped
//! Gauss–Newton steps as [`crate::lm`], each solved inexactly by conjugate gradients on
//! the normal equations from Jacobian–vector products `A v` and vector–Jacobian products
//! `Aᵀ u` (`A = J − I`), never forming `J`.
//!
//! Per candidate, with `r = F(s) − s`, `g = Aᵀ r`, the step `δ` approximately solves
//!
//! ```text
//! (AᵀA + λ I) δ = −g,     λ = μ · ρ,     ρ = ‖A g‖² / ‖g‖²
//! ```
//!
//! by CG from `δ = 0` (CGNR: one `A p` and one `Aᵀ q` per CG step). `ρ`, a Rayleigh
//! quotient of `AᵀA` taken from the first CG product at each new point, gives the damping
//! the scale of `AᵀA` (what Marquardt's `diag(AᵀA)` does for the dense search, which the
//! products cannot supply). CG stops when `‖(AᵀA + λI)δ + g‖ ≤ η ‖g‖` with the forcing
//! term `η` of Eisenstat and Walker (choice 2: `η = 0.9 (‖g_k‖ / ‖g_{k−1}‖)²`, safeguarded,
//! at most [`LmConfig::forcing_max`]), so early steps far from a solution solve loosely
//! and steps near one converge fast; or after [`LmConfig::cg_max_iters`] CG steps. The gain
//! ratio uses the exact decrease of the model for the inexact step, `‖r‖² − ‖r + Aδ‖²`
//! (`Aδ` is accumulated from the CG products). Acceptance, damping, the progress window,
//! the minimum-of-`S` test and the probe along the flattest direction (here from two
//! rounds of CG-inverse iteration on `AᵀA`) are those of the dense search.
//!
//! Costs per CG step about `4·G·H²` flops per candidate (a product with `W_hh` and one
//! with its transpose) against about `(7/3)·S³` per dense iteration (`AᵀA` and its
//! Cholesky factor); [`LmSolver::resolve`] chooses by that count.
//!
//! [`KrylovCandidate`] is one candidate's state machine; [`run_krylov_block`] drives many
//! in lock-step through a [`KrylovOps`] that evaluates the requested products in batches,
//! so the CPU (fused, cached gates) and the trait's default ([`slow_point_lm_krylov_default`],
//! built from `seq_forward`, `step_jvp` and `seq_backward`) make the same decisions.

use crate::backend::{Backend, SeqUpstream};
use crate::cell::{CellDims, SeqShape};
use crate::error::Result;
use crate::lm::{
    damping_after_accept, lm_default_inputs, LmConfig, LmSearch, LmStatus, SearchStop,
};

/// How the LM search solves its damped Gauss–Newton system.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LmSolver {
    /// [`LmSolver::Dense`] or [`LmSolver::Krylov`] by [`LmSolver::resolve`]'s operation count.
    #[default]
    Auto,
    /// Form `J`, `AᵀA` and its Cholesky factor per candidate ([`crate::lm`]).
    Dense,
    /// Matrix-free: CG on the normal equations from `A v` and `Aᵀ u` (this module).
    Krylov,
}

/// The CG steps per LM trial the [`LmSolver::Auto`] rule assumes (with the forcing term,
/// loose early solves take a few, the last ones near a solution a few tens).
pub const ASSUMED_CG_STEPS: usize = 16;

impl LmSolver {
    pub fn name(self) -> &'static str {
        match self {
            LmSolver::Auto => "auto",
            LmSolver::Dense => "dense",
            LmSolver::Krylov => "krylov",
        }
    }

    /// The solver `Auto` stands for on `cell`: [`LmSolver::Krylov`] when
    /// `(2k + 1) · 2·G·H²` (the gradient product and `k` =
    /// [`ASSUMED_CG_STEPS`] CG steps of two products with the `[G·H, H]` matrix `W_hh`
    /// each) is below `(7/3)·S³` (a dense iteration: `AᵀA` at `2S³`, Cholesky at `S³/3`),
    /// else [`LmSolver::Dense`]. For `k = 16` that is GRU from `H = 85`, tanh RNN from
    /// `H = 29`, LSTM (`S = 2H`, `G = 4`) from `H = 15`.
    pub fn resolve(self, cell: &CellDims) -> LmSolver {
        match self {
            LmSolver::Auto => {
                let (g, h, s) = (
                    cell.gates() as f64,
                    cell.hidden as f64,
                    cell.state_size() as f64,
                );
                let k = ASSUMED_CG_STEPS as f64;
                if (2.0 * k + 1.0) * 2.0 * g * h * h < (7.0 / 3.0) * s * s * s {
                    LmSolver::Krylov
                } else {
                    LmSolver::Dense
                }
            }
            other => other,
        }
    }
}

impl std::str::FromStr for LmSolver {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(LmSolver::Auto),
            "dense" => Ok(LmSolver::Dense),
            "krylov" | "matrix-free" | "cg" => Ok(LmSolver::Krylov),
            other => Err(crate::error::Error::InvalidArgument(format!(
                "unknown LM solver {other:?}: use auto, dense or krylov"
            ))),
        }
    }
}

/// What a candidate needs next; products are at the candidate's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KrylovNext {
    /// `J v` for `v =` [`KrylovCandidate::request`] (then [`KrylovCandidate::jvp`]).
    Jvp,
    /// `Jᵀ u` for `u =` [`KrylovCandidate::request`] (then [`KrylovCandidate::vjp`]).
    Vjp,
    /// `F` at [`KrylovCandidate::trial_state`] (then [`KrylovCandidate::trial`]).
    Trial,
    /// Stopped; the status says why.
    Done,
}

/// What the pending products are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `Jᵀ r`, for `g = Aᵀ r` at a new point.
    Gradient,
    /// CG on `(AᵀA + λI) δ = −g`.
    Step,
    /// CG on `(AᵀA + σI) x = v` (inverse iteration for the flattest direction), round 1 or 2.
    Flattest(u8),
}

/// One candidate's matrix-free LM iterations as a state machine driven by its backend,
/// which supplies `F(s)`, `J v` and `Jᵀ u`. All vectors `O(S)`; reuse one per slot.
pub struct KrylovCandidate {
    sd: usize,
    s: Vec<f32>,
    trial: Vec<f32>,
    /// The vector of the pending product (f32, as backends take it).
    req: Vec<f32>,
    /// `r = F(s) − s`.
    r: Vec<f64>,
    /// `g = Aᵀ r`.
    g: Vec<f64>,
    /// The CG iterate (`δ`, or the inverse-iteration vector).
    x: Vec<f64>,
    /// The CG residual `c − (AᵀA + λI) x`.
    z: Vec<f64>,
    /// The search direction (f32-representable: it is what the product saw).
    p: Vec<f64>,
    /// `A p` (f32-representable, for the same reason).
    q: Vec<f64>,
    /// `A x`, accumulated.
    ax: Vec<f64>,
    phase: Phase,
    lambda: f64,
    gamma: f64,
    /// `‖c‖` of the system being solved, and the relative tolerance on `‖z‖`.
    c_norm: f64,
    cg_tol: f64,
    cg_iter: u32,
    /// `α` of the CG step whose `Aᵀ q` is pending.
    pending_alpha: f64,
    /// `ρ` of the current point (0 until its first product).
    scale: f64,
    speed: f64,
    g_norm: f64,
    prev_g_norm: f64,
    /// `S` at the previous point whose gradient was taken.
    prev_speed: f64,
    eta: f64,
    pred: f64,
    mu: f64,
    nu: f64,
    probe: u8,
    probe_len: f64,
    /// Incremented whenever the current state changes (so a driver can swap its caches).
    moves: u64,
}

impl KrylovCandidate {
    /// Buffers for states of `sd` values.
    pub fn new(sd: usize) -> Self {
        KrylovCandidate {
            sd,
            s: vec![0.0; sd],
            trial: vec![0.0; sd],
            req: vec![0.0; sd],
            r: vec![0.0; sd],
            g: vec![0.0; sd],
            x: vec![0.0; sd],
            z: vec![0.0; sd],
            p: vec![0.0; sd],
            q: vec![0.0; sd],
            ax: vec![0.0; sd],
            phase: Phase::Gradient,
            lambda: 0.0,
            gamma: 0.0,
            c_norm: 0.0,
            cg_tol: 0.0,
            cg_iter: 0,
            pending_alpha: 0.0,
            scale: 0.0,
            speed: f64::NAN,
            g_norm: 0.0,
            prev_g_norm: f64::NAN,
            prev_speed: f64::NAN,
            eta: 0.5,
            pred: 0.0,
            mu: 1e-3,
            nu: 2.0,
            probe: 0,
            probe_len: 0.0,
            moves: 0,
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

    /// The vector of the pending product.
    pub fn request(&self) -> &[f32] {
        &self.req
    }

    /// `Aᵀ r = ½ ∇S` at the current state (after its gradient product).
    pub fn half_gradient(&self) -> &[f64] {
        &self.g
    }

    /// How many times the current state has changed.
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// Starts (or resumes) a candidate at state `s` with `f = F(s)`.
    pub fn start(&mut self, s: &[f32], f: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
        self.s.copy_from_slice(s);
        self.mu = st.damping as f64;
        self.nu = 2.0;
        self.probe = 0;
        self.prev_g_norm = f64::NAN;
        self.eta = cfg.forcing_max as f64;
        self.set_point(f, st);
        if self.terminal(st, cfg) {
            return KrylovNext::Done;
        }
        if st.iters == 0 || !st.window_speed_sq.is_finite() {
            st.window_speed_sq = st.speed_sq;
        }
        if st.iters >= cfg.max_iters {
            st.stop = SearchStop::MaxIters;
            return KrylovNext::Done;
        }
        st.stop = SearchStop::Running;
        self.ask_gradient()
    }

    fn set_point(&mut self, f: &[f32], st: &mut LmStatus) {
        let mut sq = 0.0f64;
        for ((r, &f), &s) in self.r.iter_mut().zip(f).zip(&self.s) {
            *r = f as f64 - s as f64;
            sq += *r * *r;
        }
        self.speed = sq;
        self.scale = 0.0;
        st.speed_sq = sq as f32;
    }

    /// Non-finite or converged at the current point (the status says which).
    fn terminal(&self, st: &mut LmStatus, cfg: &LmConfig) -> bool {
        if !self.speed.is_finite() || !st.speed_sq.is_finite() {
            st.stop = SearchStop::NonFinite;
            return true;
        }
        if st.speed_sq < cfg.tol || self.speed == 0.0 {
            st.stop = SearchStop::Converged;
            return true;
        }
        false
    }

    fn ask_gradient(&mut self) -> KrylovNext {
        self.phase = Phase::Gradient;
        for (o, &r) in self.req.iter_mut().zip(&self.r) {
            *o = r as f32;
        }
        KrylovNext::Vjp
    }

    /// Supplies `J v` for the pending [`KrylovNext::Jvp`].
    pub fn jvp(&mut self, jv: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
        // q = A p = J p − p.
        let mut qq = 0.0;
        for ((q, &y), &p) in self.q.iter_mut().zip(jv).zip(&self.p) {
            *q = ((y as f64 - p) as f32) as f64;
            qq += *q * *q;
        }
        let pp: f64 = self.p.iter().map(|v| v * v).sum();
        if self.phase == Phase::Step && self.scale == 0.0 {
            // The first product at this point: p = −g, so qq / pp is a Rayleigh quotient
            // of AᵀA.
            self.scale = if pp > 0.0 && qq > 0.0 && (qq / pp).is_finite() {
                qq / pp
            } else {
                1.0
            };
            self.lambda = self.mu * self.scale;
        }
        let denom = qq + self.lambda * pp;
        if !(denom > 0.0 && denom.is_finite()) {
            return self.solved(st, cfg);
        }
        let alpha = self.gamma / denom;
        for i in 0..self.sd {
            self.x[i] += alpha * self.p[i];
            self.ax[i] += alpha * self.q[i];
        }
        self.cg_iter += 1;
        if self.cg_iter >= cfg.cg_max_iters {
            return self.solved(st, cfg);
        }
        for (o, &q) in self.req.iter_mut().zip(&self.q) {
            *o = q as f32;
        }
        self.pending_alpha = alpha;
        KrylovNext::Vjp
    }

    /// Supplies `Jᵀ u` for the pending [`KrylovNext::Vjp`].
    pub fn vjp(&mut self, jtu: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
        if self.phase == Phase::Gradient {
            for ((g, &y), &u) in self.g.iter_mut().zip(jtu).zip(&self.req) {
                *g = y as f64 - u as f64;
            }
            self.g_norm = self.g.iter().map(|v| v * v).sum::<f64>().sqrt();
            st.grad_speed = (self.g_norm / self.speed.sqrt()) as f32;
            self.update_forcing(cfg);
            self.nu = 2.0;
            return self.propose(st, cfg);
        }
        // w = Aᵀ q; z −= α (w + λ p).
        let alpha = self.pending_alpha;
        let mut gamma = 0.0;
        let lambda = self.lambda;
        for (((z, &y), &u), &p) in self.z.iter_mut().zip(jtu).zip(&self.req).zip(&self.p) {
            let w = y as f64 - u as f64;
            *z -= alpha * (w + lambda * p);
            gamma += *z * *z;
        }
        if !gamma.is_finite() || gamma.sqrt() <= self.cg_tol * self.c_norm {
            return self.solved(st, cfg);
        }
        let beta = gamma / self.gamma;
        self.gamma = gamma;
        for i in 0..self.sd {
            self.p[i] = ((self.z[i] + beta * self.p[i]) as f32) as f64;
        }
        self.ask_direction()
    }

    fn ask_direction(&mut self) -> KrylovNext {
        for (o, &p) in self.req.iter_mut().zip(&self.p) {
            *o = p as f32;
        }
        KrylovNext::Jvp
    }

    /// The forcing term at a new point, in `[ETA_MIN, forcing_max]`: Eisenstat–Walker
    /// choice 2 with its safeguard, except after a step that cut `S` by less than 4×,
    /// where it is a tenth of the last one. Choice 2 assumes a zero residual, where the
    /// gradient shrinks as the search converges; in the curved valleys of `S` that trained
    /// networks have (slow manifolds, minima of `S` above 0) the gradient barely shrinks,
    /// the loose solve only resolves the steep directions of `AᵀA`, and the search crawls
    /// (measured on a trained GRU: the median speed after 200 iterations 4× that of exact
    /// solves at `η ≤ 0.5`, equal at `η = 1e-4`), so slow progress tightens the solve.
    fn update_forcing(&mut self, cfg: &LmConfig) {
        const ETA_MIN: f64 = 1e-6;
        let max = cfg.forcing_max as f64;
        if self.prev_g_norm.is_finite() && self.prev_g_norm > 0.0 {
            let mut eta = 0.9 * (self.g_norm / self.prev_g_norm).powi(2);
            let guard = 0.9 * self.eta * self.eta;
            if guard > 0.1 {
                eta = eta.max(guard);
            }
            if self.speed > 0.25 * self.prev_speed {
                eta = eta.min(0.1 * self.eta);
            }
            self.eta = eta.clamp(ETA_MIN, max);
        } else {
            self.eta = max;
        }
        self.prev_g_norm = self.g_norm;
        self.prev_speed = self.speed;
    }

    /// Starts CG on `(AᵀA + λI) x = rhs` (`rhs` in `z`) from `x = 0`.
    fn begin_cg(&mut self, phase: Phase, tol: f64) -> KrylovNext {
        self.phase = phase;
        self.x.iter_mut().for_each(|v| *v = 0.0);
        self.ax.iter_mut().for_each(|v| *v = 0.0);
        self.cg_iter = 0;
        self.cg_tol = tol;
        for i in 0..self.sd {
            self.p[i] = (self.z[i] as f32) as f64;
        }
        self.gamma = self.z.iter().map(|v| v * v).sum();
        self.c_norm = self.gamma.sqrt();
        self.ask_direction()
    }

    fn raise_damping(&mut self) {
        self.mu *= self.nu;
        self.nu *= 2.0;
    }

    /// Starts the solve for the next trial (or stops).
    fn propose(&mut self, st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
        st.damping = self.mu as f32;
        if st.iters >= cfg.max_iters {
            st.stop = SearchStop::MaxIters;
            return KrylovNext::Done;
        }
        if self.mu > cfg.damping_max as f64 {
            return self.no_progress(st, cfg);
        }
        if self.g_norm == 0.0 || !self.g_norm.is_finite() {
            // No descent direction: S is stationary here.
            return self.no_progress(st, cfg);
        }
        self.lambda = self.mu * self.scale;
        for (z, &g) in self.z.iter_mut().zip(&self.g) {
            *z = -g;
        }
        let tol = self.eta;
        self.begin_cg(Phase::Step, tol)
    }

    /// CG has finished a solve.
    fn solved(&mut self, st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
        match self.phase {
            Phase::Step => {
                if self.x.iter().all(|&v| v == 0.0) || !self.x.iter().all(|v| v.is_finite()) {
                    self.raise_damping();
                    return self.propose(st, cfg);
                }
                // The exact decrease of the Gauss–Newton model: ‖r‖² − ‖r + Aδ‖².
                let after: f64 = self
                    .r
                    .iter()
                    .zip(&self.ax)
                    .map(|(r, a)| (r + a) * (r + a))
                    .sum();
                self.pred = self.speed - after;
                for ((t, &s), &d) in self.trial.iter_mut().zip(&self.s).zip(&self.x) {
                    *t = (s as f64 + d) as f32;
                }
                st.iters += 1;
                st.damping = self.mu as f32;
                KrylovNext::Trial
            }
            Phase::Flattest(round) => {
                let n = self.x.iter().map(|v| v * v).sum::<f64>().sqrt();
                if n > 0.0 && n.is_finite() {
                    self.x.iter_mut().for_each(|v| *v /= n);
                } else {
                    // CG made nothing of it: any unit vector will do for the probe.
                    let u = 1.0 / (self.sd as f64).sqrt();
                    self.x.iter_mut().for_each(|v| *v = u);
                }
                if round < 2 {
                    self.z.copy_from_slice(&self.x);
                    return self.begin_cg(Phase::Flattest(round + 1), 0.0);
                }
                let rms = (self.s.iter().map(|&v| (v as f64).powi(2)).sum::<f64>()
                    / self.sd as f64)
                    .sqrt();
                self.probe_len = cfg.probe as f64 * rms.max(1.0);
                self.probe = 1;
                self.probe_trial(1.0, st)
            }
            Phase::Gradient => unreachable!("the gradient is not a CG solve"),
        }
    }

    fn no_progress(&mut self, st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
        st.damping = self.mu as f32;
        if st.grad_speed > cfg.min_grad {
            st.stop = SearchStop::Stalled;
            return KrylovNext::Done;
        }
        if cfg.probe > 0.0 && st.iters < cfg.max_iters {
            // The flattest direction of AᵀA: two rounds of inverse iteration, each an
            // (inexact) CG solve of (AᵀA + σI) x = v from a fixed start.
            if self.scale == 0.0 {
                self.scale = 1.0;
            }
            self.lambda = 1e-10 * self.scale;
            let n = (self.sd as f64).sqrt();
            for (i, z) in self.z.iter_mut().enumerate() {
                *z = (1.0 + 0.01 * (i % 7) as f64) / n;
            }
            return self.begin_cg(Phase::Flattest(1), 0.0);
        }
        st.stop = SearchStop::Minimum;
        KrylovNext::Done
    }

    /// The trial `s + sign · probe_len · x` (`x` the flattest direction).
    fn probe_trial(&mut self, sign: f64, st: &mut LmStatus) -> KrylovNext {
        let step = sign * self.probe_len;
        for ((t, &s), &v) in self.trial.iter_mut().zip(&self.s).zip(&self.x) {
            *t = (s as f64 + step * v) as f32;
        }
        st.iters += 1;
        KrylovNext::Trial
    }

    fn accept(&mut self, f: &[f32], st: &mut LmStatus) {
        std::mem::swap(&mut self.s, &mut self.trial);
        self.moves += 1;
        self.set_point(f, st);
    }

    /// Supplies `f = F(trial)`: accepts the trial if `S` fell, else raises the damping and
    /// solves again.
    pub fn trial(&mut self, f: &[f32], st: &mut LmStatus, cfg: &LmConfig) -> KrylovNext {
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
                self.prev_g_norm = f64::NAN;
                self.accept(f, st);
                st.damping = self.mu as f32;
                st.window_speed_sq = st.speed_sq;
                if self.terminal(st, cfg) {
                    return KrylovNext::Done;
                }
                if st.iters >= cfg.max_iters {
                    st.stop = SearchStop::MaxIters;
                    return KrylovNext::Done;
                }
                return self.ask_gradient();
            }
            if self.probe == 1 && st.iters < cfg.max_iters {
                self.probe = 2;
                return self.probe_trial(-1.0, st);
            }
            self.probe = 0;
            st.stop = SearchStop::Minimum;
            return KrylovNext::Done;
        }
        if accepted {
            self.mu = damping_after_accept(self.mu, self.speed, sq, self.pred);
            self.nu = 2.0;
            self.accept(f, st);
            st.damping = self.mu as f32;
            if self.terminal(st, cfg) {
                return KrylovNext::Done;
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
                return KrylovNext::Done;
            }
            self.ask_gradient()
        } else {
            self.propose(st, cfg)
        }
    }
}

/// Batched products for [`run_krylov_block`]. Rows are candidates of the block, named by
/// their index `b` in it; each call gets the rows in increasing `b`.
pub trait KrylovOps {
    /// `out [n, S] = F(states)` for the listed candidates; `current` says whether the
    /// states are the candidates' current states (the start) or trials.
    fn forward(
        &mut self,
        which: &[usize],
        states: &[f32],
        current: bool,
        out: &mut [f32],
    ) -> Result<()>;
    /// `out [n, S] = J v` at each listed candidate's current state (`states [n, S]`).
    fn jvp(&mut self, which: &[usize], states: &[f32], v: &[f32], out: &mut [f32]) -> Result<()>;
    /// `out [n, S] = Jᵀ u` at each listed candidate's current state.
    fn vjp(&mut self, which: &[usize], states: &[f32], u: &[f32], out: &mut [f32]) -> Result<()>;
    /// Candidate `b`'s last trial became its current state.
    fn accepted(&mut self, b: usize);
}

/// Runs the matrix-free search for one block of candidates: `states [n, S]` (updated in
/// place) and their `status`, through `ops`. Every round evaluates each kind of pending
/// product in one batch.
pub fn run_krylov_block<O: KrylovOps>(
    ops: &mut O,
    sd: usize,
    states: &mut [f32],
    status: &mut [LmStatus],
    cfg: &LmConfig,
) -> Result<()> {
    let n = status.len();
    if n == 0 {
        return Ok(());
    }
    let all: Vec<usize> = (0..n).collect();
    let mut f = vec![0.0f32; n * sd];
    ops.forward(&all, states, true, &mut f)?;
    let mut cands: Vec<KrylovCandidate> = (0..n).map(|_| KrylovCandidate::new(sd)).collect();
    let mut next: Vec<KrylovNext> = (0..n)
        .map(|b| {
            cands[b].start(
                &states[b * sd..(b + 1) * sd],
                &f[b * sd..(b + 1) * sd],
                &mut status[b],
                cfg,
            )
        })
        .collect();
    let mut rows = Vec::new();
    let mut vecs = Vec::new();
    loop {
        let mut any = false;
        for kind in [KrylovNext::Jvp, KrylovNext::Vjp, KrylovNext::Trial] {
            let which: Vec<usize> = (0..n).filter(|&b| next[b] == kind).collect();
            if which.is_empty() {
                continue;
            }
            any = true;
            rows.clear();
            vecs.clear();
            for &b in &which {
                let c = &cands[b];
                if kind == KrylovNext::Trial {
                    rows.extend_from_slice(c.trial_state());
                } else {
                    rows.extend_from_slice(c.state());
                    vecs.extend_from_slice(c.request());
                }
            }
            let out = &mut f[..which.len() * sd];
            match kind {
                KrylovNext::Jvp => ops.jvp(&which, &rows, &vecs, out)?,
                KrylovNext::Vjp => ops.vjp(&which, &rows, &vecs, out)?,
                _ => ops.forward(&which, &rows, false, out)?,
            }
            for (q, &b) in which.iter().enumerate() {
                let y = &out[q * sd..(q + 1) * sd];
                let (c, st) = (&mut cands[b], &mut status[b]);
                next[b] = match kind {
                    KrylovNext::Jvp => c.jvp(y, st, cfg),
                    KrylovNext::Vjp => c.vjp(y, st, cfg),
                    _ => {
                        let before = c.moves();
                        let nx = c.trial(y, st, cfg);
                        if c.moves() != before {
                            ops.accepted(b);
                        }
                        nx
                    }
                };
            }
        }
        if !any {
            break;
        }
    }
    for (b, c) in cands.iter().enumerate() {
        states[b * sd..(b + 1) * sd].copy_from_slice(c.state());
    }
    Ok(())
}

/// [`KrylovOps`] from a backend's trait operations: `seq_forward` (one step) for `F`,
/// `step_jvp` for `J v`, and `seq_forward` + `seq_backward` with the upstream gradient on
/// the final state for `Jᵀ u`. Stateless: products are taken at the states passed in.
struct TraitOps<'a, B: Backend + ?Sized> {
    backend: &'a B,
    cell: &'a CellDims,
    params: &'a B::Tensor,
    x: &'a [f32],
}

impl<B: Backend + ?Sized> TraitOps<'_, B> {
    fn inputs(&self, n: usize) -> Result<B::Tensor> {
        let xs: Vec<f32> = self
            .x
            .iter()
            .copied()
            .cycle()
            .take(n * self.cell.input)
            .collect();
        self.backend.upload(&xs)
    }
}

impl<B: Backend + ?Sized> KrylovOps for TraitOps<'_, B> {
    fn forward(&mut self, which: &[usize], states: &[f32], _: bool, out: &mut [f32]) -> Result<()> {
        let n = which.len();
        let be = self.backend;
        let fwd = be.seq_forward(
            self.cell,
            self.params,
            SeqShape::new(1, n)?,
            &self.inputs(n)?,
            Some(&be.upload(states)?),
        )?;
        out.copy_from_slice(&be.download(&fwd.s_final)?);
        Ok(())
    }

    fn jvp(&mut self, which: &[usize], states: &[f32], v: &[f32], out: &mut [f32]) -> Result<()> {
        let n = which.len();
        let be = self.backend;
        let y = be.step_jvp(
            self.cell,
            self.params,
            &be.upload(states)?,
            &self.inputs(n)?,
            &be.upload(v)?,
            n,
        )?;
        out.copy_from_slice(&be.download(&y)?);
        Ok(())
    }

    fn vjp(&mut self, which: &[usize], states: &[f32], u: &[f32], out: &mut [f32]) -> Result<()> {
        let n = which.len();
        let be = self.backend;
        let shape = SeqShape::new(1, n)?;
        let x = self.inputs(n)?;
        let fwd = be.seq_forward(self.cell, self.params, shape, &x, Some(&be.upload(states)?))?;
        let u = be.upload(u)?;
        let grads = be.seq_backward(
            self.cell,
            self.params,
            shape,
            &x,
            &fwd,
            SeqUpstream {
                dh_seq: None,
                ds_final: Some(&u),
            },
            false,
        )?;
        out.copy_from_slice(&be.download(&grads.ds0)?);
        Ok(())
    }

    fn accepted(&mut self, _: usize) {}
}

/// Candidates per block of the default matrix-free search (its vectors are `O(S)` per
/// candidate, so blocks only bound the size of one batched call).
const KRYLOV_BLOCK: usize = 1 << 14;

/// The matrix-free [`Backend::slow_point_lm`] from trait operations (see [`TraitOps`]):
/// every round, at most three batched calls (trial forwards, `J v`, `Jᵀ u`) for all the
/// block's candidates that need them. Correct on every backend, the definition the CPU's
/// fused version is tested against; it moves states and vectors through the host.
pub fn slow_point_lm_krylov_default<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    x: &B::Tensor,
    search: &mut LmSearch<B::Tensor>,
    cfg: &LmConfig,
) -> Result<()> {
    let sd = cell.state_size();
    let (x_host, mut states, active) = lm_default_inputs(backend, cell, params, x, search, cfg)?;
    let mut ops = TraitOps {
        backend,
        cell,
        params,
        x: &x_host,
    };
    for block in active.chunks(KRYLOV_BLOCK) {
        let mut rows: Vec<f32> = block
            .iter()
            .flat_map(|&i| states[i * sd..(i + 1) * sd].iter().copied())
            .collect();
        let mut status: Vec<LmStatus> = block.iter().map(|&i| search.status[i]).collect();
        run_krylov_block(&mut ops, sd, &mut rows, &mut status, cfg)?;
        for (q, &i) in block.iter().enumerate() {
            states[i * sd..(i + 1) * sd].copy_from_slice(&rows[q * sd..(q + 1) * sd]);
            search.status[i] = status[q];
        }
    }
    search.states = backend.upload(&states)?;
    Ok(())
}
