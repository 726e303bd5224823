//! [`CudaBackend`]: memrnn's `Backend` on one NVIDIA GPU, or on the simulated device.
//! Tensors stay on the device; input products and weight gradients go through cuBLAS over
//! all `T·B` rows; the recurrences run in the fused kernels of `kernels/` (persistent
//! cooperative kernels when W_hh's slices fit on chip, one launch per step otherwise).
//! Everything here runs unchanged over the real driver and the simulator ([`Device`]).

use crate::blas::{gemm_rm, Op};
use crate::device::real::RealDevice;
use crate::device::{backend_err, Buf, Device, View};
use crate::kernels::{Kernel, KernelParams};
use crate::ops::readout;
use crate::ops::recurrence::{self, BwdBuffers, Dims, FwdBuffers, RecurrencePath, Weights};
use crate::ops::small::{self, AdamScalars};
use crate::ops::spec;
use crate::ops::task;
use memrnn_core::ensemble::{member_error, MemberAdam};
use memrnn_core::{
    check_adam_update, check_axpy, check_clip_adam_update, check_copy_into, check_delay_inputs,
    check_readout_argmax, check_readout_ce, check_seq_backward, check_seq_forward,
    check_step_jacobian, check_step_speed, check_step_speed_grad, AdamConfig, AdamGroup, AdamState,
    Backend, CellDims, ForwardInfo, ParamBlock, Precision, ReadoutCe, Result, SeqForward, SeqGrads,
    SeqShape, SeqUpstream, SpeedGrad, StepGuard, UpstreamLens, CE_STATS, CLIP_NORM_LEN,
};
use memrnn_core::{philox, DigitTable, TaskBatch, TaskBatchSpec, TaskChunkSpec};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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
        // The argument checks every backend shares (memrnn_core::checks).
        check_seq_forward(cell, params.len, shape, x.len, s0.map(|s| s.len))?;
        let layout = cell.layout();
        let d = dims(shape, cell)?;
        let sp = spec(cell.kind);
        let (b, i, h, g) = (shape.batch, cell.input, cell.hidden, cell.gates());
        let (gh, s, rows) = (cell.gate_rows(), cell.state_size(), shape.rows());
        let p = params.v();
        let dev = &self.dev;

        // A = X W_ihᵀ over all T·B rows (the biases are added in the gate kernels).
        let a = self.out(rows * gh)?;
        gemm_rm(
            dev,
            rows,
            gh,
            i,
            x.v(),
            Op::n(i),
            p.sub(layout.range(ParamBlock::WeightIh)),
            Op::t(i),
            0.0,
            a.all(),
        )?;
        let s0buf = match s0 {
            Some(s0) => self.copy_of(s0.v(), b * s)?,
            None => self.zeros_buf(b * s)?,
        };
        let h_seq = self.out(rows * h)?;
        let gates = self.out(rows * sp.ncache * h)?;
        let c_seq = self.out(if cell.kind.state_parts() == 2 {
            rows * h
        } else {
            1
        })?;
        let s_final = self.out(b * s)?;

        let fns = sp.kernels_for(self.precision);
        let half = match self.precision {
            Precision::F32 => None,
            _ => Some(self.half_recurrent(cell, p, false)?),
        };
        let plan = self.plan(&fns.seq_fwd, g, h, h, b)?;
        let buf = FwdBuffers {
            a: a.all(),
            w_hh: match &half {
                None => Weights::F32(p.sub(layout.range(ParamBlock::WeightHh))),
                Some(r) => Weights::Half(r.w.all()),
            },
            b_ih: p.sub(layout.range(ParamBlock::BiasIh)),
            b_hh: p.sub(layout.range(ParamBlock::BiasHh)),
            s0: s0buf.all(),
            h_seq: h_seq.all(),
            gates: gates.all(),
            c_seq: c_seq.all(),
            s_final: s_final.all(),
        };
        recurrence::forward(
            dev,
            &fns.seq_fwd,
            &fns.step_fwd,
            &plan,
            d,
            g,
            sp.ncache,
            cell.kind.state_parts(),
            &buf,
        )?;
        if let Some(r) = &half {
            self.check_overflow(cell, params, &r.first_overflow)?;
        }
        Ok(SeqForward {
            h_seq: self.tensor(h_seq, rows * h),
            s_final: self.tensor(s_final, b * s),
            cache: CudaCache {
                cell: *cell,
                shape,
                s0: s0buf,
                gates,
                c_seq,
            },
        })
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
        check_seq_backward(
            cell,
            params.len,
            shape,
            x.len,
            &ForwardInfo {
                cell: fwd.cache.cell,
                shape: fwd.cache.shape,
                h_seq: fwd.h_seq.len,
                s_final: fwd.s_final.len,
            },
            UpstreamLens {
                dh_seq: upstream.dh_seq.map(|t| t.len),
                ds_final: upstream.ds_final.map(|t| t.len),
            },
        )?;
        let layout = cell.layout();
        let d = dims(shape, cell)?;
        let sp = spec(cell.kind);
        let (t, b, i, h, g) = (
            shape.steps,
            shape.batch,
            cell.input,
            cell.hidden,
            cell.gates(),
        );
        let (gh, s, rows) = (cell.gate_rows(), cell.state_size(), shape.rows());
        let p = params.v();
        let dev = &self.dev;

        // W_hhᵀ [H, G·H]: the backward product reads columns of W_hh as contiguous rows
        // (rounded to the storage format on the way, in half precision).
        let (w_t, half) = match self.precision {
            Precision::F32 => {
                let w_t = self.out(gh * h)?;
                small::transpose(
                    dev,
                    p.sub(layout.range(ParamBlock::WeightHh)),
                    gh,
                    h,
                    w_t.all(),
                )?;
                (Some(w_t), None)
            }
            _ => (None, Some(self.half_recurrent(cell, p, true)?)),
        };
        let w_t = match (&w_t, &half) {
            (Some(w), _) => Weights::F32(w.all()),
            (None, Some(r)) => Weights::Half(r.w.all()),
            (None, None) => return Err(backend_err("internal: no W_hh^T")),
        };
        let dcarry = match upstream.ds_final {
            Some(ds) => self.copy_of(ds.v(), b * s)?,
            None => self.zeros_buf(b * s)?,
        };
        let da = self.out(rows * gh)?;
        let du_own = if sp.separate_du {
            Some(self.out(rows * gh)?)
        } else {
            None
        };
        let ds0 = self.out(b * s)?;
        let fns = sp.kernels_for(self.precision);
        let plan = self.plan(&fns.seq_bwd, 1, gh, h, b)?;
        let du = du_own.as_ref().unwrap_or(&da).all();
        let da = da.all();
        {
            let buf = BwdBuffers {
                w_t,
                h_seq: fwd.h_seq.buf.all(),
                gates: fwd.cache.gates.all(),
                c_seq: fwd.cache.c_seq.all(),
                s0: fwd.cache.s0.all(),
                dh_seq: upstream.dh_seq.map(|t| t.buf.all()).unwrap_or(dcarry.all()),
                d: dcarry.all(),
                da,
                du,
                ds0: ds0.all(),
                has_dh: upstream.dh_seq.is_some() as i32,
            };
            recurrence::backward(
                dev,
                &fns.seq_bwd,
                &fns.step_bwd,
                &plan,
                d,
                g,
                sp.ncache,
                cell.kind.state_parts(),
                &buf,
            )?;
        }
        if let Some(r) = &half {
            self.check_overflow(cell, params, &r.first_overflow)?;
        }

        // Weight gradients over all T·B rows, bias gradients by column sums.
        let dparams = self.out(layout.len())?;
        let dp = dparams.all();
        gemm_rm(
            dev,
            gh,
            i,
            rows,
            da,
            Op::t(gh),
            x.v(),
            Op::n(i),
            0.0,
            dp.sub(layout.range(ParamBlock::WeightIh)),
        )?;
        {
            let dw = dp.sub(layout.range(ParamBlock::WeightHh));
            // Step 0 against s_0's h part (row stride S), steps 1.. against h_seq.
            gemm_rm(
                dev,
                gh,
                h,
                b,
                du.sub(0..b * gh),
                Op::t(gh),
                fwd.cache.s0.all(),
                Op::n(s),
                0.0,
                dw,
            )?;
            if t > 1 {
                gemm_rm(
                    dev,
                    gh,
                    h,
                    (t - 1) * b,
                    du.sub(b * gh..rows * gh),
                    Op::t(gh),
                    fwd.h_seq.buf.view(0..(t - 1) * b * h),
                    Op::n(h),
                    1.0,
                    dw,
                )?;
            }
        }
        small::col_sum(
            dev,
            da.sub(0..rows * gh),
            rows,
            gh,
            dp.sub(layout.range(ParamBlock::BiasIh)),
        )?;
        small::col_sum(
            dev,
            du.sub(0..rows * gh),
            rows,
            gh,
            dp.sub(layout.range(ParamBlock::BiasHh)),
        )?;
        let dx = if want_dx {
            let dx = self.out(rows * i)?;
            gemm_rm(
                dev,
                rows,
                i,
                gh,
                da,
                Op::n(gh),
                p.sub(layout.range(ParamBlock::WeightIh)),
                Op::n(i),
                0.0,
                dx.all(),
            )?;
            Some(self.tensor(dx, rows * i))
        } else {
            None
        };
        Ok(SeqGrads {
            dparams: self.tensor(dparams, layout.len()),
            ds0: self.tensor(ds0, b * s),
            dx,
        })
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
        let rounded = match self.precision {
            Precision::F32 => None,
            _ => Some(self.rounded_params(cell, params)?),
        };
        let params = rounded.as_ref().unwrap_or(params);
        let layout = cell.layout();
        let p = params.v();
        let dev = &self.dev;
        let (i, gh) = (cell.input, cell.gate_rows());
        // ā = W_ih x̄ + b_ih, once per call: b_ih copied in, then a one-row cuBLAS product.
        let a_bar = self.out(gh)?;
        dev.copy(p.sub(layout.range(ParamBlock::BiasIh)), a_bar.view(0..gh))?;
        gemm_rm(
            dev,
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
        let (wf_len, wb_len) = sp::packed_lens(cell);
        let wf = self.out(wf_len)?;
        let wb = self.out(wb_len)?;
        let buf = sp::SearchBuffers {
            w_hh: p.sub(layout.range(ParamBlock::WeightHh)),
            b_hh: p.sub(layout.range(ParamBlock::BiasHh)),
            a_bar: a_bar.all(),
            wf: wf.all(),
            wb: wb.all(),
            states: search.states.v(),
            m: search.m.v(),
            v: search.v.v(),
        };
        sp::search(dev, cell, buf, &mut search.status, cfg)
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
        let lens: Vec<_> = groups
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
            .collect();
        let guard_lens = guard
            .as_ref()
            .map(|g| (g.loss.len, g.halted.len, g.max_loss));
        check_clip_adam_update(&lens, guard_lens, clip, cfg)?;
        let out = self.out(CLIP_NORM_LEN)?;
        let sc = adam_scalars(cfg, groups[0].state.step);
        let views: Vec<small::GroupViews<'_>> = groups
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
            .collect();
        let guard_views = guard
            .as_ref()
            .map(|g| (g.loss.v(), g.halted.v(), g.max_loss));
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
            let lens: Vec<_> = m
                .groups
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
                .collect();
            let guard_lens = m
                .guard
                .as_ref()
                .map(|g| (g.loss.len, g.halted.len, g.max_loss));
            check_clip_adam_update(&lens, guard_lens, clip, cfg)
                .map_err(|e| member_error(i, n, e))?;
            outs.push(self.out(CLIP_NORM_LEN)?);
        }
        let views: Vec<small::MemberViews<'_>> = members
            .iter()
            .zip(&outs)
            .map(|(m, out)| small::MemberViews {
                groups: m
                    .groups
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
                    .collect(),
                clip: out.all(),
                guard: m
                    .guard
                    .as_ref()
                    .map(|g| (g.loss.v(), g.halted.v(), g.max_loss)),
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
