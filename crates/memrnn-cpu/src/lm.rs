//! The CPU's Levenberg–Marquardt slow-point search behind
//! [`CpuBackend`](crate::CpuBackend)'s `slow_point_lm` (MATH.md §4.1).
//!
//! rayon runs the candidates, each one's whole search in one task with its own buffers:
//! the one-step forward (the recurrent product as dot products, the input side
//! `ā = W_ih x̄ + b_ih` computed once per call), the analytic Jacobian from the forward's
//! gates ([`step_cached`], then [`jacobian_from_cache`]: rows of `W_hh` scaled per gate,
//! `O(G·S²)`, instead of `S` vector–Jacobian products), `M = (J − I)ᵀ(J − I)` in f64 (the `gemm` crate's f64 kernels
//! from `S ≥ GEMM_MIN`, rank-one updates below) and the damped Cholesky solve and
//! decisions of [`LmCandidate`]. A candidate's arithmetic never depends on the others, so
//! results are identical for any thread count.

use memrnn_core::lm::{LmCandidate, LmConfig, LmNext, LmStatus};
use memrnn_core::{check_finite, CellDims, CellKind, Real, Result};
use rayon::prelude::*;

/// From this state size on, `M = AᵀA` goes through `gemm`'s f64 kernels.
pub const GEMM_MIN: usize = 32;

/// The values of one step a Jacobian needs, per hidden unit.
fn cache_width(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn => 1,
        CellKind::Gru => 4,
        CellKind::Lstm => 5,
    }
}

#[allow(clippy::needless_range_loop)] // eight lanes, written out for the vectoriser
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = acc[l] + x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in ra.iter().zip(rb) {
        s = s + x * y;
    }
    s
}

/// One step `f = F(s)` at the precomputed input side `a_bar = W_ih x̄ + b_ih` (`[G·H]`),
/// keeping in `cache [H, cache_width]` what [`jacobian_from_cache`] needs; `u` is scratch
/// `[G·H]`. Generic so that the f64 version can be checked against finite differences.
#[allow(clippy::too_many_arguments)]
pub fn step_cached<T: Real>(
    cell: &CellDims,
    w_hh: &[T],
    b_hh: &[T],
    a_bar: &[T],
    s: &[T],
    f: &mut [T],
    cache: &mut [T],
    u: &mut [T],
) {
    let hd = cell.hidden;
    let h = &s[..hd];
    for (r, o) in u.iter_mut().enumerate() {
        *o = b_hh[r] + dot(&w_hh[r * hd..(r + 1) * hd], h);
    }
    let one = T::one();
    match cell.kind {
        CellKind::Rnn => {
            for j in 0..hd {
                let hn = (a_bar[j] + u[j]).tanh();
                f[j] = hn;
                cache[j] = hn;
            }
        }
        CellKind::Gru => {
            for j in 0..hd {
                let (jr, jz, jn) = (j, hd + j, 2 * hd + j);
                let r = (a_bar[jr] + u[jr]).sigmoid();
                let z = (a_bar[jz] + u[jz]).sigmoid();
                let n = (a_bar[jn] + r * u[jn]).tanh();
                f[j] = (one - z) * n + z * h[j];
                cache[4 * j..4 * j + 4].copy_from_slice(&[r, z, n, u[jn]]);
            }
        }
        CellKind::Lstm => {
            for j in 0..hd {
                let (ji, jf, jg, jo) = (j, hd + j, 2 * hd + j, 3 * hd + j);
                let i = (a_bar[ji] + u[ji]).sigmoid();
                let fg = (a_bar[jf] + u[jf]).sigmoid();
                let g = (a_bar[jg] + u[jg]).tanh();
                let o = (a_bar[jo] + u[jo]).sigmoid();
                let c = fg * s[hd + j] + i * g;
                let tc = c.tanh();
                f[j] = o * tc;
                f[hd + j] = c;
                cache[5 * j..5 * j + 5].copy_from_slice(&[i, fg, g, o, tc]);
            }
        }
    }
}

/// The one-step Jacobian `J = ∂F/∂s` (`[S, S]`, row `i` = `∂F_i/∂s`) at `s` from the
/// cache of [`step_cached`] at `s` (the tangent equations of `reference::jvp`, row by row):
///
/// - RNN: `J = diag(1 − h'²) W`.
/// - GRU: `J = diag(c_r) W_r + diag(c_z) W_z + diag(c_n) W_n + diag(z)` with
///   `c_z = z(1 − z)(h − n)`, `c_n = (1 − z)(1 − n²) r`, `c_r = (1 − z)(1 − n²) u_n r(1 − r)`.
/// - LSTM, `s = [h | c]`: `∂c'/∂h = diag(f(1 − f) c) W_f + diag(i(1 − i) g) W_i +
///   diag(i(1 − g²)) W_g`, `∂c'/∂c = diag(f)`; `∂h'/∂h = diag(o(1 − o) tanh c') W_o +
///   diag(q) ∂c'/∂h`, `∂h'/∂c = diag(q f)`, `q = o(1 − tanh² c')`.
pub fn jacobian_from_cache<T: Real>(
    cell: &CellDims,
    w_hh: &[T],
    s: &[T],
    cache: &[T],
    jac: &mut [T],
) {
    let hd = cell.hidden;
    let sd = cell.state_size();
    let one = T::one();
    let w = |gate: usize, j: usize| &w_hh[(gate * hd + j) * hd..(gate * hd + j + 1) * hd];
    jac.iter_mut().for_each(|v| *v = T::zero());
    match cell.kind {
        CellKind::Rnn => {
            for j in 0..hd {
                let c = one - cache[j] * cache[j];
                for (o, &wv) in jac[j * sd..j * sd + hd].iter_mut().zip(w(0, j)) {
                    *o = c * wv;
                }
            }
        }
        CellKind::Gru => {
            for j in 0..hd {
                let [r, z, n, un] = [
                    cache[4 * j],
                    cache[4 * j + 1],
                    cache[4 * j + 2],
                    cache[4 * j + 3],
                ];
                let dn = (one - z) * (one - n * n);
                let (cr, cz, cn) = (dn * un * r * (one - r), z * (one - z) * (s[j] - n), dn * r);
                let row = &mut jac[j * sd..j * sd + hd];
                for (((o, &a), &b), &c) in row.iter_mut().zip(w(0, j)).zip(w(1, j)).zip(w(2, j)) {
                    *o = cr * a + cz * b + cn * c;
                }
                row[j] = row[j] + z;
            }
        }
        CellKind::Lstm => {
            for j in 0..hd {
                let [i, f, g, o, tc] = [
                    cache[5 * j],
                    cache[5 * j + 1],
                    cache[5 * j + 2],
                    cache[5 * j + 3],
                    cache[5 * j + 4],
                ];
                let c = s[hd + j];
                let (ci, cf, cg) = (i * (one - i) * g, f * (one - f) * c, i * (one - g * g));
                let co = o * (one - o) * tc;
                let q = o * (one - tc * tc);
                let (top, bottom) = jac.split_at_mut((hd + j) * sd);
                let crow = &mut bottom[..hd];
                for (((x, &wi), &wf), &wg) in crow.iter_mut().zip(w(0, j)).zip(w(1, j)).zip(w(2, j))
                {
                    *x = ci * wi + cf * wf + cg * wg;
                }
                bottom[hd + j] = f;
                let hrow = &mut top[j * sd..j * sd + hd];
                for ((x, &wo), &dc) in hrow.iter_mut().zip(w(3, j)).zip(&bottom[..hd]) {
                    *x = co * wo + q * dc;
                }
                top[j * sd + hd + j] = q * f;
            }
        }
    }
}

/// `M = AᵀA` (full, row-major) for `A [n, n]` row-major, single-threaded and
/// deterministic.
fn gram(a: &[f64], m: &mut [f64], n: usize) {
    if n < GEMM_MIN {
        memrnn_core::lm::gram_lower(a, m, n);
        return;
    }
    // SAFETY: `a` and `m` hold n·n values; lhs = Aᵀ is read with row stride 1 and column
    // stride n, rhs = A with row stride n and column stride 1, dst row-major: every index
    // gemm touches is below n·n, and `m` (borrowed mutably) aliases neither input.
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            m.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            n as isize,
            1,
            a.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Per-thread buffers.
struct Work {
    cand: LmCandidate,
    f: Vec<f32>,
    cache: Vec<f32>,
    trial_cache: Vec<f32>,
    u: Vec<f32>,
    jac: Vec<f32>,
}

/// Runs the LM search on `states [K, S]` and `status [K]` (checked by the caller).
pub fn slow_point_lm(
    cell: &CellDims,
    params: &[f32],
    x: &[f32],
    states: &mut [f32],
    status: &mut [LmStatus],
    cfg: &LmConfig,
) -> Result<()> {
    check_finite("params", params)?;
    check_finite("x", x)?;
    let (hd, input, sd) = (cell.hidden, cell.input, cell.state_size());
    let p = cell.layout().split(params);
    let gh = cell.gate_rows();
    let a_bar: Vec<f32> = (0..gh)
        .map(|r| p.b_ih[r] + dot(&p.w_ih[r * input..(r + 1) * input], x))
        .collect();
    let cw = cache_width(cell.kind) * hd;
    let new_work = || Work {
        cand: LmCandidate::new(sd),
        f: vec![0.0; sd],
        cache: vec![0.0; cw],
        trial_cache: vec![0.0; cw],
        u: vec![0.0; gh],
        jac: vec![0.0; sd * sd],
    };
    states
        .par_chunks_mut(sd)
        .zip(status.par_iter_mut())
        .with_max_len(1)
        .for_each_init(new_work, |w, (s, st)| {
            if !st.stop.is_active() {
                return;
            }
            step_cached(
                cell,
                p.w_hh,
                p.b_hh,
                &a_bar,
                s,
                &mut w.f,
                &mut w.cache,
                &mut w.u,
            );
            let mut next = w.cand.start(s, &w.f, st, cfg);
            loop {
                match next {
                    LmNext::Jacobian => {
                        jacobian_from_cache(cell, p.w_hh, w.cand.state(), &w.cache, &mut w.jac);
                        let (a, m) = w.cand.a_and_gram_mut();
                        for (dst, &src) in a.iter_mut().zip(&w.jac) {
                            *dst = src as f64;
                        }
                        for i in 0..sd {
                            a[i * sd + i] -= 1.0;
                        }
                        gram(a, m, sd);
                        next = w.cand.gram_ready(st, cfg);
                    }
                    LmNext::Trial => {
                        step_cached(
                            cell,
                            p.w_hh,
                            p.b_hh,
                            &a_bar,
                            w.cand.trial_state(),
                            &mut w.f,
                            &mut w.trial_cache,
                            &mut w.u,
                        );
                        next = w.cand.trial(&w.f, st, cfg);
                        if next == LmNext::Jacobian {
                            // Accepted: the trial's gates are the current state's.
                            std::mem::swap(&mut w.cache, &mut w.trial_cache);
                        }
                    }
                    LmNext::Done => break,
                }
            }
            s.copy_from_slice(w.cand.state());
        });
    Ok(())
}
