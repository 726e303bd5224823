//! The CUDA backend's fused slow-point search (`kernels/slowpoints.cu`) against the CPU
//! backend's (`memrnn_cpu::slowpoints`) on the same candidates and config, for every cell
//! at small and awkward sizes (H = 1, 7, 33, 200; K = 1, 5, 300), plus a many-candidate
//! case that takes the 32-candidate tiles:
//!
//! - one Adam step (`max_iters = 1`): states, moments and speeds agree to 1e-5 relative;
//! - a full search, run as two calls (the first stops at `MaxIters`, the second resumes,
//!   over several launches with compaction between them): the same stop reason for the
//!   vast majority of candidates (f32 summation orders differ, so a candidate near a
//!   threshold may go either way), iteration counts within a few percent, and the final
//!   states of candidates that converged on both within 1e-3 relative in norm.
//!
//! GPU scratch is poisoned (NaN) before the kernels write it. Without a GPU every test
//! prints a loud SKIPPED line and passes; `MEMRNN_REQUIRE_GPU=1` makes that a failure.

use memrnn_core::backend::{AdamConfig, SlowPointConfig, SlowPointSearch, StopReason};
use memrnn_core::{Backend, CellDims, CellKind};
use memrnn_cpu::CpuBackend;
use memrnn_cuda::testing::gpu_or_skip;
use memrnn_cuda::CudaBackend;
use memrnn_testkit::{random_params, rel_err_norm, rng, test_seed, uniform};

fn gpu(test: &str) -> Option<CudaBackend> {
    let g = gpu_or_skip(test)?;
    g.set_poison_outputs(true);
    eprintln!("{test}: running on {}", g.name());
    Some(g)
}

/// A search small enough for the tests, with a tolerance Adam reaches in f32.
fn test_config(max_iters: u32) -> SlowPointConfig {
    SlowPointConfig {
        adam: AdamConfig {
            lr: 1e-2,
            ..AdamConfig::default()
        },
        max_iters,
        tol: 1e-7,
        stall_window: 200,
        stall_rel: 1e-2,
    }
}

struct Problem {
    cell: CellDims,
    params: Vec<f32>,
    x: Vec<f32>,
    candidates: Vec<f32>,
}

fn problem(kind: CellKind, input: usize, hidden: usize, k: usize, seed: u64) -> Problem {
    let cell = CellDims::new(kind, input, hidden).expect("valid dims");
    let mut r = rng(seed);
    let params: Vec<f32> = random_params(&mut r, &cell, 1.5);
    let x: Vec<f32> = uniform(&mut r, input, -1.0, 1.0);
    let candidates: Vec<f32> = uniform(&mut r, k * cell.state_size(), -0.9, 0.9);
    Problem {
        cell,
        params,
        x,
        candidates,
    }
}

/// What a search ended with, on the host.
struct Outcome {
    states: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    status: Vec<memrnn_core::backend::CandidateStatus>,
}

fn run<B: Backend>(b: &B, p: &Problem, cfgs: &[SlowPointConfig], what: &str) -> Outcome {
    let params = b.upload(&p.params).expect("upload params");
    let x = b.upload(&p.x).expect("upload x");
    let mut search = SlowPointSearch::new(b, &p.cell, &p.candidates).expect("search");
    for cfg in cfgs {
        b.slow_point_iterations(&p.cell, &params, &x, &mut search, cfg)
            .unwrap_or_else(|e| panic!("{what}: {} search: {e}", b.name()));
    }
    Outcome {
        states: b.download(&search.states).expect("download"),
        m: b.download(&search.m).expect("download"),
        v: b.download(&search.v).expect("download"),
        status: search.status,
    }
}

const CELLS: [CellKind; 3] = [CellKind::Rnn, CellKind::Gru, CellKind::Lstm];
const HIDDEN: [usize; 4] = [1, 7, 33, 200];
const CANDIDATES: [usize; 3] = [1, 5, 300];

/// One Adam step from the same candidates: the GPU matches the CPU to 1e-5 relative.
#[test]
fn cuda_slowpoints_one_step_matches_cpu() {
    let name = "cuda_slowpoints_one_step_matches_cpu";
    let Some(g) = gpu(name) else { return };
    let cpu = CpuBackend::new();
    let seed = test_seed(name, 0x5107);
    let cfg = test_config(1);
    let mut n = 0u64;
    for kind in CELLS {
        for h in HIDDEN {
            for k in CANDIDATES.iter().copied().chain([4500]) {
                if k == 4500 && h > 7 {
                    continue;
                }
                n += 1;
                let s = seed.wrapping_add(n);
                let p = problem(kind, 5, h, k, s);
                let what = format!("{kind:?} H={h} K={k} one step (seed {s})");
                let want = run(&cpu, &p, &[cfg], &what);
                let got = run(&g, &p, &[cfg], &what);
                for (q, a, b) in [
                    ("states", &got.states, &want.states),
                    ("adam m", &got.m, &want.m),
                    ("adam v", &got.v, &want.v),
                ] {
                    let err = rel_err_norm(a, b);
                    assert!(err < 1e-5, "{what}: {q}: relative error {err:e} ≥ 1e-5");
                }
                for (c, (a, b)) in got.status.iter().zip(&want.status).enumerate() {
                    assert_eq!(a.stop, b.stop, "{what}: candidate {c}: {a:?} vs {b:?}");
                    assert_eq!(a.iters, b.iters, "{what}: candidate {c}: {a:?} vs {b:?}");
                    assert!(
                        (a.speed_sq - b.speed_sq).abs() <= 1e-4 * b.speed_sq.abs() + 1e-12,
                        "{what}: candidate {c}: speed {} vs {}",
                        a.speed_sq,
                        b.speed_sq
                    );
                }
            }
        }
    }
}

/// Agreement counters over many searches.
#[derive(Default)]
struct Tally {
    candidates: usize,
    same_stop: usize,
    iters_close: usize,
}

fn compare_full(kind: CellKind, name: &str) {
    let Some(g) = gpu(name) else { return };
    let cpu = CpuBackend::new();
    let seed = test_seed(name, 0x5108);
    // The first call stops running candidates at MaxIters, the second resumes them.
    let cfgs = [test_config(700), test_config(2500)];
    let mut total = Tally::default();
    let mut n = 0u64;
    for h in HIDDEN {
        for k in CANDIDATES.iter().copied().chain([4500]) {
            if k == 4500 && h > 7 {
                continue;
            }
            n += 1;
            let s = seed.wrapping_add(n);
            let p = problem(kind, 5, h, k, s);
            let sd = p.cell.state_size();
            let what = format!("{kind:?} H={h} K={k} search (seed {s})");
            let want = run(&cpu, &p, &cfgs, &what);
            let got = run(&g, &p, &cfgs, &what);
            let mut t = Tally::default();
            let (mut conv_got, mut conv_want) = (Vec::new(), Vec::new());
            for (c, (a, b)) in got.status.iter().zip(&want.status).enumerate() {
                t.candidates += 1;
                assert!(
                    a.stop != StopReason::Running,
                    "{what}: candidate {c} still running after the call: {a:?}"
                );
                assert!(a.iters <= cfgs[1].max_iters, "{what}: {a:?}");
                if a.stop != b.stop {
                    continue;
                }
                t.same_stop += 1;
                let (ia, ib) = (a.iters as f64, b.iters as f64);
                if (ia - ib).abs() <= (0.05 * ia.max(ib)).max(2.0) {
                    t.iters_close += 1;
                }
                if a.stop == StopReason::Converged {
                    assert!(a.speed_sq < cfgs[1].tol, "{what}: {a:?}");
                    conv_got.extend_from_slice(&got.states[c * sd..(c + 1) * sd]);
                    conv_want.extend_from_slice(&want.states[c * sd..(c + 1) * sd]);
                }
            }
            if !conv_want.is_empty() {
                let err = rel_err_norm(&conv_got, &conv_want);
                assert!(
                    err < 1e-3,
                    "{what}: states of the {} candidates converged on both: relative error {err:e} ≥ 1e-3",
                    conv_want.len() / sd
                );
            }
            let count =
                |o: &Outcome, r: StopReason| o.status.iter().filter(|s| s.stop == r).count();
            eprintln!(
                "{what}: same stop {}/{}, iters close {}/{}; converged gpu {} cpu {}, stalled gpu {} cpu {}, max-iters gpu {} cpu {}",
                t.same_stop,
                t.candidates,
                t.iters_close,
                t.same_stop,
                count(&got, StopReason::Converged),
                count(&want, StopReason::Converged),
                count(&got, StopReason::Stalled),
                count(&want, StopReason::Stalled),
                count(&got, StopReason::MaxIters),
                count(&want, StopReason::MaxIters),
            );
            if k >= 300 {
                assert!(
                    t.same_stop * 10 >= t.candidates * 9,
                    "{what}: only {}/{} candidates stopped for the same reason",
                    t.same_stop,
                    t.candidates
                );
            }
            total.candidates += t.candidates;
            total.same_stop += t.same_stop;
            total.iters_close += t.iters_close;
        }
    }
    assert!(
        total.same_stop * 10 >= total.candidates * 9,
        "{kind:?}: only {}/{} candidates stopped for the same reason on both backends",
        total.same_stop,
        total.candidates
    );
    assert!(
        total.iters_close * 10 >= total.same_stop * 9,
        "{kind:?}: only {}/{} candidates with the same stop reason took within 5% of the same iterations",
        total.iters_close,
        total.same_stop
    );
}

#[test]
fn cuda_slowpoints_rnn_matches_cpu() {
    compare_full(CellKind::Rnn, "cuda_slowpoints_rnn_matches_cpu");
}

#[test]
fn cuda_slowpoints_gru_matches_cpu() {
    compare_full(CellKind::Gru, "cuda_slowpoints_gru_matches_cpu");
}

#[test]
fn cuda_slowpoints_lstm_matches_cpu() {
    compare_full(CellKind::Lstm, "cuda_slowpoints_lstm_matches_cpu");
}

/// A search whose candidates have all stopped is a no-op, and bad arguments are errors,
/// not launches.
#[test]
fn cuda_slowpoints_edge_cases() {
    let name = "cuda_slowpoints_edge_cases";
    let Some(g) = gpu(name) else { return };
    let p = problem(CellKind::Gru, 3, 7, 5, test_seed(name, 0x5109));
    let params = g.upload(&p.params).expect("upload");
    let x = g.upload(&p.x).expect("upload");
    let mut search = SlowPointSearch::new(&g, &p.cell, &p.candidates).expect("search");
    g.slow_point_iterations(&p.cell, &params, &x, &mut search, &test_config(50))
        .expect("search");
    let before = g.download(&search.states).expect("download");
    for st in &mut search.status {
        st.stop = StopReason::Stalled;
    }
    g.slow_point_iterations(&p.cell, &params, &x, &mut search, &test_config(100))
        .expect("no-op search");
    assert_eq!(g.download(&search.states).expect("download"), before);
    let bad_x = g.upload(&[0.0; 2]).expect("upload");
    assert!(g
        .slow_point_iterations(&p.cell, &params, &bad_x, &mut search, &test_config(10))
        .is_err());
    let nan_x = g.upload(&[f32::NAN, 0.0, 0.0]).expect("upload");
    assert!(g
        .slow_point_iterations(&p.cell, &params, &nan_x, &mut search, &test_config(10))
        .is_err());
}
