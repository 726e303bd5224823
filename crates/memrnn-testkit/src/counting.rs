//! [`Counting`]: a [`Backend`] that forwards every call to another and counts the host
//! transfers (`upload`, `download`: calls and f32 values), so a test can hold a training
//! loop or an evaluation to the transfers it promises. On request
//! ([`Counting::recording_states`]) it also keeps a copy of every initial state a
//! `seq_forward` is given, so a test can check what a caller carries between calls.

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::lm::{LmConfig, LmSearch};
use memrnn_core::{
    AdamConfig, AdamGroup, AdamState, Backend, CellDims, DigitTable, ReadoutCe, Result, SeqForward,
    SeqGrads, SeqShape, SeqUpstream, SpeedGrad, StepGuard, TaskBatch, TaskBatchSpec, TaskChunkSpec,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// `inner` with its uploads and downloads counted.
pub struct Counting<B> {
    pub inner: B,
    uploads: AtomicUsize,
    downloads: AtomicUsize,
    uploaded: AtomicUsize,
    downloaded: AtomicUsize,
    record_states: AtomicBool,
    /// The `s0` of every `seq_forward` since recording began (`None`: zeros).
    states: Mutex<Vec<Option<Vec<f32>>>>,
}

impl<B> Counting<B> {
    pub fn new(inner: B) -> Self {
        Counting {
            inner,
            uploads: AtomicUsize::new(0),
            downloads: AtomicUsize::new(0),
            uploaded: AtomicUsize::new(0),
            downloaded: AtomicUsize::new(0),
            record_states: AtomicBool::new(false),
            states: Mutex::new(vec![]),
        }
    }

    /// Keeps a copy of the `s0` of every `seq_forward` from now on (fetched through the
    /// inner backend's `download`, not counted as a transfer): [`Self::take_states`].
    pub fn recording_states(self) -> Self {
        self.record_states.store(true, Ordering::Relaxed);
        self
    }

    /// The initial states recorded so far, in call order (`None` where the call started
    /// from zeros), and a fresh record.
    pub fn take_states(&self) -> Vec<Option<Vec<f32>>> {
        match self.states.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// `(uploads, downloads)` since the last reset.
    pub fn transfers(&self) -> (usize, usize) {
        (
            self.uploads.load(Ordering::Relaxed),
            self.downloads.load(Ordering::Relaxed),
        )
    }

    /// `(uploaded, downloaded)` bytes since the last reset.
    pub fn bytes(&self) -> (usize, usize) {
        let f = std::mem::size_of::<f32>();
        (
            self.uploaded.load(Ordering::Relaxed) * f,
            self.downloaded.load(Ordering::Relaxed) * f,
        )
    }

    pub fn reset(&self) {
        for c in [
            &self.uploads,
            &self.downloads,
            &self.uploaded,
            &self.downloaded,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl<B: Backend> Backend for Counting<B> {
    type Tensor = B::Tensor;
    type Cache = B::Cache;

    fn name(&self) -> String {
        format!("counting({})", self.inner.name())
    }
    fn precision(&self) -> memrnn_core::Precision {
        self.inner.precision()
    }
    fn upload(&self, host: &[f32]) -> Result<B::Tensor> {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.uploaded.fetch_add(host.len(), Ordering::Relaxed);
        self.inner.upload(host)
    }
    fn download(&self, t: &B::Tensor) -> Result<Vec<f32>> {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let v = self.inner.download(t)?;
        self.downloaded.fetch_add(v.len(), Ordering::Relaxed);
        Ok(v)
    }
    fn zeros(&self, len: usize) -> Result<B::Tensor> {
        self.inner.zeros(len)
    }
    fn len(&self, t: &B::Tensor) -> usize {
        self.inner.len(t)
    }
    fn seq_forward(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        shape: SeqShape,
        x: &B::Tensor,
        s0: Option<&B::Tensor>,
    ) -> Result<SeqForward<B::Tensor, B::Cache>> {
        if self.record_states.load(Ordering::Relaxed) {
            let copy = s0.map(|s| self.inner.download(s)).transpose()?;
            match self.states.lock() {
                Ok(mut v) => v.push(copy),
                Err(poisoned) => poisoned.into_inner().push(copy),
            }
        }
        self.inner.seq_forward(cell, params, shape, x, s0)
    }
    fn seq_backward(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        shape: SeqShape,
        x: &B::Tensor,
        fwd: &SeqForward<B::Tensor, B::Cache>,
        upstream: SeqUpstream<'_, B::Tensor>,
        want_dx: bool,
    ) -> Result<SeqGrads<B::Tensor>> {
        self.inner
            .seq_backward(cell, params, shape, x, fwd, upstream, want_dx)
    }
    fn step_speed(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        states: &B::Tensor,
        x: &B::Tensor,
        n: usize,
    ) -> Result<B::Tensor> {
        self.inner.step_speed(cell, params, states, x, n)
    }
    fn step_speed_grad(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        states: &B::Tensor,
        x: &B::Tensor,
        n: usize,
        want_dparams: bool,
    ) -> Result<SpeedGrad<B::Tensor>> {
        self.inner
            .step_speed_grad(cell, params, states, x, n, want_dparams)
    }
    fn step_jacobian(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        states: &B::Tensor,
        x: &B::Tensor,
        n: usize,
    ) -> Result<B::Tensor> {
        self.inner.step_jacobian(cell, params, states, x, n)
    }
    fn step_jvp(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        states: &B::Tensor,
        x: &B::Tensor,
        v: &B::Tensor,
        n: usize,
    ) -> Result<B::Tensor> {
        self.inner.step_jvp(cell, params, states, x, v, n)
    }
    fn slow_point_iterations(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        x: &B::Tensor,
        search: &mut SlowPointSearch<B::Tensor>,
        cfg: &SlowPointConfig,
    ) -> Result<()> {
        self.inner
            .slow_point_iterations(cell, params, x, search, cfg)
    }
    fn slow_point_lm(
        &self,
        cell: &CellDims,
        params: &B::Tensor,
        x: &B::Tensor,
        search: &mut LmSearch<B::Tensor>,
        cfg: &LmConfig,
    ) -> Result<()> {
        self.inner.slow_point_lm(cell, params, x, search, cfg)
    }
    fn adam_update(
        &self,
        params: &mut B::Tensor,
        grad: &B::Tensor,
        state: &mut AdamState<B::Tensor>,
        cfg: &AdamConfig,
    ) -> Result<()> {
        self.inner.adam_update(params, grad, state, cfg)
    }
    fn readout_ce(
        &self,
        hidden: usize,
        classes: usize,
        h: &B::Tensor,
        readout: &B::Tensor,
        targets: &B::Tensor,
        weights: &B::Tensor,
    ) -> Result<ReadoutCe<B::Tensor>> {
        self.inner
            .readout_ce(hidden, classes, h, readout, targets, weights)
    }
    fn axpy(&self, y: &mut B::Tensor, alpha: f32, x: &B::Tensor) -> Result<()> {
        self.inner.axpy(y, alpha, x)
    }
    fn sum(&self, x: &B::Tensor) -> Result<B::Tensor> {
        self.inner.sum(x)
    }
    fn clip_adam_update(
        &self,
        groups: &mut [AdamGroup<'_, B::Tensor>],
        clip: Option<f32>,
        guard: Option<StepGuard<'_, B::Tensor>>,
        cfg: &AdamConfig,
    ) -> Result<B::Tensor> {
        self.inner.clip_adam_update(groups, clip, guard, cfg)
    }
    fn copy_into(
        &self,
        dst: &mut B::Tensor,
        dst_offset: usize,
        src: &B::Tensor,
        src_offset: usize,
        len: usize,
    ) -> Result<()> {
        self.inner.copy_into(dst, dst_offset, src, src_offset, len)
    }
    fn task_batch(
        &self,
        digits: &DigitTable<B::Tensor>,
        spec: &TaskBatchSpec,
    ) -> Result<TaskBatch<B::Tensor>> {
        self.inner.task_batch(digits, spec)
    }
    fn task_chunk(
        &self,
        digits: &DigitTable<B::Tensor>,
        spec: &TaskChunkSpec,
    ) -> Result<B::Tensor> {
        self.inner.task_chunk(digits, spec)
    }
    fn readout_argmax(
        &self,
        hidden: usize,
        classes: usize,
        h: &B::Tensor,
        readout: &B::Tensor,
    ) -> Result<B::Tensor> {
        self.inner.readout_argmax(hidden, classes, h, readout)
    }
    fn delay_inputs(
        &self,
        seed: u64,
        step: u64,
        n: usize,
        pixels: usize,
        noise_mean: f32,
        noise_std: f32,
    ) -> Result<B::Tensor> {
        self.inner
            .delay_inputs(seed, step, n, pixels, noise_mean, noise_std)
    }
    fn adam_state(&self, len: usize) -> Result<AdamState<B::Tensor>> {
        self.inner.adam_state(len)
    }
}
