//! Launchers for `kernels/slowpoints.cu`: the batched slow-point search (MATH.md §4), many
//! Adam iterations per launch on tiles of candidates, no grid-wide sync.
//!
//! [`search`] packs `W_hh` once per call (`W_hhᵀ` for the forward product, `W_hh` for the
//! vector–Jacobian product, both zero-padded), uploads the per-candidate status once, and
//! then loops: compact the active candidates on the device (`slowpoints_compact_f32`, a
//! 4-byte count comes back), launch up to [`ITERS_PER_LAUNCH`] iterations on tiles of the
//! compacted list, until no candidate is active. The status comes back once, at the end.
//! States and Adam moments never leave the device.

use crate::device::{backend_err, Device, DeviceInfo, LaunchDims, View};
use crate::kernels::{self, CompactParams, Kernel, PackParams, SlowPointsParams};
use memrnn_core::backend::{CandidateStatus, SlowPointConfig, StopReason};
use memrnn_core::{CellDims, CellKind, Result};

/// Threads per block of the search kernels (`SP_THREADS`).
const THREADS: u32 = 256;
/// Candidates per tile of `<cell>_slowpoints_f32`.
const WIDE: usize = 32;
/// Candidates per tile of `<cell>_slowpoints_narrow_f32`.
const NARROW: usize = 8;
/// Iterations per launch: between launches the active candidates are compacted (so tiles
/// stay full as candidates stop) and the host reads one count.
pub(crate) const ITERS_PER_LAUNCH: u32 = 1000;

/// The search kernel of `kind` with tiles of `ct` candidates.
fn search_kernel(kind: CellKind, ct: usize) -> &'static Kernel<SlowPointsParams> {
    match (kind, ct == WIDE) {
        (CellKind::Rnn, true) => &kernels::RNN_SLOWPOINTS,
        (CellKind::Gru, true) => &kernels::GRU_SLOWPOINTS,
        (CellKind::Lstm, true) => &kernels::LSTM_SLOWPOINTS,
        (CellKind::Rnn, false) => &kernels::RNN_SLOWPOINTS_NARROW,
        (CellKind::Gru, false) => &kernels::GRU_SLOWPOINTS_NARROW,
        (CellKind::Lstm, false) => &kernels::LSTM_SLOWPOINTS_NARROW,
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
    pub w_hh: View<'a, f32>,
    /// `b_hh [G·H]`.
    pub b_hh: View<'a, f32>,
    /// `ā = W_ih x̄ + b_ih`, `[G·H]`.
    pub a_bar: View<'a, f32>,
    /// Scratch for the packed weights, [`packed_lens`] long (written here, every element).
    pub wf: View<'a, f32>,
    pub wb: View<'a, f32>,
    /// `[K, S]` each, updated in place.
    pub states: View<'a, f32>,
    pub m: View<'a, f32>,
    pub v: View<'a, f32>,
}

/// Runs the search on every active candidate of `status` (see
/// `Backend::slow_point_iterations`); the caller checked `cfg` and the lengths against
/// `cell` and `K = status.len()`, and that [`supported`] holds.
pub(crate) fn search(
    dev: &Device,
    cell: &CellDims,
    buf: SearchBuffers<'_>,
    status: &mut [CandidateStatus],
    cfg: &SlowPointConfig,
) -> Result<()> {
    let info = dev.info();
    let kc = status.len();
    let (h, gh, s) = (cell.hidden, cell.gate_rows(), cell.state_size());
    if kc == 0 {
        return Ok(());
    }
    if !supported(cell, kc, &info) {
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

    // Pack the weights: the kernel reads w_hh[o·H + k] for o < G·H, k < H only and writes
    // exactly wf[0 .. ceil8(H)·ceil32(G·H)) and wb[0 .. ceil8(G·H)·ceil32(H)) (pads zero).
    {
        let total = wf_len + wb_len;
        let blocks = total
            .div_ceil(THREADS as usize)
            .clamp(1, info.sms as usize * 16);
        let p = PackParams {
            w_hh: dev.ptr(buf.w_hh)?,
            wf: dev.ptr(buf.wf)?,
            wb: dev.ptr(buf.wb)?,
            h: h32,
            gh: gh32,
        };
        dev.launch(
            &kernels::SLOWPOINTS_PACK,
            LaunchDims::linear(blocks as u32, THREADS, 0),
            p,
        )?;
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
    let dstatus = dev.htod(&host)?;
    // The compaction writes idx[0..count) before any search kernel reads it, and nothing
    // reads beyond count.
    let idx = dev.alloc::<i32>(kc)?;
    let count = dev.zeros::<i32>(1)?;

    let max_launches = (cfg.max_iters / ITERS_PER_LAUNCH) as usize + 3;
    let mut first = true;
    let mut launches = 0usize;
    loop {
        {
            // One block of 1024 threads reads status[4i + 3] for i < K and writes idx at
            // positions below the number of active candidates ≤ K, and count[0].
            let p = CompactParams {
                status: dev.ptr(dstatus.all())?,
                k: k32,
                with_max_iters: first as i32,
                idx: dev.ptr(idx.all())?,
                count: dev.ptr(count.all())?,
            };
            dev.launch(
                &kernels::SLOWPOINTS_COMPACT,
                LaunchDims::linear(1, 1024, 0),
                p,
            )?;
        }
        first = false;
        let n = dev.dtoh(count.all())?[0];
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
        let ct = tile_for(cell, n, &info);
        let a = &cfg.adam;
        let p = SlowPointsParams {
            wf: dev.ptr(buf.wf)?,
            wb: dev.ptr(buf.wb)?,
            a_bar: dev.ptr(buf.a_bar)?,
            b_hh: dev.ptr(buf.b_hh)?,
            states: dev.ptr(buf.states)?,
            m: dev.ptr(buf.m)?,
            v: dev.ptr(buf.v)?,
            status: dev.ptr(dstatus.all())?,
            idx: dev.ptr(idx.all())?,
            n: n as i32,
            h: h32,
            iters: ITERS_PER_LAUNCH as i32,
            lr: a.lr,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            tol: cfg.tol,
            stall_rel: cfg.stall_rel,
            max_iters: cfg.max_iters,
            stall_window: cfg.stall_window,
        };
        // Every buffer holds what the kernel indexes for this cell (checked above): wf /
        // wb the padded packed weights, a_bar and b_hh G·H, states / m / v K·S, status
        // 4·K; idx[0..n) holds distinct candidates < K, so each candidate's rows are
        // touched by exactly one block. The dynamic shared memory is smem_bytes(cell, ct),
        // the kernel's own layout for this tile, within the opt-in limit (tile_for only
        // picks a tile that fits; `supported` was checked). No grid-wide sync.
        let dims = LaunchDims::linear(n.div_ceil(ct) as u32, THREADS, smem_bytes(cell, ct) as u32);
        dev.launch(search_kernel(cell.kind, ct), dims, p)?;
    }

    let back = dev.dtoh(dstatus.all())?;
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
