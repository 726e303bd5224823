//! [`CpuBackend`]: the `Backend` trait on the CPU fast path.

use crate::fast::{self, simd::SimdLevel, FastCache, FastOptions, FwdSplit, PanelFormat};
use memrnn_core::backend::{check_slow_point_args, SlowPointConfig, SlowPointSearch};
use memrnn_core::checks::{
    check_adam_update, check_axpy, check_clip_adam_update, check_copy_into, check_delay_inputs,
    check_readout_argmax, check_readout_ce, check_seq_backward, check_seq_forward,
    check_step_jacobian, check_step_jvp, check_step_speed, check_step_speed_grad, ForwardInfo,
    UpstreamLens,
};
use memrnn_core::ensemble::{
    member_error, reborrow_guard, BackwardArgs, LmArgs, MemberAdam, ReadoutArgs, SeqArgs,
    SlowPointArgs, SpeedArgs,
};
use memrnn_core::{
    adam_update_host, check_finite, clip_scale, AdamConfig, AdamGroup, AdamState, Backend,
    CellDims, ClipNorm, Error, ReadoutCe, Result, SeqForward, SeqGrads, SeqShape, SeqUpstream,
    SpeedGrad, StepGuard, CLIP_NORM_LEN,
};
use memrnn_core::{philox, task_gen, DigitTable, TaskBatch, TaskBatchSpec, TaskChunkSpec};
use rayon::prelude::*;
use std::sync::Arc;

/// The CPU backend: the fast f32 path with a chosen SIMD level, on rayon's global pool or
/// on a pool of its own with a fixed number of threads.
#[derive(Clone)]
pub struct CpuBackend {
    opts: FastOptions,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    /// The best SIMD level of this CPU, on rayon's global pool.
    pub fn new() -> Self {
        CpuBackend {
            opts: FastOptions::default(),
            pool: None,
        }
    }

    /// Runs on a pool of its own with `threads` threads.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(Error::InvalidArgument(
                "the CPU backend needs at least one thread".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("memrnn-cpu-{i}"))
            .build()
            .map_err(|e| Error::Backend {
                backend: "cpu".into(),
                reason: format!("could not start {threads} threads: {e}"),
            })?;
        self.pool = Some(Arc::new(pool));
        Ok(self)
    }

    /// Uses `level` instead of the detected best; an error if this CPU lacks it.
    pub fn with_simd(mut self, level: SimdLevel) -> Result<Self> {
        if !level.is_available() {
            return Err(Error::InvalidArgument(format!(
                "SIMD level {} is not available on this CPU (available: {:?})",
                level.name(),
                SimdLevel::available()
            )));
        }
        self.opts.simd = level;
        Ok(self)
    }

    /// Stores `W_hh` in `precision` for every operation that reads it (f32 arithmetic
    /// throughout; see [`memrnn_core::Precision`]).
    pub fn with_precision(mut self, precision: memrnn_core::Precision) -> Self {
        self.opts.precision = precision;
        self
    }

    /// How the forward time loop shares its work between threads (default
    /// [`FwdSplit::Auto`]); the results are the same bit for bit, only the speed differs.
    pub fn with_forward_split(mut self, split: FwdSplit) -> Self {
        self.opts.fwd_split = split;
        self
    }

    /// In a half precision, which element type holds the recurrent panels (default
    /// [`PanelFormat::Auto`]: the half-width format where it saves cache misses, f32
    /// holding the rounded values where the weights stay in cache anyway); the results
    /// are the same bit for bit, only the speed differs.
    pub fn with_panel_format(mut self, format: PanelFormat) -> Self {
        self.opts.panel_format = format;
        self
    }

    /// NaN-fills internal scratch before each kernel (for tests: see [`FastOptions`]).
    pub fn with_poisoned_scratch(mut self, on: bool) -> Self {
        self.opts.poison_scratch = on;
        self
    }

    pub fn simd(&self) -> SimdLevel {
        self.opts.simd
    }

    pub fn threads(&self) -> usize {
        self.install(rayon::current_num_threads)
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Rows `(t, b)` for `t` in `steps` of the task's inputs `[steps, B, P + 1]` (trial
    /// `b` is `trials[b]`; the row of absolute step `t`): what `task_batch` and
    /// `task_chunk` share.
    fn task_rows(
        &self,
        digits: &DigitTable<Vec<f32>>,
        key: [u32; 2],
        trials: &[task_gen::Trial],
        steps: std::ops::Range<usize>,
        (mean, std): (f32, f32),
    ) -> Vec<f32> {
        let (p, batch) = (digits.pixels(), trials.len());
        let images = digits.images();
        let mut x = vec![0f32; steps.len() * batch * (p + 1)];
        self.install(|| {
            x.par_chunks_mut(p + 1).enumerate().for_each(|(row, out)| {
                let (t, b) = ((steps.start + row / batch) as u32, row % batch);
                let image = |tr: &task_gen::Trial, pix: &mut [f32]| {
                    let r = digits.offset(tr.digit as usize) + tr.image as usize;
                    pix.copy_from_slice(&images[r * p..(r + 1) * p]);
                };
                task_gen::fill_task_row(key, &trials[b], t, b as u32, mean, std, image, out);
            })
        });
        x
    }

    /// `op(i)` for the members `0..n` of an ensemble operation, side by side on this
    /// backend's pool, in member order; an error names its member.
    fn par_members<R: Send>(
        &self,
        n: usize,
        op: impl Fn(usize) -> Result<R> + Sync + Send,
    ) -> Result<Vec<R>> {
        self.install(|| {
            (0..n)
                .into_par_iter()
                .map(|i| op(i).map_err(|e| member_error(i, n, e)))
                .collect()
        })
    }

    /// A forward + backward of one step from `states` with `ds_final` given by `upstream`
    /// (computed from the forward's output): the building block of the speed and
    /// Jacobian. Returns (F(s), ∂/∂s, ∂/∂θ).
    fn one_step_vjp(
        &self,
        cell: &CellDims,
        params: &[f32],
        states: &[f32],
        x: &[f32],
        n: usize,
        upstream: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<(Vec<f32>, fast::FastGrads)> {
        let shape = SeqShape::new(1, n)?;
        let fwd = fast::seq_forward(self.opts, cell, params, shape, x, Some(states))?;
        let ds = upstream(&fwd.s_final);
        let g = fast::seq_backward(
            self.opts,
            cell,
            params,
            shape,
            x,
            &fwd.cache,
            None,
            Some(&ds),
            false,
        )?;
        Ok((fwd.s_final, g))
    }

    /// The values the point operations check beyond [`memrnn_core::checks`]' lengths.
    fn check_point_values(states: &[f32]) -> Result<()> {
        check_finite("states", states)
    }
}

/// `S_n = ‖next_n − s_n‖²` for rows of `sd` floats.
fn speeds(next: &[f32], states: &[f32], sd: usize) -> Vec<f32> {
    next.chunks_exact(sd)
        .zip(states.chunks_exact(sd))
        .map(|(f, s)| f.iter().zip(s).map(|(a, b)| (a - b) * (a - b)).sum())
        .collect()
}

impl Backend for CpuBackend {
    type Tensor = Vec<f32>;
    type Cache = FastCache;

    fn name(&self) -> String {
        let precision = match self.opts.precision {
            memrnn_core::Precision::F32 => String::new(),
            p => format!(", W_hh in {p}"),
        };
        format!(
            "cpu ({}, {} threads{precision})",
            self.opts.simd.name(),
            self.threads()
        )
    }

    fn precision(&self) -> memrnn_core::Precision {
        self.opts.precision
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }

    fn download(&self, tensor: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(tensor.clone())
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn len(&self, tensor: &Vec<f32>) -> usize {
        tensor.len()
    }

    fn seq_forward(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        shape: SeqShape,
        x: &Vec<f32>,
        s0: Option<&Vec<f32>>,
    ) -> Result<SeqForward<Vec<f32>, FastCache>> {
        check_seq_forward(cell, params.len(), shape, x.len(), s0.map(Vec::len))?;
        let f = self.install(|| {
            fast::seq_forward(self.opts, cell, params, shape, x, s0.map(Vec::as_slice))
        })?;
        Ok(SeqForward {
            h_seq: f.h_seq,
            s_final: f.s_final,
            cache: f.cache,
        })
    }

    fn seq_backward(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        shape: SeqShape,
        x: &Vec<f32>,
        fwd: &SeqForward<Vec<f32>, FastCache>,
        upstream: SeqUpstream<'_, Vec<f32>>,
        want_dx: bool,
    ) -> Result<SeqGrads<Vec<f32>>> {
        check_seq_backward(
            cell,
            params.len(),
            shape,
            x.len(),
            &ForwardInfo {
                cell: fwd.cache.cell(),
                shape: fwd.cache.shape(),
                h_seq: fwd.h_seq.len(),
                s_final: fwd.s_final.len(),
            },
            UpstreamLens {
                dh_seq: upstream.dh_seq.map(Vec::len),
                ds_final: upstream.ds_final.map(Vec::len),
            },
        )?;
        let g = self.install(|| {
            fast::seq_backward(
                self.opts,
                cell,
                params,
                shape,
                x,
                &fwd.cache,
                upstream.dh_seq.map(Vec::as_slice),
                upstream.ds_final.map(Vec::as_slice),
                want_dx,
            )
        })?;
        Ok(SeqGrads {
            dparams: g.dparams,
            ds0: g.ds0,
            dx: g.dx,
        })
    }

    fn step_speed(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        states: &Vec<f32>,
        x: &Vec<f32>,
        n: usize,
    ) -> Result<Vec<f32>> {
        check_step_speed(cell, params.len(), states.len(), x.len(), n)?;
        Self::check_point_values(states)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let shape = SeqShape::new(1, n)?;
        let f =
            self.install(|| fast::seq_forward(self.opts, cell, params, shape, x, Some(states)))?;
        let sd = cell.state_size();
        Ok(speeds(&f.s_final, states, sd))
    }

    fn step_speed_grad(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        states: &Vec<f32>,
        x: &Vec<f32>,
        n: usize,
        want_dparams: bool,
    ) -> Result<SpeedGrad<Vec<f32>>> {
        check_step_speed_grad(cell, params.len(), states.len(), x.len(), n)?;
        Self::check_point_values(states)?;
        if n == 0 {
            return Ok(SpeedGrad {
                speed: Vec::new(),
                dstate: Vec::new(),
                dparams: want_dparams.then(|| vec![0.0; cell.layout().len()]),
            });
        }
        let sd = cell.state_size();
        // S = ‖e‖², e = F(s) − s: the upstream gradient of F(s) is 2e, and ∂S/∂s picks up
        // −2e from the explicit −s.
        let two_e = |next: &[f32]| -> Vec<f32> {
            next.iter()
                .zip(states.iter())
                .map(|(f, s)| 2.0 * (f - s))
                .collect()
        };
        let (next, g) = self.install(|| self.one_step_vjp(cell, params, states, x, n, two_e))?;
        let speed = speeds(&next, states, sd);
        let dstate = g
            .ds0
            .iter()
            .zip(next.iter().zip(states.iter()))
            .map(|(d, (f, s))| d - 2.0 * (f - s))
            .collect();
        Ok(SpeedGrad {
            speed,
            dstate,
            dparams: want_dparams.then_some(g.dparams),
        })
    }

    fn step_jacobian(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        states: &Vec<f32>,
        x: &Vec<f32>,
        n: usize,
    ) -> Result<Vec<f32>> {
        check_step_jacobian(cell, params.len(), states.len(), x.len(), n)?;
        Self::check_point_values(states)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (sd, id) = (cell.state_size(), cell.input);
        // One vector–Jacobian product per output coordinate, all N·S of them as one
        // batch: row (k, i) starts from state k with upstream gradient e_i, and its
        // ∂/∂s_0 is row i of J_k.
        let reps = n * sd;
        let mut s_rep = Vec::with_capacity(reps * sd);
        let mut x_rep = Vec::with_capacity(reps * id);
        for k in 0..n {
            for _ in 0..sd {
                s_rep.extend_from_slice(&states[k * sd..(k + 1) * sd]);
                x_rep.extend_from_slice(&x[k * id..(k + 1) * id]);
            }
        }
        let units = |_: &[f32]| -> Vec<f32> {
            let mut u = vec![0.0f32; reps * sd];
            for r in 0..reps {
                u[r * sd + r % sd] = 1.0;
            }
            u
        };
        let (_, g) =
            self.install(|| self.one_step_vjp(cell, params, &s_rep, &x_rep, reps, units))?;
        Ok(g.ds0)
    }

    /// The exact tangent equations of [`crate::reference::jvp`] in f32, rayon over rows
    /// (each row computed alone, so results do not depend on the thread count).
    fn step_jvp(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        states: &Vec<f32>,
        x: &Vec<f32>,
        v: &Vec<f32>,
        n: usize,
    ) -> Result<Vec<f32>> {
        check_step_jvp(cell, params.len(), states.len(), x.len(), v.len(), n)?;
        Self::check_point_values(states)?;
        check_finite("v", v)?;
        let (sd, id) = (cell.state_size(), cell.input);
        // The reference's tangent equations on the rounded W_hh: what the storage
        // precision computes (f32 arithmetic either way).
        let params = self.opts.precision.round_recurrent(cell, params)?;
        let p = cell.layout().split(&params[..]);
        let mut out = vec![0f32; n * sd];
        self.install(|| {
            out.par_chunks_mut(sd).enumerate().for_each(|(k, o)| {
                crate::reference::jvp::step_jvp_row(
                    cell,
                    &p,
                    &states[k * sd..(k + 1) * sd],
                    &x[k * id..(k + 1) * id],
                    &v[k * sd..(k + 1) * sd],
                    o,
                )
            })
        });
        Ok(out)
    }

    /// The fused search of [`crate::slowpoints`]: rayon over chunks of candidates, each
    /// chunk running all its iterations; identical results for any thread count.
    fn slow_point_iterations(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        x: &Vec<f32>,
        search: &mut SlowPointSearch<Vec<f32>>,
        cfg: &SlowPointConfig,
    ) -> Result<()> {
        check_slow_point_args(self, cell, params, x, search, cfg)?;
        let SlowPointSearch {
            states,
            m,
            v,
            status,
            ..
        } = search;
        self.install(|| {
            crate::slowpoints::slow_point_iterations(
                self.opts, cell, params, x, states, m, v, status, cfg,
            )
        })
    }

    /// The per-candidate search of [`crate::lm`]: analytic Jacobians, f64 normal
    /// equations and Cholesky, rayon over candidates; identical results for any thread
    /// count.
    fn slow_point_lm(
        &self,
        cell: &CellDims,
        params: &Vec<f32>,
        x: &Vec<f32>,
        search: &mut memrnn_core::lm::LmSearch<Vec<f32>>,
        cfg: &memrnn_core::lm::LmConfig,
    ) -> Result<()> {
        memrnn_core::lm::check_lm_args(self, cell, params, x, search, cfg)?;
        let memrnn_core::lm::LmSearch { states, status, .. } = search;
        // Analytic Jacobians on the rounded W_hh: what the storage precision computes.
        let params = self.opts.precision.round_recurrent(cell, params)?;
        let params = &params[..];
        match cfg.solver.resolve(cell) {
            memrnn_core::LmSolver::Krylov => self.install(|| {
                crate::lm_krylov::slow_point_lm_krylov(cell, params, x, states, status, cfg)
            }),
            _ => self.install(|| crate::lm::slow_point_lm(cell, params, x, states, status, cfg)),
        }
    }

    fn adam_update(
        &self,
        params: &mut Vec<f32>,
        grad: &Vec<f32>,
        state: &mut AdamState<Vec<f32>>,
        cfg: &AdamConfig,
    ) -> Result<()> {
        check_adam_update(params.len(), grad.len(), state.m.len(), state.v.len(), cfg)?;
        check_finite("grad", grad)?;
        const CHUNK: usize = 1 << 14;
        let step = state.step;
        self.install(|| {
            params
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(
                    state
                        .m
                        .par_chunks_mut(CHUNK)
                        .zip(state.v.par_chunks_mut(CHUNK)),
                )
                .for_each(|((p, g), (m, v))| adam_update_host(p, g, m, v, step, cfg));
        });
        state.step += 1;
        Ok(())
    }

    fn readout_ce(
        &self,
        hidden: usize,
        classes: usize,
        h: &Vec<f32>,
        readout: &Vec<f32>,
        targets: &Vec<f32>,
        weights: &Vec<f32>,
    ) -> Result<ReadoutCe<Vec<f32>>> {
        check_readout_ce(
            hidden,
            classes,
            h.len(),
            readout.len(),
            targets.len(),
            weights.len(),
        )?;
        let (dh, dreadout, stats) = self
            .install(|| fast::readout::readout_ce(hidden, classes, h, readout, targets, weights));
        Ok(ReadoutCe {
            dh,
            dreadout,
            stats,
        })
    }

    fn readout_argmax(
        &self,
        hidden: usize,
        classes: usize,
        h: &Vec<f32>,
        readout: &Vec<f32>,
    ) -> Result<Vec<f32>> {
        check_readout_argmax(hidden, classes, h.len(), readout.len())?;
        Ok(self.install(|| fast::readout::readout_argmax(hidden, classes, h, readout)))
    }

    fn axpy(&self, y: &mut Vec<f32>, alpha: f32, x: &Vec<f32>) -> Result<()> {
        check_axpy(y.len(), x.len())?;
        y.iter_mut().zip(x).for_each(|(a, &b)| *a += alpha * b);
        Ok(())
    }

    fn sum(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(vec![x.iter().sum()])
    }

    fn clip_adam_update(
        &self,
        groups: &mut [AdamGroup<'_, Vec<f32>>],
        clip: Option<f32>,
        guard: Option<StepGuard<'_, Vec<f32>>>,
        cfg: &AdamConfig,
    ) -> Result<Vec<f32>> {
        let lens: Vec<_> = groups
            .iter()
            .map(|g| {
                (
                    g.params.len(),
                    g.grad.len(),
                    g.state.m.len(),
                    g.state.v.len(),
                    g.state.step,
                )
            })
            .collect();
        let guard_lens = guard
            .as_ref()
            .map(|g| (g.loss.len(), g.halted.len(), g.max_loss));
        check_clip_adam_update(&lens, guard_lens, clip, cfg)?;
        // In order, in f64: the host path's sum, so the clip scale is bit for bit its own.
        let norm = groups
            .iter()
            .flat_map(|g| g.grad.iter())
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        let scale = clip_scale(norm, clip);
        let mut skip = !norm.is_finite();
        if let Some(g) = guard {
            let loss = g.loss[0];
            if g.halted[0] != 0.0 || !loss.is_finite() || loss > g.max_loss {
                g.halted[0] = 1.0;
                skip = true;
            }
        }
        for g in groups.iter_mut() {
            let step = g.state.step;
            g.state.step += 1;
            if skip {
                continue;
            }
            let scaled: Vec<f32>;
            let grad: &[f32] = if scale == 1.0 {
                g.grad
            } else {
                scaled = g.grad.iter().map(|&v| v * scale).collect();
                &scaled
            };
            const CHUNK: usize = 1 << 14;
            let (p, m, v) = (&mut *g.params, &mut g.state.m, &mut g.state.v);
            self.install(|| {
                p.par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                    .for_each(|((p, g), (m, v))| adam_update_host(p, g, m, v, step, cfg));
            });
        }
        let mut out = vec![0f32; CLIP_NORM_LEN];
        out[ClipNorm::Norm as usize] = norm as f32;
        out[ClipNorm::Scale as usize] = scale;
        out[ClipNorm::Skipped as usize] = skip as u8 as f32;
        Ok(out)
    }

    fn copy_into(
        &self,
        dst: &mut Vec<f32>,
        dst_offset: usize,
        src: &Vec<f32>,
        src_offset: usize,
        len: usize,
    ) -> Result<()> {
        check_copy_into(dst.len(), dst_offset, src.len(), src_offset, len)?;
        dst[dst_offset..dst_offset + len].copy_from_slice(&src[src_offset..src_offset + len]);
        Ok(())
    }

    fn task_batch(
        &self,
        digits: &DigitTable<Vec<f32>>,
        spec: &TaskBatchSpec,
    ) -> Result<TaskBatch<Vec<f32>>> {
        spec.check()?;
        let key = philox::key(spec.seed, spec.step);
        let counts = digits.counts();
        let trials: Vec<_> = (0..spec.batch as u32)
            .map(|b| task_gen::draw_trial(counts, key, b, spec.t_max, spec.vocab, spec.delta_min))
            .collect();
        let x = self.task_rows(
            digits,
            key,
            &trials,
            0..spec.t_max,
            (spec.noise_mean, spec.noise_std),
        );
        let (targets, weights) = task_gen::task_targets(&trials, spec.t_max);
        Ok(TaskBatch {
            x,
            targets: targets.iter().map(|&t| t as f32).collect(),
            weights,
        })
    }

    fn task_chunk(&self, digits: &DigitTable<Vec<f32>>, spec: &TaskChunkSpec) -> Result<Vec<f32>> {
        spec.check()?;
        let trials = spec.trials(digits.counts());
        Ok(self.task_rows(
            digits,
            philox::key(spec.seed, spec.step),
            &trials,
            spec.t0..spec.t0 + spec.len,
            (spec.noise_mean, spec.noise_std),
        ))
    }

    // The ensemble operations: the members side by side across the pool, each running
    // the single operation (so each gives bit for bit what it gives alone, whatever the
    // thread count; the single operations are deterministic across thread counts).

    fn ensemble_task_batch(
        &self,
        digits: &DigitTable<Vec<f32>>,
        specs: &[TaskBatchSpec],
    ) -> Result<Vec<TaskBatch<Vec<f32>>>> {
        self.par_members(specs.len(), |i| self.task_batch(digits, &specs[i]))
    }

    fn ensemble_seq_forward(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[SeqArgs<'_, Vec<f32>>],
    ) -> Result<Vec<SeqForward<Vec<f32>, FastCache>>> {
        self.par_members(members.len(), |i| {
            let m = &members[i];
            self.seq_forward(cell, m.params, shape, m.x, m.s0)
        })
    }

    fn ensemble_readout_ce(
        &self,
        hidden: usize,
        classes: usize,
        members: &[ReadoutArgs<'_, Vec<f32>>],
    ) -> Result<Vec<ReadoutCe<Vec<f32>>>> {
        self.par_members(members.len(), |i| {
            let m = &members[i];
            self.readout_ce(hidden, classes, m.h, m.readout, m.targets, m.weights)
        })
    }

    fn ensemble_seq_backward(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[BackwardArgs<'_, Vec<f32>, FastCache>],
        want_dx: bool,
    ) -> Result<Vec<SeqGrads<Vec<f32>>>> {
        self.par_members(members.len(), |i| {
            let m = &members[i];
            self.seq_backward(cell, m.params, shape, m.x, m.fwd, m.upstream, want_dx)
        })
    }

    fn ensemble_step_speed_grad(
        &self,
        cell: &CellDims,
        members: &[SpeedArgs<'_, Vec<f32>>],
        want_dparams: bool,
    ) -> Result<Vec<SpeedGrad<Vec<f32>>>> {
        self.par_members(members.len(), |i| {
            let m = &members[i];
            self.step_speed_grad(cell, m.params, m.states, m.x, m.n, want_dparams)
        })
    }

    fn ensemble_clip_adam_update(
        &self,
        members: &mut [MemberAdam<'_, Vec<f32>>],
        clip: Option<f32>,
        cfg: &AdamConfig,
    ) -> Result<Vec<Vec<f32>>> {
        let n = members.len();
        self.install(|| {
            members
                .par_iter_mut()
                .enumerate()
                .map(|(i, m)| {
                    let guard = reborrow_guard(&mut m.guard);
                    self.clip_adam_update(&mut m.groups, clip, guard, cfg)
                        .map_err(|e| member_error(i, n, e))
                })
                .collect()
        })
    }

    fn ensemble_slow_point_iterations(
        &self,
        cell: &CellDims,
        members: &mut [SlowPointArgs<'_, Vec<f32>>],
        cfg: &SlowPointConfig,
    ) -> Result<()> {
        let n = members.len();
        self.install(|| {
            members.par_iter_mut().enumerate().try_for_each(|(i, m)| {
                self.slow_point_iterations(cell, m.params, m.x, m.search, cfg)
                    .map_err(|e| member_error(i, n, e))
            })
        })
    }

    fn ensemble_slow_point_lm(
        &self,
        cell: &CellDims,
        members: &mut [LmArgs<'_, Vec<f32>>],
        cfg: &memrnn_core::lm::LmConfig,
    ) -> Result<()> {
        let n = members.len();
        self.install(|| {
            members.par_iter_mut().enumerate().try_for_each(|(i, m)| {
                self.slow_point_lm(cell, m.params, m.x, m.search, cfg)
                    .map_err(|e| member_error(i, n, e))
            })
        })
    }

    fn delay_inputs(
        &self,
        seed: u64,
        step: u64,
        n: usize,
        pixels: usize,
        noise_mean: f32,
        noise_std: f32,
    ) -> Result<Vec<f32>> {
        check_delay_inputs(n, pixels, noise_mean, noise_std)?;
        let key = philox::key(seed, step);
        let mut x = vec![0f32; n * (pixels + 1)];
        self.install(|| {
            x.par_chunks_mut(pixels + 1)
                .enumerate()
                .for_each(|(i, out)| {
                    task_gen::fill_delay_row(key, i as u32, noise_mean, noise_std, out)
                })
        });
        Ok(x)
    }
}
