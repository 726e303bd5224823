//! `slow_point_iterations` against the CPU backend's fused search (`memrnn_cpu::slowpoints`)
//! on the same candidates and config, and against the trait's default loop
//! ([`slow_point_iterations_default`]) on the backend itself:
//!
//! - one Adam step (`max_iters = 1`): states, moments and speeds agree to 1e-5 relative,
//!   stop reasons and iteration counts exactly;
//! - a full search, run as two calls (the first stops running candidates at `MaxIters`,
//!   the second resumes them, over several launches with compaction between them on the
//!   GPU): the same stop reason for at least 90% of the candidates (f32 summation orders
//!   differ, so a candidate near a threshold may go either way), iteration counts within
//!   5% for 90% of those, and the final states of candidates that converged on both
//!   within 1e-3 relative in norm;
//! - edge cases: every stop reason but `NonFinite` made to happen at a known iteration
//!   (`MaxIters` at the cap and resumed, `Stalled` at the first window, `Converged`
//!   before any update); a search whose candidates have all stopped is a no-op. Bad
//!   arguments are in [`super::bad_args`].
//!
//! Sizes: `H` 1, 7, 33, 70, 200 (one past a tile of 32 outputs and 8 k-rows; 200 takes
//! the narrow 8-candidate tiles, or the default loop where even those do not fit in
//! shared memory), `K` 1, 5, 40 (a 32-candidate tile and a bit), 300 and 4500 (many
//! tiles; one step only). The full searches stop at 2,500 iterations, and their large `K`
//! are at small `H` only (see [`SEARCH`]), so that the simulated device (one CPU thread
//! runs every CUDA thread) gets through them in CI.

use super::Cx;
use crate::{random_params, rel_err_norm, rng, uniform};
use memrnn_core::backend::{
    slow_point_iterations_default, AdamConfig, CandidateStatus, SlowPointConfig, SlowPointSearch,
    StopReason,
};
use memrnn_core::{Backend, CellDims, CellKind};
use memrnn_cpu::CpuBackend;

/// A search small enough for the tests, with a tolerance Adam reaches in f32.
pub fn test_config(max_iters: u32) -> SlowPointConfig {
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

/// A network, a constant input and `K` candidate states.
pub struct Problem {
    pub cell: CellDims,
    pub params: Vec<f32>,
    pub x: Vec<f32>,
    pub candidates: Vec<f32>,
}

pub fn problem(kind: CellKind, input: usize, hidden: usize, k: usize, seed: u64) -> Problem {
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
pub struct Outcome {
    pub states: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub status: Vec<CandidateStatus>,
}

/// Runs one search of `p` on `b`, one `slow_point_iterations` call per config (or the
/// trait's default loop when `default_loop`).
pub fn run_search<B: Backend>(
    b: &B,
    p: &Problem,
    cfgs: &[SlowPointConfig],
    default_loop: bool,
    what: &str,
) -> Outcome {
    let params = b.upload(&p.params).expect("upload params");
    let x = b.upload(&p.x).expect("upload x");
    let mut search = SlowPointSearch::new(b, &p.cell, &p.candidates).expect("search");
    for cfg in cfgs {
        let r = if default_loop {
            slow_point_iterations_default(b, &p.cell, &params, &x, &mut search, cfg)
        } else {
            b.slow_point_iterations(&p.cell, &params, &x, &mut search, cfg)
        };
        r.unwrap_or_else(|e| panic!("{what}: {} search: {e}", b.name()));
    }
    Outcome {
        states: b.download(&search.states).expect("download"),
        m: b.download(&search.m).expect("download"),
        v: b.download(&search.v).expect("download"),
        status: search.status,
    }
}

/// One Adam step: states and moments within 1e-5 relative in norm, the same stop reasons
/// and iteration counts, and speeds within 1e-4 relative plus what f32 allows: `S = ‖e‖²`
/// with `e = F(s) − s` computed in f32 from states of order 1, so each `e_i` carries an
/// absolute rounding error of a few `ε` whatever its size, and `S` one of about
/// `2‖e‖·‖δe‖ ≈ 8ε·√(S_dim·S)`, which dominates for slow candidates (at `S` ≈ 1e-7 the
/// two backends' summation orders differ by ~4e-4 relative).
fn assert_one_step(what: &str, sd: usize, got: &Outcome, want: &Outcome) {
    for (q, a, b) in [
        ("states", &got.states, &want.states),
        ("adam m", &got.m, &want.m),
        ("adam v", &got.v, &want.v),
    ] {
        assert_eq!(a.len(), b.len(), "{what}: {q}: lengths differ");
        let err = rel_err_norm(a, b);
        assert!(err < 1e-5, "{what}: {q}: relative error {err:e} ≥ 1e-5");
    }
    assert_eq!(got.status.len(), want.status.len(), "{what}: status length");
    for (c, (a, b)) in got.status.iter().zip(&want.status).enumerate() {
        assert_eq!(a.stop, b.stop, "{what}: candidate {c}: {a:?} vs {b:?}");
        assert_eq!(a.iters, b.iters, "{what}: candidate {c}: {a:?} vs {b:?}");
        let tol = 1e-4 * b.speed_sq.abs()
            + 8.0 * f32::EPSILON * (sd as f32 * b.speed_sq.abs()).sqrt()
            + 1e-12;
        assert!(
            (a.speed_sq - b.speed_sq).abs() <= tol,
            "{what}: candidate {c}: speed {} vs {} (allowed difference {tol:e})",
            a.speed_sq,
            b.speed_sq
        );
    }
}

/// One Adam step from the same candidates: the backend matches the CPU backend.
pub fn one_step<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(0x5107);
    let cpu = CpuBackend::new();
    let cfg = test_config(1);
    // One iteration each: the whole grid the GPU-only tests used, and a tile and a bit.
    let mut grid = full_search_grid();
    grid.push((33, 40));
    for (n, (h, k)) in grid.into_iter().enumerate() {
        let s = seed.wrapping_add(n as u64);
        let mut p = problem(kind, 5, h, k, s);
        p.params = cx.storable_params(&p.cell, p.params);
        let what = cx.what(format!("{kind} H={h} K={k} one step (seed {s})"));
        let want = run_search(&cpu, &p, &[cfg], false, &what);
        let got = run_search(cx.b, &p, &[cfg], false, &what);
        assert_one_step(&what, p.cell.state_size(), &got, &want);
    }
}

/// The backend's search against the trait's default loop (through its own
/// `step_speed_grad`) for one step, where the fused search and the default differ most
/// in how they get there.
pub fn default_loop<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(0x510A);
    let cfg = test_config(1);
    let mut n = 0u64;
    for kind in CellKind::ALL {
        for (h, k) in [(7, 5), (33, 40), (200, 5)] {
            n += 1;
            let s = seed.wrapping_add(n);
            let mut p = problem(kind, 5, h, k, s);
            p.params = cx.storable_params(&p.cell, p.params);
            let what = cx.what(format!("{kind} H={h} K={k} fused vs default (seed {s})"));
            let want = run_search(cx.b, &p, &[cfg], true, &what);
            let got = run_search(cx.b, &p, &[cfg], false, &what);
            assert_one_step(&what, p.cell.state_size(), &got, &want);
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

/// `(H, K)` of the full searches: large `K` only at small `H`, so that the work stays
/// within the simulated device's budget (most candidates converge within 300–1,500
/// iterations). `K` 4500 (more 32-candidate tiles
/// than an H100 has SMs) runs one step in [`one_step`] and fully in the GPU instance's
/// [`full_search_grid`].
pub const SEARCH: [(usize, usize); 6] = [(1, 1), (1, 300), (7, 5), (7, 300), (33, 40), (200, 5)];

/// The grid the GPU-only tests searched before this suite: `H` 1, 7, 33, 200 × `K` 1,
/// 5, 300, and 4500 at `H` ≤ 7 (cheap on a GPU, far too much for the simulator).
pub fn full_search_grid() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for h in [1, 7, 33, 200] {
        for k in [1, 5, 300, 4500] {
            if k < 4500 || h <= 7 {
                v.push((h, k));
            }
        }
    }
    v
}

/// Full searches (two calls: the first stops at `MaxIters`, the second resumes) against
/// the CPU backend's, on the [`SEARCH`] grid.
pub fn search<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    search_grid(cx, kind, &SEARCH)
}

/// [`search`] on a grid of `(H, K)` of one's choosing.
pub fn search_grid<B: Backend>(cx: &Cx<'_, B>, kind: CellKind, grid: &[(usize, usize)]) {
    let seed = cx.seed(0x5108);
    let cpu = CpuBackend::new();
    let cfgs = [test_config(700), test_config(2500)];
    let mut total = Tally::default();
    for (n, &(h, k)) in grid.iter().enumerate() {
        let s = seed.wrapping_add(n as u64 + 1);
        let mut p = problem(kind, 5, h, k, s);
        p.params = cx.storable_params(&p.cell, p.params);
        let sd = p.cell.state_size();
        let what = cx.what(format!("{kind} H={h} K={k} search (seed {s})"));
        let want = run_search(&cpu, &p, &cfgs, false, &what);
        let got = run_search(cx.b, &p, &cfgs, false, &what);
        assert_eq!(got.status.len(), k, "{what}: status length");
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
        let count = |o: &Outcome, r: StopReason| o.status.iter().filter(|s| s.stop == r).count();
        eprintln!(
            "{what}: {} iterations in all; same stop {}/{}, iters close {}/{}; converged {} (cpu {}), stalled {} (cpu {}), max-iters {} (cpu {})",
            got.status.iter().map(|s| s.iters as u64).sum::<u64>(),
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
    assert!(
        total.same_stop * 10 >= total.candidates * 9,
        "{}",
        cx.what(format!(
            "{kind}: only {}/{} candidates stopped for the same reason on both backends",
            total.same_stop, total.candidates
        ))
    );
    assert!(
        total.iters_close * 10 >= total.same_stop * 9,
        "{}",
        cx.what(format!(
            "{kind}: only {}/{} candidates with the same stop reason took within 5% of the same iterations",
            total.iters_close, total.same_stop
        ))
    );
}

/// A search whose candidates have all stopped is a no-op; `MaxIters` stops at the cap and
/// a later call resumes; bad arguments are errors, not launches, and leave the search as
/// it was.
pub fn edge_cases<B: Backend>(cx: &Cx<'_, B>) {
    let s = cx.seed(0x5109);
    let mut p = problem(CellKind::Gru, 3, 7, 5, s);
    p.params = cx.storable_params(&p.cell, p.params);
    let what = cx.what(format!("GRU H=7 K=5 (seed {s})"));
    let b = cx.b;
    let params = cx.up(&p.params);
    let x = cx.up(&p.x);
    let mut search = cx.ok(&what, SlowPointSearch::new(b, &p.cell, &p.candidates));
    // At most 3 updates each: every candidate stops at the cap unless it converged.
    let mut cfg = test_config(3);
    cfg.tol = 0.0;
    cx.ok(
        format!("{what}: capped search"),
        b.slow_point_iterations(&p.cell, &params, &x, &mut search, &cfg),
    );
    for (c, st) in search.status.iter().enumerate() {
        assert!(
            st.stop == StopReason::MaxIters && st.iters == 3,
            "{what}: candidate {c} after a 3-iteration cap: {st:?}"
        );
    }
    cfg.max_iters = 5;
    cx.ok(
        format!("{what}: resumed search"),
        b.slow_point_iterations(&p.cell, &params, &x, &mut search, &cfg),
    );
    for (c, st) in search.status.iter().enumerate() {
        assert!(
            st.stop == StopReason::MaxIters && st.iters == 5,
            "{what}: candidate {c} after resuming to a 5-iteration cap: {st:?}"
        );
    }
    // A fresh search with a window of 2 iterations in which S must fall by more than
    // itself: every candidate stalls at its first check, after 2 updates.
    let mut stall = test_config(100);
    stall.stall_window = 2;
    stall.stall_rel = 1.0;
    let mut s2 = cx.ok(&what, SlowPointSearch::new(b, &p.cell, &p.candidates));
    cx.ok(
        format!("{what}: stalling search"),
        b.slow_point_iterations(&p.cell, &params, &x, &mut s2, &stall),
    );
    for (c, st) in s2.status.iter().enumerate() {
        assert!(
            st.stop == StopReason::Stalled && st.iters == 2,
            "{what}: candidate {c} with a 2-iteration window that cannot be met: {st:?}"
        );
    }
    // A tolerance every state meets: converged before any update.
    let mut conv = test_config(100);
    conv.tol = 1e30;
    let mut s3 = cx.ok(&what, SlowPointSearch::new(b, &p.cell, &p.candidates));
    cx.ok(
        format!("{what}: converged search"),
        b.slow_point_iterations(&p.cell, &params, &x, &mut s3, &conv),
    );
    for (c, st) in s3.status.iter().enumerate() {
        assert!(
            st.stop == StopReason::Converged && st.iters == 0 && st.speed_sq.is_finite(),
            "{what}: candidate {c} with tol 1e30: {st:?}"
        );
    }
    assert!(
        cx.down(&s3.states) == p.candidates,
        "{what}: candidates converged before any update moved"
    );
    cx.ok(
        format!("{what}: search"),
        b.slow_point_iterations(&p.cell, &params, &x, &mut search, &test_config(50)),
    );
    let before = cx.down(&search.states);
    let status_before = search.status.clone();
    for st in &mut search.status {
        st.stop = StopReason::Stalled;
    }
    cx.ok(
        format!("{what}: no-op search"),
        b.slow_point_iterations(&p.cell, &params, &x, &mut search, &test_config(100)),
    );
    assert!(
        cx.down(&search.states) == before,
        "{what}: a search with every candidate stopped changed the states"
    );
    for (a, b) in search.status.iter().zip(&status_before) {
        assert_eq!(a.iters, b.iters, "{what}: a stopped candidate iterated");
    }
}
/// The Levenberg–Marquardt search with `solver` (`Backend::slow_point_lm`: a backend's own
/// loop, or the trait's default built from `seq_forward` and `step_jacobian` (dense) or
/// `seq_forward`, `step_jvp` and `seq_backward` (matrix-free)) against the CPU's fused
/// search with the same solver on the same problems: every candidate stops, and wherever
/// both converge they reach the same fixed point (within 1e-3: f32 products, damped
/// steps); at least half converge on both, so the comparison cannot pass empty. Small `H`
/// and `K` keep the per-candidate work cheap on the simulated device.
pub fn lm_search<B: Backend>(cx: &Cx<'_, B>, solver: memrnn_core::lm::LmSolver) {
    use memrnn_core::lm::{LmConfig, LmSearch, SearchStop};
    let cfg = LmConfig {
        solver,
        ..LmConfig::default()
    };
    let cpu = CpuBackend::new();
    for (n, (kind, hidden)) in [(CellKind::Rnn, 7), (CellKind::Gru, 9), (CellKind::Lstm, 5)]
        .into_iter()
        .enumerate()
    {
        let s = cx.seed(0x5110 + n as u64);
        let mut p = problem(kind, 3, hidden, 12, s);
        // Contracting networks (gain 0.8): their fixed points exist and attract.
        let mut r = rng(s);
        p.params = cx.storable_params(&p.cell, random_params(&mut r, &p.cell, 0.8));
        let what = cx.what(format!(
            "{kind} H={hidden} K=12 LM search, {} solver (seed {s})",
            solver.name()
        ));
        let sd = p.cell.state_size();
        let run = |b: &dyn Fn(&mut LmSearch<Vec<f32>>) -> memrnn_core::Result<()>| {
            let mut search = LmSearch::new(&cpu, &p.cell, &p.candidates, &cfg)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            b(&mut search).unwrap_or_else(|e| panic!("{what}: cpu LM: {e}"));
            search
        };
        let params_c = cpu.upload(&p.params).expect("upload");
        let x_c = cpu.upload(&p.x).expect("upload");
        let want = run(&|sr| cpu.slow_point_lm(&p.cell, &params_c, &x_c, sr, &cfg));
        let b = cx.b;
        let params = cx.up(&p.params);
        let x = cx.up(&p.x);
        let mut got = cx.ok(&what, LmSearch::new(b, &p.cell, &p.candidates, &cfg));
        cx.ok(&what, b.slow_point_lm(&p.cell, &params, &x, &mut got, &cfg));
        let got_states = cx.down(&got.states);
        let mut compared = 0;
        for c in 0..got.k {
            let (a, w) = (got.status[c], want.status[c]);
            assert!(
                a.stop != SearchStop::Running,
                "{what}: candidate {c} still running: {a:?}"
            );
            if a.stop == SearchStop::Converged && w.stop == SearchStop::Converged {
                compared += 1;
                for i in 0..sd {
                    let (g, e) = (got_states[c * sd + i], want.states[c * sd + i]);
                    assert!(
                        (g - e).abs() < 1e-3,
                        "{what}: candidate {c} component {i}: {g} vs the CPU's {e}"
                    );
                }
            }
        }
        assert!(
            compared * 2 >= got.k,
            "{what}: only {compared} of {} candidates converged on both backends",
            got.k
        );
    }
}

/// `ensemble_slow_point_iterations` against `slow_point_iterations` member by member:
/// every member's states, moments and status bit for bit what it gets searched alone
/// (the CPU runs the same code per member; a GPU runs the same kernel arithmetic per
/// candidate, each tile reading its own member's weights). Members differ in their
/// parameters, inputs and candidate counts (1, 5 and 40: on a small device the 40 take
/// wide tiles and the others narrow ones in the same call); the search runs as two calls
/// (the first stops candidates at `MaxIters`, the second resumes them), and a third
/// call, where every candidate has stopped, changes nothing.
pub fn ensemble_search<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    use memrnn_core::ensemble::SlowPointArgs;
    let seed = cx.seed(0x510E);
    let cfgs = [test_config(60), test_config(250), test_config(250)];
    for (n, (h, ks)) in [(7usize, vec![5usize, 40, 1]), (33, vec![3, 9])]
        .into_iter()
        .enumerate()
    {
        let s = seed.wrapping_add(n as u64 * 17);
        let probs: Vec<Problem> = ks
            .iter()
            .enumerate()
            .map(|(m, &k)| {
                let mut p = problem(kind, 5, h, k, s.wrapping_add(m as u64));
                p.params = cx.storable_params(&p.cell, p.params);
                p
            })
            .collect();
        let what = cx.what(format!("{kind} H={h} K={ks:?} ensemble search (seed {s})"));
        let alone: Vec<Outcome> = probs
            .iter()
            .map(|p| run_search(cx.b, p, &cfgs[..2], false, &what))
            .collect();
        let cell = probs[0].cell;
        let params: Vec<B::Tensor> = probs.iter().map(|p| cx.up(&p.params)).collect();
        let xs: Vec<B::Tensor> = probs.iter().map(|p| cx.up(&p.x)).collect();
        let mut searches: Vec<SlowPointSearch<B::Tensor>> = probs
            .iter()
            .map(|p| SlowPointSearch::new(cx.b, &cell, &p.candidates).expect("search"))
            .collect();
        for cfg in &cfgs {
            let mut args: Vec<SlowPointArgs<'_, B::Tensor>> = searches
                .iter_mut()
                .enumerate()
                .map(|(m, search)| SlowPointArgs {
                    params: &params[m],
                    x: &xs[m],
                    search,
                })
                .collect();
            cx.b.ensemble_slow_point_iterations(&cell, &mut args, cfg)
                .unwrap_or_else(|e| panic!("{what}: ensemble search: {e}"));
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        for (m, (search, want)) in searches.iter().zip(&alone).enumerate() {
            for (q, got, want) in [
                ("states", &search.states, &want.states),
                ("adam m", &search.m, &want.m),
                ("adam v", &search.v, &want.v),
            ] {
                let got = cx.b.download(got).expect("download");
                assert!(
                    bits(&got) == bits(want),
                    "{what}: member {m}: {q} differ from the member searched alone \
                     (relative error {:e})",
                    rel_err_norm(&got, want)
                );
            }
            for (c, (a, b)) in search.status.iter().zip(&want.status).enumerate() {
                let same = a.iters == b.iters
                    && a.stop == b.stop
                    && a.speed_sq.to_bits() == b.speed_sq.to_bits()
                    && a.window_speed_sq.to_bits() == b.window_speed_sq.to_bits();
                assert!(
                    same,
                    "{what}: member {m} candidate {c}: {a:?} vs alone {b:?}"
                );
            }
        }
        // The search did something: not every candidate still sits where it started.
        let moved = searches
            .iter()
            .any(|s| s.status.iter().any(|st| st.iters > 0));
        assert!(moved, "{what}: no candidate took a step");
    }
}
