//! Launchers for `kernels/slowpoints.cu`: the batched slow-point search (MATH.md §4), many
//! Adam iterations per launch on tiles of candidates, no grid-wide sync.
//!
//! [`search`] packs `W_hh` once per call (`W_hhᵀ` for the forward product, `W_hh` for the
//! vector–Jacobian product, both zero-padded), uploads the per-candidate status once, and
//! then loops: compact the active candidates on the device (`slowpoints_compact_f32`, a
//! 4-byte count comes back), launch up to [`ITERS_PER_LAUNCH`] iterations on tiles of the
//! compacted list, until no candidate is active. The status comes back once, at the end.
//! States and Adam moments never leave the device.

use crate::device::{backend_err, drv, DeviceInfo};
use crate::ptx;
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use memrnn_core::backend::{CandidateStatus, SlowPointConfig, StopReason};
use memrnn_core::{CellDims, CellKind, Result};
use std::sync::{Arc, Mutex};

/// Threads per block of the search kernels (`SP_THREADS`).
const THREADS: u32 = 256;
/// Candidates per tile of `<cell>_slowpoints_f32`.
const WIDE: usize = 32;
/// Candidates per tile of `<cell>_slowpoints_narrow_f32`.
const NARROW: usize = 8;
/// Iterations per launch: between launches the active candidates are compacted (so tiles
/// stay full as candidates stop) and the host reads one count.
pub(crate) const ITERS_PER_LAUNCH: u32 = 1000;

/// The search kernels of one context.
pub(crate) struct SpKernels {
    /// rnn, gru, lstm with tiles of 32.
    wide: [CudaFunction; 3],
    /// rnn, gru, lstm with tiles of 8.
    narrow: [CudaFunction; 3],
    pack: CudaFunction,
    compact: CudaFunction,
}

fn cell_index(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn => 0,
        CellKind::Gru => 1,
        CellKind::Lstm => 2,
    }
}

impl SpKernels {
    fn load(ctx: &Arc<CudaContext>, max_smem: i32) -> Result<SpKernels> {
        let m: Arc<CudaModule> = ctx
            .load_module(Ptx::from_src(ptx::SLOWPOINTS))
            .map_err(|e| {
                backend_err(format!(
                "the driver rejected the embedded PTX slowpoints.ptx ({e:?}); it was built for \
                 sm_90 with nvcc 13.0 (see crates/memrnn-cuda/ptx/MANIFEST): this needs a \
                 Hopper-class GPU and a driver for CUDA 13.0 or newer (R580+)"
            ))
            })?;
        let f = |name: &str| -> Result<CudaFunction> {
            m.load_function(name)
                .map_err(|e| backend_err(format!("kernel {name} missing from its module: {e:?}")))
        };
        let big = |name: &str| -> Result<CudaFunction> {
            let k = f(name)?;
            k.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                max_smem,
            )
            .map_err(drv("raising the dynamic shared-memory limit"))?;
            Ok(k)
        };
        Ok(SpKernels {
            wide: [
                big("rnn_slowpoints_f32")?,
                big("gru_slowpoints_f32")?,
                big("lstm_slowpoints_f32")?,
            ],
            narrow: [
                big("rnn_slowpoints_narrow_f32")?,
                big("gru_slowpoints_narrow_f32")?,
                big("lstm_slowpoints_narrow_f32")?,
            ],
            pack: f("slowpoints_pack_f32")?,
            compact: f("slowpoints_compact_f32")?,
        })
    }

    /// The kernels of `ctx`, loaded on first use (once per context).
    pub(crate) fn for_context(ctx: &Arc<CudaContext>, dev: &DeviceInfo) -> Result<Arc<SpKernels>> {
        type Cache = Mutex<Vec<(usize, Arc<SpKernels>)>>;
        static CACHE: Cache = Mutex::new(Vec::new());
        let key = ctx.cu_ctx() as usize;
        let mut cache = CACHE
            .lock()
            .map_err(|_| backend_err("slow-point module cache poisoned by an earlier panic"))?;
        if let Some((_, k)) = cache.iter().find(|(c, _)| *c == key) {
            return Ok(k.clone());
        }
        let max_smem = i32::try_from(dev.max_smem_optin).unwrap_or(i32::MAX);
        let k = Arc::new(SpKernels::load(ctx, max_smem)?);
        cache.push((key, k.clone()));
        Ok(k)
    }
}

fn ceil_to(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

/// `(wf, wb)` lengths: `W_hhᵀ` as `[ceil8(H), ceil32(G·H)]`, `W_hh` as
/// `[ceil8(G·H), ceil32(H)]`.
pub(crate) fn packed_lens(cell: &CellDims) -> (usize, usize) {
    let (h, gh) = (cell.hidden, cell.gate_rows());
    (
        ceil_to(h, 8) * ceil_to(gh, 32),
        ceil_to(gh, 8) * ceil_to(h, 32),
    )
}

/// Dynamic shared memory of a tile of `ct` candidates (the layout in slowpoints.cu).
fn smem_bytes(cell: &CellDims, ct: usize) -> usize {
    let (h, gh) = (cell.hidden, cell.gate_rows());
    let lstm_rows = if cell.kind == CellKind::Lstm {
        2 * h
    } else {
        0
    };
    4 * ct * (ceil_to(h, 8) + ceil_to(gh, 32) + h + lstm_rows) + 4 * THREADS as usize + 4 * 8 * ct
}

/// Whether the fused search can run this cell here (some tile fits in shared memory and
/// the sizes fit the kernels' 32-bit counts); otherwise the caller uses the default.
pub(crate) fn supported(cell: &CellDims, k: usize, dev: &DeviceInfo) -> bool {
    let s = cell.state_size();
    let small = |v: usize| v < i32::MAX as usize / 8;
    smem_bytes(cell, NARROW) <= dev.max_smem_optin as usize
        && small(k.saturating_mul(s).saturating_mul(4))
        && small(cell.gate_rows().saturating_mul(cell.hidden))
}

/// Tile size for `n` active candidates: 32 when there are enough to give at least half the
/// SMs a full tile (each W_hh element then serves 32 candidates per L2 read), else 8 (more
/// blocks in flight); whichever fits.
fn tile_for(cell: &CellDims, n: usize, dev: &DeviceInfo) -> usize {
    let limit = dev.max_smem_optin as usize;
    let wide_fits = smem_bytes(cell, WIDE) <= limit;
    if wide_fits && n >= 16 * dev.sms as usize {
        WIDE
    } else if smem_bytes(cell, NARROW) <= limit {
        NARROW
    } else {
        WIDE
    }
}

fn need(what: &str, got: usize, want: usize) -> Result<()> {
    if got < want {
        Err(backend_err(format!(
            "internal: {what} holds {got} elements, the slow-point search needs {want}"
        )))
    } else {
        Ok(())
    }
}

fn stop_code(s: StopReason) -> u32 {
    match s {
        StopReason::Running => 0,
        StopReason::Converged => 1,
        StopReason::Stalled => 2,
        StopReason::MaxIters => 3,
        StopReason::NonFinite => 4,
    }
}

fn stop_of(code: u32) -> Result<StopReason> {
    Ok(match code {
        0 => StopReason::Running,
        1 => StopReason::Converged,
        2 => StopReason::Stalled,
        3 => StopReason::MaxIters,
        4 => StopReason::NonFinite,
        c => {
            return Err(backend_err(format!(
                "internal: the slow-point kernel wrote stop code {c}"
            )))
        }
    })
}

/// The device buffers of one search call.
pub(crate) struct SearchBuffers<'a> {
    /// `W_hh [G·H, H]`.
    pub w_hh: CudaView<'a, f32>,
    /// `b_hh [G·H]`.
    pub b_hh: CudaView<'a, f32>,
    /// `ā = W_ih x̄ + b_ih`, `[G·H]`.
    pub a_bar: &'a CudaSlice<f32>,
    /// Scratch for the packed weights, [`packed_lens`] long (written here, every element).
    pub wf: &'a mut CudaSlice<f32>,
    pub wb: &'a mut CudaSlice<f32>,
    /// `[K, S]` each, updated in place.
    pub states: &'a mut CudaSlice<f32>,
    pub m: &'a mut CudaSlice<f32>,
    pub v: &'a mut CudaSlice<f32>,
}

/// Runs the search on every active candidate of `status` (see
/// `Backend::slow_point_iterations`); the caller checked `cfg` and the lengths against
/// `cell` and `K = status.len()`, and that [`supported`] holds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn search(
    k: &SpKernels,
    stream: &Arc<CudaStream>,
    dev: &DeviceInfo,
    cell: &CellDims,
    buf: SearchBuffers<'_>,
    status: &mut [CandidateStatus],
    cfg: &SlowPointConfig,
) -> Result<()> {
    let kc = status.len();
    let (h, gh, s) = (cell.hidden, cell.gate_rows(), cell.state_size());
    if kc == 0 {
        return Ok(());
    }
    if !supported(cell, kc, dev) {
        return Err(backend_err(format!(
            "internal: the fused slow-point search cannot run H {h} with {kc} candidates here"
        )));
    }
    let (wf_len, wb_len) = packed_lens(cell);
    need("W_hh", buf.w_hh.len(), gh * h)?;
    need("b_hh", buf.b_hh.len(), gh)?;
    need("a_bar", buf.a_bar.len(), gh)?;
    need("packed W_hhT", buf.wf.len(), wf_len)?;
    need("packed W_hh", buf.wb.len(), wb_len)?;
    need("states", buf.states.len(), kc * s)?;
    need("adam m", buf.m.len(), kc * s)?;
    need("adam v", buf.v.len(), kc * s)?;
    let (h32, gh32, k32) = (h as i32, gh as i32, kc as i32);

    // Pack the weights (every element of wf and wb, pads zero).
    {
        let total = wf_len + wb_len;
        let blocks = total
            .div_ceil(THREADS as usize)
            .clamp(1, dev.sms as usize * 16);
        let cfg1 = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(&k.pack);
        b.arg(&buf.w_hh)
            .arg(&mut *buf.wf)
            .arg(&mut *buf.wb)
            .arg(&h32)
            .arg(&gh32);
        // SAFETY: w_hh holds G·H·H elements, wf and wb the padded lengths of packed_lens
        // (checked above); the kernel reads w_hh[o·H + k] for o < G·H, k < H only and
        // writes exactly wf[0 .. ceil8(H)·ceil32(G·H)) and wb[0 .. ceil8(G·H)·ceil32(H)).
        unsafe { b.launch(cfg1) }.map_err(drv("slowpoints_pack_f32"))?;
    }

    // Status up once: [K][4] u32 (iters, speed bits, window bits, stop code).
    let host: Vec<u32> = status
        .iter()
        .flat_map(|st| {
            [
                st.iters,
                st.speed_sq.to_bits(),
                st.window_speed_sq.to_bits(),
                stop_code(st.stop),
            ]
        })
        .collect();
    let mut dstatus = stream
        .clone_htod(&host)
        .map_err(drv("uploading the slow-point status"))?;
    // SAFETY: i32 has no invalid bit patterns; the compaction kernel writes idx[0..count)
    // before any search kernel reads it, and nothing reads beyond count.
    let mut idx = unsafe { stream.alloc::<i32>(kc) }.map_err(drv("allocating device memory"))?;
    let mut count = stream
        .alloc_zeros::<i32>(1)
        .map_err(drv("allocating device memory"))?;

    let max_launches = (cfg.max_iters / ITERS_PER_LAUNCH) as usize + 3;
    let mut first = true;
    let mut launches = 0usize;
    loop {
        {
            let with_max = first as i32;
            let cfg1 = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (1024, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = stream.launch_builder(&k.compact);
            b.arg(&dstatus)
                .arg(&k32)
                .arg(&with_max)
                .arg(&mut idx)
                .arg(&mut count);
            // SAFETY: status holds 4·K u32 and idx K i32 (allocated above for K = kc); the
            // single block of 1024 threads reads status[4i + 3] for i < K and writes idx at
            // positions below the number of active candidates ≤ K, and count[0].
            unsafe { b.launch(cfg1) }.map_err(drv("slowpoints_compact_f32"))?;
        }
        first = false;
        let n = stream
            .clone_dtoh(&count)
            .map_err(drv("reading the active-candidate count"))?[0];
        let n = usize::try_from(n).unwrap_or(0).min(kc);
        if n == 0 {
            break;
        }
        launches += 1;
        if launches > max_launches {
            return Err(backend_err(format!(
                "internal: the slow-point search still has {n} active candidates after \
                 {max_launches} launches of {ITERS_PER_LAUNCH} iterations (max_iters {})",
                cfg.max_iters
            )));
        }
        let ct = tile_for(cell, n, dev);
        let f = if ct == WIDE {
            &k.wide[cell_index(cell.kind)]
        } else {
            &k.narrow[cell_index(cell.kind)]
        };
        let launch = LaunchConfig {
            grid_dim: (n.div_ceil(ct) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem_bytes(cell, ct) as u32,
        };
        let (n32, iters) = (n as i32, ITERS_PER_LAUNCH as i32);
        let a = &cfg.adam;
        let mut b = stream.launch_builder(f);
        b.arg(&*buf.wf)
            .arg(&*buf.wb)
            .arg(buf.a_bar)
            .arg(&buf.b_hh)
            .arg(&mut *buf.states)
            .arg(&mut *buf.m)
            .arg(&mut *buf.v)
            .arg(&mut dstatus)
            .arg(&idx)
            .arg(&n32)
            .arg(&h32)
            .arg(&iters);
        b.arg(&a.lr)
            .arg(&a.beta1)
            .arg(&a.beta2)
            .arg(&a.eps)
            .arg(&cfg.tol)
            .arg(&cfg.stall_rel)
            .arg(&cfg.max_iters)
            .arg(&cfg.stall_window);
        // SAFETY: the argument list matches `<cell>_slowpoints[_narrow]_f32` (kernels/
        // slowpoints.cu) in order and type. Every buffer holds what the kernel indexes
        // for this cell (checked above): wf / wb the padded packed weights, a_bar and b_hh
        // G·H, states / m / v K·S, status 4·K; idx[0..n) was written by the compaction
        // just before on the same stream and holds distinct candidates < K, so each
        // candidate's rows are touched by exactly one block. The dynamic shared memory is
        // smem_bytes(cell, ct), the kernel's own layout for this tile, within the opt-in
        // limit raised at load time (tile_for only picks a tile that fits; `supported`
        // was checked). No grid-wide sync: blocks are independent.
        unsafe { b.launch(launch) }.map_err(drv("slow-point search kernel"))?;
    }

    let back = stream
        .clone_dtoh(&dstatus)
        .map_err(drv("downloading the slow-point status"))?;
    for (st, w) in status.iter_mut().zip(back.chunks_exact(4)) {
        st.iters = w[0];
        st.speed_sq = f32::from_bits(w[1]);
        st.window_speed_sq = f32::from_bits(w[2]);
        st.stop = stop_of(w[3])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(smem: u32) -> DeviceInfo {
        DeviceInfo {
            sms: 132,
            max_smem_optin: smem,
            cooperative: true,
        }
    }

    #[test]
    fn paper_shape_tiles_fit_an_h100() {
        let h100 = dev(232_448);
        for kind in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
            let cell = CellDims::new(kind, 785, 200).expect("dims");
            assert!(smem_bytes(&cell, WIDE) <= 232_448, "{kind:?}");
            assert_eq!(tile_for(&cell, 4096, &h100), WIDE);
            assert_eq!(tile_for(&cell, 300, &h100), NARROW);
            assert!(supported(&cell, 4096, &h100));
        }
        let huge = CellDims::new(CellKind::Lstm, 4, 4096).expect("dims");
        assert!(!supported(&huge, 10, &h100));
    }

    #[test]
    fn packed_lengths_are_padded() {
        let cell = CellDims::new(CellKind::Gru, 3, 7).expect("dims");
        // W_hhT [8, 32], W_hh [24, 32].
        assert_eq!(packed_lens(&cell), (8 * 32, 24 * 32));
        for s in [
            StopReason::Running,
            StopReason::Converged,
            StopReason::Stalled,
            StopReason::MaxIters,
            StopReason::NonFinite,
        ] {
            assert_eq!(stop_of(stop_code(s)).expect("code"), s);
        }
    }
}
