//! The CPU's matrix-free Levenberg–Marquardt slow-point search behind
//! [`CpuBackend`](crate::CpuBackend)'s `slow_point_lm` with the Krylov solver
//! ([`memrnn_core::lm_krylov`], MATH.md §4.1).
//!
//! Candidates are split into fixed chunks of [`CHUNK`] by index and rayon runs the chunks;
//! each chunk drives its candidates in lock-step ([`run_krylov_block`]) with the products
//! batched over the chunk: a forward keeps, per candidate, the per-unit coefficients of
//! its one-step Jacobian ([`coefficients`]: `J = Σ_gates diag(c_gate) W_gate + diagonal
//! terms`, see [`crate::lm::jacobian_from_cache`]), so that
//!
//! - `J v` is one product `V_h W_hhᵀ` (`[n, H] × [H, G·H]`, the `gemm` crate's SGEMM
//!   kernels) and a per-unit combination ([`jvp_combine`]);
//! - `Jᵀ u` is a per-unit spread onto the gates ([`vjp_spread`]) and one product
//!   `Y W_hh` (`[n, G·H] × [G·H, H]`).
//!
//! Chunks are fixed by candidate index, so results are identical for any thread count;
//! the last bits of a candidate's products may depend on how many of its chunk's
//! candidates are still running (the batch size of the SGEMM), which is why the
//! conformance tests compare this search with the trait's default to a tolerance.

use crate::fast::gemm::{matmul_serial, MatRef};
use crate::lm::step_cached;
use memrnn_core::lm::{LmConfig, LmStatus};
use memrnn_core::lm_krylov::{run_krylov_block, KrylovOps};
use memrnn_core::{check_finite, CellDims, CellKind, Real, Result};
use rayon::prelude::*;

/// Candidates per rayon task: the rows of each batched product.
pub const CHUNK: usize = 64;

/// Coefficients per hidden unit: RNN `[c]`, GRU `[c_r, c_z, c_n, z]`, LSTM
/// `[c_i, c_f, c_g, c_o, q, f]`.
pub fn coef_width(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn => 1,
        CellKind::Gru => 4,
        CellKind::Lstm => 6,
    }
}

/// The Jacobian's per-unit coefficients at `s` from [`step_cached`]'s cache at `s`
/// (the formulas of [`crate::lm::jacobian_from_cache`]).
pub fn coefficients<T: Real>(cell: &CellDims, s: &[T], cache: &[T], coef: &mut [T]) {
    let one = T::one();
    for j in 0..cell.hidden {
        match cell.kind {
            CellKind::Rnn => coef[j] = one - cache[j] * cache[j],
            CellKind::Gru => {
                let [r, z, n, un] = [
                    cache[4 * j],
                    cache[4 * j + 1],
                    cache[4 * j + 2],
                    cache[4 * j + 3],
                ];
                let dn = (one - z) * (one - n * n);
                coef[4 * j..4 * j + 4].copy_from_slice(&[
                    dn * un * r * (one - r),
                    z * (one - z) * (s[j] - n),
                    dn * r,
                    z,
                ]);
            }
            CellKind::Lstm => {
                let [i, f, g, o, tc] = [
                    cache[5 * j],
                    cache[5 * j + 1],
                    cache[5 * j + 2],
                    cache[5 * j + 3],
                    cache[5 * j + 4],
                ];
                let c = s[cell.hidden + j];
                coef[6 * j..6 * j + 6].copy_from_slice(&[
                    i * (one - i) * g,
                    f * (one - f) * c,
                    i * (one - g * g),
                    o * (one - o) * tc,
                    o * (one - tc * tc),
                    f,
                ]);
            }
        }
    }
}

/// `out = J v` from `u = W_hh v_h` (`[G·H]`, gate-major) and the coefficients.
pub fn jvp_combine<T: Real>(cell: &CellDims, coef: &[T], u: &[T], v: &[T], out: &mut [T]) {
    let hd = cell.hidden;
    for j in 0..hd {
        match cell.kind {
            CellKind::Rnn => out[j] = coef[j] * u[j],
            CellKind::Gru => {
                let c = &coef[4 * j..4 * j + 4];
                out[j] = c[0] * u[j] + c[1] * u[hd + j] + c[2] * u[2 * hd + j] + c[3] * v[j];
            }
            CellKind::Lstm => {
                let c = &coef[6 * j..6 * j + 6];
                let dc = c[0] * u[j] + c[1] * u[hd + j] + c[2] * u[2 * hd + j] + c[5] * v[hd + j];
                out[hd + j] = dc;
                out[j] = c[3] * u[3 * hd + j] + c[4] * dc;
            }
        }
    }
}

/// For `Jᵀ w`: the gate-space vector `y [G·H]` with `Jᵀ w = [W_hhᵀ y | 0] + d`, and the
/// diagonal part `d [S]` (written into `out`, which the `W_hhᵀ y` product then adds to).
pub fn vjp_spread<T: Real>(cell: &CellDims, coef: &[T], w: &[T], y: &mut [T], out: &mut [T]) {
    let hd = cell.hidden;
    for j in 0..hd {
        match cell.kind {
            CellKind::Rnn => {
                y[j] = coef[j] * w[j];
                out[j] = T::zero();
            }
            CellKind::Gru => {
                let c = &coef[4 * j..4 * j + 4];
                y[j] = c[0] * w[j];
                y[hd + j] = c[1] * w[j];
                y[2 * hd + j] = c[2] * w[j];
                out[j] = c[3] * w[j];
            }
            CellKind::Lstm => {
                let c = &coef[6 * j..6 * j + 6];
                let wc = w[hd + j] + c[4] * w[j];
                y[j] = c[0] * wc;
                y[hd + j] = c[1] * wc;
                y[2 * hd + j] = c[2] * wc;
                y[3 * hd + j] = c[3] * w[j];
                out[j] = T::zero();
                out[hd + j] = c[5] * wc;
            }
        }
    }
}

/// `J v` for one candidate, the products with `W_hh` as plain loops (the definition the
/// batched version is tested against; generic for the f64 finite-difference checks).
pub fn jvp_row<T: Real>(cell: &CellDims, w_hh: &[T], coef: &[T], v: &[T], out: &mut [T]) {
    let hd = cell.hidden;
    let u: Vec<T> = (0..cell.gate_rows())
        .map(|r| {
            w_hh[r * hd..(r + 1) * hd]
                .iter()
                .zip(&v[..hd])
                .fold(T::zero(), |a, (&w, &x)| a + w * x)
        })
        .collect();
    jvp_combine(cell, coef, &u, v, out);
}

/// `Jᵀ w` for one candidate (see [`jvp_row`]).
pub fn vjp_row<T: Real>(cell: &CellDims, w_hh: &[T], coef: &[T], w: &[T], out: &mut [T]) {
    let hd = cell.hidden;
    let mut y = vec![T::zero(); cell.gate_rows()];
    vjp_spread(cell, coef, w, &mut y, out);
    for (r, &yr) in y.iter().enumerate() {
        for (o, &wv) in out[..hd].iter_mut().zip(&w_hh[r * hd..(r + 1) * hd]) {
            *o = *o + yr * wv;
        }
    }
}

/// What every chunk shares, read-only.
struct Shared<'a> {
    cell: CellDims,
    w_hh: &'a [f32],
    b_hh: &'a [f32],
    /// `ā = W_ih x̄ + b_ih`, `[G·H]`.
    a_bar: Vec<f32>,
}

/// One chunk's products, with the coefficients of each candidate's current point and of
/// its last trial.
struct ChunkOps<'a> {
    sh: &'a Shared<'a>,
    cw: usize,
    cur: Vec<f32>,
    trial: Vec<f32>,
    cache: Vec<f32>,
    u: Vec<f32>,
    /// `[n, G·H]` scratch for the batched products.
    gates: Vec<f32>,
}

impl ChunkOps<'_> {
    /// `F(s)` for one row, and its coefficients into `coef`.
    fn step(&mut self, s: &[f32], f: &mut [f32], coef_at: (bool, usize)) {
        let sh = self.sh;
        step_cached(
            &sh.cell,
            sh.w_hh,
            sh.b_hh,
            &sh.a_bar,
            s,
            f,
            &mut self.cache,
            &mut self.u,
        );
        let (current, b) = coef_at;
        let dst = if current {
            &mut self.cur
        } else {
            &mut self.trial
        };
        coefficients(
            &sh.cell,
            s,
            &self.cache,
            &mut dst[b * self.cw..(b + 1) * self.cw],
        );
    }
}

impl KrylovOps for ChunkOps<'_> {
    fn forward(
        &mut self,
        which: &[usize],
        states: &[f32],
        current: bool,
        out: &mut [f32],
    ) -> Result<()> {
        let sd = self.sh.cell.state_size();
        for (q, &b) in which.iter().enumerate() {
            let (s, f) = (
                &states[q * sd..(q + 1) * sd],
                &mut out[q * sd..(q + 1) * sd],
            );
            self.step(s, f, (current, b));
        }
        Ok(())
    }

    fn jvp(&mut self, which: &[usize], _: &[f32], v: &[f32], out: &mut [f32]) -> Result<()> {
        let cell = self.sh.cell;
        let (hd, gh, sd, n) = (
            cell.hidden,
            cell.gate_rows(),
            cell.state_size(),
            which.len(),
        );
        let u = &mut self.gates[..n * gh];
        // U [n, G·H] = V_h [n, H] · W_hhᵀ.
        matmul_serial(
            u,
            gh,
            false,
            MatRef::new(v, n, hd, sd),
            MatRef::new(self.sh.w_hh, gh, hd, hd).t(),
        );
        for (q, &b) in which.iter().enumerate() {
            jvp_combine(
                &cell,
                &self.cur[b * self.cw..(b + 1) * self.cw],
                &u[q * gh..(q + 1) * gh],
                &v[q * sd..(q + 1) * sd],
                &mut out[q * sd..(q + 1) * sd],
            );
        }
        Ok(())
    }

    fn vjp(&mut self, which: &[usize], _: &[f32], w: &[f32], out: &mut [f32]) -> Result<()> {
        let cell = self.sh.cell;
        let (hd, gh, sd, n) = (
            cell.hidden,
            cell.gate_rows(),
            cell.state_size(),
            which.len(),
        );
        let y = &mut self.gates[..n * gh];
        for (q, &b) in which.iter().enumerate() {
            vjp_spread(
                &cell,
                &self.cur[b * self.cw..(b + 1) * self.cw],
                &w[q * sd..(q + 1) * sd],
                &mut y[q * gh..(q + 1) * gh],
                &mut out[q * sd..(q + 1) * sd],
            );
        }
        // out_h [n, H] += Y [n, G·H] · W_hh.
        matmul_serial(
            out,
            sd,
            true,
            MatRef::new(y, n, gh, gh),
            MatRef::new(self.sh.w_hh, gh, hd, hd),
        );
        Ok(())
    }

    fn accepted(&mut self, b: usize) {
        let r = b * self.cw..(b + 1) * self.cw;
        self.cur[r.clone()].copy_from_slice(&self.trial[r]);
    }
}

/// Runs the matrix-free LM search on `states [K, S]` and `status [K]` (checked by the
/// caller).
pub fn slow_point_lm_krylov(
    cell: &CellDims,
    params: &[f32],
    x: &[f32],
    states: &mut [f32],
    status: &mut [LmStatus],
    cfg: &LmConfig,
) -> Result<()> {
    check_finite("params", params)?;
    check_finite("x", x)?;
    let (input, sd, gh) = (cell.input, cell.state_size(), cell.gate_rows());
    let p = cell.layout().split(params);
    let shared = Shared {
        cell: *cell,
        w_hh: p.w_hh,
        b_hh: p.b_hh,
        a_bar: (0..gh)
            .map(|r| {
                p.b_ih[r]
                    + p.w_ih[r * input..(r + 1) * input]
                        .iter()
                        .zip(x)
                        .map(|(w, x)| w * x)
                        .sum::<f32>()
            })
            .collect(),
    };
    let cw = coef_width(cell.kind) * cell.hidden;
    let cache_w = match cell.kind {
        CellKind::Rnn => 1,
        CellKind::Gru => 4,
        CellKind::Lstm => 5,
    } * cell.hidden;
    states
        .par_chunks_mut(CHUNK * sd)
        .zip(status.par_chunks_mut(CHUNK))
        .try_for_each(|(states, status)| -> Result<()> {
            let ids: Vec<usize> = (0..status.len())
                .filter(|&i| status[i].stop.is_active())
                .collect();
            if ids.is_empty() {
                return Ok(());
            }
            let n = ids.len();
            let mut rows: Vec<f32> = ids
                .iter()
                .flat_map(|&i| states[i * sd..(i + 1) * sd].iter().copied())
                .collect();
            let mut st: Vec<LmStatus> = ids.iter().map(|&i| status[i]).collect();
            let mut ops = ChunkOps {
                sh: &shared,
                cw,
                cur: vec![0.0; n * cw],
                trial: vec![0.0; n * cw],
                cache: vec![0.0; cache_w],
                u: vec![0.0; gh],
                gates: vec![0.0; n * gh],
            };
            run_krylov_block(&mut ops, sd, &mut rows, &mut st, cfg)?;
            for (q, &i) in ids.iter().enumerate() {
                states[i * sd..(i + 1) * sd].copy_from_slice(&rows[q * sd..(q + 1) * sd]);
                status[i] = st[q];
            }
            Ok(())
        })
}
