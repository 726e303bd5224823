//! The matrix-free (Krylov) Levenberg–Marquardt search: its Jacobian products against
//! finite differences (f64), the CPU's fused search against the trait's default,
//! closed-form fixed points in few iterations, the ghost minimum of `S`, agreement with
//! the dense search, identical results for 1 and 2 threads, and its settings.

#![allow(clippy::needless_range_loop)] // index-heavy closed forms read better with indices

mod common;

use common::*;
use memrnn_core::lm::{LmConfig, LmSearch, LmSolver, SearchStop};
use memrnn_core::lm_krylov::slow_point_lm_krylov_default;
use memrnn_core::{real::convert, Backend, CellDims, CellKind};
use memrnn_cpu::{lm as cpu_lm, lm_krylov as cpu_kr, reference, CpuBackend};
use memrnn_slowpoints::{find_slow_points, FinderConfig, SearchMethod};
use memrnn_testkit::{random_params, rng, test_seed, uniform};

struct Problem {
    cell: CellDims,
    params: Vec<f32>,
    x: Vec<f32>,
    cands: Vec<f32>,
}

fn problem(kind: CellKind, input: usize, hidden: usize, k: usize, gain: f64, seed: u64) -> Problem {
    let cell = CellDims::new(kind, input, hidden).unwrap();
    let mut r = rng(seed);
    Problem {
        cell,
        params: random_params(&mut r, &cell, gain),
        x: uniform(&mut r, input, -1.0, 1.0),
        cands: uniform(&mut r, k * cell.state_size(), -0.8, 0.8),
    }
}

fn krylov() -> LmConfig {
    LmConfig {
        solver: LmSolver::Krylov,
        ..LmConfig::default()
    }
}

fn dense() -> LmConfig {
    LmConfig {
        solver: LmSolver::Dense,
        ..LmConfig::default()
    }
}

/// `J v` from the per-unit coefficients against central differences of the reference
/// step, and `Jᵀ w` against the dense analytic Jacobian (itself FD-checked in lm.rs) and
/// the adjoint identity `wᵀ (J v) = (Jᵀ w)ᵀ v`, in f64, for every cell and odd sizes.
#[test]
fn jacobian_products_match_finite_differences() {
    for (kind, hidden, seed) in [
        (CellKind::Rnn, 5usize, 1u64),
        (CellKind::Gru, 7, 2),
        (CellKind::Lstm, 3, 3),
        (CellKind::Gru, 1, 4),
    ] {
        let seed = test_seed(&format!("krylov-fd-{kind}-{hidden}"), seed);
        let p = problem(kind, 3, hidden, 1, 1.5, seed);
        let cell = p.cell;
        let sd = cell.state_size();
        let params: Vec<f64> = convert(&p.params);
        let x: Vec<f64> = convert(&p.x);
        let s: Vec<f64> = convert(&p.cands[..sd]);
        let view = cell.layout().split(params.as_slice());
        let ab: Vec<f64> = (0..cell.gate_rows())
            .map(|r| {
                view.b_ih[r]
                    + (0..cell.input)
                        .map(|k| view.w_ih[r * cell.input + k] * x[k])
                        .sum::<f64>()
            })
            .collect();
        let (mut f, mut cache, mut u) = (
            vec![0.0; sd],
            vec![0.0; 5 * hidden],
            vec![0.0; cell.gate_rows()],
        );
        cpu_lm::step_cached(
            &cell, view.w_hh, view.b_hh, &ab, &s, &mut f, &mut cache, &mut u,
        );
        let mut coef = vec![0.0; cpu_kr::coef_width(kind) * hidden];
        cpu_kr::coefficients(&cell, &s, &cache, &mut coef);
        let mut r = rng(seed ^ 0x77);
        let v: Vec<f64> = uniform::<f64>(&mut r, sd, -1.0, 1.0);
        let w: Vec<f64> = uniform::<f64>(&mut r, sd, -1.0, 1.0);
        let mut jv = vec![0.0; sd];
        cpu_kr::jvp_row(&cell, view.w_hh, &coef, &v, &mut jv);
        let eps = 1e-6;
        let (mut hi, mut lo) = (vec![0.0; sd], vec![0.0; sd]);
        let sp: Vec<f64> = s.iter().zip(&v).map(|(a, b)| a + eps * b).collect();
        let sm: Vec<f64> = s.iter().zip(&v).map(|(a, b)| a - eps * b).collect();
        reference::step(&cell, &view, &sp, &x, &mut hi);
        reference::step(&cell, &view, &sm, &x, &mut lo);
        for i in 0..sd {
            let fd = (hi[i] - lo[i]) / (2.0 * eps);
            assert!(
                (jv[i] - fd).abs() < 1e-7,
                "{kind} H={hidden} (seed {seed}): (Jv)[{i}] = {} vs FD {fd}",
                jv[i]
            );
        }
        let mut jtw = vec![0.0; sd];
        cpu_kr::vjp_row(&cell, view.w_hh, &coef, &w, &mut jtw);
        let mut jac = vec![0.0; sd * sd];
        cpu_lm::jacobian_from_cache(&cell, view.w_hh, &s, &cache, &mut jac);
        for c in 0..sd {
            let want: f64 = (0..sd).map(|i| jac[i * sd + c] * w[i]).sum();
            assert!(
                (jtw[c] - want).abs() < 1e-12,
                "{kind} H={hidden} (seed {seed}): (Jᵀw)[{c}] = {} vs {want}",
                jtw[c]
            );
        }
        let lhs: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
        let rhs: f64 = jtw.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()),
            "{kind}: adjoint"
        );
    }
}

fn run(be: &CpuBackend, p: &Problem, cfg: &LmConfig, fused: bool) -> LmSearch<Vec<f32>> {
    let mut s = LmSearch::new(be, &p.cell, &p.cands, cfg).unwrap();
    if fused {
        be.slow_point_lm(&p.cell, &p.params, &p.x, &mut s, cfg)
            .unwrap();
    } else {
        slow_point_lm_krylov_default(be, &p.cell, &p.params, &p.x, &mut s, cfg).unwrap();
    }
    s
}

/// Where two searches both converge they reach the same point; at least half of the
/// candidates converge on both (so the comparison cannot pass empty).
fn assert_same_points(a: &LmSearch<Vec<f32>>, b: &LmSearch<Vec<f32>>, sd: usize, what: &str) {
    let mut compared = 0;
    for c in 0..a.k {
        let (x, y) = (a.status[c], b.status[c]);
        assert!(
            x.stop != SearchStop::Running && y.stop != SearchStop::Running,
            "{what}"
        );
        if x.stop == SearchStop::Converged && y.stop == SearchStop::Converged {
            let d = (0..sd)
                .map(|i| (a.states[c * sd + i] - b.states[c * sd + i]).abs())
                .fold(0.0f32, f32::max);
            // Different fixed points are allowed only far apart (a candidate between two
            // basins may go either way); the same one must agree closely.
            if d < 0.05 {
                compared += 1;
                assert!(d < 1e-3, "{what}: candidate {c} differs by {d}");
            }
        }
    }
    assert!(
        compared * 2 >= a.k,
        "{what}: {compared} of {} compared",
        a.k
    );
}

/// The CPU's fused matrix-free search (batched SGEMM products over chunks, K above one
/// chunk) against the trait's default (step_jvp and seq_backward), and against the dense
/// search, on contracting networks of every cell and odd sizes.
#[test]
fn cpu_krylov_matches_the_default_and_dense() {
    let be = CpuBackend::new();
    for (kind, hidden, k, seed) in [
        (CellKind::Rnn, 7usize, 12usize, 31u64),
        (CellKind::Gru, 33, 70, 32),
        (CellKind::Lstm, 5, 12, 33),
    ] {
        let seed = test_seed(&format!("krylov-{kind}"), seed);
        let p = problem(kind, 3, hidden, k, 0.8, seed);
        let sd = p.cell.state_size();
        let fused = run(&be, &p, &krylov(), true);
        let dflt = run(&be, &p, &krylov(), false);
        let what = format!("{kind} H={hidden} (seed {seed})");
        assert_same_points(&fused, &dflt, sd, &format!("{what}: fused vs default"));
        let dense = run(&be, &p, &dense(), true);
        assert_same_points(&fused, &dense, sd, &format!("{what}: krylov vs dense"));
        for st in &fused.status {
            assert!(st.speed_sq.is_finite(), "{what}: {st:?}");
        }
    }
}

/// Bit-identical results for 1 and 2 threads with K over two chunks, and a search
/// stopped at the iteration cap resumes.
#[test]
fn identical_for_one_and_two_threads_and_resumes() {
    let cfg = krylov();
    for (kind, hidden, seed) in [(CellKind::Gru, 21usize, 41u64), (CellKind::Lstm, 6, 42)] {
        let seed = test_seed(&format!("krylov-threads-{kind}"), seed);
        let p = problem(kind, 3, hidden, 2 * cpu_kr::CHUNK + 5, 1.2, seed);
        let one = run(&CpuBackend::new().with_threads(1).unwrap(), &p, &cfg, true);
        let two = run(&CpuBackend::new().with_threads(2).unwrap(), &p, &cfg, true);
        assert_eq!(one.states, two.states, "{kind} (seed {seed})");
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
        let conv = |s: &LmSearch<Vec<f32>>| {
            s.status
                .iter()
                .filter(|st| st.stop == SearchStop::Converged)
                .count()
        };
        assert!(
            conv(&s) >= conv(&one) / 2 && conv(&one) > 0,
            "{kind} (seed {seed}): resumed {} vs {}",
            conv(&s),
            conv(&one)
        );
    }
}

fn krylov_finder() -> FinderConfig {
    FinderConfig {
        method: SearchMethod::Lm,
        lm: krylov(),
        ..FinderConfig::default()
    }
}

/// The diagonal RNN of `closed_form.rs`: every fixed point reached with the matrix-free
/// solver, to the closed form, in few iterations.
#[test]
fn closed_form_fixed_points_in_few_iterations() {
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
        ..krylov_finder()
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
        "LM should need few iterations: {iters:?}"
    );
}

/// The ghost of a saddle-node of `lm.rs` (a minimum of `S` at `ε² > 0`): found by the
/// matrix-free search as a minimum of `S`, at the closed-form place and speed.
#[test]
fn ghost_minimum_of_speed_is_found_and_reported() {
    let eps = 0.01f64;
    let a = (1.0f64 / 2.0f64.sqrt()).atanh();
    let b = -a + 2.0f64.sqrt() + 2.0 * eps;
    let h_ghost = (-a - b) / 2.0;
    let w = [2.0, 0.4];
    let c = [b, c_for(0.4, 0.3)];
    let net = diag_rnn(&w, &c);
    let right = scalar_fixed_points(2.0, b);
    let k = 24;
    let mut cands = Vec::with_capacity(2 * k);
    for i in 0..k {
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
            ..krylov_finder()
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
    assert_eq!(ghost.len(), 1, "one minimum of S: {report:?}");
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
    assert!(g.merged > 1, "several candidates reach the ghost");
    assert_eq!(fixed.len(), 1, "{report:?}");
    assert!((fixed[0].state[0] as f64 - right[0]).abs() < 1e-3);
    assert_eq!(
        report.counts.stalled + report.counts.max_iters,
        0,
        "{:?}",
        report.counts
    );
}

/// `Auto` picks by the operation count, the names parse, and bad settings are refused
/// with a message naming them.
#[test]
fn solver_rule_names_and_settings() {
    let cell = |kind, h| CellDims::new(kind, 2, h).unwrap();
    for (kind, below, at) in [
        (CellKind::Gru, 84, 85),
        (CellKind::Rnn, 28, 29),
        (CellKind::Lstm, 14, 15),
    ] {
        assert_eq!(LmSolver::Auto.resolve(&cell(kind, below)), LmSolver::Dense);
        assert_eq!(LmSolver::Auto.resolve(&cell(kind, at)), LmSolver::Krylov);
        assert_eq!(LmSolver::Dense.resolve(&cell(kind, at)), LmSolver::Dense);
        assert_eq!(
            LmSolver::Krylov.resolve(&cell(kind, below)),
            LmSolver::Krylov
        );
    }
    for s in [LmSolver::Auto, LmSolver::Dense, LmSolver::Krylov] {
        assert_eq!(s.name().parse::<LmSolver>().unwrap(), s);
    }
    let e = "qr".parse::<LmSolver>().unwrap_err().to_string();
    assert!(e.contains("auto, dense or krylov"), "{e}");
    for bad in [
        LmConfig {
            cg_max_iters: 0,
            ..krylov()
        },
        LmConfig {
            forcing_max: 1.0,
            ..krylov()
        },
        LmConfig {
            forcing_max: f32::NAN,
            ..krylov()
        },
    ] {
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("cg_max_iters") && e.contains("forcing_max"),
            "{e}"
        );
    }
    // Non-finite parameters are refused, not searched.
    let be = CpuBackend::new();
    let mut p = problem(CellKind::Gru, 2, 4, 3, 1.0, 5);
    p.params[3] = f32::NAN;
    let mut s = LmSearch::new(&be, &p.cell, &p.cands, &krylov()).unwrap();
    let e = be
        .slow_point_lm(&p.cell, &p.params, &p.x, &mut s, &krylov())
        .unwrap_err()
        .to_string();
    assert!(e.contains("params"), "{e}");
}
