//! [`CudaBackend`]: memrnn's `Backend` on one NVIDIA GPU. Tensors stay on the device;
//! input products and weight gradients go through cuBLAS over all `T·B` rows; the
//! recurrences run in the fused kernels of `kernels/` (persistent cooperative kernels
//! when W_hh's slices fit on chip, one launch per step otherwise).

use crate::blas::{gemm_rm, Op};
use crate::device::{backend_err, drv, probe_libraries, DeviceInfo, Kernels};
use crate::ops::adam::{self as small, AdamScalars};
use crate::ops::recurrence::{self, BwdBuffers, Dims, FwdBuffers, RecurrencePath};
use crate::ops::spec;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use memrnn_core::{
    check_len, AdamConfig, AdamState, Backend, CellDims, ParamBlock, Result, SeqForward, SeqGrads,
    SeqShape, SeqUpstream, SpeedGrad,
};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// A flat f32 buffer in device memory. The allocation holds at least one element (a
/// zero-length tensor still owns a valid pointer); `len` is the logical length.
pub struct CudaTensor {
    buf: CudaSlice<f32>,
    len: usize,
}

impl CudaTensor {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device buffer (at least `len` elements).
    pub fn slice(&self) -> &CudaSlice<f32> {
        &self.buf
    }
}

/// What a forward pass keeps for its backward pass: `s_0`, the gate cache and (LSTM) the
/// cell states, plus the cell and shape they belong to.
pub struct CudaCache {
    cell: CellDims,
    shape: SeqShape,
    s0: CudaSlice<f32>,
    gates: CudaSlice<f32>,
    c_seq: CudaSlice<f32>,
}

/// memrnn's CUDA backend on one device.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    k: Arc<Kernels>,
    dev: DeviceInfo,
    name: String,
    path: AtomicU8,
    poison: AtomicBool,
}

impl CudaBackend {
    /// The backend on device `ordinal`, or a clear error when there is no driver, no such
    /// device, no cuBLAS, or the driver rejects the embedded PTX.
    pub fn new(ordinal: usize) -> Result<Self> {
        probe_libraries()?;
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            backend_err(format!(
                "cannot open CUDA device {ordinal} ({e:?}): no usable NVIDIA GPU at that ordinal"
            ))
        })?;
        let dev = DeviceInfo::query(&ctx)?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(drv("reading the compute capability"))?;
        let gpu = ctx.name().map_err(drv("reading the device name"))?;
        if major < 9 {
            return Err(backend_err(format!(
                "{gpu} has compute capability {major}.{minor}; memrnn's PTX targets sm_90 \
                 (Hopper) and newer"
            )));
        }
        let max_smem = i32::try_from(dev.max_smem_optin).unwrap_or(i32::MAX);
        let k = Kernels::for_context(&ctx, max_smem)?;
        // The legacy default stream: every backend on this device is serialised with every
        // other, so tensors may be shared between backends without events.
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| backend_err(format!("creating a cuBLAS handle: {e:?}")))?;
        Ok(CudaBackend {
            ctx,
            stream,
            blas: Mutex::new(blas),
            k,
            dev,
            name: format!("cuda ({gpu}, sm_{major}{minor}, {} SMs)", dev.sms),
            path: AtomicU8::new(0),
            poison: AtomicBool::new(false),
        })
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
        self.stream.synchronize().map_err(drv("synchronize"))
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// A buffer of `len` (≥ 1) elements whose contents the caller overwrites: NaN when
    /// poisoning is on.
    fn out(&self, len: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: f32 has no invalid bit patterns, and every caller writes (or poisons
        // below) every element it later reads.
        let mut buf = unsafe { self.stream.alloc::<f32>(len.max(1)) }
            .map_err(drv("allocating device memory"))?;
        if self.poison.load(Ordering::Relaxed) {
            small::fill(&self.k, &self.stream, self.dev.sms, &mut buf, f32::NAN)?;
        }
        Ok(buf)
    }

    fn zeros_buf(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(drv("allocating device memory"))
    }

    fn copy_of(&self, src: &CudaSlice<f32>, len: usize) -> Result<CudaSlice<f32>> {
        let mut dst = self.out(len)?;
        if len > 0 {
            self.stream
                .memcpy_dtod(&src.slice(0..len), &mut dst.slice_mut(0..len))
                .map_err(drv("device copy"))?;
        }
        Ok(dst)
    }

    fn tensor(&self, buf: CudaSlice<f32>, len: usize) -> CudaTensor {
        CudaTensor { buf, len }
    }

    fn blas(&self) -> Result<std::sync::MutexGuard<'_, CudaBlas>> {
        self.blas
            .lock()
            .map_err(|_| backend_err("cuBLAS handle poisoned by an earlier panic"))
    }

    fn plan(
        &self,
        f: &cudarc::driver::CudaFunction,
        go: usize,
        k: usize,
        h: usize,
        b: usize,
    ) -> Result<recurrence::Plan> {
        recurrence::plan(f, &self.dev, go, k, h, b, self.recurrence_path())
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
        self.name.clone()
    }

    fn upload(&self, host: &[f32]) -> Result<CudaTensor> {
        if host.is_empty() {
            return Ok(self.tensor(self.zeros_buf(1)?, 0));
        }
        let buf = self
            .stream
            .clone_htod(host)
            .map_err(drv("copying to the device"))?;
        Ok(self.tensor(buf, host.len()))
    }

    fn download(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        if t.len == 0 {
            return Ok(Vec::new());
        }
        self.stream
            .clone_dtoh(&t.buf.slice(0..t.len))
            .map_err(drv("copying to the host"))
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
        let layout = cell.layout();
        layout.check("params", params.len)?;
        shape.check_inputs(cell, x.len, s0.map(|s| s.len))?;
        let d = dims(shape, cell)?;
        let sp = spec(cell.kind);
        let (b, i, h, g) = (shape.batch, cell.input, cell.hidden, cell.gates());
        let (gh, s, rows) = (cell.gate_rows(), cell.state_size(), shape.rows());
        let p = &params.buf;

        // A = X W_ihᵀ over all T·B rows (the biases are added in the gate kernels).
        let mut a = self.out(rows * gh)?;
        {
            let w_ih = p.slice(layout.range(ParamBlock::WeightIh));
            let blas = self.blas()?;
            gemm_rm(
                &blas,
                rows,
                gh,
                i,
                &x.buf,
                Op::n(i),
                &w_ih,
                Op::t(i),
                0.0,
                &mut a,
            )?;
        }
        let s0buf = match s0 {
            Some(s0) => self.copy_of(&s0.buf, b * s)?,
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

        let fns = (sp.fns)(&self.k);
        let plan = self.plan(&fns.seq_fwd, g, h, h, b)?;
        let buf = FwdBuffers {
            a: &a,
            w_hh: p.slice(layout.range(ParamBlock::WeightHh)),
            b_ih: p.slice(layout.range(ParamBlock::BiasIh)),
            b_hh: p.slice(layout.range(ParamBlock::BiasHh)),
            s0: &s0buf,
            h_seq: &h_seq,
            gates: &gates,
            c_seq: &c_seq,
            s_final: &s_final,
        };
        recurrence::forward(
            &self.stream,
            &fns.seq_fwd,
            &fns.step_fwd,
            &plan,
            d,
            g,
            sp.ncache,
            cell.kind.state_parts(),
            &buf,
        )?;
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
        let layout = cell.layout();
        layout.check("params", params.len)?;
        shape.check_inputs(cell, x.len, None)?;
        cell.expect_same(&fwd.cache.cell, "seq_backward: the forward pass")?;
        if fwd.cache.shape != shape {
            return Err(memrnn_core::Error::InvalidArgument(format!(
                "seq_backward: the forward pass ran {:?}, the backward asks for {shape:?}",
                fwd.cache.shape
            )));
        }
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
        check_len("h_seq", rows * h, fwd.h_seq.len, || "[T, B, H]".into())?;
        if let Some(dh) = upstream.dh_seq {
            check_len("dh_seq", rows * h, dh.len, || {
                format!("[T={t}, B={b}, H={h}]")
            })?;
        }
        if let Some(ds) = upstream.ds_final {
            check_len("ds_final", b * s, ds.len, || format!("[B={b}, S={s}]"))?;
        }
        let p = &params.buf;

        // W_hhᵀ [H, G·H]: the backward product reads columns of W_hh as contiguous rows.
        let mut w_t = self.out(gh * h)?;
        small::transpose(
            &self.k,
            &self.stream,
            &p.slice(layout.range(ParamBlock::WeightHh)),
            gh,
            h,
            &mut w_t,
        )?;
        let dcarry = match upstream.ds_final {
            Some(ds) => self.copy_of(&ds.buf, b * s)?,
            None => self.zeros_buf(b * s)?,
        };
        let da = self.out(rows * gh)?;
        let du_own = if sp.separate_du {
            Some(self.out(rows * gh)?)
        } else {
            None
        };
        let ds0 = self.out(b * s)?;
        let fns = (sp.fns)(&self.k);
        let plan = self.plan(&fns.seq_bwd, 1, gh, h, b)?;
        {
            let buf = BwdBuffers {
                w_t: &w_t,
                h_seq: &fwd.h_seq.buf,
                gates: &fwd.cache.gates,
                c_seq: &fwd.cache.c_seq,
                s0: &fwd.cache.s0,
                dh_seq: upstream.dh_seq.map(|t| &t.buf).unwrap_or(&dcarry),
                d: &dcarry,
                da: &da,
                du: du_own.as_ref().unwrap_or(&da),
                ds0: &ds0,
                has_dh: upstream.dh_seq.is_some() as i32,
            };
            recurrence::backward(
                &self.stream,
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
        let du = du_own.as_ref().unwrap_or(&da);

        // Weight gradients over all T·B rows, bias gradients by column sums.
        let mut dparams = self.out(layout.len())?;
        let blas = self.blas()?;
        {
            let mut dw = dparams.slice_mut(layout.range(ParamBlock::WeightIh));
            gemm_rm(
                &blas,
                gh,
                i,
                rows,
                &da,
                Op::t(gh),
                &x.buf,
                Op::n(i),
                0.0,
                &mut dw,
            )?;
        }
        {
            let mut dw = dparams.slice_mut(layout.range(ParamBlock::WeightHh));
            // Step 0 against s_0's h part (row stride S), steps 1.. against h_seq.
            gemm_rm(
                &blas,
                gh,
                h,
                b,
                &du.slice(0..b * gh),
                Op::t(gh),
                &fwd.cache.s0,
                Op::n(s),
                0.0,
                &mut dw,
            )?;
            if t > 1 {
                gemm_rm(
                    &blas,
                    gh,
                    h,
                    (t - 1) * b,
                    &du.slice(b * gh..rows * gh),
                    Op::t(gh),
                    &fwd.h_seq.buf.slice(0..(t - 1) * b * h),
                    Op::n(h),
                    1.0,
                    &mut dw,
                )?;
            }
        }
        {
            let mut db = dparams.slice_mut(layout.range(ParamBlock::BiasIh));
            small::col_sum(
                &self.k,
                &self.stream,
                &da.slice(0..rows * gh),
                rows,
                gh,
                &mut db,
            )?;
        }
        {
            let mut db = dparams.slice_mut(layout.range(ParamBlock::BiasHh));
            small::col_sum(
                &self.k,
                &self.stream,
                &du.slice(0..rows * gh),
                rows,
                gh,
                &mut db,
            )?;
        }
        let dx = if want_dx {
            let mut dx = self.out(rows * i)?;
            let w_ih = p.slice(layout.range(ParamBlock::WeightIh));
            gemm_rm(
                &blas,
                rows,
                i,
                gh,
                &da,
                Op::n(gh),
                &w_ih,
                Op::n(i),
                0.0,
                &mut dx,
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
        check_points(cell, params, states, x, n)?;
        if n == 0 {
            return self.zeros(0);
        }
        // One vector–Jacobian product per state component, all N·S of them as one batch:
        // rows (k·S + j) hold state k, input k and upstream e_j; their ds_0 are J's rows.
        let rows = n
            .checked_mul(s)
            .ok_or_else(|| backend_err("N·S overflows"))?;
        let mut rep_s = self.out(rows * s)?;
        let mut rep_x = self.out(rows * i)?;
        let mut onehot = self.out(rows * s)?;
        let sms = self.dev.sms;
        small::repeat_rows(&self.k, &self.stream, sms, &states.buf, &mut rep_s, n, s, s)?;
        small::repeat_rows(&self.k, &self.stream, sms, &x.buf, &mut rep_x, n, s, i)?;
        small::one_hot(&self.k, &self.stream, sms, &mut onehot, n, s)?;
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
    /// shared memory.
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
        if !sp::supported(cell, search.k, &self.dev) {
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
        let layout = cell.layout();
        let p = &params.buf;
        let (i, gh) = (cell.input, cell.gate_rows());
        // ā = W_ih x̄ + b_ih, once per call: b_ih copied in, then a one-row cuBLAS product.
        let mut a_bar = self.out(gh)?;
        self.stream
            .memcpy_dtod(
                &p.slice(layout.range(ParamBlock::BiasIh)),
                &mut a_bar.slice_mut(0..gh),
            )
            .map_err(drv("device copy"))?;
        {
            let w_ih = p.slice(layout.range(ParamBlock::WeightIh));
            let blas = self.blas()?;
            gemm_rm(
                &blas,
                1,
                gh,
                i,
                &x.buf,
                Op::n(i),
                &w_ih,
                Op::t(i),
                1.0,
                &mut a_bar,
            )?;
        }
        let (wf_len, wb_len) = sp::packed_lens(cell);
        let mut wf = self.out(wf_len)?;
        let mut wb = self.out(wb_len)?;
        let kernels = sp::SpKernels::for_context(&self.ctx, &self.dev)?;
        let buf = sp::SearchBuffers {
            w_hh: p.slice(layout.range(ParamBlock::WeightHh)),
            b_hh: p.slice(layout.range(ParamBlock::BiasHh)),
            a_bar: &a_bar,
            wf: &mut wf,
            wb: &mut wb,
            states: &mut search.states.buf,
            m: &mut search.m.buf,
            v: &mut search.v.buf,
        };
        sp::search(
            &kernels,
            &self.stream,
            &self.dev,
            cell,
            buf,
            &mut search.status,
            cfg,
        )
    }

    fn adam_update(
        &self,
        params: &mut CudaTensor,
        grad: &CudaTensor,
        state: &mut AdamState<CudaTensor>,
        cfg: &AdamConfig,
    ) -> Result<()> {
        cfg.validate()?;
        let n = params.len;
        check_len("grad", n, grad.len, || "the parameters' length".into())?;
        check_len("adam m", n, state.m.len, || "the parameters' length".into())?;
        check_len("adam v", n, state.v.len, || "the parameters' length".into())?;
        let t = i32::try_from(state.step.saturating_add(1)).unwrap_or(i32::MAX);
        let bc1 = 1.0 - cfg.beta1.powi(t);
        let bc2 = 1.0 - cfg.beta2.powi(t);
        let sc = AdamScalars {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            step_size: cfg.lr / bc1,
            bc2_sqrt: bc2.sqrt(),
            eps: cfg.eps,
        };
        if n > 0 {
            small::adam_update(
                &self.k,
                &self.stream,
                self.dev.sms,
                &mut params.buf,
                &grad.buf,
                &mut state.m.buf,
                &mut state.v.buf,
                n,
                &sc,
            )?;
        }
        state.step += 1;
        Ok(())
    }
}

fn check_points(
    cell: &CellDims,
    params: &CudaTensor,
    states: &CudaTensor,
    x: &CudaTensor,
    n: usize,
) -> Result<()> {
    cell.layout().check("params", params.len)?;
    check_len("states", n * cell.state_size(), states.len, || {
        format!("[N={n}, S={}]", cell.state_size())
    })?;
    check_len("x", n * cell.input, x.len, || {
        format!("[N={n}, I={}]", cell.input)
    })
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
        check_points(cell, params, states, x, n)?;
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
        let mut speed = self.out(n)?;
        let mut twice_e = self.out(n * s)?;
        small::speed(
            &self.k,
            &self.stream,
            &fwd.s_final.buf,
            &states.buf,
            &mut speed,
            &mut twice_e,
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
        let mut dstate = self.out(n * s)?;
        small::sub(
            &self.k,
            &self.stream,
            self.dev.sms,
            &mut dstate,
            &g.ds0.buf,
            &twice_e.buf,
            n * s,
        )?;
        Ok((
            speed,
            Some(self.tensor(dstate, n * s)),
            want_dparams.then_some(g.dparams),
        ))
    }
}
