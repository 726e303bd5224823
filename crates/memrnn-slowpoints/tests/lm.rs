//! The Levenberg–Marquardt search: its maths against finite differences (f64), closed-form
//! fixed points in few iterations, a minimum of `S` above 0 (the "ghost" of a saddle-node)
//! found and reported as such, agreement with Adam, the CPU's fused search against the
//! trait's default, and identical results for 1 and 2 threads.

#![allow(clippy::needless_range_loop)] // index-heavy closed forms read better with indices

mod common;

use common::*;
use memrnn_core::lm::{
    damped_solve, gram_lower, half_gradient, slow_point_lm_default, LmConfig, LmSearch, LmSolver,
    SearchStop,
};
use memrnn_core::{real::convert, Backend, CellDims, CellKind, Model};
use memrnn_cpu::{lm as cpu_lm, reference, CpuBackend};
use memrnn_slowpoints::{find_slow_points, FinderConfig, SearchMethod};
use memrnn_testkit::{assert_all_close, test_seed};

/// `W_ih x̄ + b_ih` in f64.
fn a_bar(cell: &CellDims, params: &[f64], x: &[f64]) -> Vec<f64> {
    let p = cell.layout().split(params);
    (0..cell.gate_rows())
        .map(|r| {
            p.b_ih[r]
                + (0..cell.input)
                    .map(|k| p.w_ih[r * cell.input + k] * x[k])
                    .sum::<f64>()
        })
        .collect()
}

/// The analytic one-step Jacobian and the LM gradient `2 (J − I)ᵀ r`, in f64, against
/// central differences of the reference step and speed, for every cell.
#[test]
fn jacobian_and_lm_gradient_match_finite_differences() {
    for (kind, seed) in [
        (CellKind::Rnn, 1u64),
        (CellKind::Gru, 2),
        (CellKind::Lstm, 3),
    ] {
        let p = problem(kind, 3, 5, 1, 1.5, test_seed(&format!("lm-{kind}"), seed));
        let cell = p.cell;
        let sd = cell.state_size();
        let params: Vec<f64> = convert(&p.params);
        let x: Vec<f64> = convert(&p.x);
        let s: Vec<f64> = convert(&p.cands[..sd]);
        let view = cell.layout().split(params.as_slice());
        let ab = a_bar(&cell, &params, &x);
        let (mut f, mut cache, mut u) = (
            vec![0.0; sd],
            vec![0.0; 5 * cell.hidden],
            vec![0.0; cell.gate_rows()],
        );
        cpu_lm::step_cached(
            &cell, view.w_hh, view.b_hh, &ab, &s, &mut f, &mut cache, &mut u,
        );
        // F itself against the reference step.
        let mut f_ref = vec![0.0; sd];
        reference::step(&cell, &view, &s, &x, &mut f_ref);
        assert_all_close(&format!("{kind}: F"), &f, &f_ref, 1e-13, 0.0);
        let mut jac = vec![0.0; sd * sd];
        cpu_lm::jacobian_from_cache(&cell, view.w_hh, &s, &cache, &mut jac);
        // J column by column from central differences of F.
        let eps = 1e-6;
        let mut w = s.clone();
        let (mut hi, mut lo) = (vec![0.0; sd], vec![0.0; sd]);
        for c in 0..sd {
            w[c] = s[c] + eps;
            reference::step(&cell, &view, &w, &x, &mut hi);
            w[c] = s[c] - eps;
            reference::step(&cell, &view, &w, &x, &mut lo);
            w[c] = s[c];
            for i in 0..sd {
                let fd = (hi[i] - lo[i]) / (2.0 * eps);
                assert!(
                    (jac[i * sd + c] - fd).abs() < 1e-7,
                    "{kind}: J[{i},{c}] = {} vs FD {fd}",
                    jac[i * sd + c]
                );
            }
        }
        // 2 (J − I)ᵀ r against central differences of S.
        let mut a = jac.clone();
        for i in 0..sd {
            a[i * sd + i] -= 1.0;
        }
        let r: Vec<f64> = f.iter().zip(&s).map(|(f, s)| f - s).collect();
        let mut g = vec![0.0; sd];
        half_gradient(&a, &r, &mut g, sd);
        let speed = |v: &[f64]| reference::step_speed(&cell, &params, v, &x, 1).unwrap()[0];
        for c in 0..sd {
            w[c] = s[c] + eps;
            let hi = speed(&w);
            w[c] = s[c] - eps;
            let lo = speed(&w);
            w[c] = s[c];
            let fd = (hi - lo) / (2.0 * eps);
            assert!(
                (2.0 * g[c] - fd).abs() < 1e-7 * (1.0 + fd.abs()),
                "{kind}: dS/ds[{c}] = {} vs FD {fd}",
                2.0 * g[c]
            );
        }
        // The predicted decrease of a damped step is a decrease of the Gauss–Newton model,
        // and the solve satisfies its equations.
        let mut m = vec![0.0; sd * sd];
        gram_lower(&a, &mut m, sd);
        let d: Vec<f64> = (0..sd).map(|i| m[i * sd + i] + 1.0).collect();
        let (mut chol, mut delta) = (vec![0.0; sd * sd], vec![0.0; sd]);
        assert!(damped_solve(&m, &d, 0.1, &g, &mut chol, &mut delta, sd));
        for i in 0..sd {
            let mut lhs = 0.1 * d[i] * delta[i];
            for j in 0..sd {
                let mij = if j <= i { m[i * sd + j] } else { m[j * sd + i] };
                lhs += mij * delta[j];
            }
            assert!(
                (lhs + g[i]).abs() < 1e-10,
                "{kind}: row {i} of the damped system"
            );
        }
    }
}

/// The CPU's f32 Jacobian against the backend's `step_jacobian` (vector–Jacobian products).
#[test]
fn cpu_analytic_jacobian_matches_step_jacobian() {
    let be = CpuBackend::new();
    for (kind, seed) in [
        (CellKind::Rnn, 11u64),
        (CellKind::Gru, 12),
        (CellKind::Lstm, 13),
    ] {
        let p = problem(kind, 4, 9, 3, 1.0, test_seed(&format!("lm-{kind}"), seed));
        let cell = p.cell;
        let sd = cell.state_size();
        let view = cell.layout().split(p.params.as_slice());
        let ab: Vec<f32> = convert(&a_bar(&cell, &convert(&p.params), &convert(&p.x)));
        let xs: Vec<f32> = p.x.iter().copied().cycle().take(3 * cell.input).collect();
        let want = be
            .step_jacobian(&cell, &p.params, &p.cands, &xs, 3)
            .unwrap();
        for k in 0..3 {
            let s = &p.cands[k * sd..(k + 1) * sd];
            let (mut f, mut cache, mut u) = (
                vec![0.0f32; sd],
                vec![0.0f32; 5 * cell.hidden],
                vec![0.0f32; cell.gate_rows()],
            );
            cpu_lm::step_cached(
                &cell, view.w_hh, view.b_hh, &ab, s, &mut f, &mut cache, &mut u,
            );
            let mut jac = vec![0.0f32; sd * sd];
            cpu_lm::jacobian_from_cache(&cell, view.w_hh, s, &cache, &mut jac);
            let want_k = &want[k * sd * sd..(k + 1) * sd * sd];
            assert_all_close(&format!("{kind}: J of point {k}"), &jac, want_k, 1e-5, 0.0);
        }
    }
}

/// The LM finder with the given linear solver.
fn lm_finder(solver: LmSolver) -> FinderConfig {
    let d = FinderConfig::default();
    FinderConfig {
        method: SearchMethod::Lm,
        lm: LmConfig { solver, ..d.lm },
        ..d
    }
}

/// The diagonal RNN of `closed_form.rs` (five units, one bistable, one with λ = 0.98):
/// every fixed point reached, to the closed form, in few iterations, by either solver.
#[test]
fn closed_form_fixed_points_in_few_iterations_dense() {
    closed_form_fixed_points_in_few_iterations(LmSolver::Dense);
}

#[test]
fn closed_form_fixed_points_in_few_iterations_krylov() {
    closed_form_fixed_points_in_few_iterations(LmSolver::Krylov);
}

fn closed_form_fixed_points_in_few_iterations(solver: LmSolver) {
    let w = [0.5, -0.7, 2.0, 1.0, 0.3];
    let h3 = (0.02f64).sqrt();
    let c = [
        c_for(0.5, 0.3),
        c_for(-0.7, -0.6),
        0.0,
        c_for(1.0, h3),
        c_for(0.3, -0.2),
    ];
    let net = diag_rnn(&w, &c);
    let roots: Vec<Vec<f64>> = w
        .iter()
        .zip(&c)
        .map(|(&w, &c)| scalar_fixed_points(w, c))
        .collect();
    let k = 96;
    let cands = spread_candidates(k, w.len());
    let cfg = FinderConfig {
        dedup_tol: 1e-2,
        max_speed_sq: 1e-8,
        ..lm_finder(solver)
    };
    let report =
        find_slow_points(&CpuBackend::new(), &net.model, &net.x_bar, &cands, &cfg).unwrap();
    let mut seen = [false; 3];
    for p in report
        .points
        .iter()
        .filter(|p| p.stop == SearchStop::Converged)
    {
        for j in 0..w.len() {
            let best = roots[j]
                .iter()
                .map(|r| (r - p.state[j] as f64).abs())
                .fold(f64::INFINITY, f64::min);
            assert!(best < 2e-3, "unit {j} at {} is no fixed point", p.state[j]);
        }
        let r2 = roots[2]
            .iter()
            .position(|r| (r - p.state[2] as f64).abs() < 2e-3)
            .unwrap();
        seen[r2] = true;
    }
    assert_eq!(seen, [true; 3], "every fixed point found: {report:?}");
    assert!(
        report.counts.converged >= k * 9 / 10,
        "most candidates converge: {:?}",
        report.counts
    );
    assert_eq!(report.counts.stalled, 0, "{:?}", report.counts);
    // Iterations per candidate: few where Gauss–Newton sees the fixed point; more for
    // candidates that start on unit 3's plateau (slope of its map ≈ 1 near h = −c, where
    // S is flat to third order and LM must first probe its way off).
    let be = CpuBackend::new();
    let mut s = LmSearch::new(&be, &net.model.cell, &cands, &cfg.lm).unwrap();
    be.slow_point_lm(
        &net.model.cell,
        &net.model.params,
        &net.x_bar,
        &mut s,
        &cfg.lm,
    )
    .unwrap();
    let mut iters: Vec<u32> = s.status.iter().map(|st| st.iters).collect();
    iters.sort();
    assert!(
        iters[iters.len() / 2] <= 12 && iters[iters.len() - 1] <= 100,
        "LM ({solver:?}) should need few iterations: {iters:?}"
    );
}

/// A 2-unit tanh RNN: unit 0 has `w = 2` and a bias that puts the local minimum of
/// `f(h) = tanh(2h + b) − h` at `f = ε > 0` (the ghost of a saddle-node: no fixed point
/// there, `S` has a minimum `ε²`); unit 1 is a plain stable unit. Candidates left of the
/// ghost end at its minimum and are reported as such, kept with their speed although
/// `S = ε²` is far above `max_speed_sq`; candidates to the right converge to the fixed
/// point. Either solver; Adam stalls instead.
#[test]
fn ghost_minimum_of_speed_is_found_and_reported_dense() {
    ghost_minimum_of_speed_is_found_and_reported(LmSolver::Dense);
}

#[test]
fn ghost_minimum_of_speed_is_found_and_reported_krylov() {
    ghost_minimum_of_speed_is_found_and_reported(LmSolver::Krylov);
}

fn ghost_minimum_of_speed_is_found_and_reported(solver: LmSolver) {
    let eps = 0.01f64;
    let a = (1.0f64 / 2.0f64.sqrt()).atanh(); // tanh(a) = 1/√2, where f' = 0 (w = 2)
    let b = -a + 2.0f64.sqrt() + 2.0 * eps;
    let h_ghost = (-a - b) / 2.0; // tanh(2h + b) = −1/√2
    let f_min = -(0.5f64).sqrt() - h_ghost;
    assert!((f_min - eps).abs() < 1e-12);
    let w = [2.0, 0.4];
    let c = [b, c_for(0.4, 0.3)];
    let net = diag_rnn(&w, &c);
    let right = scalar_fixed_points(2.0, b);
    assert_eq!(right.len(), 1, "one fixed point, on the right: {right:?}");
    let k = 24;
    let mut cands = Vec::with_capacity(2 * k);
    for i in 0..k {
        // Unit 0 from −0.95 to 0.9 (the local maximum of f is at 0.16); unit 1 spread.
        cands.push(-0.95 + 1.85 * i as f32 / (k - 1) as f32);
        cands.push(-0.5 + (i % 5) as f32 * 0.2);
    }
    let report = find_slow_points(
        &CpuBackend::new(),
        &net.model,
        &net.x_bar,
        &cands,
        &FinderConfig {
            dedup_tol: 1e-3,
            ..lm_finder(solver)
        },
    )
    .unwrap();
    let ghost: Vec<_> = report
        .points
        .iter()
        .filter(|p| p.stop == SearchStop::Minimum)
        .collect();
    let fixed: Vec<_> = report
        .points
        .iter()
        .filter(|p| p.stop == SearchStop::Converged)
        .collect();
    assert!(report.counts.minima > 0, "{:?}", report.counts);
    assert_eq!(ghost.len(), 1, "{solver:?}: one minimum of S: {report:?}");
    let g = ghost[0];
    assert!(
        (g.state[0] as f64 - h_ghost).abs() < 1e-3,
        "minimum at {} vs {h_ghost}",
        g.state[0]
    );
    assert!((g.state[1] as f64 - 0.3).abs() < 1e-3);
    assert!(
        (g.speed_sq as f64 - eps * eps).abs() < 1e-3 * eps * eps,
        "S at the minimum {} vs ε² = {}",
        g.speed_sq,
        eps * eps
    );
    assert!((g.speed as f64 - eps).abs() < 1e-4);
    assert!(
        g.speed_sq > report.config.max_speed_sq,
        "kept although fast"
    );
    assert!(g.merged > 1, "several candidates reach the ghost");
    assert_eq!(fixed.len(), 1, "{report:?}");
    assert!((fixed[0].state[0] as f64 - right[0]).abs() < 1e-3);
    // No candidate ends stalled or at the cap on this simple map.
    assert_eq!(
        report.counts.stalled + report.counts.max_iters,
        0,
        "{:?}",
        report.counts
    );

    // Adam stalls there instead and drops the ghost as too fast.
    let adam = find_slow_points(
        &CpuBackend::new(),
        &net.model,
        &net.x_bar,
        &cands,
        &FinderConfig {
            method: SearchMethod::Adam,
            ..FinderConfig::default()
        },
    )
    .unwrap();
    assert_eq!(adam.counts.minima, 0);
    assert!(adam
        .points
        .iter()
        .all(|p| (p.state[0] as f64 - h_ghost).abs() > 0.1));
}

/// Adam and LM on the same candidates: where both converge, they reach the same point.
#[test]
fn adam_and_lm_agree_on_points_both_find() {
    for (kind, hidden, seed) in [(CellKind::Gru, 12, 21u64), (CellKind::Lstm, 6, 22)] {
        let p = problem(
            kind,
            3,
            hidden,
            24,
            1.0,
            test_seed(&format!("lm-{kind}"), seed),
        );
        let model = Model {
            cell: p.cell,
            params: p.params.clone(),
            readout: None,
        };
        let be = CpuBackend::new();
        let lm =
            find_slow_points(&be, &model, &p.x, &p.cands, &lm_finder(LmSolver::Dense)).unwrap();
        let adam = find_slow_points(
            &be,
            &model,
            &p.x,
            &p.cands,
            &FinderConfig {
                method: SearchMethod::Adam,
                ..FinderConfig::default()
            },
        )
        .unwrap();
        let mut both = 0;
        for a in adam.points.iter().filter(|q| q.speed_sq < 1e-9) {
            let near = lm
                .points
                .iter()
                .filter(|q| q.speed_sq < 1e-9)
                .map(|q| {
                    q.state
                        .iter()
                        .zip(&a.state)
                        .map(|(x, y)| ((x - y) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .fold(f64::INFINITY, f64::min);
            if near < 0.1 {
                both += 1;
                assert!(
                    near < 2e-3,
                    "{kind}: Adam's point and LM's differ by {near}"
                );
            }
        }
        assert!(both >= 1, "{kind}: no point both found: {lm:?} {adam:?}");
        assert!(
            lm.counts.converged >= adam.counts.converged,
            "{kind}: {:?} vs {:?}",
            lm.counts,
            adam.counts
        );
    }
}

fn run_lm(be: &CpuBackend, p: &Problem, cfg: &LmConfig, fused: bool) -> LmSearch<Vec<f32>> {
    let mut s = LmSearch::new(be, &p.cell, &p.cands, cfg).unwrap();
    if fused {
        be.slow_point_lm(&p.cell, &p.params, &p.x, &mut s, cfg)
            .unwrap();
    } else {
        slow_point_lm_default(be, &p.cell, &p.params, &p.x, &mut s, cfg).unwrap();
    }
    s
}

/// The CPU's fused search and the trait's default (step_jacobian, host factorisations)
/// reach the same fixed points (their f32 arithmetic differs, so not bit for bit).
#[test]
fn cpu_search_matches_the_default() {
    let be = CpuBackend::new();
    let cfg = LmConfig::default();
    for (kind, hidden, seed) in [
        (CellKind::Rnn, 7, 31u64),
        (CellKind::Gru, 40, 32),
        (CellKind::Lstm, 5, 33),
    ] {
        let p = problem(
            kind,
            3,
            hidden,
            12,
            0.8,
            test_seed(&format!("lm-{kind}"), seed),
        );
        let sd = p.cell.state_size();
        let fused = run_lm(&be, &p, &cfg, true);
        let dflt = run_lm(&be, &p, &cfg, false);
        let mut compared = 0;
        for c in 0..fused.k {
            let (a, b) = (fused.status[c], dflt.status[c]);
            assert!(a.stop != SearchStop::Running && b.stop != SearchStop::Running);
            if a.stop == SearchStop::Converged && b.stop == SearchStop::Converged {
                compared += 1;
                let rows = c * sd..(c + 1) * sd;
                assert_all_close(
                    &format!("{kind} candidate {c}: fused vs default"),
                    &fused.states[rows.clone()],
                    &dflt.states[rows],
                    1e-3,
                    0.0,
                );
            }
        }
        assert!(compared >= fused.k / 2, "{kind}: {compared} compared");
    }
}

/// Bit-identical results for 1 and 2 threads (the gemm path included: S = 48), and a
/// search stopped at the iteration cap resumes.
#[test]
fn identical_for_one_and_two_threads_and_resumes() {
    let cfg = LmConfig::default();
    for (kind, hidden, seed) in [(CellKind::Gru, 48, 41u64), (CellKind::Lstm, 6, 42)] {
        let p = problem(
            kind,
            3,
            hidden,
            10,
            1.2,
            test_seed(&format!("lm-{kind}"), seed),
        );
        let one = run_lm(&CpuBackend::new().with_threads(1).unwrap(), &p, &cfg, true);
        let two = run_lm(&CpuBackend::new().with_threads(2).unwrap(), &p, &cfg, true);
        assert_eq!(one.states, two.states, "{kind}");
        assert_eq!(format!("{:?}", one.status), format!("{:?}", two.status));

        let be = CpuBackend::new();
        let short = LmConfig {
            max_iters: 1,
            ..cfg
        };
        let mut s = LmSearch::new(&be, &p.cell, &p.cands, &short).unwrap();
        be.slow_point_lm(&p.cell, &p.params, &p.x, &mut s, &short)
            .unwrap();
        assert!(s
            .status
            .iter()
            .all(|st| st.iters <= 1 && st.stop != SearchStop::Running));
        be.slow_point_lm(&p.cell, &p.params, &p.x, &mut s, &cfg)
            .unwrap();
        assert!(
            s.status
                .iter()
                .filter(|st| st.stop == SearchStop::Converged)
                .count()
                >= one
                    .status
                    .iter()
                    .filter(|st| st.stop == SearchStop::Converged)
                    .count()
                    / 2,
            "{kind}: resumed {:?}",
            s.status
        );
    }
}
