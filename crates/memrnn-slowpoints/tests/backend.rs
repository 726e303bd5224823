//! The batched iterations through the `Backend` trait: the fused CPU loop's gradient
//! against finite differences, the fused loop against the trait's default, identical
//! results for 1 and 2 threads, the Jacobian against finite differences, resumption.

#![allow(clippy::needless_range_loop)] // index-heavy closed forms read better with indices

use memrnn_core::backend::{
    slow_point_iterations_default, SlowPointConfig, SlowPointSearch, StopReason,
};
use memrnn_core::{real::convert, AdamConfig, Backend, CellDims, CellKind};
use memrnn_cpu::{reference, CpuBackend};
use memrnn_testkit::{assert_close, random_params, rng, test_seed, uniform};

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

fn run<B: Backend<Tensor = Vec<f32>>>(
    be: &B,
    p: &Problem,
    cfg: &SlowPointConfig,
    fused: bool,
) -> SlowPointSearch<Vec<f32>> {
    let mut s = SlowPointSearch::new(be, &p.cell, &p.cands).unwrap();
    if fused {
        be.slow_point_iterations(&p.cell, &p.params, &p.x, &mut s, cfg)
            .unwrap();
    } else {
        slow_point_iterations_default(be, &p.cell, &p.params, &p.x, &mut s, cfg).unwrap();
    }
    s
}

/// Central differences of S (f64 reference) at one state.
fn fd_speed_grad(cell: &CellDims, params: &[f64], x: &[f64], s: &[f64]) -> Vec<f64> {
    let f = |v: &[f64]| reference::step_speed(cell, params, v, x, 1).unwrap()[0];
    let mut w = s.to_vec();
    (0..s.len())
        .map(|i| {
            let eps = 1e-6;
            w[i] = s[i] + eps;
            let hi = f(&w);
            w[i] = s[i] - eps;
            let lo = f(&w);
            w[i] = s[i];
            (hi - lo) / (2.0 * eps)
        })
        .collect()
}

#[test]
fn fused_gradient_matches_finite_differences() {
    // One Adam step with β₁ = β₂ = 0 and a huge ε moves s by −g · E/(|g| + E), which is
    // inverted exactly to read back the gradient the fused loop used.
    const E: f32 = 1e4;
    let cfg = SlowPointConfig {
        adam: AdamConfig {
            lr: E,
            beta1: 0.0,
            beta2: 0.0,
            eps: E,
        },
        max_iters: 1,
        tol: 0.0,
        stall_window: 0,
        stall_rel: 0.0,
    };
    for kind in CellKind::ALL {
        for (i, h, k) in [(1, 1, 1), (3, 7, 5), (5, 19, 37)] {
            let seed = test_seed(&format!("fused-grad-{kind}-{h}"), 31);
            let p = problem(kind, i, h, k, 2.0, seed);
            let s = run(
                &CpuBackend::new().with_poisoned_scratch(true),
                &p,
                &cfg,
                true,
            );
            let sd = p.cell.state_size();
            let pf: Vec<f64> = convert(&p.params);
            let xf: Vec<f64> = convert(&p.x);
            let mut got = Vec::new();
            let mut want = Vec::new();
            for c in 0..k {
                assert_eq!(s.status[c].iters, 1);
                assert_eq!(s.status[c].stop, StopReason::MaxIters);
                let s0 = &p.cands[c * sd..(c + 1) * sd];
                let s1 = &s.states[c * sd..(c + 1) * sd];
                for (a, b) in s0.iter().zip(s1) {
                    let d = (*a as f64) - (*b as f64);
                    got.push(d * E as f64 / (E as f64 - d.abs()));
                }
                let s0f: Vec<f64> = convert(s0);
                want.extend(fd_speed_grad(&p.cell, &pf, &xf, &s0f));
                // The speed reported is that of the state returned.
                let s1f: Vec<f64> = convert(s1);
                let sp = reference::step_speed(&p.cell, &pf, &s1f, &xf, 1).unwrap()[0];
                assert!(
                    (s.status[c].speed_sq as f64 - sp).abs() <= 1e-4 * sp + 1e-9,
                    "{kind} H{h}: speed {} vs reference {sp}",
                    s.status[c].speed_sq
                );
            }
            assert_close(
                &format!("{kind} I{i} H{h} K{k} fused ∇S"),
                &got,
                &want,
                1e-3,
                seed,
            );
        }
    }
}

#[test]
fn fused_matches_the_default_implementation() {
    for kind in CellKind::ALL {
        let seed = test_seed(&format!("fused-vs-default-{kind}"), 32);
        let p = problem(kind, 4, 21, 45, 1.5, seed);
        let be = CpuBackend::new();
        // A few iterations: the same trajectories up to rounding.
        let short = SlowPointConfig {
            max_iters: 20,
            tol: 0.0,
            stall_window: 0,
            ..SlowPointConfig::default()
        };
        let a = run(&be, &p, &short, true);
        let b = run(&be, &p, &short, false);
        assert_close(
            &format!("{kind} states after 20"),
            &a.states,
            &b.states,
            1e-4,
            seed,
        );
        assert_close(&format!("{kind} m after 20"), &a.m, &b.m, 1e-3, seed);
        assert_close(&format!("{kind} v after 20"), &a.v, &b.v, 1e-3, seed);
        for (x, y) in a.status.iter().zip(&b.status) {
            assert_eq!((x.iters, x.stop), (y.iters, y.stop));
        }
        let sa: Vec<f32> = a.status.iter().map(|s| s.speed_sq).collect();
        let sb: Vec<f32> = b.status.iter().map(|s| s.speed_sq).collect();
        assert_close(&format!("{kind} S after 20"), &sa, &sb, 1e-3, seed);
        // To convergence on a contraction: the same points.
        let pc = problem(kind, 4, 21, 45, 0.5, seed ^ 1);
        let full = SlowPointConfig::default();
        let a = run(&be, &pc, &full, true);
        let b = run(&be, &pc, &full, false);
        for (x, y) in a.status.iter().zip(&b.status) {
            assert_eq!(x.stop, StopReason::Converged, "{kind}: {x:?}");
            assert_eq!(y.stop, StopReason::Converged, "{kind}: {y:?}");
        }
        let diff = a
            .states
            .iter()
            .zip(&b.states)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{kind}: converged points differ by {diff} (seed {seed})"
        );
    }
}

#[test]
fn one_and_two_threads_give_identical_results() {
    for kind in CellKind::ALL {
        let seed = test_seed(&format!("slow-threads-{kind}"), 33);
        // Several chunks, candidates stopping at different times.
        let p = problem(kind, 5, 27, 150, 2.5, seed);
        let cfg = SlowPointConfig {
            max_iters: 300,
            tol: 1e-5,
            stall_window: 50,
            stall_rel: 0.2,
            ..SlowPointConfig::default()
        };
        let one = run(&CpuBackend::new().with_threads(1).unwrap(), &p, &cfg, true);
        for threads in [2, 3] {
            let many = run(
                &CpuBackend::new().with_threads(threads).unwrap(),
                &p,
                &cfg,
                true,
            );
            assert!(
                one.states == many.states,
                "{kind}: states differ with {threads} threads (seed {seed})"
            );
            assert!(
                one.m == many.m && one.v == many.v,
                "{kind}: moments differ (seed {seed})"
            );
            assert!(
                one.status == many.status,
                "{kind}: status differs (seed {seed})"
            );
        }
        let stops: std::collections::HashSet<_> = one.status.iter().map(|s| s.stop).collect();
        assert!(
            stops.len() >= 2,
            "{kind}: the test should mix stop reasons, got {stops:?}"
        );
    }
}

#[test]
fn a_search_resumes_where_it_stopped() {
    for kind in CellKind::ALL {
        let seed = test_seed(&format!("resume-{kind}"), 34);
        let p = problem(kind, 3, 13, 20, 1.5, seed);
        let be = CpuBackend::new();
        // A stall check falls on the iteration where the first call stops.
        let all = SlowPointConfig {
            max_iters: 60,
            tol: 0.0,
            stall_window: 25,
            stall_rel: 1e-2,
            ..SlowPointConfig::default()
        };
        let whole = run(&be, &p, &all, true);
        let mut parts = SlowPointSearch::new(&be, &p.cell, &p.cands).unwrap();
        for max_iters in [25, 60] {
            let cfg = SlowPointConfig { max_iters, ..all };
            be.slow_point_iterations(&p.cell, &p.params, &p.x, &mut parts, &cfg)
                .unwrap();
        }
        assert!(
            whole.states == parts.states && whole.status == parts.status,
            "{kind}"
        );
        // Stopped candidates are left alone.
        let before = parts.states.clone();
        be.slow_point_iterations(&p.cell, &p.params, &p.x, &mut parts, &all)
            .unwrap();
        assert_eq!(before, parts.states);
    }
}

#[test]
fn jacobian_matches_finite_differences() {
    for kind in CellKind::ALL {
        let seed = test_seed(&format!("jac-fd-{kind}"), 35);
        let cell = CellDims::new(kind, 3, 9).unwrap();
        let mut r = rng(seed);
        let params: Vec<f64> = random_params(&mut r, &cell, 2.0);
        let x: Vec<f64> = uniform(&mut r, 3, -1.0, 1.0);
        let s: Vec<f64> = uniform(&mut r, cell.state_size(), -0.9, 0.9);
        let sd = cell.state_size();
        let pv = cell.layout().split(&params);
        let mut want = vec![0.0f64; sd * sd];
        let (mut hi, mut lo) = (vec![0.0; sd], vec![0.0; sd]);
        let mut w = s.clone();
        for j in 0..sd {
            let eps = 1e-6;
            w[j] = s[j] + eps;
            reference::step(&cell, &pv, &w, &x, &mut hi);
            w[j] = s[j] - eps;
            reference::step(&cell, &pv, &w, &x, &mut lo);
            w[j] = s[j];
            for i in 0..sd {
                want[i * sd + j] = (hi[i] - lo[i]) / (2.0 * eps);
            }
        }
        let be = CpuBackend::new();
        let got = be
            .step_jacobian(&cell, &convert(&params), &convert(&s), &convert(&x), 1)
            .unwrap();
        assert_close(&format!("{kind} Jacobian"), &got, &want, 1e-4, seed);
    }
}
