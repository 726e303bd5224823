//! Forward-mode tangents of one step (MATH.md §2): `δs' = J δs` with `J = ∂F/∂s`, exact,
//! per cell. With `δu = W_hh δh` (the input part `a` does not depend on the state):
//!
//! - RNN: `δh' = (1 − h'²) ⊙ δu`.
//! - GRU: `δr = r(1 − r) ⊙ δu_r`, `δz = z(1 − z) ⊙ δu_z`,
//!   `δn = (1 − n²) ⊙ (δr ⊙ u_n + r ⊙ δu_n)`, `δh' = δz ⊙ (h − n) + (1 − z) ⊙ δn + z ⊙ δh`.
//! - LSTM: `δi = i(1 − i) ⊙ δu_i`, `δf = f(1 − f) ⊙ δu_f`, `δg = (1 − g²) ⊙ δu_g`,
//!   `δo = o(1 − o) ⊙ δu_o`, `δc' = δf ⊙ c + f ⊙ δc + δi ⊙ g + i ⊙ δg`,
//!   `δh' = δo ⊙ tanh c' + o ⊙ (1 − tanh² c') ⊙ δc'`.

use super::{check_points, pre_activations};
use memrnn_core::{check_len, CellDims, CellKind, ParamView, Real, Result};

/// `out = J v` for one row: `s`, `v`, `out` `[S]`, `x [I]`.
pub fn step_jvp_row<T: Real>(
    cell: &CellDims,
    p: &ParamView<'_, T>,
    s: &[T],
    x: &[T],
    v: &[T],
    out: &mut [T],
) {
    let hd = cell.hidden;
    let (a, u) = pre_activations(cell, p, s, x);
    let mut du = vec![T::zero(); cell.gate_rows()];
    let vh = &v[..hd];
    for (r, d) in du.iter_mut().enumerate() {
        let row = &p.w_hh[r * hd..(r + 1) * hd];
        *d = row.iter().zip(vh).map(|(&w, &t)| w * t).sum();
    }
    let one = T::one();
    match cell.kind {
        CellKind::Rnn => {
            for j in 0..hd {
                let h = (a[j] + u[j]).tanh();
                out[j] = (one - h * h) * du[j];
            }
        }
        CellKind::Gru => {
            for j in 0..hd {
                let (jr, jz, jn) = (j, hd + j, 2 * hd + j);
                let r = (a[jr] + u[jr]).sigmoid();
                let z = (a[jz] + u[jz]).sigmoid();
                let n = (a[jn] + r * u[jn]).tanh();
                let dr = r * (one - r) * du[jr];
                let dz = z * (one - z) * du[jz];
                let dn = (one - n * n) * (dr * u[jn] + r * du[jn]);
                out[j] = dz * (s[j] - n) + (one - z) * dn + z * v[j];
            }
        }
        CellKind::Lstm => {
            for j in 0..hd {
                let (ji, jf, jg, jo) = (j, hd + j, 2 * hd + j, 3 * hd + j);
                let i = (a[ji] + u[ji]).sigmoid();
                let f = (a[jf] + u[jf]).sigmoid();
                let g = (a[jg] + u[jg]).tanh();
                let o = (a[jo] + u[jo]).sigmoid();
                let c = s[hd + j];
                let tc = (f * c + i * g).tanh();
                let di = i * (one - i) * du[ji];
                let df = f * (one - f) * du[jf];
                let dg = (one - g * g) * du[jg];
                let dout = o * (one - o) * du[jo];
                let dc = df * c + f * v[hd + j] + di * g + i * dg;
                out[hd + j] = dc;
                out[j] = dout * tc + o * (one - tc * tc) * dc;
            }
        }
    }
}

/// `J_n v_n` at `N` points: `states`, `v` `[N, S]`, `x [N, I]`; returns `[N, S]` (the
/// `Backend` trait's `step_jvp`, same argument order).
pub fn step_jvp<T: Real>(
    cell: &CellDims,
    params: &[T],
    states: &[T],
    x: &[T],
    v: &[T],
    n: usize,
) -> Result<Vec<T>> {
    check_points(cell, params, states, x, n)?;
    let sd = cell.state_size();
    check_len("v", n * sd, v.len(), || format!("[N={n}, S={sd}]"))?;
    let p = cell.layout().split(params);
    let id = cell.input;
    let mut out = vec![T::zero(); n * sd];
    for k in 0..n {
        step_jvp_row(
            cell,
            &p,
            &states[k * sd..(k + 1) * sd],
            &x[k * id..(k + 1) * id],
            &v[k * sd..(k + 1) * sd],
            &mut out[k * sd..(k + 1) * sd],
        );
    }
    Ok(out)
}
