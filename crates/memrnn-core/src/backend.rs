//! The `Backend` trait: what every compute backend (CPU, CUDA) provides, and what the
//! trainer and the slow-point finder are generic over.
//!
//! Tensors are opaque, backend-owned flat f32 buffers ([`Backend::Tensor`]): the CUDA
//! backend keeps them on the device, so a training loop moves data to the host only when
//! it asks to (`download`). Every operation validates lengths against the cell and shape
//! it is given, through the functions of [`crate::checks`] (which state the rules: a
//! mismatch is [`Error::Shape`](crate::Error) naming the argument; `N = 0` points are
//! valid and give empty outputs), so every backend answers a bad call the same way.
//!
//! Layouts (all row-major): parameters flat in [`ParamLayout`](crate::ParamLayout) order;
//! sequences time-major `x [T, B, I]`, `h [T, B, H]`; states `[B, S]` with `S = H`, or
//! `S = 2H` for the LSTM, each row `[h | c]`.

use crate::cell::{CellDims, SeqShape};
use crate::error::{Error, Result};

/// The result of a sequence forward pass.
pub struct SeqForward<T, C> {
    /// `h_t` for `t = 1..T`, `[T, B, H]`.
    pub h_seq: T,
    /// The final state `s_T`, `[B, S]`.
    pub s_final: T,
    /// Whatever the backend keeps for the backward pass (gate activations, `s_0`).
    pub cache: C,
}

/// Upstream gradients for a sequence backward pass. Either may be absent (no loss there).
#[derive(Clone, Copy)]
pub struct SeqUpstream<'a, T> {
    /// `∂L/∂h_t` for every step, `[T, B, H]`: zeros where a step carries no loss.
    pub dh_seq: Option<&'a T>,
    /// `∂L/∂s_T`, `[B, S]` (the LSTM's `c_T` gradient enters here).
    pub ds_final: Option<&'a T>,
}

/// Gradients of a sequence backward pass.
pub struct SeqGrads<T> {
    /// `∂L/∂θ`, flat in `ParamLayout` order.
    pub dparams: T,
    /// `∂L/∂s_0`, `[B, S]`.
    pub ds0: T,
    /// `∂L/∂x_t`, `[T, B, I]`, when asked for.
    pub dx: Option<T>,
}

/// The speed `S(s, x) = ‖F(s, x) − s‖²` of `N` states and its gradients (MATH.md §4).
pub struct SpeedGrad<T> {
    /// `S_n`, `[N]`.
    pub speed: T,
    /// `∂S_n/∂s_n = 2 (J − I)ᵀ (F(s_n) − s_n)`, `[N, S]`.
    pub dstate: T,
    /// `Σ_n ∂S_n/∂θ`, flat in `ParamLayout` order, when asked for.
    pub dparams: Option<T>,
}

/// Adam's hyper-parameters (Kingma & Ba; PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr.is_finite()
            && self.lr > 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "Adam needs lr > 0, 0 ≤ beta1, beta2 < 1 and eps > 0; got {self:?}"
            )))
        }
    }
}

/// Adam's moment estimates for one parameter tensor, and the step count.
pub struct AdamState<T> {
    pub m: T,
    pub v: T,
    /// Updates applied so far (bias correction uses `step + 1` for the next one).
    pub step: u64,
}

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
        if candidates.is_empty() {
            return Err(Error::InvalidArgument(
                "a slow-point search needs at least one candidate state (K = 0)".into(),
            ));
        }
        if candidates.len() % sd != 0 {
            return Err(Error::shape(
                "candidates",
                candidates.len().div_ceil(sd) * sd,
                candidates.len(),
                format!(
                    "[K, S={sd}] for a {} cell with hidden {}{}",
                    cell.kind,
                    cell.hidden,
                    if sd != cell.hidden {
                        " (states are [h | c])"
                    } else {
                        ""
                    }
                ),
            ));
        }
        crate::error::check_finite("candidates", candidates)?;
        let k = candidates.len() / sd;
        Ok(SlowPointSearch {
            k,
            states: backend.upload(candidates)?,
            m: backend.zeros(k * sd)?,
            v: backend.zeros(k * sd)?,
            status: vec![CandidateStatus::default(); k],
        })
    }
}

/// Checks the arguments of [`Backend::slow_point_iterations`] (lengths and the config,
/// through [`crate::checks::check_slow_point_iterations`]); for backends' use.
pub fn check_slow_point_args<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    x: &B::Tensor,
    search: &SlowPointSearch<B::Tensor>,
    cfg: &SlowPointConfig,
) -> Result<()> {
    crate::checks::check_slow_point_iterations(
        cell,
        backend.len(params),
        backend.len(x),
        crate::checks::SearchLens {
            k: search.k,
            states: backend.len(&search.states),
            m: backend.len(&search.m),
            v: backend.len(&search.v),
            status: search.status.len(),
        },
        cfg,
    )
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

/// The default [`Backend::step_jvp`]: `J_n v_n` from the dense Jacobians of
/// `step_jacobian`, in chunks of at most about 2²⁴ Jacobian entries, multiplied on the host.
pub fn step_jvp_default<B: Backend + ?Sized>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    states: &B::Tensor,
    x: &B::Tensor,
    v: &B::Tensor,
    n: usize,
) -> Result<B::Tensor> {
    crate::checks::check_step_jvp(
        cell,
        backend.len(params),
        backend.len(states),
        backend.len(x),
        backend.len(v),
        n,
    )?;
    let (sd, id) = (cell.state_size(), cell.input);
    if n == 0 {
        return backend.zeros(0);
    }
    let (s_host, x_host, v_host) = (
        backend.download(states)?,
        backend.download(x)?,
        backend.download(v)?,
    );
    let chunk = ((1usize << 24) / (sd * sd)).max(1);
    let mut out = vec![0f32; n * sd];
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let j = backend.step_jacobian(
            cell,
            params,
            &backend.upload(&s_host[start * sd..(start + m) * sd])?,
            &backend.upload(&x_host[start * id..(start + m) * id])?,
            m,
        )?;
        let j = backend.download(&j)?;
        for k in 0..m {
            let vk = &v_host[(start + k) * sd..(start + k + 1) * sd];
            for i in 0..sd {
                let row = &j[(k * sd + i) * sd..(k * sd + i + 1) * sd];
                out[(start + k) * sd + i] = row.iter().zip(vk).map(|(a, b)| a * b).sum();
            }
        }
    }
    backend.upload(&out)
}

/// A compute backend. See the module docs for the layouts.
pub trait Backend: Send + Sync {
    /// A flat f32 buffer where this backend computes (host memory, device memory).
    type Tensor: Send + Sync;
    /// What a forward pass keeps for its backward pass.
    type Cache: Send + Sync;

    /// A human-readable name: "cpu (avx2+fma, 2 threads)", "cuda (NVIDIA H100)".
    fn name(&self) -> String;

    fn upload(&self, host: &[f32]) -> Result<Self::Tensor>;
    fn download(&self, tensor: &Self::Tensor) -> Result<Vec<f32>>;
    fn zeros(&self, len: usize) -> Result<Self::Tensor>;
    fn len(&self, tensor: &Self::Tensor) -> usize;

    /// Runs `s_t = F(s_{t−1}, x_t)` for `t = 1..T` from `s0` (zeros when `None`).
    fn seq_forward(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        shape: SeqShape,
        x: &Self::Tensor,
        s0: Option<&Self::Tensor>,
    ) -> Result<SeqForward<Self::Tensor, Self::Cache>>;

    /// Backpropagation through time for the forward pass `fwd` (made with the same
    /// `cell`, `params`, `shape` and `x`). `want_dx = false` skips the input gradient,
    /// the most expensive product when `I ≫ H`.
    #[allow(clippy::too_many_arguments)]
    fn seq_backward(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        shape: SeqShape,
        x: &Self::Tensor,
        fwd: &SeqForward<Self::Tensor, Self::Cache>,
        upstream: SeqUpstream<'_, Self::Tensor>,
        want_dx: bool,
    ) -> Result<SeqGrads<Self::Tensor>>;

    /// `S_n = ‖F(s_n, x_n) − s_n‖²` for `N` states `[N, S]` with inputs `[N, I]`.
    /// `N = 0` (empty `states` and `x`) gives an empty tensor.
    fn step_speed(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        states: &Self::Tensor,
        x: &Self::Tensor,
        n: usize,
    ) -> Result<Self::Tensor>;

    /// The speeds and their gradients with respect to the states and (summed over the
    /// `N` points, when `want_dparams`) the parameters. `N = 0` gives empty `speed` and
    /// `dstate`, and zero `dparams`.
    fn step_speed_grad(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        states: &Self::Tensor,
        x: &Self::Tensor,
        n: usize,
        want_dparams: bool,
    ) -> Result<SpeedGrad<Self::Tensor>>;

    /// The one-step Jacobians `J_n = ∂F/∂s` at `N` states, `[N, S, S]`, row `i` holding
    /// `∂F_i/∂s`. `N = 0` gives an empty tensor.
    fn step_jacobian(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        states: &Self::Tensor,
        x: &Self::Tensor,
        n: usize,
    ) -> Result<Self::Tensor>;

    /// Jacobian–vector products `J_n v_n` at `N` states (`J_n = ∂F/∂s` at `(s_n, x_n)`):
    /// states and tangents `v` `[N, S]`, inputs `[N, I]`, result `[N, S]` (for the LSTM,
    /// `v` and the result are `[δh | δc]` rows). The default, [`step_jvp_default`], goes
    /// through `step_jacobian` (`S` times the work of one product); backends override it
    /// with the forward-mode tangent equations. `N = 0` gives an empty tensor.
    fn step_jvp(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        states: &Self::Tensor,
        x: &Self::Tensor,
        v: &Self::Tensor,
        n: usize,
    ) -> Result<Self::Tensor> {
        step_jvp_default(self, cell, params, states, x, v, n)
    }

    /// Runs Adam on the speed of every active candidate of `search` (those `Running`
    /// or stopped at `MaxIters`), each on its own, at the constant input `x [I]`, until
    /// each stops (see [`SlowPointConfig`] for the rule); states and moments are updated
    /// in place and `search.status` says how each ended. Candidates never interact, so a
    /// backend may run them in any grouping and many iterations per launch; results
    /// must not depend on the grouping (nor on the thread count).
    ///
    /// The default, [`slow_point_iterations_default`], calls `step_speed_grad` once per
    /// iteration; backends override it with a fused loop.
    fn slow_point_iterations(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        x: &Self::Tensor,
        search: &mut SlowPointSearch<Self::Tensor>,
        cfg: &SlowPointConfig,
    ) -> Result<()> {
        slow_point_iterations_default(self, cell, params, x, search, cfg)
    }

    /// Runs the Levenberg–Marquardt (damped Gauss–Newton) search on the residual
    /// `r(s) = F(s, x̄) − s` of every active candidate of `search` (those `Running` or
    /// stopped at `MaxIters`), each on its own, at the constant input `x [I]`, until each
    /// stops: converged (`S < tol`), at a minimum of `S` above `tol` (no further
    /// decrease and a small gradient `2 (J − I)ᵀ r`), stalled, non-finite, or at the
    /// iteration cap (see [`crate::lm`]). States are updated in place. Results must not
    /// depend on the grouping of candidates nor on the thread count.
    ///
    /// The default, [`crate::lm::slow_point_lm_default`], uses `seq_forward` and
    /// `step_jacobian` with the factorisations on the host, so it runs on every backend;
    /// backends override it with a fused loop.
    fn slow_point_lm(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        x: &Self::Tensor,
        search: &mut crate::lm::LmSearch<Self::Tensor>,
        cfg: &crate::lm::LmConfig,
    ) -> Result<()> {
        crate::lm::slow_point_lm_default(self, cell, params, x, search, cfg)
    }

    /// One Adam update of `params` with `grad`, in place (an empty tensor is valid: only
    /// the step count moves).
    fn adam_update(
        &self,
        params: &mut Self::Tensor,
        grad: &Self::Tensor,
        state: &mut AdamState<Self::Tensor>,
        cfg: &AdamConfig,
    ) -> Result<()>;

    /// Fresh Adam state (zero moments) for a tensor of `len` values.
    fn adam_state(&self, len: usize) -> Result<AdamState<Self::Tensor>> {
        Ok(AdamState {
            m: self.zeros(len)?,
            v: self.zeros(len)?,
            step: 0,
        })
    }
}

/// Adam on host slices: the definition every backend's `adam_update` matches (PyTorch's
/// `torch.optim.Adam` without weight decay, bias-corrected).
pub fn adam_update_host(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: u64,
    cfg: &AdamConfig,
) {
    let t = (step + 1) as i32;
    let bc1 = 1.0 - cfg.beta1.powi(t);
    let bc2 = 1.0 - cfg.beta2.powi(t);
    let step_size = cfg.lr / bc1;
    let bc2_sqrt = bc2.sqrt();
    for i in 0..p.len() {
        m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g[i];
        v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g[i] * g[i];
        let denom = v[i].sqrt() / bc2_sqrt + cfg.eps;
        p[i] -= step_size * m[i] / denom;
    }
}
