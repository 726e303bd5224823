//! Storage precision ([`Backend::precision`]) against the f64 reference on the
//! *unrounded* weights, with an error bound derived from the precision, element by
//! element. (The rest of the suite runs half-precision subjects on weights their storage
//! holds exactly — [`Cx::storable_params`] — so there every difference beyond
//! [`super::TOL`] is an error of the half-width path itself; this module checks that the
//! rounding itself stays within what the format allows, and that it happens at all.)
//!
//! # The bound
//!
//! One step `s' = F(s, x)` from random states. Storing `W_hh` in a format with `p`
//! significand bits rounds each weight to the nearest representable value:
//! `|w − round(w)| ≤ max(2^−p |w|, η)` (`η`: half the subnormal spacing,
//! [`Precision::subnormal_abs_error`]; tested over random values in memrnn-core). Each
//! product `w·h_k` then moves by at most that times `|h_k|`, so the recurrent
//! pre-activation of gate row `j` moves by
//!
//! ```text
//! δu_j ≤ 2^−p Σ_k |w_jk| |h_k| + η Σ_k |h_k|                       (storage)
//!      + γ_{H+1} ((1 + 2^−p) Σ_k |w_jk| |h_k| + |b_hh,j|)           (f32 dot product)
//! δa_j ≤ γ_{I+1} (Σ_k |W_ih,jk| |x_k| + |b_ih,j|)                   (f32 dot product)
//! ```
//!
//! with `γ_n = n u / (1 − n u)`, `u = 2^−24` (the classical bound on an f32 dot product of
//! `n` terms accumulated in any order, FMA or not). The gates carry these to the output
//! through their Lipschitz constants (`σ' ≤ 1/4`, `tanh' ≤ 1`), and products of perturbed
//! values pick up their cross terms (`|Δ(ab)| ≤ |Δa||b| + |a||Δb| + |Δa||Δb|`), all
//! evaluated on the exact f64 values of this test case. Each evaluated activation adds
//! [`ACT_ERR`] (the fast paths' tanh/sigmoid approximations: the CPU's rational tanh is
//! tested below 5e-7), and the final elementwise f32 arithmetic adds [`OPS_ERR`] relative
//! to the magnitudes involved. Nothing here is tuned to pass: every term is a worst case.

use super::{Cx, TOL};
use crate::{rng, uniform};
use memrnn_core::{Backend, CellDims, CellKind, Precision, SeqShape};
use memrnn_cpu::reference;

/// Largest absolute error of one evaluated activation (tanh or σ) on any backend: the
/// CPU fast path's rational approximation is tested below 5e-7 (simd.rs); the CUDA
/// kernels' `tanhf`/`expf` are within a few ulps.
pub const ACT_ERR: f64 = 5e-7;

/// Relative error of the few f32 operations of a gate update (each rounds by `2^−24`;
/// at most 8 on any output's path).
pub const OPS_ERR: f64 = 8.0 * 5.960_464_477_539_063e-8;

/// `γ_n = n u / (1 − n u)` for f32.
fn gamma(n: usize) -> f64 {
    let nu = n as f64 * (-24f64).exp2();
    nu / (1.0 - nu)
}

/// `(I, H, N)`: ones, odd sizes, one past the 8- and 16-wide CPU tiles and the 32-unit
/// GPU tiles.
const CASES: [(usize, usize, usize); 5] =
    [(1, 1, 1), (3, 7, 3), (5, 17, 9), (4, 33, 2), (9, 70, 5)];

/// Bounds on `|Δh'|` (and `|Δc'|` for the LSTM), `[N, S]`, for one step of `cell` with
/// parameters `p` (exact) from `states` under inputs `x`, for storage precision `prec`.
/// Also returns the same bound with the storage terms left out (f32 arithmetic only).
fn step_bounds(
    cell: &CellDims,
    p: &[f64],
    states: &[f64],
    x: &[f64],
    n: usize,
    prec: Precision,
) -> (Vec<f64>, Vec<f64>) {
    let (h, i_sz, g, sd) = (cell.hidden, cell.input, cell.gates(), cell.state_size());
    let v = cell.layout().split(p);
    let (up, eta) = (prec.unit_roundoff(), prec.subnormal_abs_error());
    let (gh, gi) = (gamma(h + 1), gamma(i_sz + 1));
    let mut with = vec![0.0; n * sd];
    let mut without = vec![0.0; n * sd];
    for b in 0..n {
        let s = &states[b * sd..(b + 1) * sd];
        let (hv, cv) = (&s[..h], &s[h..]);
        let xb = &x[b * i_sz..(b + 1) * i_sz];
        let sum_h: f64 = hv.iter().map(|v| v.abs()).sum();
        // Exact pre-activations and their error bounds, per gate row.
        let mut a = vec![0.0; g * h];
        let mut u = vec![0.0; g * h];
        let mut da = vec![0.0; g * h];
        let mut du = [vec![0.0; g * h], vec![0.0; g * h]];
        for j in 0..g * h {
            let wi = &v.w_ih[j * i_sz..(j + 1) * i_sz];
            let wh = &v.w_hh[j * h..(j + 1) * h];
            a[j] = v.b_ih[j] + wi.iter().zip(xb).map(|(w, x)| w * x).sum::<f64>();
            u[j] = v.b_hh[j] + wh.iter().zip(hv).map(|(w, h)| w * h).sum::<f64>();
            let abs_wx: f64 = wi.iter().zip(xb).map(|(w, x)| (w * x).abs()).sum();
            let abs_wh: f64 = wh.iter().zip(hv).map(|(w, h)| (w * h).abs()).sum();
            da[j] = gi * (abs_wx + v.b_ih[j].abs());
            let f32_part = gh * ((1.0 + up) * abs_wh + v.b_hh[j].abs());
            du[0][j] = up * abs_wh + eta * sum_h + f32_part;
            du[1][j] = f32_part;
        }
        for (which, du) in du.iter().enumerate() {
            let out = if which == 0 { &mut with } else { &mut without };
            let out = &mut out[b * sd..(b + 1) * sd];
            for k in 0..h {
                let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
                let pre = |gate: usize| a[gate * h + k] + u[gate * h + k];
                let dpre = |gate: usize| da[gate * h + k] + du[gate * h + k];
                match cell.kind {
                    CellKind::Rnn => {
                        let hn = pre(0).tanh();
                        out[k] = dpre(0) + ACT_ERR + OPS_ERR * (1.0 + hn.abs());
                    }
                    CellKind::Gru => {
                        let (r, z) = (sig(pre(0)), sig(pre(1)));
                        let (dr, dz) = (dpre(0) / 4.0 + ACT_ERR, dpre(1) / 4.0 + ACT_ERR);
                        let un = u[2 * h + k];
                        let dun = du[2 * h + k];
                        let nn = (a[2 * h + k] + r * un).tanh();
                        let d_run = dr * (un.abs() + dun) + r * dun;
                        let dn = da[2 * h + k] + d_run + ACT_ERR;
                        let dh = (1.0 - z) * dn + dz * ((hv[k] - nn).abs() + dn);
                        out[k] = dh + OPS_ERR * (1.0 + hv[k].abs() + un.abs());
                    }
                    CellKind::Lstm => {
                        let (ig, fg, gg, og) =
                            (sig(pre(0)), sig(pre(1)), pre(2).tanh(), sig(pre(3)));
                        let (di, df, dg, dog) = (
                            dpre(0) / 4.0 + ACT_ERR,
                            dpre(1) / 4.0 + ACT_ERR,
                            dpre(2) + ACT_ERR,
                            dpre(3) / 4.0 + ACT_ERR,
                        );
                        let c_new = fg * cv[k] + ig * gg;
                        let dc = df * cv[k].abs()
                            + di * gg.abs()
                            + ig * dg
                            + di * dg
                            + OPS_ERR * (1.0 + cv[k].abs());
                        let tc = c_new.tanh();
                        let dtc = dc + ACT_ERR;
                        let dh = dog * tc.abs() + og * dtc + dog * dtc;
                        out[k] = dh + OPS_ERR;
                        out[h + k] = dc;
                    }
                }
            }
        }
    }
    (with, without)
}

/// One step on unrounded random weights: every output element within the derived bound
/// of the f64 reference; and, for a half-precision subject, some element beyond the
/// f32-only bound (the storage really is rounded: a backend that ignored its precision
/// would fail here).
pub fn storage_bound<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let prec = cx.b.precision();
    let seed = cx.seed(0x15);
    let mut beyond_f32 = 0usize;
    let mut worst_ratio = 0.0f64;
    for (c, (i, h, n)) in CASES.into_iter().enumerate() {
        let s = seed.wrapping_add(c as u64);
        let cell = CellDims::new(kind, i, h).expect("valid test dims");
        let mut r = rng(s);
        // Weights of order 1 (gain 2 over PyTorch's 1/√H scale), so that the recurrent
        // product dominates and the rounding shows.
        let params: Vec<f32> = crate::random_params(&mut r, &cell, 2.0);
        let states: Vec<f32> = uniform(&mut r, n * cell.state_size(), -0.95, 0.95);
        let x: Vec<f32> = uniform(&mut r, n * i, -1.0, 1.0);
        let (p64, s64, x64) = (super::f64s(&params), super::f64s(&states), super::f64s(&x));
        let shape = SeqShape::new(1, n).expect("valid shape");
        let want = reference::seq_forward(&cell, &p64, shape, &x64, Some(&s64))
            .expect("reference forward")
            .s_final;
        let what = format!("{kind} I{i} H{h} N{n} W_hh in {prec}");
        let fwd = cx.ok(
            format!("{what}: seq_forward"),
            cx.b.seq_forward(
                &cell,
                &cx.up(&params),
                shape,
                &cx.up(&x),
                Some(&cx.up(&states)),
            ),
        );
        let got = cx.down(&fwd.s_final);
        assert_eq!(got.len(), want.len(), "{}", cx.what(&what));
        let (bound, f32_only) = step_bounds(&cell, &p64, &s64, &x64, n, prec);
        for e in 0..got.len() {
            let err = (got[e] as f64 - want[e]).abs();
            assert!(
                err <= bound[e],
                "{}: element {e}: |{} − {}| = {err:e} exceeds the derived bound {:e} (seed {s})",
                cx.what(&what),
                got[e],
                want[e],
                bound[e]
            );
            worst_ratio = worst_ratio.max(err / bound[e]);
            beyond_f32 += usize::from(err > f32_only[e]);
        }
    }
    eprintln!(
        "{}: largest error / derived bound = {worst_ratio:.3}; {beyond_f32} elements beyond the f32-only bound",
        cx.what(prec)
    );
    if prec != Precision::F32 {
        assert!(
            beyond_f32 > 0,
            "{}: no output moved beyond what f32 arithmetic alone allows: is W_hh really \
             stored in {prec}? (seed {seed})",
            cx.what(kind)
        );
    }
}

/// Half precision on weights it stores exactly behaves as f32 does on them: the
/// subject, given the *raw* weights (it rounds them itself), against the f64 reference
/// on the rounded weights at the f32 tolerance [`TOL`], for a whole sequence forward and
/// backward (`h_seq`, every parameter gradient, `ds0`, `dx`) at awkward shapes. Rounding
/// error is 2^−8 (bf16) or 2^−11 (f16) relative per weight, far above `TOL`, so this
/// isolates the storage rounding: any other error of the half-width path fails it.
pub fn matches_reference_on_rounded<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let prec = cx.b.precision();
    let seed = cx.seed(0x16);
    for (c, case) in crate::awkward_cases(kind).into_iter().enumerate() {
        let s = seed.wrapping_add(c as u64);
        let (cell, shape) = (case.cell, case.shape);
        let mut r = rng(s);
        let raw: Vec<f32> = crate::random_params(&mut r, &cell, 1.5);
        let rounded = cx.storable_params(&cell, raw.clone());
        let x: Vec<f32> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
        let dh: Vec<f32> = uniform(&mut r, shape.rows() * cell.hidden, -1.0, 1.0);
        let what = format!(
            "{kind} I{} H{} B{} T{} W_hh in {prec}",
            cell.input, cell.hidden, shape.batch, shape.steps
        );
        let (gp, gx, gdh) = (cx.up(&raw), cx.up(&x), cx.up(&dh));
        let fwd = cx.ok(
            format!("{what}: forward"),
            cx.b.seq_forward(&cell, &gp, shape, &gx, None),
        );
        let up = memrnn_core::SeqUpstream {
            dh_seq: Some(&gdh),
            ds_final: None,
        };
        let g = cx.ok(
            format!("{what}: backward"),
            cx.b.seq_backward(&cell, &gp, shape, &gx, &fwd, up, true),
        );
        let dx = g.dx.as_ref().map(|d| cx.down(d)).unwrap_or_default();
        let got = [
            cx.down(&fwd.h_seq),
            cx.down(&g.dparams),
            cx.down(&g.ds0),
            dx,
        ];
        let p64 = super::f64s(&rounded);
        let x64 = super::f64s(&x);
        let rf = reference::seq_forward(&cell, &p64, shape, &x64, None).expect("reference");
        let dh64 = super::f64s(&dh);
        let rg = reference::seq_backward(
            &cell,
            &p64,
            shape,
            &x64,
            &rf,
            memrnn_core::SeqUpstream {
                dh_seq: Some(&dh64[..]),
                ds_final: None,
            },
            true,
        )
        .expect("reference backward");
        let names = ["h_seq", "dparams", "ds0", "dx"];
        let wants = [
            rf.h_seq.clone(),
            rg.dparams.clone(),
            rg.ds0.clone(),
            rg.dx.clone().unwrap_or_default(),
        ];
        for k in 0..4 {
            cx.close(format!("{what}: {}", names[k]), &got[k], &wants[k], TOL, s);
        }
    }
}
