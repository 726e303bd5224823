//! The recurrence launches shared by the three cells (`kernels/common.cuh`): launch
//! planning (tile sizes, whether W_hh's slices fit on chip in the weights' storage type),
//! the persistent cooperative launch, and the per-step fallback.

use crate::device::{backend_err, Device, LaunchDims, View};
use crate::kernels::{
    BwdArgs, DevPtr, FwdArgs, Kernel, KernelParams, RecBwdParams, RecFwdParams, TileArgs,
};
use memrnn_core::Result;

/// Threads per block of every recurrence kernel (`MR_THREADS` in common.cuh).
pub(crate) const THREADS: u32 = 256;
/// Batch rows per thread item (`MR_ROWS`).
pub(crate) const ROWS: usize = 4;

/// Which kernels run the recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecurrencePath {
    /// Persistent when W_hh's slices fit on chip and every block can be co-resident,
    /// otherwise one launch per step.
    #[default]
    Auto,
    /// Always the persistent cooperative kernel; an error when it cannot run.
    Persistent,
    /// Always one launch per step (weights read from L2).
    Step,
}

/// Tile sizes and launch shape of one recurrence (see common.cuh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub jt: i32,
    pub bt: i32,
    pub kc: i32,
    pub ks: i32,
    pub blocks: u32,
    pub smem: u32,
    pub persistent: bool,
}

pub(crate) fn ceil4(v: usize) -> usize {
    v.div_ceil(ROWS) * ROWS
}

/// Lanes per item: a power of two ≤ 32 that keeps `items · ks ≤ THREADS` and `ks ≤ K`.
pub(crate) fn lanes(items: usize, k: usize) -> i32 {
    let mut ks = 32usize;
    while ks > 1 && (items * ks > THREADS as usize || ks > k) {
        ks /= 2;
    }
    ks as i32
}

/// Bytes of shared memory that `n` weights of `w_size` bytes each take in a persistent
/// kernel, padded to a whole float so that the staged input after them is aligned
/// (`weight_floats` in common.cuh).
fn weight_smem_bytes(n: usize, w_size: usize) -> usize {
    (n * w_size).div_ceil(4) * 4
}

/// Plans a recurrence with `go` products of length `k` per (unit, row) over `h` units and
/// `b` rows, the weights stored in `w_size` bytes each (4 for f32, 2 for bf16 and f16: a
/// half-width persistent kernel keeps twice the weights on chip). `persistent_fn` is the
/// cooperative kernel (for its occupancy).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<P: KernelParams>(
    device: &Device,
    persistent_fn: &Kernel<P>,
    go: usize,
    k: usize,
    h: usize,
    b: usize,
    w_size: usize,
    want: RecurrencePath,
) -> Result<Plan> {
    let too_big = |v: usize| v > i32::MAX as usize / 8;
    if too_big(k) || too_big(h) || too_big(b) || too_big(go * k * ROWS) {
        return Err(backend_err(format!(
            "recurrence sizes (K {k}, H {h}, B {b}) exceed the kernels' 32-bit indexing"
        )));
    }
    let dev = device.info();
    if want != RecurrencePath::Step {
        if let Some(p) = plan_persistent(device, persistent_fn, go, k, h, b, w_size)? {
            return Ok(p);
        }
        if want == RecurrencePath::Persistent {
            return Err(backend_err(format!(
                "the persistent recurrence cannot run here (H {h}, B {b}, {go}×{k} weights \
                 of {w_size} bytes per unit; {} SMs, {} bytes of shared memory per block{}): use \
                 RecurrencePath::Auto or Step",
                dev.sms,
                dev.max_smem_optin,
                if dev.cooperative {
                    ""
                } else {
                    ", no cooperative launch"
                }
            )));
        }
    }
    Ok(plan_step(h, b, k))
}

fn plan_step(h: usize, b: usize, k: usize) -> Plan {
    let bt = b.min(8);
    let jt = h.min(32);
    let kc = k.min(1024);
    let blocks = h.div_ceil(jt) * b.div_ceil(bt);
    let items = jt * bt.div_ceil(ROWS);
    Plan {
        jt: jt as i32,
        bt: bt as i32,
        kc: kc as i32,
        ks: lanes(items, k),
        blocks: blocks as u32,
        smem: (ceil4(bt) * kc * 4) as u32,
        persistent: false,
    }
}

fn plan_persistent<P: KernelParams>(
    device: &Device,
    f: &Kernel<P>,
    go: usize,
    k: usize,
    h: usize,
    b: usize,
    w_size: usize,
) -> Result<Option<Plan>> {
    let dev = device.info();
    if !dev.cooperative {
        return Ok(None);
    }
    let sms = dev.sms as usize;
    let limit = dev.max_smem_optin as usize;
    let kp = k | 1;
    let mut best: Option<(usize, Plan)> = None;
    let mut last_bt = 0;
    for nb in 1..=b.min(sms) {
        let bt = b.div_ceil(nb);
        if bt == last_bt {
            continue;
        }
        last_bt = bt;
        let nb = b.div_ceil(bt);
        let max_nj = sms / nb;
        if max_nj == 0 {
            break;
        }
        let jt = h.div_ceil(max_nj);
        let nj = h.div_ceil(jt);
        let w_bytes = weight_smem_bytes(go * jt * kp, w_size);
        let btp = ceil4(bt);
        let min_stage = btp * k.min(32) * 4;
        if w_bytes + min_stage > limit {
            continue;
        }
        let mut kc = ((limit - w_bytes) / (btp * 4)).min(k);
        if kc < k {
            kc = (kc / 32 * 32).max(32);
        }
        let smem = w_bytes + btp * kc * 4;
        let blocks = nj * nb;
        let per_sm = device.occupancy(f, THREADS, smem)?;
        if per_sm * sms < blocks {
            continue;
        }
        // FMAs per block per step, plus the staging and the block barriers per chunk.
        let cost = crate::ops::ensemble::block_cost(go, k, jt, bt, kc);
        let items = jt * bt.div_ceil(ROWS);
        let p = Plan {
            jt: jt as i32,
            bt: bt as i32,
            kc: kc as i32,
            ks: lanes(items, k),
            blocks: blocks as u32,
            smem: smem as u32,
            persistent: true,
        };
        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
            best = Some((cost, p));
        }
    }
    Ok(best.map(|(_, p)| p))
}

impl Plan {
    pub(crate) fn dims(&self) -> LaunchDims {
        LaunchDims::linear(self.blocks, THREADS, self.smem).cooperative(self.persistent)
    }

    pub(crate) fn tile(&self) -> TileArgs {
        TileArgs {
            jt: self.jt,
            bt: self.bt,
            kc: self.kc,
            ks: self.ks,
        }
    }
}

/// The sizes every recurrence launch passes after its buffers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub t: i32,
    pub b: i32,
    pub h: i32,
}

/// The recurrent weights as a kernel reads them: f32 (the master parameters, for the
/// `_f32` kernels) or the bits of a bf16 / f16 copy (for the `_bf16` / `_f16` kernels).
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    F32(View<'a, f32>),
    Half(View<'a, u16>),
}

impl Weights<'_> {
    fn len(&self) -> usize {
        match self {
            Weights::F32(v) => v.len(),
            Weights::Half(v) => v.len(),
        }
    }

    fn ptr(&self, dev: &Device) -> Result<DevPtr> {
        match self {
            Weights::F32(v) => dev.ptr(*v),
            Weights::Half(v) => dev.ptr(*v),
        }
    }
}

/// The buffers of a forward recurrence (`mr::FwdArgs`).
pub(crate) struct FwdBuffers<'a> {
    pub a: View<'a, f32>,
    pub w_hh: Weights<'a>,
    pub b_ih: View<'a, f32>,
    pub b_hh: View<'a, f32>,
    pub s0: View<'a, f32>,
    pub h_seq: View<'a, f32>,
    pub gates: View<'a, f32>,
    pub c_seq: View<'a, f32>,
    pub s_final: View<'a, f32>,
}

/// The buffers of a backward recurrence (`mr::BwdArgs`).
pub(crate) struct BwdBuffers<'a> {
    pub w_t: Weights<'a>,
    pub h_seq: View<'a, f32>,
    pub gates: View<'a, f32>,
    pub c_seq: View<'a, f32>,
    pub s0: View<'a, f32>,
    pub dh_seq: View<'a, f32>,
    pub d: View<'a, f32>,
    pub da: View<'a, f32>,
    pub du: View<'a, f32>,
    pub ds0: View<'a, f32>,
    pub has_dh: i32,
}

fn check(what: &str, got: usize, want: usize) -> Result<()> {
    if got < want {
        Err(backend_err(format!(
            "internal: {what} holds {got} elements, the recurrence needs {want}"
        )))
    } else {
        Ok(())
    }
}

/// The forward recurrence's kernel arguments, every buffer checked against the extent
/// the kernel indexes for `d` (the layout table of common.cuh).
pub(crate) fn fwd_args(
    dev: &Device,
    d: Dims,
    g: usize,
    ncache: usize,
    state_parts: usize,
    buf: &FwdBuffers<'_>,
) -> Result<FwdArgs> {
    let (t, b, h) = (d.t as usize, d.b as usize, d.h as usize);
    let s = state_parts * h;
    check("A", buf.a.len(), t * b * g * h)?;
    check("W_hh", buf.w_hh.len(), g * h * h)?;
    check("b_ih", buf.b_ih.len(), g * h)?;
    check("b_hh", buf.b_hh.len(), g * h)?;
    check("s0", buf.s0.len(), b * s)?;
    check("h_seq", buf.h_seq.len(), t * b * h)?;
    check("gates", buf.gates.len(), t * b * ncache * h)?;
    if state_parts == 2 {
        check("c_seq", buf.c_seq.len(), t * b * h)?;
    }
    check("s_final", buf.s_final.len(), b * s)?;
    Ok(FwdArgs {
        a: dev.ptr(buf.a)?,
        w_hh: buf.w_hh.ptr(dev)?,
        b_ih: dev.ptr(buf.b_ih)?,
        b_hh: dev.ptr(buf.b_hh)?,
        s0: dev.ptr(buf.s0)?,
        h_seq: dev.ptr(buf.h_seq)?,
        gates: dev.ptr(buf.gates)?,
        c_seq: dev.ptr(buf.c_seq)?,
        s_final: dev.ptr(buf.s_final)?,
        t: d.t,
        b: d.b,
        h: d.h,
    })
}

/// Runs the forward recurrence: one cooperative launch, or `T` step launches.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    dev: &Device,
    persistent_fn: &Kernel<RecFwdParams>,
    step_fn: &Kernel<RecFwdParams>,
    p: &Plan,
    d: Dims,
    g: usize,
    ncache: usize,
    state_parts: usize,
    buf: &FwdBuffers<'_>,
) -> Result<()> {
    let a = fwd_args(dev, d, g, ncache, state_parts, buf)?;
    // Every buffer holds the extent the kernel indexes for these dims (fwd_args); the
    // plan's dynamic shared memory is what the kernel carves up for its tile sizes, and a
    // persistent plan passed the occupancy check.
    let tile = p.tile();
    if p.persistent {
        return dev.launch(persistent_fn, p.dims(), RecFwdParams { a, tile, t: 0 });
    }
    for ts in 0..d.t {
        dev.launch(step_fn, p.dims(), RecFwdParams { a, tile, t: ts })?;
    }
    Ok(())
}

/// The backward recurrence's kernel arguments, every buffer checked against the extent
/// the kernel indexes for `d`.
pub(crate) fn bwd_args(
    dev: &Device,
    d: Dims,
    g: usize,
    ncache: usize,
    state_parts: usize,
    buf: &BwdBuffers<'_>,
) -> Result<BwdArgs> {
    let (t, b, h) = (d.t as usize, d.b as usize, d.h as usize);
    let s = state_parts * h;
    check("W_hh^T", buf.w_t.len(), g * h * h)?;
    check("h_seq", buf.h_seq.len(), t * b * h)?;
    check("gates", buf.gates.len(), t * b * ncache * h)?;
    if state_parts == 2 {
        check("c_seq", buf.c_seq.len(), t * b * h)?;
    }
    check("s0", buf.s0.len(), b * s)?;
    if buf.has_dh != 0 {
        check("dh_seq", buf.dh_seq.len(), t * b * h)?;
    }
    check("D", buf.d.len(), b * s)?;
    check("dA", buf.da.len(), t * b * g * h)?;
    check("dU", buf.du.len(), t * b * g * h)?;
    check("ds0", buf.ds0.len(), b * s)?;
    Ok(BwdArgs {
        w_t: buf.w_t.ptr(dev)?,
        h_seq: dev.ptr(buf.h_seq)?,
        gates: dev.ptr(buf.gates)?,
        c_seq: dev.ptr(buf.c_seq)?,
        s0: dev.ptr(buf.s0)?,
        dh_seq: dev.ptr(buf.dh_seq)?,
        d: dev.ptr(buf.d)?,
        da: dev.ptr(buf.da)?,
        du: dev.ptr(buf.du)?,
        ds0: dev.ptr(buf.ds0)?,
        t: d.t,
        b: d.b,
        h: d.h,
        has_dh: buf.has_dh,
    })
}

/// Runs the backward recurrence: one cooperative launch, or iterations `T−1 … −1`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dev: &Device,
    persistent_fn: &Kernel<RecBwdParams>,
    step_fn: &Kernel<RecBwdParams>,
    p: &Plan,
    d: Dims,
    g: usize,
    ncache: usize,
    state_parts: usize,
    buf: &BwdBuffers<'_>,
) -> Result<()> {
    let a = bwd_args(dev, d, g, ncache, state_parts, buf)?;
    // As in `forward`: extents checked by bwd_args, shared memory and occupancy by the plan.
    let tile = p.tile();
    if p.persistent {
        return dev.launch(persistent_fn, p.dims(), RecBwdParams { a, tile, t: 0 });
    }
    for ts in (-1..d.t).rev() {
        dev.launch(step_fn, p.dims(), RecBwdParams { a, tile, t: ts })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_plans_cover_every_unit_and_row() {
        for (h, b, k) in [(1, 1, 1), (200, 128, 600), (1024, 64, 4096), (7, 3, 21)] {
            let p = plan_step(h, b, k);
            let nj = h.div_ceil(p.jt as usize);
            let nb = b.div_ceil(p.bt as usize);
            assert_eq!(p.blocks as usize, nj * nb);
            assert!(p.ks >= 1 && p.ks <= 32 && (p.ks & (p.ks - 1)) == 0);
            assert!(p.kc as usize <= k && p.kc >= 1);
            assert!(p.smem <= 48 * 1024 * 4);
        }
    }

    /// Half-width weights take half the shared memory: on an H100-like device the
    /// planner keeps on chip in bf16/f16 what does not fit in f32, and counts the padded
    /// weight bytes exactly as common.cuh's `weight_floats` lays them out.
    #[cfg(feature = "sim")]
    #[test]
    fn half_width_weights_plan_persistent_where_f32_cannot() {
        use crate::device::sim::SimDevice;
        use crate::kernels::{GRU_SEQ_BWD_BF16, GRU_SEQ_FWD, GRU_SEQ_FWD_F16, LSTM_SEQ_FWD};
        let dev = Device::Sim(SimDevice::new(crate::SimProps::h100_like()).expect("sim"));
        let auto = RecurrencePath::Auto;
        // GRU, H 2048, B 64 (the `wide` batch): 16 units per block of 132 need
        // 3·16·2049 weights, 393 KB in f32 (over the 227 KB limit), 197 KB in half.
        let (g, h, b) = (3, 2048, 64);
        let f32_plan = plan(&dev, &GRU_SEQ_FWD, g, h, h, b, 4, auto).expect("plan");
        let half_plan = plan(&dev, &GRU_SEQ_FWD_F16, g, h, h, b, 2, auto).expect("plan");
        assert!(!f32_plan.persistent, "{f32_plan:?}");
        assert!(half_plan.persistent, "{half_plan:?}");
        let (jt, kp) = (half_plan.jt as usize, h | 1);
        let stage = ceil4(half_plan.bt as usize) * half_plan.kc as usize * 4;
        assert_eq!(
            half_plan.smem as usize,
            weight_smem_bytes(g * jt * kp, 2) + stage
        );
        assert!(half_plan.smem as usize <= dev.info().max_smem_optin as usize);
        let forced = plan(
            &dev,
            &GRU_SEQ_FWD,
            g,
            h,
            h,
            b,
            4,
            RecurrencePath::Persistent,
        );
        assert!(forced.is_err(), "f32 cannot be forced persistent here");
        // Its backward (one product of length 3H per unit) likewise.
        let bwd = plan(&dev, &GRU_SEQ_BWD_BF16, 1, g * h, h, b, 2, auto).expect("plan");
        assert!(bwd.persistent, "{bwd:?}");
        // TARGETS.md's `wide` shape (H 1024, B 64) is persistent in both: half precision
        // frees shared memory for larger K chunks, never a worse plan.
        let wide32 = plan(&dev, &LSTM_SEQ_FWD, 4, 1024, 1024, 64, 4, auto).expect("plan");
        let wide16 = plan(&dev, &LSTM_SEQ_FWD, 4, 1024, 1024, 64, 2, auto).expect("plan");
        eprintln!("wide LSTM forward plans: f32 {wide32:?}, half {wide16:?}");
        assert!(wide32.persistent && wide16.persistent);
        assert!(wide16.kc >= wide32.kc, "{wide16:?} vs {wide32:?}");
        // An odd weight count pads to a whole float.
        assert_eq!(weight_smem_bytes(3, 2), 8);
        assert_eq!(weight_smem_bytes(3, 4), 12);
    }

    #[test]
    fn lanes_respect_block_and_k() {
        assert_eq!(lanes(1, 1), 1);
        assert_eq!(lanes(8, 200), 32);
        assert_eq!(lanes(64, 200), 4);
        assert_eq!(lanes(300, 200), 1);
        assert_eq!(lanes(1, 5), 4);
    }
}
