//! The fused slow-point search behind [`CpuBackend`](crate::CpuBackend)'s
//! `slow_point_iterations` (MATH.md §4).
//!
//! Candidates are split into fixed chunks of [`CHUNK`] and rayon runs the chunks; each
//! chunk runs *all* its iterations without leaving its task: the one-step forward (the
//! fast path's register-tiled recurrent product fused with the gates,
//! [`FastCell::fwd_block`]), the speed and the stopping rule of
//! [`CandidateStatus::check`], the vector–Jacobian product `2 (J − I)ᵀ (F(s) − s)`
//! ([`FastCell::bwd_gates`] and `recurrent_grad` from the upstream gradient `2 (F(s) − s)`), and the Adam
//! update ([`adam_update_host`]), in chunk-local padded buffers. The input side
//! `ā = W_ih x̄ + b_ih` is computed once per call, and the recurrent weights are packed
//! once and shared read-only by every chunk. A half precision ([`FastOptions::precision`])
//! runs on f32 panels of the rounded `W_hh`: the same numbers as half-width panels, at
//! f32's memory traffic.
//!
//! A candidate that stops leaves the chunk's working rows (the last running row moves
//! into its slot), so the tiles stay full of running candidates. The arithmetic of one
//! candidate does not depend on which rows share its tile, on its slot, or on the chunk
//! that runs it, so results are identical for any thread count.

use crate::fast::recurrent::{self, padded, recurrent_grad, BwdCtx, Carry, FwdCtx};
use crate::fast::simd::{Simd, SimdJob, LANES};
use crate::fast::{gru::Gru, lstm::Lstm, rnn::Rnn, FastCell, FastOptions};
use memrnn_core::backend::{CandidateStatus, SlowPointConfig};
use memrnn_core::{adam_update_host, check_finite, CellDims, CellKind, Error, Precision, Result};
use rayon::prelude::*;
use std::marker::PhantomData;

/// Candidates per rayon task: small enough that both cores stay busy to the end when
/// candidates stop at different times, large enough to fill the row tiles.
pub const CHUNK: usize = 32;

/// Rows per backward tile (every cell's `bwd_gates` takes up to 4).
const BWD_TILE: usize = 4;

/// What every chunk shares, read-only.
struct Shared {
    cell: CellDims,
    hp: usize,
    /// `ā = W_ih x̄ + b_ih`, padded, `[G·Hp]`.
    a_bar: Vec<f32>,
    /// `b_hh`, padded, `[G·Hp]`.
    b_hh: Vec<f32>,
    fwd_panels: Vec<f32>,
    bwd_panels: Vec<f32>,
}

/// Runs the search on `states`, `m`, `v` (`[K, S]` each) and `status` (`[K]`), which the
/// caller has checked against `cell` (lengths, `cfg`); `x` is the constant input `[I]`.
#[allow(clippy::too_many_arguments)]
pub fn slow_point_iterations(
    opts: FastOptions,
    cell: &CellDims,
    params: &[f32],
    x: &[f32],
    states: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    status: &mut [CandidateStatus],
    cfg: &SlowPointConfig,
) -> Result<()> {
    check_finite("params", params)?;
    check_finite("x", x)?;
    if !opts.simd.is_available() {
        return Err(Error::InvalidArgument(format!(
            "SIMD level {} is not available on this CPU",
            opts.simd.name()
        )));
    }
    // The panels here are f32; W_hh rounded to the storage precision first makes the
    // search compute exactly what half-width panels would (the widening is exact).
    let params = opts.precision.round_recurrent(cell, params)?;
    let (h, g, input) = (cell.hidden, cell.gates(), cell.input);
    let hp = padded(h);
    let p = cell.layout().split(&params[..]);
    let mut a_bar = vec![0.0f32; g * hp];
    let mut b_hh = vec![0.0f32; g * hp];
    for gate in 0..g {
        for j in 0..h {
            let r = gate * h + j;
            let row = &p.w_ih[r * input..(r + 1) * input];
            a_bar[gate * hp + j] = p.b_ih[r] + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
            b_hh[gate * hp + j] = p.b_hh[r];
        }
    }
    let shared = Shared {
        cell: *cell,
        hp,
        a_bar,
        b_hh,
        fwd_panels: recurrent::pack_forward(cell, p.w_hh, Precision::F32),
        bwd_panels: recurrent::pack_backward(cell, p.w_hh, Precision::F32),
    };
    let sd = cell.state_size();
    states
        .par_chunks_mut(CHUNK * sd)
        .zip(m.par_chunks_mut(CHUNK * sd))
        .zip(v.par_chunks_mut(CHUNK * sd))
        .zip(status.par_chunks_mut(CHUNK))
        .for_each(|(((states, m), v), status)| {
            let chunk = ChunkIo {
                states,
                m,
                v,
                status,
            };
            match cell.kind {
                CellKind::Rnn => opts.simd.run(ChunkJob::<Rnn>::new(&shared, chunk, cfg)),
                CellKind::Gru => opts.simd.run(ChunkJob::<Gru>::new(&shared, chunk, cfg)),
                CellKind::Lstm => opts.simd.run(ChunkJob::<Lstm>::new(&shared, chunk, cfg)),
            }
        });
    Ok(())
}

/// One chunk's slices of the caller's buffers.
struct ChunkIo<'a> {
    states: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    status: &'a mut [CandidateStatus],
}

struct ChunkJob<'a, C> {
    shared: &'a Shared,
    io: ChunkIo<'a>,
    cfg: &'a SlowPointConfig,
    cell: PhantomData<C>,
}

impl<'a, C: FastCell> ChunkJob<'a, C> {
    fn new(shared: &'a Shared, io: ChunkIo<'a>, cfg: &'a SlowPointConfig) -> Self {
        ChunkJob {
            shared,
            io,
            cfg,
            cell: PhantomData,
        }
    }
}

/// The chunk's working rows ("slots"), padded to `Hp` per state part.
struct Work {
    h: usize,
    hp: usize,
    /// 1, or 2 for the LSTM (`[h | c]`).
    parts: usize,
    /// The chunk-local candidate in each slot.
    ids: Vec<usize>,
    /// `s` then `F(s)`: `[2, n, Hp]`.
    hs: Vec<f32>,
    /// The same for `c` (LSTM), else empty.
    cs: Vec<f32>,
    gates: Vec<f32>,
    /// Adam moments, `[n, parts·Hp]`.
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Work {
    /// The number of slots.
    fn n(&self) -> usize {
        self.ids.len()
    }

    /// Copies slot `from` over slot `to` (states, next states, gate cache, moments).
    fn move_slot(&mut self, from: usize, to: usize, cw: usize) {
        let (n, hp) = (self.n(), self.hp);
        for t in 0..2 {
            let (f, d) = ((t * n + from) * hp, (t * n + to) * hp);
            self.hs.copy_within(f..f + hp, d);
            if !self.cs.is_empty() {
                self.cs.copy_within(f..f + hp, d);
            }
        }
        if cw > 0 {
            self.gates.copy_within(from * cw..(from + 1) * cw, to * cw);
        }
        let sp = self.parts * hp;
        self.m.copy_within(from * sp..(from + 1) * sp, to * sp);
        self.v.copy_within(from * sp..(from + 1) * sp, to * sp);
        self.ids[to] = self.ids[from];
    }

    /// Writes slot `j`'s state and moments back to the caller's rows.
    fn store(&self, j: usize, io: &mut ChunkIo<'_>) {
        let (h, hp, sd) = (self.h, self.hp, self.parts * self.h);
        let id = self.ids[j];
        let out = id * sd;
        io.states[out..out + h].copy_from_slice(&self.hs[j * hp..j * hp + h]);
        if self.parts == 2 {
            io.states[out + h..out + 2 * h].copy_from_slice(&self.cs[j * hp..j * hp + h]);
        }
        let sp = self.parts * hp;
        for part in 0..self.parts {
            let (o, w) = (out + part * h, j * sp + part * hp);
            io.m[o..o + h].copy_from_slice(&self.m[w..w + h]);
            io.v[o..o + h].copy_from_slice(&self.v[w..w + h]);
        }
    }
}

impl<C: FastCell> SimdJob for ChunkJob<'_, C> {
    type Output = ();

    #[inline(always)]
    fn run<S: Simd>(mut self, s: S) {
        let sh = self.shared;
        let cfg = self.cfg;
        let (h, hp) = (sh.cell.hidden, sh.hp);
        let parts = sh.cell.kind.state_parts();
        let (sd, sp, gh) = (parts * h, parts * hp, sh.cell.gates() * hp);
        let cw = C::CACHE_WIDTH * hp;
        let lstm = parts == 2;
        let ids: Vec<usize> = (0..self.io.status.len())
            .filter(|&i| self.io.status[i].stop.is_active())
            .collect();
        let n = ids.len();
        if n == 0 {
            return;
        }
        let mut w = Work {
            h,
            hp,
            parts,
            ids,
            hs: vec![0.0; 2 * n * hp],
            cs: vec![0.0; if lstm { 2 * n * hp } else { 0 }],
            gates: vec![0.0; n * cw],
            m: vec![0.0; n * sp],
            v: vec![0.0; n * sp],
        };
        for j in 0..n {
            let src = w.ids[j] * sd;
            w.hs[j * hp..j * hp + h].copy_from_slice(&self.io.states[src..src + h]);
            if lstm {
                w.cs[j * hp..j * hp + h].copy_from_slice(&self.io.states[src + h..src + sd]);
            }
            for part in 0..parts {
                let (o, d) = (src + part * h, j * sp + part * hp);
                w.m[d..d + h].copy_from_slice(&self.io.m[o..o + h]);
                w.v[d..d + h].copy_from_slice(&self.io.v[o..o + h]);
            }
        }
        let mut a = vec![0.0f32; n * gh];
        a.chunks_exact_mut(gh)
            .for_each(|row| row.copy_from_slice(&sh.a_bar));
        let mut da = vec![0.0f32; n * gh];
        let mut du = vec![
            0.0f32;
            if sh.cell.kind == CellKind::Gru {
                n * gh
            } else {
                0
            }
        ];
        let mut cur_h = vec![0.0f32; n * hp];
        let mut next_h = vec![0.0f32; n * hp];
        let mut cur_c = vec![0.0f32; if lstm { n * hp } else { 0 }];
        let mut next_c = vec![0.0f32; if lstm { n * hp } else { 0 }];
        let mut grad = vec![0.0f32; hp];
        let mut keep = vec![false; n];
        let mut active = n;
        while active > 0 {
            let fctx = FwdCtx {
                batch: n,
                h,
                hp,
                a: a.as_ptr(),
                b_hh: sh.b_hh.as_ptr(),
                panels: sh.fwd_panels.as_ptr(),
                hs: w.hs.as_mut_ptr(),
                cs: w.cs.as_mut_ptr(),
                gates: w.gates.as_mut_ptr(),
                cw,
            };
            let mut b = 0;
            while b < active {
                let cnt = C::row_tile(S::REGISTERS).min(active - b);
                // SAFETY: the buffers behind fctx are this task's own and sized for one
                // step of `n` rows (hs, cs [2, n, Hp]; a [n, G·Hp]; gates [n, cw]), with
                // b + cnt ≤ active ≤ n; step 0's inputs (row s of every slot) are set.
                unsafe { C::fwd_block(s, &fctx, 0, b, cnt, 0..hp / LANES) };
                b += cnt;
            }
            // The speed at each slot's current state, and the stopping rule.
            for (j, k) in keep.iter_mut().enumerate().take(active) {
                let mut sq = 0.0f32;
                for part in 0..parts {
                    let buf = if part == 0 { &w.hs } else { &w.cs };
                    let (s0, s1) = (
                        &buf[j * hp..j * hp + h],
                        &buf[(n + j) * hp..(n + j) * hp + h],
                    );
                    for (f, x) in s1.iter().zip(s0) {
                        sq += (f - x) * (f - x);
                    }
                }
                *k = self.io.status[w.ids[j]].check(sq, cfg);
                if !*k {
                    w.store(j, &mut self.io);
                }
            }
            // Compact: running slots first, in a fixed order.
            let mut j = 0;
            while j < active {
                if keep[j] {
                    j += 1;
                } else {
                    active -= 1;
                    if j != active {
                        w.move_slot(active, j, cw);
                        keep[j] = keep[active];
                    }
                }
            }
            if active == 0 {
                break;
            }
            // Upstream gradient of F(s): 2 (F(s) − s), padding included (zero there).
            for j in 0..active {
                for (c, (f, x)) in cur_h[j * hp..(j + 1) * hp].iter_mut().zip(
                    w.hs[(n + j) * hp..(n + j + 1) * hp]
                        .iter()
                        .zip(&w.hs[j * hp..(j + 1) * hp]),
                ) {
                    *c = 2.0 * (f - x);
                }
                if lstm {
                    for (c, (f, x)) in cur_c[j * hp..(j + 1) * hp].iter_mut().zip(
                        w.cs[(n + j) * hp..(n + j + 1) * hp]
                            .iter()
                            .zip(&w.cs[j * hp..(j + 1) * hp]),
                    ) {
                        *c = 2.0 * (f - x);
                    }
                }
            }
            let da_ptr = da.as_mut_ptr();
            let bctx = BwdCtx {
                batch: n,
                h,
                hp,
                gh: da.len() / n,
                hs: w.hs.as_ptr(),
                cs: w.cs.as_ptr(),
                gates: w.gates.as_ptr(),
                cw,
                dh_seq: std::ptr::null(),
                da: da_ptr,
                du: if du.is_empty() {
                    da_ptr
                } else {
                    du.as_mut_ptr()
                },
                panels: sh.bwd_panels.as_ptr(),
            };
            let carry = Carry {
                cur_h: cur_h.as_mut_ptr(),
                next_h: next_h.as_mut_ptr(),
                cur_c: cur_c.as_mut_ptr(),
                next_c: next_c.as_mut_ptr(),
            };
            let mut b = 0;
            while b < active {
                let cnt = BWD_TILE.min(active - b);
                // SAFETY: as for the forward; the forward of step 0 has filled hs, cs and
                // the gate cache for these slots (moved slots carried theirs along), the
                // carries [n, Hp] hold the upstream gradient, and da / du are [n, G·Hp].
                unsafe {
                    C::bwd_gates(s, &bctx, &carry, 0, b, cnt, 0..hp / LANES);
                    with_rows!(
                        cnt,
                        recurrent_grad::<S, f32>(s, &bctx, 0, b, carry.next_h, 0..hp / (2 * LANES)),
                        [1, 2, 3, 4]
                    );
                }
                b += cnt;
            }
            // ∂S/∂s = (∂/∂s of 2e·F) − 2e, then one Adam step with the slot's own count.
            for j in 0..active {
                let st = &mut self.io.status[w.ids[j]];
                for part in 0..parts {
                    let (cur, next, buf) = if part == 0 {
                        (&cur_h, &next_h, &mut w.hs)
                    } else {
                        (&cur_c, &next_c, &mut w.cs)
                    };
                    let r = j * hp..j * hp + h;
                    for ((g, nx), c) in grad.iter_mut().zip(&next[r.clone()]).zip(&cur[r.clone()]) {
                        *g = nx - c;
                    }
                    let mo = j * sp + part * hp;
                    adam_update_host(
                        &mut buf[r],
                        &grad[..h],
                        &mut w.m[mo..mo + h],
                        &mut w.v[mo..mo + h],
                        st.iters as u64,
                        &cfg.adam,
                    );
                }
                st.iters += 1;
            }
        }
    }
}
