//! [`CudaBackend`]: memrnn's `Backend` on one NVIDIA GPU, or on the simulated device.
//! Tensors stay on the device; input products and weight gradients go through cuBLAS over
//! all `T·B` rows; the recurrences run in the fused kernels of `kernels/` (persistent
//! cooperative kernels when W_hh's slices fit on chip, one launch per step otherwise).
//! An ensemble's members run their recurrences together, many per cooperative launch
//! (`ops::ensemble`), and their products as batched cuBLAS calls.
//! Everything here runs unchanged over the real driver and the simulator ([`Device`]).

use crate::blas::{gemm_rm, Op};
use crate::device::real::RealDevice;
use crate::device::{backend_err, Buf, Device, View};
use crate::kernels::{Kernel, KernelParams};
use crate::ops::ensemble;
use crate::ops::readout;
use crate::ops::recurrence::{self, BwdBuffers, Dims, FwdBuffers, RecurrencePath};
use crate::ops::small::{self, AdamScalars};
use crate::ops::spec;
use crate::ops::task;
use memrnn_core::ensemble::{for_members, member_error, BackwardArgs, MemberAdam, SeqArgs};
use memrnn_core::{
    check_adam_update, check_axpy, check_clip_adam_update, check_copy_into, check_delay_inputs,
    check_readout_argmax, check_readout_ce, check_step_jacobian, check_step_speed,
    check_step_speed_grad, AdamConfig, AdamGroup, AdamState, Backend, CellDims, ParamBlock,
    Precision, ReadoutCe, Result, SeqForward, SeqGrads, SeqShape, SeqUpstream, SpeedGrad,
    StepGuard, CE_STATS, CLIP_NORM_LEN,
};
use memrnn_core::{philox, DigitTable, TaskBatch, TaskBatchSpec, TaskChunkSpec};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

mod seq;
use seq::BwdFinish;

/// A flat f32 buffer in device memory (or simulated device memory). The allocation holds
/// at least one element (a zero-length tensor still owns a valid pointer); `len` is the
/// logical length.
pub struct CudaTensor {
    buf: Buf<f32>,
    len: usize,
}

impl CudaTensor {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The logical elements.
    fn v(&self) -> View<'_, f32> {
        self.buf.view(0..self.len)
    }
}

/// What a forward pass keeps for its backward pass: `s_0`, the gate cache and (LSTM) the
/// cell states, plus the cell and shape they belong to.
pub struct CudaCache {
    cell: CellDims,
    shape: SeqShape,
    s0: Buf<f32>,
    gates: Buf<f32>,
    c_seq: Buf<f32>,
}

/// memrnn's CUDA backend on one device: a GPU, or the simulated device
/// ([`CudaBackend::simulated`]).
pub struct CudaBackend {
    dev: Device,
    path: AtomicU8,
    poison: AtomicBool,
    precision: Precision,
}

/// A copy of `W_hh` rounded to the backend's storage precision on the device, made from
/// the f32 master parameters at every call (so never stale; the CPU backend packs per call
/// too), and the flag the rounding kernel raises when a finite weight overflows the format.
struct RoundedWeights {
    /// The bits of the bf16 / f16 weights.
    w: Buf<u16>,
    first_overflow: Buf<u32>,
}

impl CudaBackend {
    /// The backend on GPU `ordinal`, or a clear error when there is no driver, no such
    /// device, no cuBLAS, or the driver rejects the embedded PTX.
    pub fn new(ordinal: usize) -> Result<Self> {
        Ok(Self::on(Device::Real(RealDevice::open(ordinal)?)))
    }

    /// The backend on a simulated device with properties `props`: the kernels' own source
    /// compiled for the host and run with CUDA's execution semantics (every thread a
    /// fiber switching at warp, block and grid barriers; shared memory NaN-filled; barrier
    /// divergence an error), and cuBLAS's products as CPU GEMMs with cuBLAS's semantics.
    /// It checks what the kernels compute, not how fast they are, and not the GPU's memory
    /// model. [`Backend::name`] says that it is simulated.
    #[cfg(feature = "sim")]
    pub fn simulated(props: crate::SimProps) -> Result<Self> {
        Ok(Self::on(Device::Sim(crate::device::sim::SimDevice::new(
            props,
        )?)))
    }

    fn on(dev: Device) -> Self {
        CudaBackend {
            dev,
            path: AtomicU8::new(0),
            poison: AtomicBool::new(false),
            precision: Precision::F32,
        }
    }

    /// Stores `W_hh` in `precision` for every operation that reads it, with f32
    /// arithmetic throughout (see [`memrnn_core::Precision`]): the recurrences run the
    /// `_bf16` / `_f16` kernels of `kernels/` on a half-width copy of `W_hh` rounded on
    /// the device at each call (whose persistent kernels keep twice the hidden size on
    /// chip); speeds, Jacobians and JVPs go through those recurrences; the slow-point
    /// search runs its f32 kernels on a copy of the parameters whose `W_hh` is rounded.
    /// A finite weight that overflows the format (an f16 beyond 65504) is an error, as on
    /// the CPU; finding out costs one 4-byte read back (a synchronisation) per call.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Whether this backend runs on the simulated device.
    pub fn is_simulated(&self) -> bool {
        self.dev.is_simulated()
    }

    /// Forces the recurrence kernels (tests use this to cover both paths).
    pub fn set_recurrence_path(&self, path: RecurrencePath) {
        let v = match path {
            RecurrencePath::Auto => 0,
            RecurrencePath::Persistent => 1,
            RecurrencePath::Step => 2,
        };
        self.path.store(v, Ordering::Relaxed);
    }

    pub fn recurrence_path(&self) -> RecurrencePath {
        match self.path.load(Ordering::Relaxed) {
            1 => RecurrencePath::Persistent,
            2 => RecurrencePath::Step,
            _ => RecurrencePath::Auto,
        }
    }

    /// When on, every buffer an operation returns is filled with NaN before the kernels
    /// write it, so that an element they miss shows (tests turn this on).
    pub fn set_poison_outputs(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    /// Waits for all queued work and reports any asynchronous error.
    pub fn synchronize(&self) -> Result<()> {
        self.dev.synchronize()
    }

    /// A buffer of `len` (≥ 1) elements whose contents the caller overwrites: NaN when
    /// poisoning is on.
    /// One network's scratch for the fused slow-point search: `ā = W_ih x̄ + b_ih` (b_ih
    /// copied in, then a one-row cuBLAS product) and room for its packed weights.
    fn slow_point_scratch(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        x: &CudaTensor,
    ) -> Result<SlowPointScratch> {
        let layout = cell.layout();
        let p = params.v();
        let (i, gh) = (cell.input, cell.gate_rows());
        let a_bar = self.out(gh)?;
        self.dev
            .copy(p.sub(layout.range(ParamBlock::BiasIh)), a_bar.view(0..gh))?;
        gemm_rm(
            &self.dev,
            1,
            gh,
            i,
            x.v(),
            Op::n(i),
            p.sub(layout.range(ParamBlock::WeightIh)),
            Op::t(i),
            1.0,
            a_bar.all(),
        )?;
        let (wf_len, wb_len) = crate::ops::slowpoints::packed_lens(cell);
        Ok(SlowPointScratch {
            a_bar,
            wf: self.out(wf_len)?,
            wb: self.out(wb_len)?,
        })
    }

    fn out(&self, len: usize) -> Result<Buf<f32>> {
        let buf = self.dev.alloc::<f32>(len)?;
        if self.poison.load(Ordering::Relaxed) {
            small::fill(&self.dev, buf.all(), f32::NAN)?;
        }
        Ok(buf)
    }

    fn zeros_buf(&self, len: usize) -> Result<Buf<f32>> {
        self.dev.zeros::<f32>(len)
    }

    /// A new buffer holding the first `len` elements of `src`.
    fn copy_of(&self, src: View<'_, f32>, len: usize) -> Result<Buf<f32>> {
        let dst = self.out(len)?;
        if len > 0 {
            self.dev.copy(src.sub(0..len), dst.view(0..len))?;
        }
        Ok(dst)
    }

    fn tensor(&self, buf: Buf<f32>, len: usize) -> CudaTensor {
        CudaTensor { buf, len }
    }

    fn plan<P: KernelParams>(
        &self,
        f: &Kernel<P>,
        go: usize,
        k: usize,
        h: usize,
        b: usize,
    ) -> Result<recurrence::Plan> {
        let w_size = self.precision.bytes();
        recurrence::plan(&self.dev, f, go, k, h, b, w_size, self.recurrence_path())
    }

    /// `W_hh` of `params` rounded to the backend's (half) precision, as the bits of the
    /// format: `[G·H, H]` for the forward, or transposed `[H, G·H]` for the backward.
    fn half_recurrent(
        &self,
        cell: &CellDims,
        params: View<'_, f32>,
        transposed: bool,
    ) -> Result<RoundedWeights> {
        let (gh, h) = (cell.gate_rows(), cell.hidden);
        let w = self.dev.alloc::<u16>(gh * h)?;
        let first_overflow = self.dev.zeros::<u32>(1)?;
        let v = w.view(0..gh * h);
        let out = small::RoundOutputs {
            half: (!transposed).then_some(v),
            half_t: transposed.then_some(v),
            f32: None,
        };
        let w_hh = params.sub(cell.layout().range(ParamBlock::WeightHh));
        small::round_recurrent(
            &self.dev,
            self.precision,
            w_hh,
            gh,
            h,
            out,
            first_overflow.all(),
        )?;
        Ok(RoundedWeights { w, first_overflow })
    }

    /// A copy of `params` whose `W_hh` is rounded to the backend's (half) precision and
    /// widened back to f32 (`Precision::round_recurrent` on the device): what the ops
    /// without half-width kernels of their own compute with.
    fn rounded_params(&self, cell: &CellDims, params: &CudaTensor) -> Result<CudaTensor> {
        let n = params.len;
        let copy = self.copy_of(params.v(), n)?;
        let first_overflow = self.dev.zeros::<u32>(1)?;
        let range = cell.layout().range(ParamBlock::WeightHh);
        // From the original's W_hh into the copy's (the kernel's pointers do not alias).
        small::round_recurrent(
            &self.dev,
            self.precision,
            params.v().sub(range.clone()),
            cell.gate_rows(),
            cell.hidden,
            small::RoundOutputs {
                f32: Some(copy.view(range)),
                ..Default::default()
            },
            first_overflow.all(),
        )?;
        self.check_overflow(cell, params, &first_overflow)?;
        Ok(self.tensor(copy, n))
    }

    /// [`Self::check_overflow`] for a recurrence that ran on `half` (nothing in f32).
    fn check_prep_overflow(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        half: Option<&RoundedWeights>,
    ) -> Result<()> {
        match half {
            Some(r) => self.check_overflow(cell, params, &r.first_overflow),
            None => Ok(()),
        }
    }

    /// The error `Precision::check_recurrent` gives (naming the first weight that
    /// overflows the format) when the rounding kernel raised its flag; one 4-byte read.
    fn check_overflow(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        first_overflow: &Buf<u32>,
    ) -> Result<()> {
        if self.dev.dtoh(first_overflow.all())?[0] == 0 {
            return Ok(());
        }
        self.precision
            .check_recurrent(cell, &self.download(params)?)?;
        Err(backend_err(format!(
            "internal: the device flagged a W_hh weight overflowing {} that the host \
             check does not find",
            self.precision
        )))
    }
}

impl CudaBackend {
    /// How [`Backend::ensemble_seq_forward`] and [`Backend::ensemble_seq_backward`] would
    /// launch the recurrences of `members` networks of `cell` at batch `batch` on this
    /// device and recurrence path (the sequence length does not enter the plan).
    pub fn ensemble_plan(
        &self,
        cell: &CellDims,
        batch: usize,
        members: usize,
    ) -> Result<crate::EnsemblePlans> {
        let fns = spec(cell.kind).kernels_for(self.precision);
        let (g, gh, h) = (cell.gates(), cell.gate_rows(), cell.hidden);
        let fwd = self.plan(&fns.seq_fwd, g, h, h, batch)?;
        let bwd = self.plan(&fns.seq_bwd, 1, gh, h, batch)?;
        let dev = &self.dev;
        // No one-launch kernels in half precision: member by member.
        let ef = match &fns.seq_fwd_ens {
            Some(k) => ensemble::plan(dev, k, &fwd, g, h, h, batch, members)?,
            None => None,
        };
        let eb = match &fns.seq_bwd_ens {
            Some(k) => ensemble::plan(dev, k, &bwd, 1, gh, h, batch, members)?,
            None => None,
        };
        Ok(crate::EnsemblePlans {
            forward: crate::EnsembleLaunches::of(&ef, &fwd),
            backward: crate::EnsembleLaunches::of(&eb, &bwd),
        })
    }
}

/// What `check_clip_adam_update` checks of each group: its lengths and step count.
fn group_lens(groups: &[AdamGroup<'_, CudaTensor>]) -> Vec<(usize, usize, usize, usize, u64)> {
    groups
        .iter()
        .map(|g| {
            (
                g.params.len,
                g.grad.len,
                g.state.m.len,
                g.state.v.len,
                g.state.step,
            )
        })
        .collect()
}

/// What `check_clip_adam_update` checks of a guard.
fn guard_lens(guard: Option<&StepGuard<'_, CudaTensor>>) -> Option<(usize, usize, f32)> {
    guard.map(|g| (g.loss.len, g.halted.len, g.max_loss))
}

/// The clipped Adam kernels' view of each group.
fn group_views<'a>(groups: &'a [AdamGroup<'_, CudaTensor>]) -> Vec<small::GroupViews<'a>> {
    groups
        .iter()
        .map(|g| {
            (
                g.params.v(),
                g.grad.v(),
                g.state.m.v(),
                g.state.v.v(),
                g.params.len,
            )
        })
        .collect()
}

/// The clipped Adam kernels' view of a guard.
fn guard_views<'a>(
    guard: Option<&'a StepGuard<'_, CudaTensor>>,
) -> Option<(View<'a, f32>, View<'a, f32>, f32)> {
    guard.map(|g| (g.loss.v(), g.halted.v(), g.max_loss))
}

fn dims(shape: SeqShape, cell: &CellDims) -> Result<Dims> {
    let c = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds 32 bits")))
    };
    // Every flat extent the kernels index must fit in size_t arithmetic; they do by
    // SeqShape's and CellDims' own limits. The int arguments must fit in i32.
    Ok(Dims {
        t: c(shape.steps, "steps")?,
        b: c(shape.batch, "batch")?,
        h: c(cell.hidden, "hidden")?,
    })
}

/// One network's scratch of a fused slow-point search ([`CudaBackend::slow_point_scratch`]).
struct SlowPointScratch {
    a_bar: Buf<f32>,
    wf: Buf<f32>,
    wb: Buf<f32>,
}

/// The device buffers of one network's fused slow-point search.
fn slow_point_buffers<'a>(
    cell: &CellDims,
    params: &'a CudaTensor,
    scratch: &'a SlowPointScratch,
    states: &'a CudaTensor,
    m: &'a CudaTensor,
    v: &'a CudaTensor,
) -> crate::ops::slowpoints::SearchBuffers<'a> {
    let layout = cell.layout();
    let p = params.v();
    crate::ops::slowpoints::SearchBuffers {
        w_hh: p.sub(layout.range(ParamBlock::WeightHh)),
        b_hh: p.sub(layout.range(ParamBlock::BiasHh)),
        a_bar: scratch.a_bar.all(),
        wf: scratch.wf.all(),
        wb: scratch.wb.all(),
        states: states.v(),
        m: m.v(),
        v: v.v(),
    }
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;
    type Cache = CudaCache;

    fn name(&self) -> String {
        match self.precision {
            Precision::F32 => self.dev.name(),
            p => format!("{}, W_hh in {p}", self.dev.name()),
        }
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn upload(&self, host: &[f32]) -> Result<CudaTensor> {
        Ok(self.tensor(self.dev.htod(host)?, host.len()))
    }

    fn download(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        self.dev.dtoh(t.v())
    }

    fn zeros(&self, len: usize) -> Result<CudaTensor> {
        Ok(self.tensor(self.zeros_buf(len)?, len))
    }

    fn len(&self, t: &CudaTensor) -> usize {
        t.len
    }

    fn seq_forward(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        shape: SeqShape,
        x: &CudaTensor,
        s0: Option<&CudaTensor>,
    ) -> Result<SeqForward<CudaTensor, CudaCache>> {
        let prep = self.fwd_prepare(cell, params, shape, x, s0)?;
        self.input_products(cell, shape, &[(params, x, &prep)])?;
        let sp = spec(cell.kind);
        let fns = sp.kernels_for(self.precision);
        let (g, h) = (cell.gates(), cell.hidden);
        let plan = self.plan(&fns.seq_fwd, g, h, h, shape.batch)?;
        recurrence::forward(
            &self.dev,
            &fns.seq_fwd,
            &fns.step_fwd,
            &plan,
            dims(shape, cell)?,
            g,
            sp.ncache,
            cell.kind.state_parts(),
            &prep.buffers(cell, params),
        )?;
        self.check_prep_overflow(cell, params, prep.half.as_ref())?;
        Ok(self.fwd_finish(cell, shape, prep))
    }

    fn seq_backward(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        shape: SeqShape,
        x: &CudaTensor,
        fwd: &SeqForward<CudaTensor, CudaCache>,
        upstream: SeqUpstream<'_, CudaTensor>,
        want_dx: bool,
    ) -> Result<SeqGrads<CudaTensor>> {
        let prep = self.bwd_prepare(cell, params, shape, x, fwd, upstream)?;
        let sp = spec(cell.kind);
        let fns = sp.kernels_for(self.precision);
        let plan = self.plan(&fns.seq_bwd, 1, cell.gate_rows(), cell.hidden, shape.batch)?;
        recurrence::backward(
            &self.dev,
            &fns.seq_bwd,
            &fns.step_bwd,
            &plan,
            dims(shape, cell)?,
            cell.gates(),
            sp.ncache,
            cell.kind.state_parts(),
            &prep.buffers(fwd, upstream),
        )?;
        self.check_prep_overflow(cell, params, prep.half())?;
        let members = vec![BwdFinish {
            params,
            x,
            fwd,
            prep,
        }];
        let mut grads = self.bwd_finish(cell, shape, members, want_dx)?;
        grads
            .pop()
            .ok_or_else(|| backend_err("internal: no gradients for the one member"))
    }

    /// Every member's recurrence in cooperative launches of many members each (the
    /// co-residency plan of `ops::ensemble`), or member by member through the single
    /// kernels when that plan says so; the input products in one batched cuBLAS call. A member's result is its lone result up to the f32
    /// order of the recurrent dot products (ops/ensemble.rs says when it is bit for bit).
    fn ensemble_seq_forward(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[SeqArgs<'_, CudaTensor>],
    ) -> Result<Vec<SeqForward<CudaTensor, CudaCache>>> {
        let n = members.len();
        let preps = for_members(n, |i| {
            let m = &members[i];
            self.fwd_prepare(cell, m.params, shape, m.x, m.s0)
        })?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let prods: Vec<_> = members
            .iter()
            .zip(&preps)
            .map(|(m, p)| (m.params, m.x, p))
            .collect();
        self.input_products(cell, shape, &prods)?;
        let sp = spec(cell.kind);
        let fns = sp.kernels_for(self.precision);
        let (g, h, b) = (cell.gates(), cell.hidden, shape.batch);
        let d = dims(shape, cell)?;
        let parts = cell.kind.state_parts();
        let single = self.plan(&fns.seq_fwd, g, h, h, b)?;
        // The one-launch kernels are f32 only: in half precision the members run one by
        // one through the half-width single kernels.
        let ens = match &fns.seq_fwd_ens {
            Some(k) => ensemble::plan(&self.dev, k, &single, g, h, h, b, n)?,
            None => None,
        };
        let bufs: Vec<FwdBuffers<'_>> = preps
            .iter()
            .zip(members)
            .map(|(p, m)| p.buffers(cell, m.params))
            .collect();
        match (ens, &fns.seq_fwd_ens) {
            (Some(ep), Some(k)) => {
                let args = for_members(n, |i| {
                    recurrence::fwd_args(&self.dev, d, g, sp.ncache, parts, &bufs[i])
                })?;
                ensemble::forward(&self.dev, k, &ep, &args)?;
            }
            _ => {
                for_members(n, |i| {
                    let (f, st) = (&fns.seq_fwd, &fns.step_fwd);
                    recurrence::forward(&self.dev, f, st, &single, d, g, sp.ncache, parts, &bufs[i])
                })?;
            }
        }
        drop(bufs);
        for_members(n, |i| {
            self.check_prep_overflow(cell, members[i].params, preps[i].half.as_ref())
        })?;
        Ok(preps
            .into_iter()
            .map(|p| self.fwd_finish(cell, shape, p))
            .collect())
    }

    /// The backward recurrence of every member as `ensemble_seq_forward` runs the forward;
    /// each weight-gradient product (and `dx`) in one batched cuBLAS call for all members.
    fn ensemble_seq_backward(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[BackwardArgs<'_, CudaTensor, CudaCache>],
        want_dx: bool,
    ) -> Result<Vec<SeqGrads<CudaTensor>>> {
        let n = members.len();
        let preps = for_members(n, |i| {
            let m = &members[i];
            self.bwd_prepare(cell, m.params, shape, m.x, m.fwd, m.upstream)
        })?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let sp = spec(cell.kind);
        let fns = sp.kernels_for(self.precision);
        let (g, gh, h, b) = (cell.gates(), cell.gate_rows(), cell.hidden, shape.batch);
        let d = dims(shape, cell)?;
        let parts = cell.kind.state_parts();
        let single = self.plan(&fns.seq_bwd, 1, gh, h, b)?;
        // f32 only, as in `ensemble_seq_forward`.
        let ens = match &fns.seq_bwd_ens {
            Some(k) => ensemble::plan(&self.dev, k, &single, 1, gh, h, b, n)?,
            None => None,
        };
        {
            let bufs: Vec<BwdBuffers<'_>> = preps
                .iter()
                .zip(members)
                .map(|(p, m)| p.buffers(m.fwd, m.upstream))
                .collect();
            match (ens, &fns.seq_bwd_ens) {
                (Some(ep), Some(k)) => {
                    let args = for_members(n, |i| {
                        recurrence::bwd_args(&self.dev, d, g, sp.ncache, parts, &bufs[i])
                    })?;
                    ensemble::backward(&self.dev, k, &ep, &args)?;
                }
                _ => {
                    for_members(n, |i| {
                        let (f, st) = (&fns.seq_bwd, &fns.step_bwd);
                        recurrence::backward(
                            &self.dev, f, st, &single, d, g, sp.ncache, parts, &bufs[i],
                        )
                    })?;
                }
            }
        }
        for_members(n, |i| {
            self.check_prep_overflow(cell, members[i].params, preps[i].half())
        })?;
        let finish = preps
            .into_iter()
            .zip(members)
            .map(|(prep, m)| BwdFinish {
                params: m.params,
                x: m.x,
                fwd: m.fwd,
                prep,
            })
            .collect();
        self.bwd_finish(cell, shape, finish, want_dx)
    }

    fn step_speed(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        states: &CudaTensor,
        x: &CudaTensor,
        n: usize,
    ) -> Result<CudaTensor> {
        let (speed, _, _) = self.speed_impl(cell, params, states, x, n, false, false)?;
        Ok(speed)
    }

    fn step_speed_grad(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        states: &CudaTensor,
        x: &CudaTensor,
        n: usize,
        want_dparams: bool,
    ) -> Result<SpeedGrad<CudaTensor>> {
        let (speed, dstate, dparams) =
            self.speed_impl(cell, params, states, x, n, true, want_dparams)?;
        Ok(SpeedGrad {
            speed,
            dstate: dstate.ok_or_else(|| backend_err("internal: no state gradient"))?,
            dparams,
        })
    }

    fn step_jacobian(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        states: &CudaTensor,
        x: &CudaTensor,
        n: usize,
    ) -> Result<CudaTensor> {
        let (s, i) = (cell.state_size(), cell.input);
        check_step_jacobian(cell, params.len, states.len, x.len, n)?;
        if n == 0 {
            return self.zeros(0);
        }
        // One vector–Jacobian product per state component, all N·S of them as one batch:
        // rows (k·S + j) hold state k, input k and upstream e_j; their ds_0 are J's rows.
        let rows = n
            .checked_mul(s)
            .ok_or_else(|| backend_err("N·S overflows"))?;
        let rep_s = self.out(rows * s)?;
        let rep_x = self.out(rows * i)?;
        let onehot = self.out(rows * s)?;
        let dev = &self.dev;
        small::repeat_rows(dev, states.v(), rep_s.all(), n, s, s)?;
        small::repeat_rows(dev, x.v(), rep_x.all(), n, s, i)?;
        small::one_hot(dev, onehot.all(), n, s)?;
        let shape = SeqShape::new(1, rows)?;
        let rep_s = self.tensor(rep_s, rows * s);
        let rep_x = self.tensor(rep_x, rows * i);
        let onehot = self.tensor(onehot, rows * s);
        let fwd = self.seq_forward(cell, params, shape, &rep_x, Some(&rep_s))?;
        let up = SeqUpstream {
            dh_seq: None,
            ds_final: Some(&onehot),
        };
        let g = self.seq_backward(cell, params, shape, &rep_x, &fwd, up, false)?;
        Ok(g.ds0)
    }

    /// The fused search of `kernels/slowpoints.cu` (up to 1000 iterations per launch on
    /// tiles of candidates, no grid-wide sync; states and moments stay on the device, the
    /// status goes up once and comes back once); the default loop where no tile fits in
    /// shared memory. In bf16 / f16 the fused search runs its f32 kernels on a copy of
    /// `params` whose `W_hh` is rounded on the device (exactly the defined semantics,
    /// `Precision::round_recurrent`); the default loop goes through the half-width
    /// recurrences. Speeds, Jacobians, JVPs and the Levenberg–Marquardt search need
    /// nothing of their own: they are built on `seq_forward` / `seq_backward`.
    fn slow_point_iterations(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        x: &CudaTensor,
        search: &mut memrnn_core::backend::SlowPointSearch<CudaTensor>,
        cfg: &memrnn_core::backend::SlowPointConfig,
    ) -> Result<()> {
        use crate::ops::slowpoints as sp;
        memrnn_core::backend::check_slow_point_args(self, cell, params, x, search, cfg)?;
        if !sp::supported(cell, search.k, &self.dev.info()) {
            return memrnn_core::backend::slow_point_iterations_default(
                self, cell, params, x, search, cfg,
            );
        }
        // The same input checks as the CPU backend (one small download each per call).
        memrnn_core::check_finite("params", &self.download(params)?)?;
        memrnn_core::check_finite("x", &self.download(x)?)?;
        if !search.status.iter().any(|st| st.stop.is_active()) {
            return Ok(());
        }
        // In half precision: the f32 search on a copy whose W_hh is rounded (exactly the
        // defined semantics; the search has no half-width kernel of its own).
        let rounded = match self.precision {
            Precision::F32 => None,
            _ => Some(self.rounded_params(cell, params)?),
        };
        let params = rounded.as_ref().unwrap_or(params);
        let scratch = self.slow_point_scratch(cell, params, x)?;
        let memrnn_core::backend::SlowPointSearch {
            states,
            m,
            v,
            status,
            ..
        } = search;
        let buf = slow_point_buffers(cell, params, &scratch, states, m, v);
        sp::search(&self.dev, cell, buf, status, cfg)
    }

    /// Every member's candidates in one launch per block of iterations
    /// (`ops::slowpoints::search_members`: tiles of one member each, reading that member's
    /// weights through a device table), each member exactly as searched alone; the
    /// members one by one, each on the single operation's path, when some member's tiles
    /// do not fit in shared memory.
    fn ensemble_slow_point_iterations(
        &self,
        cell: &CellDims,
        members: &mut [memrnn_core::ensemble::SlowPointArgs<'_, CudaTensor>],
        cfg: &memrnn_core::backend::SlowPointConfig,
    ) -> Result<()> {
        use crate::ops::slowpoints as sp;
        let n = members.len();
        let info = self.dev.info();
        for (i, a) in members.iter().enumerate() {
            memrnn_core::backend::check_slow_point_args(self, cell, a.params, a.x, a.search, cfg)
                .map_err(|e| member_error(i, n, e))?;
        }
        // Half precision rounds each member's W_hh on the single operation's path.
        if self.precision != Precision::F32
            || members
                .iter()
                .any(|a| !sp::supported(cell, a.search.k, &info))
        {
            for (i, a) in members.iter_mut().enumerate() {
                self.slow_point_iterations(cell, a.params, a.x, a.search, cfg)
                    .map_err(|e| member_error(i, n, e))?;
            }
            return Ok(());
        }
        for (i, a) in members.iter().enumerate() {
            let finite = memrnn_core::check_finite("params", &self.download(a.params)?)
                .and_then(|()| memrnn_core::check_finite("x", &self.download(a.x)?));
            finite.map_err(|e| member_error(i, n, e))?;
        }
        let active = |a: &memrnn_core::ensemble::SlowPointArgs<'_, CudaTensor>| {
            a.search.status.iter().any(|st| st.stop.is_active())
        };
        let scratch = members
            .iter()
            .filter(|a| active(a))
            .map(|a| self.slow_point_scratch(cell, a.params, a.x))
            .collect::<Result<Vec<_>>>()?;
        if scratch.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::with_capacity(scratch.len());
        for (a, sc) in members.iter_mut().filter(|a| active(a)).zip(&scratch) {
            let params: &CudaTensor = a.params;
            let memrnn_core::backend::SlowPointSearch {
                states,
                m,
                v,
                status,
                ..
            } = &mut *a.search;
            parts.push(sp::MemberSearch {
                buf: slow_point_buffers(cell, params, sc, states, m, v),
                status,
            });
        }
        sp::search_members(&self.dev, cell, &mut parts, cfg)
    }

    fn adam_update(
        &self,
        params: &mut CudaTensor,
        grad: &CudaTensor,
        state: &mut AdamState<CudaTensor>,
        cfg: &AdamConfig,
    ) -> Result<()> {
        check_adam_update(params.len, grad.len, state.m.len, state.v.len, cfg)?;
        let n = params.len;
        let sc = adam_scalars(cfg, state.step);
        if n > 0 {
            small::adam_update(
                &self.dev,
                params.v(),
                grad.v(),
                state.m.v(),
                state.v.v(),
                n,
                &sc,
            )?;
        }
        state.step += 1;
        Ok(())
    }

    fn readout_ce(
        &self,
        hidden: usize,
        classes: usize,
        h: &CudaTensor,
        readout: &CudaTensor,
        targets: &CudaTensor,
        weights: &CudaTensor,
    ) -> Result<ReadoutCe<CudaTensor>> {
        check_readout_ce(
            hidden,
            classes,
            h.len,
            readout.len,
            targets.len,
            weights.len,
        )?;
        let rows = targets.len;
        let ro_len = readout.len;
        if rows == 0 {
            return Ok(ReadoutCe {
                dh: self.zeros(0)?,
                dreadout: self.zeros(ro_len)?,
                stats: self.zeros(CE_STATS)?,
            });
        }
        let g = self.out(rows * classes)?;
        let row_stats = self.out(rows * CE_STATS)?;
        let dh = self.out(rows * hidden)?;
        let dreadout = self.out(ro_len)?;
        let stats = self.out(CE_STATS)?;
        readout::readout_ce(
            &self.dev,
            hidden,
            classes,
            rows,
            h.v(),
            readout.v(),
            targets.v(),
            weights.v(),
            &readout::ReadoutBuffers {
                g: g.all(),
                row_stats: row_stats.all(),
                dh: dh.all(),
                dreadout: dreadout.all(),
                stats: stats.all(),
            },
        )?;
        Ok(ReadoutCe {
            dh: self.tensor(dh, rows * hidden),
            dreadout: self.tensor(dreadout, ro_len),
            stats: self.tensor(stats, CE_STATS),
        })
    }

    fn readout_argmax(
        &self,
        hidden: usize,
        classes: usize,
        h: &CudaTensor,
        readout: &CudaTensor,
    ) -> Result<CudaTensor> {
        let rows = check_readout_argmax(hidden, classes, h.len, readout.len)?;
        let out = self.out(rows)?;
        if rows > 0 {
            readout::readout_argmax(
                &self.dev,
                hidden,
                classes,
                rows,
                h.v(),
                readout.v(),
                out.all(),
            )?;
        }
        Ok(self.tensor(out, rows))
    }

    fn axpy(&self, y: &mut CudaTensor, alpha: f32, x: &CudaTensor) -> Result<()> {
        check_axpy(y.len, x.len)?;
        if y.len > 0 {
            small::axpy(&self.dev, y.v(), alpha, x.v(), y.len)?;
        }
        Ok(())
    }

    fn sum(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let out = self.out(1)?;
        if x.len == 0 {
            small::fill(&self.dev, out.all(), 0.0)?;
        } else {
            small::col_sum(&self.dev, x.v(), x.len, 1, out.all())?;
        }
        Ok(self.tensor(out, 1))
    }

    fn clip_adam_update(
        &self,
        groups: &mut [AdamGroup<'_, CudaTensor>],
        clip: Option<f32>,
        guard: Option<StepGuard<'_, CudaTensor>>,
        cfg: &AdamConfig,
    ) -> Result<CudaTensor> {
        check_clip_adam_update(&group_lens(groups), guard_lens(guard.as_ref()), clip, cfg)?;
        let out = self.out(CLIP_NORM_LEN)?;
        let sc = adam_scalars(cfg, groups[0].state.step);
        let views = group_views(groups);
        let guard_views = guard_views(guard.as_ref());
        small::clip_adam(&self.dev, &views, out.all(), guard_views, clip, &sc)?;
        drop(views);
        for g in groups.iter_mut() {
            g.state.step += 1;
        }
        Ok(self.tensor(out, CLIP_NORM_LEN))
    }

    /// Every member's clipped, guarded Adam in one launch of each kernel (per
    /// `kernels::CLIP_ENS_MAX` members): each member's own norm, scale and guard, the
    /// arithmetic of `clip_adam_update`, so each member's result is bit for bit its own.
    fn ensemble_clip_adam_update(
        &self,
        members: &mut [MemberAdam<'_, CudaTensor>],
        clip: Option<f32>,
        cfg: &AdamConfig,
    ) -> Result<Vec<CudaTensor>> {
        let n = members.len();
        let mut outs = Vec::with_capacity(n);
        for (i, m) in members.iter().enumerate() {
            check_clip_adam_update(
                &group_lens(&m.groups),
                guard_lens(m.guard.as_ref()),
                clip,
                cfg,
            )
            .map_err(|e| member_error(i, n, e))?;
            outs.push(self.out(CLIP_NORM_LEN)?);
        }
        let views: Vec<small::MemberViews<'_>> = members
            .iter()
            .zip(&outs)
            .map(|(m, out)| small::MemberViews {
                groups: group_views(&m.groups),
                clip: out.all(),
                guard: guard_views(m.guard.as_ref()),
                scalars: adam_scalars(cfg, m.groups[0].state.step),
            })
            .collect();
        small::clip_adam_ensemble(&self.dev, &views, clip)?;
        drop(views);
        for m in members.iter_mut() {
            for g in m.groups.iter_mut() {
                g.state.step += 1;
            }
        }
        Ok(outs
            .into_iter()
            .map(|out| self.tensor(out, CLIP_NORM_LEN))
            .collect())
    }

    fn copy_into(
        &self,
        dst: &mut CudaTensor,
        dst_offset: usize,
        src: &CudaTensor,
        src_offset: usize,
        len: usize,
    ) -> Result<()> {
        check_copy_into(dst.len, dst_offset, src.len, src_offset, len)?;
        if len > 0 {
            self.dev.copy(
                src.buf.view(src_offset..src_offset + len),
                dst.buf.view(dst_offset..dst_offset + len),
            )?;
        }
        Ok(())
    }

    fn task_batch(
        &self,
        digits: &DigitTable<CudaTensor>,
        spec: &TaskBatchSpec,
    ) -> Result<TaskBatch<CudaTensor>> {
        spec.check()?;
        let (t, b, p) = (spec.t_max, spec.batch, digits.pixels());
        let rows = t * b;
        let x = self.out(rows * (p + 1))?;
        let targets = self.out(rows)?;
        let weights = self.out(rows)?;
        self.task_draw(
            &x,
            Some((&targets, &weights)),
            Some(digits),
            philox::key(spec.seed, spec.step),
            (t, b, p, spec.vocab, spec.delta_min),
            (spec.noise_mean, spec.noise_std),
            None,
        )?;
        Ok(TaskBatch {
            x: self.tensor(x, rows * (p + 1)),
            targets: self.tensor(targets, rows),
            weights: self.tensor(weights, rows),
        })
    }

    fn task_chunk(
        &self,
        digits: &DigitTable<CudaTensor>,
        spec: &TaskChunkSpec,
    ) -> Result<CudaTensor> {
        spec.check()?;
        let (t, b, p) = (spec.len, spec.batch, digits.pixels());
        let x = self.out(t * b * (p + 1))?;
        self.task_draw(
            &x,
            None,
            Some(digits),
            philox::key(spec.seed, spec.step),
            (t, b, p, 10, 0),
            (spec.noise_mean, spec.noise_std),
            Some(task::ChunkTimes {
                t0: spec.t0,
                t_read: spec.t_read,
                t_report: spec.t_report.unwrap_or(u32::MAX),
            }),
        )?;
        Ok(self.tensor(x, t * b * (p + 1)))
    }

    fn delay_inputs(
        &self,
        seed: u64,
        step: u64,
        n: usize,
        pixels: usize,
        noise_mean: f32,
        noise_std: f32,
    ) -> Result<CudaTensor> {
        check_delay_inputs(n, pixels, noise_mean, noise_std)?;
        let x = self.out(n * (pixels + 1))?;
        if n > 0 {
            self.task_draw(
                &x,
                None,
                None,
                philox::key(seed, step),
                (1, n, pixels, 1, 0),
                (noise_mean, noise_std),
                None,
            )?;
        }
        Ok(self.tensor(x, n * (pixels + 1)))
    }
}

impl CudaBackend {
    /// Launches one of task.cu's kernels: `targets` and `weights` for a batch, the digit
    /// `table` for a batch or a chunk, the `chunk`'s times for a chunk.
    #[allow(clippy::too_many_arguments)]
    fn task_draw(
        &self,
        x: &Buf<f32>,
        outs: Option<(&Buf<f32>, &Buf<f32>)>,
        table: Option<&DigitTable<CudaTensor>>,
        key: [u32; 2],
        sizes: (usize, usize, usize, usize, usize),
        noise: (f32, f32),
        chunk: Option<task::ChunkTimes>,
    ) -> Result<()> {
        let (t, b, p, vocab, delta_min) = sizes;
        task::draw(
            &self.dev,
            &task::TaskArgs {
                x: x.all(),
                targets: outs.map(|o| o.0.all()),
                weights: outs.map(|o| o.1.all()),
                images: table.map(|d| d.images().v()),
                offsets: table.map(|d| d.offsets().v()),
                key,
                t,
                b,
                p,
                vocab,
                delta_min,
                mean: noise.0,
                std: noise.1,
                n_images: table.map_or(0, |d| d.counts().iter().map(|&c| c as usize).sum()),
                chunk,
            },
        )
    }
}

/// Adam's scalars for the update after `step` updates, computed exactly as
/// `memrnn_core::adam_update_host` does.
fn adam_scalars(cfg: &AdamConfig, step: u64) -> AdamScalars {
    let t = i32::try_from(step.saturating_add(1)).unwrap_or(i32::MAX);
    let bc1 = 1.0 - cfg.beta1.powi(t);
    let bc2 = 1.0 - cfg.beta2.powi(t);
    AdamScalars {
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        step_size: cfg.lr / bc1,
        bc2_sqrt: bc2.sqrt(),
        eps: cfg.eps,
    }
}

type SpeedParts = (CudaTensor, Option<CudaTensor>, Option<CudaTensor>);

impl CudaBackend {
    /// Speeds (and, when asked, their gradients) through one forward step (T = 1, B = N)
    /// and its backward with upstream `2 (F(s) − s)`.
    #[allow(clippy::too_many_arguments)]
    fn speed_impl(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        states: &CudaTensor,
        x: &CudaTensor,
        n: usize,
        want_dstate: bool,
        want_dparams: bool,
    ) -> Result<SpeedParts> {
        if want_dstate {
            check_step_speed_grad(cell, params.len, states.len, x.len, n)?;
        } else {
            check_step_speed(cell, params.len, states.len, x.len, n)?;
        }
        let s = cell.state_size();
        if n == 0 {
            let dstate = want_dstate.then(|| self.zeros(0)).transpose()?;
            let dparams = want_dparams
                .then(|| self.zeros(cell.layout().len()))
                .transpose()?;
            return Ok((self.zeros(0)?, dstate, dparams));
        }
        let shape = SeqShape::new(1, n)?;
        let fwd = self.seq_forward(cell, params, shape, x, Some(states))?;
        let speed = self.out(n)?;
        let twice_e = self.out(n * s)?;
        small::speed(
            &self.dev,
            fwd.s_final.v(),
            states.v(),
            speed.all(),
            twice_e.all(),
            n,
            s,
        )?;
        let speed = self.tensor(speed, n);
        if !want_dstate {
            return Ok((speed, None, None));
        }
        let twice_e = self.tensor(twice_e, n * s);
        let up = SeqUpstream {
            dh_seq: None,
            ds_final: Some(&twice_e),
        };
        let g = self.seq_backward(cell, params, shape, x, &fwd, up, false)?;
        // ∂S/∂s = 2 Jᵀ (F − s) − 2 (F − s).
        let dstate = self.out(n * s)?;
        small::sub(&self.dev, dstate.all(), g.ds0.v(), twice_e.v(), n * s)?;
        Ok((
            speed,
            Some(self.tensor(dstate, n * s)),
            want_dparams.then_some(g.dparams),
        ))
    }
}
