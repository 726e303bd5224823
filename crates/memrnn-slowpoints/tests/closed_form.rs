//! The finder on networks whose fixed points are known in closed form: it lands on them,
//! with the right stability and eigenvalues, and each point passes an independent check.

#![allow(clippy::needless_range_loop)] // index-heavy closed forms read better with indices

mod common;

use common::*;
use memrnn_core::{real::convert, CellDims, CellKind, Model};
use memrnn_cpu::{reference, CpuBackend};
use memrnn_slowpoints::{find_slow_points, FinderConfig, SlowPointReport};
use memrnn_testkit::{assert_all_close, random_params, rng, test_seed, uniform};

/// S recomputed in f64 from a plain forward step of the reference.
fn reference_speed(model: &Model, x_bar: &[f32], state: &[f32]) -> f64 {
    let p: Vec<f64> = convert(&model.params);
    let x: Vec<f64> = convert(x_bar);
    let s: Vec<f64> = convert(state);
    reference::step_speed(&model.cell, &p, &s, &x, 1).unwrap()[0]
}

fn recheck(report: &SlowPointReport, model: &Model, x_bar: &[f32]) {
    for p in &report.points {
        let s_ref = reference_speed(model, x_bar, &p.state);
        assert!(
            s_ref <= report.config.max_speed_sq as f64 * 1.01 + 1e-12,
            "point {} is not slow by the reference: S = {s_ref:e}",
            p.candidate
        );
        assert!(
            (s_ref - p.speed_sq as f64).abs() <= 1e-9 + 1e-2 * s_ref,
            "reported S {:e} vs reference {s_ref:e}",
            p.speed_sq
        );
        assert!((p.speed as f64 - (p.speed_sq as f64).sqrt()).abs() < 1e-9);
    }
}

#[test]
fn diagonal_rnn_fixed_points_and_eigenvalues() {
    // Unit 2 (w = 2, c = 0) is bistable: fixed points −a (stable), 0 (unstable, λ = 2),
    // a (stable). The others have one fixed point each; unit 3's λ = 0.98 is near 1.
    let w = [0.5, -0.7, 2.0, 1.0, 0.3];
    let h3 = (0.02f64).sqrt(); // 1 − h² = 0.98
    let c = [
        c_for(0.5, 0.3),
        c_for(-0.7, -0.6),
        0.0,
        c_for(1.0, h3),
        c_for(0.3, -0.2),
    ];
    let net = diag_rnn(&w, &c);
    let per_unit: Vec<Vec<f64>> = w
        .iter()
        .zip(&c)
        .map(|(&w, &c)| scalar_fixed_points(w, c))
        .collect();
    for (j, r) in per_unit.iter().enumerate() {
        assert_eq!(r.len(), if j == 2 { 3 } else { 1 }, "unit {j}: roots {r:?}");
    }
    let k = 96;
    let candidates = spread_candidates(k, w.len());
    // Along the slow unit S = ((1 − λ) δ)², so `tol` pins it only to
    // δ ≈ √tol / 0.02 ≈ 5e-4: de-duplicate at 1e-2 (the fixed points are ≥ 0.95 apart).
    // Unit 3 (w = 1) also has a genuine slow region near h = −c (slope of its map ≈ 1,
    // speed ≈ 1e-3): keep fixed points only (max_speed_sq 1e-8) for the closed form.
    let cfg = FinderConfig {
        unit_tol: 0.03,
        dedup_tol: 1e-2,
        max_speed_sq: 1e-8,
        ..FinderConfig::default()
    };
    let report = find_slow_points(
        &CpuBackend::new(),
        &net.model,
        &net.x_bar,
        &candidates,
        &cfg,
    )
    .unwrap();
    assert_eq!(report.counts.candidates, k);
    assert_eq!(
        report.points.len(),
        3,
        "expected the 3 fixed points, got {:#?}",
        report
            .points
            .iter()
            .map(|p| (&p.state, p.speed_sq, p.iters, p.stop))
            .collect::<Vec<_>>()
    );
    let mut seen = [false; 3];
    for p in &report.points {
        // Which root of unit 2?
        let (r2, _) = per_unit[2]
            .iter()
            .enumerate()
            .min_by(|a, b| {
                (a.1 - p.state[2] as f64)
                    .abs()
                    .total_cmp(&(b.1 - p.state[2] as f64).abs())
            })
            .unwrap();
        seen[r2] = true;
        let want: Vec<f64> = (0..w.len())
            .map(|j| {
                if j == 2 {
                    per_unit[2][r2]
                } else {
                    per_unit[j][0]
                }
            })
            .collect();
        for j in 0..w.len() {
            // The slow unit (λ = 0.98) is pinned down less tightly by S.
            let tol = if j == 3 { 2e-3 } else { 2e-4 };
            assert!(
                (p.state[j] as f64 - want[j]).abs() < tol,
                "unit {j}: found {} want {} (point {:?})",
                p.state[j],
                want[j],
                p.state
            );
        }
        // J = diag(w (1 − h²)); eigenvalues sorted by magnitude.
        let mut lam: Vec<f64> = (0..w.len())
            .map(|j| w[j] * (1.0 - want[j] * want[j]))
            .collect();
        lam.sort_by(|a, b| b.abs().total_cmp(&a.abs()));
        for (e, l) in p.eigenvalues.iter().zip(&lam) {
            assert!(
                e.im.abs() < 1e-6,
                "complex eigenvalue {e:?} of a diagonal Jacobian"
            );
            assert!(
                (e.re - l).abs() < 1e-3,
                "eigenvalue {} vs closed form {l} ({:?})",
                e.re,
                p.eigenvalues
            );
        }
        let stable = lam[0].abs() < 1.0;
        assert_eq!(p.stable, stable, "stability of {:?}", p.state);
        assert_eq!(p.stable, r2 != 1, "the middle root of unit 2 is the saddle");
        assert_eq!(
            p.near_unit, 1,
            "λ = 0.98 is within 0.03 of 1: {:?}",
            p.eigenvalues
        );
        assert!((p.max_abs_eig - lam[0].abs()).abs() < 1e-3);
        // The Jacobian itself: diagonal.
        let s = w.len();
        for i in 0..s {
            for jj in 0..s {
                let want = if i == jj {
                    w[i] * (1.0 - want[i] * want[i])
                } else {
                    0.0
                };
                assert!((p.jacobian[i * s + jj] as f64 - want).abs() < 1e-3);
            }
        }
    }
    assert_eq!(seen, [true; 3], "every fixed point found");
    recheck(&report, &net.model, &net.x_bar);
    // Slowest first.
    for pair in report.points.windows(2) {
        assert!(pair[0].speed_sq <= pair[1].speed_sq);
    }
    let merged: usize = report.points.iter().map(|p| p.merged).sum();
    assert_eq!(
        merged + report.counts.too_fast + report.counts.outliers + report.counts.non_finite,
        k
    );
}

#[test]
fn readout_class_is_the_argmax_at_the_point() {
    let w = [0.5, 0.5, 0.5];
    let c = [c_for(0.5, 0.1), c_for(0.5, 0.7), c_for(0.5, -0.4)];
    let mut net = diag_rnn(&w, &c);
    net.model.readout = Some(identity_readout(3));
    let cands = spread_candidates(8, 3);
    let report = find_slow_points(
        &CpuBackend::new(),
        &net.model,
        &net.x_bar,
        &cands,
        &FinderConfig::default(),
    )
    .unwrap();
    assert_eq!(report.points.len(), 1);
    assert_eq!(report.points[0].class, Some(1));
    assert!(report.points[0].stable);
    assert_eq!(report.points[0].merged, 8);
}

/// A GRU whose r and z gates do not depend on h (their W_hh blocks are zero) and whose
/// n-gate recurrent block is diag(w): the fixed point is h* = n(h*), i.e.
/// `h* = tanh(a_n + r (w h* + b_n))`, and `J = diag(z + (1 − z) r w (1 − h*²))`.
#[test]
fn gru_with_a_constructed_fixed_point() {
    let h = 6;
    let input = 3;
    let cell = CellDims::new(CellKind::Gru, input, h).unwrap();
    let layout = cell.layout();
    let mut params = vec![0.0f32; layout.len()];
    let h_star = [0.2f64, -0.5, 0.65, -0.1, 0.0, 0.4];
    let w = [0.8f64, -1.2, 0.5, 1.5, 0.3, -0.4];
    let zb = [1.0f64, 3.0, -1.0, 0.5, 2.0, 0.0];
    let rb = [0.5f64, -0.3, 1.0, 0.0, 0.2, -1.0];
    let x_bar = vec![0.4f32, -0.1, 0.25];
    {
        let p = layout.split_mut(&mut params);
        for j in 0..h {
            for (k, xk) in x_bar.iter().enumerate() {
                p.w_ih[(2 * h + j) * input + k] = 0.1 * (k as f32 - 1.0);
                p.w_ih[j * input + k] = 0.05;
                let _ = xk;
            }
            p.w_hh[(2 * h + j) * h + j] = w[j] as f32;
            p.b_hh[j] = rb[j] as f32 - 0.05 * x_bar.iter().sum::<f32>();
            p.b_ih[h + j] = zb[j] as f32;
            let r = 1.0 / (1.0 + (-rb[j]).exp());
            let b_n = 0.02 * j as f64;
            p.b_hh[2 * h + j] = b_n as f32;
            let wx: f64 = (0..input)
                .map(|k| p.w_ih[(2 * h + j) * input + k] as f64 * x_bar[k] as f64)
                .sum();
            let a_n = h_star[j].atanh() - r * (w[j] * h_star[j] + b_n);
            p.b_ih[2 * h + j] = (a_n - wx) as f32;
        }
    }
    let model = Model {
        cell,
        params,
        readout: None,
    };
    let lam: Vec<f64> = (0..h)
        .map(|j| {
            let r = 1.0 / (1.0 + (-rb[j]).exp());
            let z = 1.0 / (1.0 + (-zb[j]).exp());
            z + (1.0 - z) * r * w[j] * (1.0 - h_star[j] * h_star[j])
        })
        .collect();
    // Each unit's map is monotone (r w (1 − n²) < 1), so h* is the only fixed point.
    let cands = spread_candidates(48, h);
    let report = find_slow_points(
        &CpuBackend::new(),
        &model,
        &x_bar,
        &cands,
        &FinderConfig::default(),
    )
    .unwrap();
    assert_eq!(
        report.points.len(),
        1,
        "{:?}",
        report.points.iter().map(|p| &p.state).collect::<Vec<_>>()
    );
    let p = &report.points[0];
    for j in 0..h {
        let tol = if lam[j] > 0.9 { 2e-3 } else { 2e-4 };
        assert!(
            (p.state[j] as f64 - h_star[j]).abs() < tol,
            "unit {j}: {} vs {}",
            p.state[j],
            h_star[j]
        );
    }
    let mut want = lam.clone();
    want.sort_by(|a, b| b.abs().total_cmp(&a.abs()));
    for (e, l) in p.eigenvalues.iter().zip(&want) {
        assert!((e.re - l).abs() < 1e-3 && e.im.abs() < 1e-6, "{e:?} vs {l}");
    }
    assert!(p.stable);
    recheck(&report, &model, &x_bar);
}

#[test]
fn small_weights_give_one_attractor_from_every_candidate() {
    for kind in CellKind::ALL {
        let cell = CellDims::new(kind, 4, 12).unwrap();
        let seed = test_seed(&format!("single-attractor-{kind}"), 21);
        let mut r = rng(seed);
        // A contraction: one stable fixed point, reached from anywhere.
        let params: Vec<f32> = random_params(&mut r, &cell, 0.5);
        let model = Model {
            cell,
            params,
            readout: None,
        };
        let x_bar: Vec<f32> = uniform(&mut r, 4, -1.0, 1.0);
        let k = 40;
        let cands: Vec<f32> = uniform(&mut r, k * cell.state_size(), -0.9, 0.9);
        let report = find_slow_points(
            &CpuBackend::new(),
            &model,
            &x_bar,
            &cands,
            &FinderConfig::default(),
        )
        .unwrap();
        assert_eq!(
            report.points.len(),
            1,
            "{kind}: {:?} (seed {seed})",
            report
                .points
                .iter()
                .map(|p| (p.speed_sq, p.merged))
                .collect::<Vec<_>>()
        );
        let p = &report.points[0];
        assert_eq!(
            p.merged, k,
            "{kind}: every candidate lands on it (seed {seed})"
        );
        assert!(
            p.stable && p.max_abs_eig < 1.0,
            "{kind}: {:?}",
            p.eigenvalues
        );
        // The attractor is where a long forward run from anywhere goes.
        let pf: Vec<f64> = convert(&model.params);
        let xf: Vec<f64> = convert(&x_bar);
        let mut s = vec![0.0f64; cell.state_size()];
        let mut next = s.clone();
        let pv = cell.layout().split(&pf);
        for _ in 0..2000 {
            reference::step(&cell, &pv, &s, &xf, &mut next);
            std::mem::swap(&mut s, &mut next);
        }
        assert_all_close(
            &format!("{kind}: the attractor (seed {seed})"),
            &p.state,
            &s,
            1e-3,
            0.0,
        );
        recheck(&report, &model, &x_bar);
    }
}
