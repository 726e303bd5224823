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
// The Adam slow-point search policy lives in `slow_point`; re-exported so that
// `memrnn_core::backend::{SlowPointConfig, …}` keeps working.
pub use crate::slow_point::{
    slow_point_iterations_default, CandidateStatus, SlowPointConfig, SlowPointSearch, StopReason,
};

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
/// `T` is a backend's tensor, or `[f64]`/`[f32]` for the reference
/// (`memrnn_cpu::reference::seq_backward`).
pub struct SeqUpstream<'a, T: ?Sized> {
    /// `∂L/∂h_t` for every step, `[T, B, H]`: zeros where a step carries no loss.
    pub dh_seq: Option<&'a T>,
    /// `∂L/∂s_T`, `[B, S]` (the LSTM's `c_T` gradient enters here).
    pub ds_final: Option<&'a T>,
}

// Copy whatever `T` is (the fields are references); derive would demand `T: Copy`.
impl<T: ?Sized> Clone for SeqUpstream<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for SeqUpstream<'_, T> {}

/// Gradients of a sequence backward pass.
#[derive(Clone, Debug)]
pub struct SeqGrads<T> {
    /// `∂L/∂θ`, flat in `ParamLayout` order.
    pub dparams: T,
    /// `∂L/∂s_0`, `[B, S]`.
    pub ds0: T,
    /// `∂L/∂x_t`, `[T, B, I]`, when asked for.
    pub dx: Option<T>,
}

/// The speed `S(s, x) = ‖F(s, x) − s‖²` of `N` states and its gradients (MATH.md §4).
#[derive(Clone, Debug)]
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

    /// The storage precision of `W_hh` in every operation that reads it (forward,
    /// backward, speeds, Jacobians, slow-point searches): each computes exactly what it
    /// computes in f32 on `W_hh` rounded to this format
    /// ([`Precision::round_recurrent`](crate::Precision::round_recurrent)), with f32
    /// arithmetic. Parameters, gradients and Adam state stay f32 whatever it is.
    fn precision(&self) -> crate::Precision {
        crate::Precision::F32
    }

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
    /// The default runs `cfg.solver` resolved for `cell` ([`crate::lm::LmSolver::resolve`]):
    /// dense, [`crate::lm::slow_point_lm_default`] (`seq_forward` and `step_jacobian`
    /// with the factorisations on the host), or matrix-free,
    /// [`crate::lm_krylov::slow_point_lm_krylov_default`] (`seq_forward`, `step_jvp`,
    /// `seq_backward`), so both run on every backend; backends override it with fused
    /// loops.
    fn slow_point_lm(
        &self,
        cell: &CellDims,
        params: &Self::Tensor,
        x: &Self::Tensor,
        search: &mut crate::lm::LmSearch<Self::Tensor>,
        cfg: &crate::lm::LmConfig,
    ) -> Result<()> {
        match cfg.solver.resolve(cell) {
            crate::lm::LmSolver::Krylov => {
                crate::lm_krylov::slow_point_lm_krylov_default(self, cell, params, x, search, cfg)
            }
            _ => crate::lm::slow_point_lm_default(self, cell, params, x, search, cfg),
        }
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

    /// The readout `y_r = W_out h_r + b_out` on `rows` hidden states `h [rows, H]` with
    /// `readout = [W_out (C × H, row-major) | b_out (C)]`, and the weighted softmax
    /// cross-entropy `L_CE = (1 / rows) Σ_r w_r (log Σ_c e^{y_rc} − y_r,t_r)` against
    /// `targets [rows]` (class ids `0..C` as f32) with `weights [rows]`: its value and
    /// accuracy counts ([`ReadoutCe::stats`](crate::ReadoutCe), by
    /// [`CeStat`](crate::CeStat); target 0 is "silence", any other a report; the argmax is
    /// the first largest logit), `∂L_CE/∂h [rows, H]` and `∂L_CE/∂readout`. A target
    /// outside `0..C` makes the loss NaN on every backend. `rows = 0` gives a zero loss
    /// and zero gradients.
    #[allow(clippy::too_many_arguments)]
    fn readout_ce(
        &self,
        hidden: usize,
        classes: usize,
        h: &Self::Tensor,
        readout: &Self::Tensor,
        targets: &Self::Tensor,
        weights: &Self::Tensor,
    ) -> Result<crate::ReadoutCe<Self::Tensor>>;

    /// The readout's answer on `rows` hidden states `h [rows, H]` (`readout` as for
    /// [`Backend::readout_ce`]): for each row the class `c` of the first largest logit
    /// `y_c = b_c + Σ_j W_cj h_j` (a NaN logit never wins; a row with none above −∞
    /// answers 0), `[rows]` class ids as f32. What scoring reads back: one number a row.
    fn readout_argmax(
        &self,
        hidden: usize,
        classes: usize,
        h: &Self::Tensor,
        readout: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// `y += alpha · x` in place (`x` as long as `y`; empty is valid): how the speed
    /// penalty's gradient joins the cross-entropy's, and how logged scalars accumulate.
    fn axpy(&self, y: &mut Self::Tensor, alpha: f32, x: &Self::Tensor) -> Result<()>;

    /// `[Σ x]`: a one-value tensor (0 for an empty `x`).
    fn sum(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// One Adam update of every group (recurrent parameters, readout, …) with global-norm
    /// clipping: the norm `‖g‖` over all groups' gradients together, the scale
    /// [`clip_scale`](crate::clip_scale)`(‖g‖, clip)` applied to every gradient, then
    /// [`adam_update_host`]'s arithmetic on each element, all without a host round trip.
    /// Returns `[‖g‖, scale, skipped]` ([`ClipNorm`](crate::ClipNorm)) on the backend.
    /// The update is skipped (parameters and moments keep their values) when `‖g‖` is not
    /// finite or the `guard` ([`StepGuard`](crate::StepGuard)) trips; the step counts
    /// advance either way, since knowing would take a host synchronisation: the caller
    /// reads `skipped` and rewinds them. The gradients are not modified.
    fn clip_adam_update(
        &self,
        groups: &mut [crate::AdamGroup<'_, Self::Tensor>],
        clip: Option<f32>,
        guard: Option<crate::StepGuard<'_, Self::Tensor>>,
        cfg: &AdamConfig,
    ) -> Result<Self::Tensor>;

    /// Copies `src[src_offset..src_offset + len]` into `dst[dst_offset..]` (in place, on
    /// the backend): how a training loop files each step's scalars into the record it
    /// reads back at the logging interval.
    fn copy_into(
        &self,
        dst: &mut Self::Tensor,
        dst_offset: usize,
        src: &Self::Tensor,
        src_offset: usize,
        len: usize,
    ) -> Result<()>;

    /// The delayed-classification task's batch `spec` drawn on the backend from the
    /// digits of `digits`: exactly [`crate::task_gen`]'s host definition (trials by
    /// `draw_trial`, rows by `fill_task_row`, targets and weights by `task_targets`), bit
    /// for bit.
    fn task_batch(
        &self,
        digits: &crate::DigitTable<Self::Tensor>,
        spec: &crate::TaskBatchSpec,
    ) -> Result<crate::TaskBatch<Self::Tensor>>;

    /// Steps `spec.t0 .. spec.t0 + spec.len` of a long run's inputs `[len, B, P + 1]`
    /// drawn on the backend from the digits of `digits`: exactly [`crate::task_gen`]'s
    /// host definition (trials by `chunk_trial`, rows by `fill_task_row` at the absolute
    /// step), bit for bit. How evaluation at long delays and the diagnostics feed their
    /// runs without uploading them chunk by chunk.
    fn task_chunk(
        &self,
        digits: &crate::DigitTable<Self::Tensor>,
        spec: &crate::TaskChunkSpec,
    ) -> Result<Self::Tensor>;

    /// `n` delay-period inputs `[n, P + 1]` for `(seed, step)`: row `i` the noise of
    /// [`crate::philox::Stream::SpeedInput`] at counter `(j, i, 0, 2)`, trigger 0 (the
    /// speed penalty's inputs).
    #[allow(clippy::too_many_arguments)]
    fn delay_inputs(
        &self,
        seed: u64,
        step: u64,
        n: usize,
        pixels: usize,
        noise_mean: f32,
        noise_std: f32,
    ) -> Result<Self::Tensor>;

    // ----- The ensemble dimension (see [`crate::ensemble`]): one call for E networks of
    // one cell and shape, each member's tensors its own. The defaults run the single
    // operation member by member; a member's result must be what the single operation
    // gives it (bit for bit where the backend runs the same code; within f32 reordering
    // where it fuses), whatever the other members hold, even NaN.

    /// [`Self::task_batch`] for every spec (each member its own seed, step and curriculum
    /// stage; one digit table for all).
    fn ensemble_task_batch(
        &self,
        digits: &crate::DigitTable<Self::Tensor>,
        specs: &[crate::TaskBatchSpec],
    ) -> Result<Vec<crate::TaskBatch<Self::Tensor>>> {
        crate::ensemble::for_members(specs.len(), |i| self.task_batch(digits, &specs[i]))
    }

    /// [`Self::seq_forward`] for every member, all of one `cell` and `shape`.
    fn ensemble_seq_forward(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[crate::ensemble::SeqArgs<'_, Self::Tensor>],
    ) -> Result<Vec<SeqForward<Self::Tensor, Self::Cache>>> {
        crate::ensemble::for_members(members.len(), |i| {
            let m = &members[i];
            self.seq_forward(cell, m.params, shape, m.x, m.s0)
        })
    }

    /// [`Self::readout_ce`] for every member, all of one `hidden` and `classes`.
    fn ensemble_readout_ce(
        &self,
        hidden: usize,
        classes: usize,
        members: &[crate::ensemble::ReadoutArgs<'_, Self::Tensor>],
    ) -> Result<Vec<crate::ReadoutCe<Self::Tensor>>> {
        crate::ensemble::for_members(members.len(), |i| {
            let m = &members[i];
            self.readout_ce(hidden, classes, m.h, m.readout, m.targets, m.weights)
        })
    }

    /// [`Self::seq_backward`] for every member, all of one `cell` and `shape`.
    fn ensemble_seq_backward(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[crate::ensemble::BackwardArgs<'_, Self::Tensor, Self::Cache>],
        want_dx: bool,
    ) -> Result<Vec<SeqGrads<Self::Tensor>>> {
        crate::ensemble::for_members(members.len(), |i| {
            let m = &members[i];
            self.seq_backward(cell, m.params, shape, m.x, m.fwd, m.upstream, want_dx)
        })
    }

    /// [`Self::step_speed_grad`] for every member, all of one `cell`: the speed
    /// penalty's term of a training step (each member at its own points, with its own
    /// `n`).
    fn ensemble_step_speed_grad(
        &self,
        cell: &CellDims,
        members: &[crate::ensemble::SpeedArgs<'_, Self::Tensor>],
        want_dparams: bool,
    ) -> Result<Vec<SpeedGrad<Self::Tensor>>> {
        crate::ensemble::for_members(members.len(), |i| {
            let m = &members[i];
            self.step_speed_grad(cell, m.params, m.states, m.x, m.n, want_dparams)
        })
    }

    /// [`Self::clip_adam_update`] for every member: each clipped by its own global norm,
    /// each guarded by its own [`StepGuard`](crate::StepGuard) (a member whose guard trips
    /// is skipped; the others update). Returns each member's `[‖g‖, scale, skipped]`.
    fn ensemble_clip_adam_update(
        &self,
        members: &mut [crate::ensemble::MemberAdam<'_, Self::Tensor>],
        clip: Option<f32>,
        cfg: &AdamConfig,
    ) -> Result<Vec<Self::Tensor>> {
        crate::ensemble::clip_adam_members(self, members, clip, cfg)
    }

    /// [`Self::slow_point_iterations`] for every member, all of one `cell` and one `cfg`,
    /// each member its own parameters, input and candidates: a member's candidates end
    /// exactly as they end searched alone (same states, moments and status), whatever the
    /// other members hold.
    fn ensemble_slow_point_iterations(
        &self,
        cell: &CellDims,
        members: &mut [crate::ensemble::SlowPointArgs<'_, Self::Tensor>],
        cfg: &SlowPointConfig,
    ) -> Result<()> {
        let n = members.len();
        for (i, m) in members.iter_mut().enumerate() {
            self.slow_point_iterations(cell, m.params, m.x, m.search, cfg)
                .map_err(|e| crate::ensemble::member_error(i, n, e))?;
        }
        Ok(())
    }

    /// [`Self::slow_point_lm`] for every member, all of one `cell` and one `cfg` (as
    /// [`Self::ensemble_slow_point_iterations`] for the Levenberg–Marquardt search).
    fn ensemble_slow_point_lm(
        &self,
        cell: &CellDims,
        members: &mut [crate::ensemble::LmArgs<'_, Self::Tensor>],
        cfg: &crate::lm::LmConfig,
    ) -> Result<()> {
        let n = members.len();
        for (i, m) in members.iter_mut().enumerate() {
            self.slow_point_lm(cell, m.params, m.x, m.search, cfg)
                .map_err(|e| crate::ensemble::member_error(i, n, e))?;
        }
        Ok(())
    }

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
