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
use memrnn_testkit::{rng, test_seed, uniform};

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
