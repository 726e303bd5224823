//! Networks whose fixed points are known in closed form, shared by the tests.
#![allow(dead_code)]

use memrnn_core::{CellDims, CellKind, Model, Readout};
use memrnn_testkit::{random_params, rng, uniform};

/// The roots of `tanh(w h + c) − h` in `[−1, 1]`, in f64, by bisection on a fine grid.
pub fn scalar_fixed_points(w: f64, c: f64) -> Vec<f64> {
    let g = |h: f64| (w * h + c).tanh() - h;
    let n = 20_000;
    let mut roots = Vec::new();
    for i in 0..n {
        let (mut lo, mut hi) = (
            -1.0 + 2.0 * i as f64 / n as f64,
            -1.0 + 2.0 * (i + 1) as f64 / n as f64,
        );
        let (glo, ghi) = (g(lo), g(hi));
        if glo == 0.0 {
            roots.push(lo);
            continue;
        }
        if glo * ghi > 0.0 {
            continue;
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if g(lo) * g(mid) <= 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        roots.push(0.5 * (lo + hi));
    }
    roots.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    roots
}

/// A tanh RNN with `W_hh = diag(w)` whose unit `j` satisfies `h_j = tanh(w_j h_j + c_j)`,
/// `c_j` chosen so that `targets[j]` is a fixed point where given (else `c_j` given in
/// `free_c`). `W_ih` and `x̄` are arbitrary: `b_ih` absorbs them.
pub struct DiagRnn {
    pub model: Model,
    pub x_bar: Vec<f32>,
    pub w: Vec<f64>,
    pub c: Vec<f64>,
}

pub fn diag_rnn(w: &[f64], c: &[f64]) -> DiagRnn {
    let h = w.len();
    let input = 2;
    let cell = CellDims::new(CellKind::Rnn, input, h).unwrap();
    let layout = cell.layout();
    let mut params = vec![0.0f32; layout.len()];
    let x_bar = vec![0.3f32, -0.2];
    {
        let p = layout.split_mut(&mut params);
        for j in 0..h {
            p.w_ih[j * input] = 0.1 * (j as f32 + 1.0);
            p.w_ih[j * input + 1] = -0.05 * j as f32;
            p.w_hh[j * h + j] = w[j] as f32;
            p.b_hh[j] = 0.01 * j as f32;
            let wx: f32 = (0..input).map(|k| p.w_ih[j * input + k] * x_bar[k]).sum();
            p.b_ih[j] = c[j] as f32 - wx - p.b_hh[j];
        }
    }
    DiagRnn {
        model: Model {
            cell,
            params,
            readout: None,
        },
        x_bar,
        w: w.to_vec(),
        c: c.to_vec(),
    }
}

/// `c` such that `h*` is a fixed point of `tanh(w h + c)`.
pub fn c_for(w: f64, h_star: f64) -> f64 {
    h_star.atanh() - w * h_star
}

/// A readout over `h` that reports class `j` where unit `j` is largest (identity weights).
pub fn identity_readout(h: usize) -> Readout {
    let mut weight = vec![0.0f32; h * h];
    for j in 0..h {
        weight[j * h + j] = 1.0;
    }
    Readout {
        classes: h,
        hidden: h,
        weight,
        bias: vec![0.0; h],
    }
}

/// A grid of `k` candidate states in `[−0.9, 0.9]^h` (deterministic, spread).
pub fn spread_candidates(k: usize, h: usize) -> Vec<f32> {
    (0..k * h)
        .map(|i| {
            let v = ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 1000.0;
            -0.9 + 1.8 * v
        })
        .collect()
}

/// A random network, a constant input and candidates: the LM tests' problem.
pub struct Problem {
    pub cell: CellDims,
    pub params: Vec<f32>,
    pub x: Vec<f32>,
    pub cands: Vec<f32>,
}

pub fn problem(
    kind: CellKind,
    input: usize,
    hidden: usize,
    k: usize,
    gain: f64,
    seed: u64,
) -> Problem {
    let cell = CellDims::new(kind, input, hidden).unwrap();
    let mut r = rng(seed);
    Problem {
        cell,
        params: random_params(&mut r, &cell, gain),
        x: uniform(&mut r, input, -1.0, 1.0),
        cands: uniform(&mut r, k * cell.state_size(), -0.8, 0.8),
    }
}
