//! Launchers for `kernels/slowpoints.cu`: the batched slow-point search (MATH.md §4), many
//! Adam iterations per launch on tiles of candidates, no grid-wide sync.
//!
//! [`search_members`] (and [`search`], its ensemble of one) packs each network's `W_hh`
//! once per call (`W_hhᵀ` for the forward product, `W_hh` for the vector–Jacobian
//! product, both zero-padded), uploads the per-candidate status once, and then loops:
//! compact each network's active candidates on the device (`slowpoints_compact_f32`, one
//! 4-byte count per network comes back), launch up to [`ITERS_PER_LAUNCH`] iterations on
//! tiles of the compacted lists (each tile one network's candidates, reading that
//! network's weights through a device table of per-network buffers), until no candidate
//! is active. The status comes back once, at the end. States and Adam moments never
//! leave the device.

use crate::device::{backend_err, Buf, Device, DeviceInfo, LaunchDims, View};
use crate::kernels::{self, CompactParams, Kernel, PackParams, SlowPointsParams, SpMember};
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
/// `cell` and `K = status.len()`, and that [`supported`] holds. The ensemble of one:
/// [`search_members`].
pub(crate) fn search(
    dev: &Device,
    cell: &CellDims,
    buf: SearchBuffers<'_>,
    status: &mut [CandidateStatus],
    cfg: &SlowPointConfig,
) -> Result<()> {
    search_members(dev, cell, &mut [MemberSearch { buf, status }], cfg)
}

/// One network's part of an ensemble search: its buffers and its candidates' status.
pub(crate) struct MemberSearch<'a, 's> {
    pub buf: SearchBuffers<'a>,
    pub status: &'s mut [CandidateStatus],
}

/// One member's device-side bookkeeping during a search call.
struct MemberState {
    k: usize,
    status: Buf<u32>,
    idx: Buf<i32>,
}

/// Runs the search on every active candidate of every member (see
/// `Backend::ensemble_slow_point_iterations`), all members of one `cell`, in one launch
/// per block of iterations (two when members' tiles differ in width): each tile holds
/// candidates of one member and reads that member's weights through the device table of
/// per-member buffers. A member's tile width is chosen from its own active count, as
/// searched alone, so each candidate's arithmetic (and result) is what it is alone. The
/// caller checked `cfg` and every member's lengths against `cell`, and that
/// [`supported`] holds for each.
pub(crate) fn search_members(
    dev: &Device,
    cell: &CellDims,
    members: &mut [MemberSearch<'_, '_>],
    cfg: &SlowPointConfig,
) -> Result<()> {
    let info = dev.info();
    let (h, gh, s) = (cell.hidden, cell.gate_rows(), cell.state_size());
    let (wf_len, wb_len) = packed_lens(cell);
    let e_count = members.len();
    if members.iter().all(|m| m.status.is_empty()) {
        return Ok(());
    }
    for (e, mb) in members.iter().enumerate() {
        let kc = mb.status.len();
        if !supported(cell, kc, &info) {
            return Err(backend_err(format!(
                "internal: the fused slow-point search cannot run H {h} with {kc} candidates \
                 (ensemble member {e}) here"
            )));
        }
        let buf = &mb.buf;
        need("W_hh", buf.w_hh.len(), gh * h)?;
        need("b_hh", buf.b_hh.len(), gh)?;
        need("a_bar", buf.a_bar.len(), gh)?;
        need("packed W_hhT", buf.wf.len(), wf_len)?;
        need("packed W_hh", buf.wb.len(), wb_len)?;
        need("states", buf.states.len(), kc * s)?;
        need("adam m", buf.m.len(), kc * s)?;
        need("adam v", buf.v.len(), kc * s)?;
    }
    let (h32, gh32) = (h as i32, gh as i32);

    // Per member: pack the weights (the kernel reads w_hh[o·H + k] for o < G·H, k < H only
    // and writes exactly wf[0 .. ceil8(H)·ceil32(G·H)) and wb[0 .. ceil8(G·H)·ceil32(H)),
    // pads zero), the status up once ([K][4] u32: iters, speed bits, window bits, stop
    // code), and the member's list of active candidates.
    let mut state = Vec::with_capacity(e_count);
    let mut table: Vec<u64> = Vec::with_capacity(e_count * 9);
    for mb in members.iter() {
        let buf = &mb.buf;
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
        let host: Vec<u32> = mb
            .status
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
        let k = mb.status.len();
        // A member without candidates keeps one-element buffers that nothing reads (its
        // compaction finds none, so it owns no tile).
        let status = if k == 0 {
            dev.zeros::<u32>(4)?
        } else {
            dev.htod(&host)?
        };
        // The compaction writes idx[0..count) before any search kernel reads it, and
        // nothing reads beyond count.
        let idx = dev.alloc::<i32>(k.max(1))?;
        let entry = SpMember {
            wf: dev.ptr(buf.wf)?,
            wb: dev.ptr(buf.wb)?,
            a_bar: dev.ptr(buf.a_bar)?,
            b_hh: dev.ptr(buf.b_hh)?,
            states: dev.ptr(buf.states)?,
            m: dev.ptr(buf.m)?,
            v: dev.ptr(buf.v)?,
            status: dev.ptr(status.all())?,
            idx: dev.ptr(idx.all())?,
        };
        table.extend([
            entry.wf.0,
            entry.wb.0,
            entry.a_bar.0,
            entry.b_hh.0,
            entry.states.0,
            entry.m.0,
            entry.v.0,
            entry.status.0,
            entry.idx.0,
        ]);
        state.push(MemberState { k, status, idx });
    }
    // The device table of MrSpMember entries, in field order (9 addresses each).
    let dtable = dev.htod(&table)?;
    let count = dev.zeros::<i32>(e_count)?;
    // Tile tables stay alive until the status comes back (the launches that read them
    // are asynchronous on a GPU).
    let mut tile_bufs: Vec<Buf<i32>> = vec![];

    let max_launches = (cfg.max_iters / ITERS_PER_LAUNCH) as usize + 3;
    let mut first = true;
    let mut launches = 0usize;
    loop {
        for (e, ms) in state.iter().enumerate() {
            if ms.k == 0 {
                continue;
            }
            // One block of 1024 threads reads status[4i + 3] for i < K and writes idx at
            // positions below the number of active candidates ≤ K, and count[e].
            let p = CompactParams {
                status: dev.ptr(ms.status.all())?,
                k: ms.k as i32,
                with_max_iters: first as i32,
                idx: dev.ptr(ms.idx.all())?,
                count: dev.ptr(count.view(e..e + 1))?,
            };
            dev.launch(
                &kernels::SLOWPOINTS_COMPACT,
                LaunchDims::linear(1, 1024, 0),
                p,
            )?;
        }
        first = false;
        let counts = dev.dtoh(count.all())?;
        let active: Vec<usize> = state
            .iter()
            .zip(&counts)
            .map(|(ms, &n)| usize::try_from(n).unwrap_or(0).min(ms.k))
            .collect();
        let n_all: usize = active.iter().sum();
        if n_all == 0 {
            break;
        }
        launches += 1;
        if launches > max_launches {
            return Err(backend_err(format!(
                "internal: the slow-point search still has {n_all} active candidates after \
                 {max_launches} launches of {ITERS_PER_LAUNCH} iterations (max_iters {})",
                cfg.max_iters
            )));
        }
        // Tiles of each member at its own width: (member, first position in its idx, count).
        let (mut wide, mut narrow) = (vec![], vec![]);
        for (e, &n) in active.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let ct = tile_for(cell, n, &info);
            let list = if ct == WIDE { &mut wide } else { &mut narrow };
            for first in (0..n).step_by(ct) {
                list.extend([e as i32, first as i32, ct.min(n - first) as i32]);
            }
        }
        let a = &cfg.adam;
        for (ct, tiles) in [(WIDE, wide), (NARROW, narrow)] {
            if tiles.is_empty() {
                continue;
            }
            let blocks = tiles.len() / 3;
            let dtiles = dev.htod(&tiles)?;
            let p = SlowPointsParams {
                members: dev.ptr(dtable.all())?,
                tiles: dev.ptr(dtiles.all())?,
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
            // The table holds, for every member, buffers checked above against what the
            // kernel indexes for this cell: wf / wb the padded packed weights, a_bar and
            // b_hh G·H, states / m / v K_e·S, status 4·K_e, and idx, whose first n_e
            // entries are distinct candidates < K_e (the compaction wrote them). Each tile
            // (member e, first, count) has first + count ≤ n_e, so each candidate's rows
            // are touched by exactly one block. The dynamic shared memory is
            // smem_bytes(cell, ct), the kernel's own layout for this tile width, within
            // the opt-in limit (tile_for only picks a tile that fits; `supported` was
            // checked). No grid-wide sync.
            let dims = LaunchDims::linear(blocks as u32, THREADS, smem_bytes(cell, ct) as u32);
            dev.launch(search_kernel(cell.kind, ct), dims, p)?;
            tile_bufs.push(dtiles);
        }
    }

    for (mb, ms) in members.iter_mut().zip(&state) {
        if ms.k == 0 {
            continue;
        }
        let back = dev.dtoh(ms.status.all())?;
        for (st, w) in mb.status.iter_mut().zip(back.chunks_exact(4)) {
            st.iters = w[0];
            st.speed_sq = f32::from_bits(w[1]);
            st.window_speed_sq = f32::from_bits(w[2]);
            st.stop = stop_of(w[3])?;
        }
    }
    drop(tile_bufs);
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
