//! Known answers for the memory diagnostics: Jacobian–vector products against finite
//! differences and dense Jacobians; ‖J‖₂ against a dense SVD; Lyapunov exponents of
//! linear-regime and contracting networks; attractors of bistable and 2-cycle networks;
//! memory curves of a shift register and of a memoryless network; slower slow points ⇒
//! longer memory; the report's JSON and plots; bad input.

use memrnn_core::backend::step_jvp_default;
use memrnn_core::{real::convert, Backend, CellDims, CellKind, Model, SeqShape};
use memrnn_cpu::{reference, CpuBackend};
use memrnn_diagnostics::constructed::{scaled_identity, shift_register, tanh_rnn};
use memrnn_diagnostics::*;
use memrnn_testkit::{assert_close, random_params, rng, test_seed, uniform};
use rand::RngExt;

fn be() -> CpuBackend {
    CpuBackend::new()
}

#[test]
fn jvp_matches_finite_differences_and_the_dense_jacobian() {
    for kind in CellKind::ALL {
        for (i, h, n) in [(1, 1, 1), (3, 5, 4), (7, 9, 3)] {
            let cell = CellDims::new(kind, i, h).unwrap();
            let seed = test_seed(&format!("jvp-{kind}-{i}-{h}"), 3);
            let mut r = rng(seed);
            let sd = cell.state_size();
            let p: Vec<f64> = random_params(&mut r, &cell, 1.5);
            let s: Vec<f64> = uniform(&mut r, n * sd, -0.9, 0.9);
            let x: Vec<f64> = uniform(&mut r, n * i, -1.0, 1.0);
            let v: Vec<f64> = uniform(&mut r, n * sd, -1.0, 1.0);
            let got = reference::step_jvp(&cell, &p, &s, &x, &v, n).unwrap();
            // Central differences of the reference step, in f64.
            let eps = 1e-6;
            let pv = cell.layout().split(&p);
            let mut fd = vec![0f64; n * sd];
            let (mut fp, mut fm) = (vec![0f64; sd], vec![0f64; sd]);
            for k in 0..n {
                let sk = &s[k * sd..(k + 1) * sd];
                let vk = &v[k * sd..(k + 1) * sd];
                let plus: Vec<f64> = sk.iter().zip(vk).map(|(a, b)| a + eps * b).collect();
                let minus: Vec<f64> = sk.iter().zip(vk).map(|(a, b)| a - eps * b).collect();
                reference::step(&cell, &pv, &plus, &x[k * i..(k + 1) * i], &mut fp);
                reference::step(&cell, &pv, &minus, &x[k * i..(k + 1) * i], &mut fm);
                for j in 0..sd {
                    fd[k * sd + j] = (fp[j] - fm[j]) / (2.0 * eps);
                }
            }
            assert_close(
                &format!("{kind} jvp vs finite differences"),
                &got,
                &fd,
                1e-6,
                seed,
            );
            // The CPU backend's override and the trait's default (through step_jacobian).
            let be = be();
            let (p32, s32, x32, v32): (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) =
                (convert(&p), convert(&s), convert(&x), convert(&v));
            let fast = be.step_jvp(&cell, &p32, &s32, &x32, &v32, n).unwrap();
            let dflt = step_jvp_default(&be, &cell, &p32, &s32, &x32, &v32, n).unwrap();
            assert_close(&format!("{kind} cpu step_jvp"), &fast, &got, 1e-5, seed);
            assert_close(&format!("{kind} default step_jvp"), &dflt, &got, 1e-5, seed);
        }
    }
}

#[test]
fn step_jvp_rejects_bad_lengths() {
    let cell = CellDims::new(CellKind::Lstm, 2, 3).unwrap();
    let p = vec![0f32; cell.layout().len()];
    let be = be();
    let e = be
        .step_jvp(&cell, &p, &vec![0.0; 12], &vec![0.0; 4], &vec![0.0; 5], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("v") && e.contains("12"), "{e}");
    assert!(step_jvp_default(
        &be,
        &cell,
        &p,
        &vec![0.0; 12],
        &vec![0.0; 3],
        &vec![0.0; 12],
        2
    )
    .is_err());
}

/// The largest singular value of each `[S, S]` block of `jac`, by faer's SVD.
fn dense_norms(jac: &[f32], n: usize, sd: usize) -> Vec<f64> {
    (0..n)
        .map(|k| {
            let m = faer::Mat::<f64>::from_fn(sd, sd, |i, j| jac[(k * sd + i) * sd + j] as f64);
            m.singular_values().unwrap()[0]
        })
        .collect()
}

#[test]
fn spectral_norm_by_power_iteration_matches_a_dense_svd() {
    for kind in CellKind::ALL {
        let cell = CellDims::new(kind, 4, 6).unwrap();
        let seed = test_seed(&format!("lip-{kind}"), 5);
        let mut r = rng(seed);
        let model = Model {
            cell,
            params: random_params(&mut r, &cell, 2.0),
            readout: None,
        };
        let be = be();
        let net = Net::new(&be, &model).unwrap();
        let shape = SeqShape::new(7, 3).unwrap();
        let x: Vec<f32> = uniform(&mut r, shape.rows() * 4, -1.0, 1.0);
        let cfg = LipschitzConfig {
            max_iters: 500,
            rel_tol: 1e-9,
            ..Default::default()
        };
        let rep = lipschitz(&net, &x, shape, None, &cfg).unwrap();
        // Dense answer at the same points: s_{t−1} with x_t.
        let sd = cell.state_size();
        let traj = net.trajectory(&x, shape, None).unwrap();
        let n = shape.rows();
        let states = traj[..n * sd].to_vec();
        let jac = be
            .step_jacobian(&cell, &model.params, &states, &x, n)
            .unwrap();
        let want = dense_norms(&jac, n, sd);
        let (got, _) = spectral_norms(&net, &states, &x, n, &cfg).unwrap();
        assert_close(&format!("{kind} ‖J‖₂"), &got, &want, 1e-4, seed);
        let max = want.iter().copied().fold(0.0, f64::max);
        assert!(
            (rep.lipschitz - max).abs() < 1e-4 * max,
            "{kind}: L̂ {} vs {max}",
            rep.lipschitz
        );
        for t in 0..shape.steps {
            let row = &want[t * 3..(t + 1) * 3];
            let mut sorted = row.to_vec();
            sorted.sort_by(f64::total_cmp);
            assert!((rep.per_step_max[t] - sorted[2]).abs() < 1e-4 * sorted[2]);
            assert!((rep.per_step_median[t] - sorted[1]).abs() < 1e-4 * sorted[1]);
        }
        assert_eq!(rep.steps, (1..=7).collect::<Vec<_>>());
    }
}

/// Tiny-noise inputs `[T, B, I]`.
fn noise(seed: u64, rows: usize, scale: f64) -> Vec<f32> {
    uniform(&mut rng(seed), rows, -scale, scale)
}

#[test]
fn lyapunov_spectrum_of_a_linear_regime_network_is_log_of_its_eigenvalues() {
    // Non-normal W with eigenvalues 0.9, 0.5, 0.3: in tanh's linear regime (inputs 1e-5)
    // the exponents are their logs, although ‖W‖₂ > 0.9.
    let w = [0.9f32, 0.6, 0.2, 0.0, 0.5, 0.7, 0.0, 0.0, 0.3];
    let model = tanh_rnn(&[1.0, 1.0, 1.0], &w, 1, 3).unwrap();
    let be = be();
    let net = Net::new(&be, &model).unwrap();
    let shape = SeqShape::new(1500, 2).unwrap();
    let x = noise(1, shape.rows(), 1e-5);
    let cfg = LyapunovConfig {
        transient: 100,
        exponents: 3,
        ..Default::default()
    };
    let rep = lyapunov(&net, &x, shape, None, &cfg).unwrap();
    let want = [0.9f64.ln(), 0.5f64.ln(), 0.3f64.ln()];
    for (g, w) in rep.exponents.iter().zip(want) {
        assert!(
            (g - w).abs() < 2e-3,
            "exponents {:?} vs {want:?}",
            rep.exponents
        );
    }
    // λ₁ alone agrees, and its running estimate converges.
    let one = lyapunov(
        &net,
        &x,
        shape,
        None,
        &LyapunovConfig {
            transient: 100,
            ..Default::default()
        },
    )
    .unwrap();
    assert!((one.exponents[0] - want[0]).abs() < 2e-3);
    assert_eq!(*one.curve_steps.last().unwrap(), 1400);
    assert_eq!(*one.curve.last().unwrap(), one.exponents[0]);
    let err = |i: usize| (one.curve[i] - want[0]).abs();
    let early = one.curve_steps.iter().position(|&t| t >= 5).unwrap();
    assert!(
        err(one.curve.len() - 1) < err(early).max(1e-3),
        "no convergence: {:?}",
        &one.curve[..10]
    );
    assert!(rep.std_over_trials[0] < 1e-3);
}

#[test]
fn lyapunov_exponent_of_a_contracting_network_is_log_spectral_radius_at_its_fixed_point() {
    let cell = CellDims::new(CellKind::Rnn, 3, 6).unwrap();
    let seed = test_seed("lyap-fp", 9);
    let mut r = rng(seed);
    let model = Model {
        cell,
        params: random_params(&mut r, &cell, 1.0),
        readout: None,
    };
    let be = be();
    let net = Net::new(&be, &model).unwrap();
    let xbar: Vec<f32> = uniform(&mut r, 3, -1.0, 1.0);
    let fp = net.run_constant(&xbar, &[0.0; 6], 1, 2000).unwrap();
    let jac = be
        .step_jacobian(&cell, &model.params, &fp, &xbar, 1)
        .unwrap();
    let m = faer::Mat::<f64>::from_fn(6, 6, |i, j| jac[i * 6 + j] as f64);
    let rho = m
        .eigenvalues()
        .unwrap()
        .iter()
        .map(|c| c.norm())
        .fold(0.0, f64::max);
    assert!(
        rho < 1.0,
        "seed {seed}: the network is not contracting (ρ = {rho})"
    );
    let shape = SeqShape::new(800, 2).unwrap();
    let x: Vec<f32> = (0..shape.rows()).flat_map(|_| xbar.clone()).collect();
    let s0: Vec<f32> = uniform(&mut r, 12, -0.5, 0.5);
    let rep = lyapunov(
        &net,
        &x,
        shape,
        Some(&s0),
        &LyapunovConfig {
            transient: 200,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rep.exponents[0] < 0.0);
    assert!(
        (rep.exponents[0] - rho.ln()).abs() < 1e-2,
        "seed {seed}: λ₁ {} vs log ρ {}",
        rep.exponents[0],
        rho.ln()
    );
}

fn attractor_cfg() -> AttractorConfig {
    AttractorConfig {
        runs: 40,
        transient: 300,
        record: 16,
        max_period: 4,
        ..Default::default()
    }
}

#[test]
fn bistable_network_has_two_fixed_points_and_their_product_in_higher_dimension() {
    let h_star = {
        let mut h = 1.0f64;
        for _ in 0..200 {
            h = (2.0 * h).tanh();
        }
        h
    };
    let be = be();
    let model = scaled_identity(2.0, &[0.0], 1, 1).unwrap();
    let net = Net::new(&be, &model).unwrap();
    let rep = attractors(&net, &[0.0], &attractor_cfg()).unwrap();
    assert_eq!(rep.attractors.len(), 2, "{rep:?}");
    assert_eq!(rep.fixed_points, 2);
    assert_eq!(rep.unresolved, 0);
    let mut pts: Vec<f64> = rep
        .attractors
        .iter()
        .map(|a| a.points[0][0] as f64)
        .collect();
    pts.sort_by(f64::total_cmp);
    assert!(
        (pts[0] + h_star).abs() < 1e-4 && (pts[1] - h_star).abs() < 1e-4,
        "{pts:?} vs ±{h_star}"
    );
    let basins: usize = rep.attractors.iter().map(|a| a.basin_size).sum();
    assert_eq!(basins, 40);
    assert!(rep
        .attractors
        .iter()
        .all(|a| a.basin_size >= 10 && a.residual < 1e-5));
    assert_eq!(rep.orbit.runs.len(), 40);
    assert!(rep.orbit.runs.iter().all(|r| r.values.len() == 16));
    // Three independent bistable units: 2³ fixed points.
    let model = scaled_identity(2.0, &[0.0; 3], 1, 3).unwrap();
    let net = Net::new(&be, &model).unwrap();
    let cfg = AttractorConfig {
        runs: 200,
        ..attractor_cfg()
    };
    let rep = attractors(&net, &[0.0], &cfg).unwrap();
    assert_eq!((rep.attractors.len(), rep.fixed_points), (8, 8));
}

#[test]
fn the_folded_network_is_the_same_map_under_the_constant_input() {
    for kind in CellKind::ALL {
        for (i, h, n) in [(1, 1, 1), (7, 5, 3), (13, 9, 4)] {
            let cell = CellDims::new(kind, i, h).unwrap();
            let seed = test_seed(&format!("fold-{kind}-{i}-{h}"), 1);
            let mut r = rng(seed);
            let sd = cell.state_size();
            let p: Vec<f32> = random_params(&mut r, &cell, 1.5);
            let model = Model {
                cell,
                params: p,
                readout: None,
            };
            let be = be();
            let net = Net::new(&be, &model).unwrap();
            let xbar: Vec<f32> = uniform(&mut r, i, -1.0, 1.0);
            let s: Vec<f32> = uniform(&mut r, n * sd, -0.9, 0.9);
            let xs: Vec<f32> = (0..n).flat_map(|_| xbar.iter().copied()).collect();
            let want = net.step(&s, &xs, n).unwrap();
            let folded = net.with_constant_input(&xbar).unwrap();
            assert_eq!((folded.cell.input, folded.cell.hidden), (1, h));
            let zero = vec![0f32; n];
            let got = folded.step(&s, &zero, n).unwrap();
            assert_close(
                &format!("{kind} folded step"),
                &convert::<f32, f64>(&got),
                &convert::<f32, f64>(&want),
                1e-6,
                seed,
            );
        }
    }
    let be = be();
    let net = Net::new(&be, &scaled_identity(1.0, &[0.5], 1, 1).unwrap()).unwrap();
    let e = net.with_constant_input(&[f32::NAN]).err().unwrap();
    assert!(e.to_string().contains("constant input"), "{e}");
}

/// `h ↦ tanh(h)` settles at 0 like `√(3/2t)`: its step falls below 1e-6 only after
/// about 7,000 steps. A fixed transient of 100 leaves every run moving; following the
/// runs (the transient doubling) settles all of them at the one fixed point.
#[test]
fn slowly_settling_runs_are_followed_until_they_settle() {
    let be = be();
    let net = Net::new(&be, &scaled_identity(1.0, &[0.0], 1, 1).unwrap()).unwrap();
    let cfg = AttractorConfig {
        runs: 12,
        transient: 100,
        max_steps: 100,
        record: 16,
        max_period: 4,
        period_tol: 1e-6,
        cluster_tol: 0.05,
        ..Default::default()
    };
    let cut = attractors(&net, &[0.0], &cfg).unwrap();
    // (A run that starts within ~0.01 of 0 is already settled.)
    assert!(cut.unresolved >= 10, "{cut:?}");
    assert!(cut.orbit.runs.iter().all(|r| r.steps == 100));
    let moving = cut.orbit.runs.iter().filter(|r| r.attractor.is_none());
    assert!(moving.clone().all(|r| r.drift > cfg.period_tol as f64));
    let followed = attractors(
        &net,
        &[0.0],
        &AttractorConfig {
            max_steps: 20_000,
            ..cfg
        },
    )
    .unwrap();
    assert_eq!(followed.unresolved, 0, "{followed:?}");
    assert_eq!((followed.attractors.len(), followed.fixed_points), (1, 1));
    let a = &followed.attractors[0];
    assert!(a.points[0][0].abs() < 0.02 && a.basin_size == 12, "{a:?}");
    assert!(followed
        .orbit
        .runs
        .iter()
        .all(|r| r.steps <= 20_000 && r.drift < 1e-6));
    // The runs still moving at 100 steps (|h| > 0.1) need |h| < 0.0144: thousands of steps.
    let long = followed
        .orbit
        .runs
        .iter()
        .filter(|r| r.steps >= 6400)
        .count();
    assert!(
        long >= cut.unresolved,
        "{long} runs went ≥ 6400 steps: {followed:?}"
    );
    let bad = AttractorConfig {
        max_steps: 50,
        ..cfg
    };
    let e = attractors(&net, &[0.0], &bad).unwrap_err();
    assert!(e.to_string().contains("max_steps ≥ transient"), "{e}");
}

#[test]
fn negative_feedback_network_has_two_cycles() {
    let be = be();
    let model = scaled_identity(-2.0, &[0.0], 1, 1).unwrap();
    let net = Net::new(&be, &model).unwrap();
    let rep = attractors(&net, &[0.0], &attractor_cfg()).unwrap();
    assert_eq!(rep.attractors.len(), 1, "{rep:?}");
    let a = &rep.attractors[0];
    assert_eq!((a.period, a.basin_size), (2, 40));
    assert!((a.points[0][0] + a.points[1][0]).abs() < 1e-5 && a.points[0][0].abs() > 0.9);
    assert!(a.projection[0] * a.projection[1] < 0.0);
    // Two units oscillate in phase or in anti-phase: two distinct 2-cycles.
    let model = scaled_identity(-2.0, &[0.0; 2], 1, 2).unwrap();
    let net = Net::new(&be, &model).unwrap();
    let cfg = AttractorConfig {
        projection: Projection::Unit(1),
        ..attractor_cfg()
    };
    let rep = attractors(&net, &[0.0], &cfg).unwrap();
    assert_eq!(rep.attractors.len(), 2);
    assert!(rep.attractors.iter().all(|a| a.period == 2));
    assert_eq!(rep.orbit.axis, "unit 1");
}

/// Random symbols at every step: one-hot inputs `[T, B, C]` and labels `[T, B]`.
fn symbols(seed: u64, shape: SeqShape, classes: usize) -> (Vec<f32>, Vec<Option<usize>>) {
    let mut r = rng(seed);
    let labels: Vec<Option<usize>> = (0..shape.rows())
        .map(|_| Some(r.random_range(0..classes)))
        .collect();
    let mut x = vec![0f32; shape.rows() * classes];
    for (k, l) in labels.iter().enumerate() {
        x[k * classes + l.unwrap_or(0)] = 1.0;
    }
    (x, labels)
}

#[test]
fn shift_register_remembers_exactly_its_length() {
    let (c, len) = (3, 4);
    let be = be();
    let model = shift_register(c, len, 2.0).unwrap();
    let net = Net::new(&be, &model).unwrap();
    let shape = SeqShape::new(40, 40).unwrap();
    let (x, labels) = symbols(7, shape, c);
    let cfg = MemoryConfig {
        max_delay: 8,
        ..Default::default()
    };
    let m = memory_curve_of(&net, &x, shape, None, &labels, c, &cfg).unwrap();
    assert_eq!(m.delays, (0..=8).collect::<Vec<_>>());
    for (d, &a) in m.delays.iter().zip(&m.accuracy) {
        if *d < len {
            assert_eq!(a, 1.0, "delay {d}: {:?}", m.accuracy);
        } else {
            assert!((a - 1.0 / 3.0).abs() < 0.08, "delay {d}: {:?}", m.accuracy);
        }
    }
    assert!(
        (m.capacity - len as f64).abs() < 0.5,
        "capacity {}",
        m.capacity
    );
}

#[test]
fn network_without_recurrence_remembers_only_the_present() {
    let c = 3;
    let mut r = rng(test_seed("memoryless", 1));
    let w_ih: Vec<f32> = uniform(&mut r, 8 * c, -2.0, 2.0);
    let model = tanh_rnn(&w_ih, &[0.0; 64], c, 8).unwrap();
    let be = be();
    let net = Net::new(&be, &model).unwrap();
    let shape = SeqShape::new(30, 40).unwrap();
    let (x, labels) = symbols(8, shape, c);
    let m = memory_curve_of(
        &net,
        &x,
        shape,
        None,
        &labels,
        c,
        &MemoryConfig {
            max_delay: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(m.accuracy[0], 1.0);
    assert!(
        m.accuracy[1..].iter().all(|a| (a - 1.0 / 3.0).abs() < 0.08),
        "{:?}",
        m.accuracy
    );
    assert!(m.capacity < 1.3);
}

/// One class shown at step 0 (one-hot on the first `c` inputs), then noise on `h` noise
/// inputs (one per unit) at every step: states `[T, B, ·]`, labels at step 0 only.
fn delayed_trials(
    seed: u64,
    shape: SeqShape,
    c: usize,
    h: usize,
    sigma: f64,
) -> (Vec<f32>, Vec<Option<usize>>) {
    let mut r = rng(seed);
    let i = c + h;
    let mut x = vec![0f32; shape.rows() * i];
    let mut labels = vec![None; shape.rows()];
    for b in 0..shape.batch {
        let y = r.random_range(0..c);
        labels[b] = Some(y);
        x[b * i + y] = 1.0;
    }
    for k in 0..shape.rows() {
        for j in 0..h {
            x[k * i + c + j] = r.random_range(-sigma..sigma) as f32 * 3f32.sqrt();
        }
    }
    (x, labels)
}

#[test]
fn slower_slow_points_give_longer_memory() {
    let (c, h) = (3, 8);
    let mut r = rng(test_seed("slow-vs-memory", 2));
    let signal: Vec<f32> = uniform(&mut r, h * c, -1.0, 1.0);
    let mut w_ih = vec![0f32; h * (c + h)];
    for j in 0..h {
        w_ih[j * (c + h)..j * (c + h) + c].copy_from_slice(&signal[j * c..(j + 1) * c]);
        w_ih[j * (c + h) + c + j] = 1.0;
    }
    let shape = SeqShape::new(30, 300).unwrap();
    let (x, labels) = delayed_trials(3, shape, c, h, 0.1);
    let be = be();
    let mut results = Vec::new();
    for w in [0.95f32, 0.6] {
        let mut w_hh = vec![0f32; h * h];
        (0..h).for_each(|j| w_hh[j * h + j] = w);
        let model = tanh_rnn(&w_ih, &w_hh, c + h, h).unwrap();
        let net = Net::new(&be, &model).unwrap();
        let cfg = MemoryConfig {
            max_delay: 29,
            ..Default::default()
        };
        let mem = memory_curve_of(&net, &x, shape, None, &labels, c, &cfg).unwrap();
        // Speed under the delay-period input (noise at its mean, 0) at the per-class
        // mean states one step after the cue: the memory states.
        let traj = net.trajectory(&x, shape, None).unwrap();
        let mut means = vec![0f32; c * h];
        let mut counts = vec![0usize; c];
        for b in 0..shape.batch {
            let y = labels[b].unwrap();
            counts[y] += 1;
            let s = &traj[(shape.batch + b) * h..(shape.batch + b + 1) * h];
            means[y * h..(y + 1) * h]
                .iter_mut()
                .zip(s)
                .for_each(|(m, v)| *m += v);
        }
        for y in 0..c {
            means[y * h..(y + 1) * h]
                .iter_mut()
                .for_each(|m| *m /= counts[y] as f32);
        }
        let speed = be
            .step_speed(
                &model.cell,
                &model.params,
                &means,
                &vec![0.0; c * (c + h)],
                c,
            )
            .unwrap();
        let speed = speed.iter().map(|s| (*s as f64).sqrt()).sum::<f64>() / c as f64;
        results.push((w, speed, mem.capacity));
    }
    let (slow, fast) = (results[0], results[1]);
    assert!(slow.1 < fast.1, "speeds: {results:?}");
    assert!(
        slow.2 > fast.2 + 3.0,
        "the slower network should remember longer: {results:?}"
    );
}

#[test]
fn diagnose_writes_a_report_and_plots() {
    let cell = CellDims::new(CellKind::Lstm, 3, 5).unwrap();
    let model = Model::init(cell, 4);
    let shape = SeqShape::new(30, 6).unwrap();
    let (x, labels) = symbols(5, shape, 3);
    let inputs = DiagnoseInputs {
        x,
        shape,
        s0: None,
        labels: Some(labels),
        classes: 3,
        constant_input: None,
    };
    let cfg = DiagnoseConfig {
        attractors: Some(AttractorConfig {
            runs: 8,
            transient: 100,
            ..attractor_cfg()
        }),
        lyapunov: Some(LyapunovConfig {
            transient: 10,
            exponents: 2,
            ..Default::default()
        }),
        memory: Some(MemoryConfig {
            max_delay: 4,
            ..Default::default()
        }),
        ..Default::default()
    };
    let rep = diagnose(&be(), &model, &inputs, &cfg).unwrap();
    let lip = rep.lipschitz.as_ref().unwrap();
    assert_eq!(lip.per_step_max.len(), 30);
    let lya = rep.lyapunov.as_ref().unwrap();
    assert_eq!(lya.exponents.len(), 2);
    assert!(lya.exponents[0] >= lya.exponents[1]);
    assert_eq!(rep.memory.as_ref().unwrap().delays.len(), 5);
    assert_eq!(rep.attractors.as_ref().unwrap().runs, 8);
    let dir = std::env::temp_dir().join(format!("memrnn-diag-{}", std::process::id()));
    let files = rep.write_all(&dir).unwrap();
    assert_eq!(files.len(), 5);
    for f in &files[1..] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("<svg"), "{f:?}");
    }
    let back = DiagnosticsReport::read_json(&files[0]).unwrap();
    assert_eq!(back.cell, rep.cell);
    assert!((back.lipschitz.unwrap().lipschitz - lip.lipschitz).abs() < 1e-12);
    let cfg_json = serde_json::to_string(&cfg).unwrap();
    let cfg_back: DiagnoseConfig = serde_json::from_str(&cfg_json).unwrap();
    assert_eq!(cfg_back, cfg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_rejected_with_a_reason() {
    let be = be();
    let model = scaled_identity(0.5, &[1.0, 1.0], 1, 2).unwrap();
    let net = Net::new(&be, &model).unwrap();
    let shape = SeqShape::new(5, 2).unwrap();
    let x = vec![0f32; 10];
    let e = lyapunov(
        &net,
        &x,
        shape,
        None,
        &LyapunovConfig {
            exponents: 3,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("ask for 1 to 2"), "{e}");
    let e = lyapunov(
        &net,
        &x,
        shape,
        None,
        &LyapunovConfig {
            transient: 5,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("transient"), "{e}");
    assert!(lipschitz(&net, &x[..9], shape, None, &LipschitzConfig::default()).is_err());
    let cfg = AttractorConfig {
        projection: Projection::Unit(2),
        ..attractor_cfg()
    };
    assert!(attractors(&net, &[0.0], &cfg)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(attractors(&net, &[0.0, 1.0], &attractor_cfg()).is_err());
    let labels = vec![Some(5); 10];
    let e =
        memory_curve_of(&net, &x, shape, None, &labels, 3, &MemoryConfig::default()).unwrap_err();
    assert!(e.to_string().contains("outside 0..3"), "{e}");
    let labels = vec![Some(1); 10];
    let cfg = MemoryConfig {
        train_fraction: 1.0,
        ..Default::default()
    };
    assert!(memory_curve_of(&net, &x, shape, None, &labels, 3, &cfg).is_err());
}
