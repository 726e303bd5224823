//! The CPU fast path against the f64 reference: every cell, awkward shapes, every SIMD
//! level this machine has, scratch NaN-poisoned; bit-identical results for 1, 2 and 3
//! threads and for concurrent callers on one pool; speed, Jacobian and Adam through the `Backend` trait; bad input.

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::{
    real::convert, AdamConfig, Backend, CellDims, CellKind, Error, Precision, SeqShape, SeqUpstream,
};
use memrnn_cpu::{reference, CpuBackend, FwdSplit, PanelFormat, SimdLevel};
use memrnn_testkit::{
    assert_all_close, assert_close, awkward_cases, random_params, rng, test_seed, uniform, Case,
};

const TOL: f64 = 1e-4;

/// The awkward shapes plus a few larger ones that cross several tiles in every direction.
fn cases(kind: CellKind) -> Vec<Case> {
    let mut v = awkward_cases(kind);
    for (i, h, b, t) in [(40, 37, 19, 7), (7, 64, 9, 5), (65, 33, 5, 11)] {
        v.push(Case {
            cell: CellDims::new(kind, i, h).unwrap(),
            shape: SeqShape::new(t, b).unwrap(),
        });
    }
    v
}

struct Inputs {
    params: Vec<f64>,
    x: Vec<f64>,
    s0: Vec<f64>,
    dh_seq: Vec<f64>,
    ds_final: Vec<f64>,
}

fn inputs(case: &Case, seed: u64) -> Inputs {
    let (cell, shape) = (case.cell, case.shape);
    let mut r = rng(seed);
    let mut dh_seq: Vec<f64> = uniform(&mut r, shape.rows() * cell.hidden, -1.0, 1.0);
    // Loss on a subset of steps: every third step carries none.
    let n = shape.batch * cell.hidden;
    for t in (0..shape.steps).step_by(3) {
        dh_seq[t * n..(t + 1) * n].iter_mut().for_each(|v| *v = 0.0);
    }
    Inputs {
        params: random_params(&mut r, &cell, 1.5),
        x: uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0),
        s0: uniform(&mut r, shape.batch * cell.state_size(), -0.9, 0.9),
        dh_seq,
        ds_final: uniform(&mut r, shape.batch * cell.state_size(), -1.0, 1.0),
    }
}

#[test]
fn fast_path_matches_reference_at_every_simd_level() {
    for kind in CellKind::ALL {
        for case in cases(kind) {
            let (cell, shape) = (case.cell, case.shape);
            let seed = test_seed(&format!("fast-{kind}-{cell:?}-{shape:?}"), 11);
            let inp = inputs(&case, seed);
            let fwd =
                reference::seq_forward(&cell, &inp.params, shape, &inp.x, Some(&inp.s0)).unwrap();
            let want = reference::seq_backward(
                &cell,
                &inp.params,
                shape,
                &inp.x,
                &fwd,
                SeqUpstream {
                    dh_seq: Some(&inp.dh_seq),
                    ds_final: Some(&inp.ds_final),
                },
                true,
            )
            .unwrap();
            let (p, x, s0): (Vec<f32>, Vec<f32>, Vec<f32>) =
                (convert(&inp.params), convert(&inp.x), convert(&inp.s0));
            let (dh, dsf): (Vec<f32>, Vec<f32>) = (convert(&inp.dh_seq), convert(&inp.ds_final));
            for level in SimdLevel::available() {
                let be = CpuBackend::new()
                    .with_simd(level)
                    .unwrap()
                    .with_poisoned_scratch(true);
                let what = format!(
                    "{kind} {} I{} H{} B{} T{}",
                    level.name(),
                    cell.input,
                    cell.hidden,
                    shape.batch,
                    shape.steps
                );
                let f = be.seq_forward(&cell, &p, shape, &x, Some(&s0)).unwrap();
                assert_close(&format!("{what} h_seq"), &f.h_seq, &fwd.h_seq, TOL, seed);
                assert_close(
                    &format!("{what} s_final"),
                    &f.s_final,
                    &fwd.s_final,
                    TOL,
                    seed,
                );
                let up = SeqUpstream {
                    dh_seq: Some(&dh),
                    ds_final: Some(&dsf),
                };
                let g = be.seq_backward(&cell, &p, shape, &x, &f, up, true).unwrap();
                assert_close(
                    &format!("{what} dparams"),
                    &g.dparams,
                    &want.dparams,
                    TOL,
                    seed,
                );
                assert_close(&format!("{what} ds0"), &g.ds0, &want.ds0, TOL, seed);
                assert_close(
                    &format!("{what} dx"),
                    g.dx.as_ref().unwrap(),
                    want.dx.as_ref().unwrap(),
                    TOL,
                    seed,
                );
                // Without the input gradient, and with only one kind of upstream gradient.
                let g2 = be
                    .seq_backward(
                        &cell,
                        &p,
                        shape,
                        &x,
                        &f,
                        SeqUpstream {
                            dh_seq: Some(&dh),
                            ds_final: Some(&dsf),
                        },
                        false,
                    )
                    .unwrap();
                assert!(g2.dx.is_none());
                assert_eq!(g2.dparams, g.dparams, "{what}: dparams depend on want_dx");
            }
        }
    }
}

#[test]
fn upstream_gradients_may_be_absent() {
    for kind in CellKind::ALL {
        let case = Case {
            cell: CellDims::new(kind, 6, 11).unwrap(),
            shape: SeqShape::new(4, 3).unwrap(),
        };
        let (cell, shape) = (case.cell, case.shape);
        let seed = test_seed(&format!("absent-{kind}"), 12);
        let inp = inputs(&case, seed);
        let fwd = reference::seq_forward(&cell, &inp.params, shape, &inp.x, None).unwrap();
        let (p, x): (Vec<f32>, Vec<f32>) = (convert(&inp.params), convert(&inp.x));
        let be = CpuBackend::new().with_poisoned_scratch(true);
        let f = be.seq_forward(&cell, &p, shape, &x, None).unwrap();
        for (dh, ds) in [(true, false), (false, true)] {
            let want = reference::seq_backward(
                &cell,
                &inp.params,
                shape,
                &inp.x,
                &fwd,
                SeqUpstream {
                    dh_seq: dh.then_some(inp.dh_seq.as_slice()),
                    ds_final: ds.then_some(inp.ds_final.as_slice()),
                },
                true,
            )
            .unwrap();
            let (dh32, ds32): (Vec<f32>, Vec<f32>) = (convert(&inp.dh_seq), convert(&inp.ds_final));
            let up = SeqUpstream {
                dh_seq: dh.then_some(&dh32),
                ds_final: ds.then_some(&ds32),
            };
            let g = be.seq_backward(&cell, &p, shape, &x, &f, up, true).unwrap();
            assert_close(
                &format!("{kind} dparams (dh {dh}, ds {ds})"),
                &g.dparams,
                &want.dparams,
                TOL,
                seed,
            );
            assert_close(
                &format!("{kind} ds0 (dh {dh}, ds {ds})"),
                &g.ds0,
                &want.ds0,
                TOL,
                seed,
            );
        }
    }
}

#[test]
fn results_are_identical_for_one_and_two_threads() {
    // B 37: the batch is split across threads (and the SGEMMs use every thread); B 5:
    // small enough that the hidden units are split instead, two team phases per step.
    for (kind, batch) in CellKind::ALL.into_iter().flat_map(|k| [(k, 37), (k, 5)]) {
        let case = Case {
            cell: CellDims::new(kind, 97, 45).unwrap(),
            shape: SeqShape::new(6, batch).unwrap(),
        };
        let (cell, shape) = (case.cell, case.shape);
        let seed = test_seed(&format!("threads-{kind}-{batch}"), 13);
        let inp = inputs(&case, seed);
        let (p, x, s0): (Vec<f32>, Vec<f32>, Vec<f32>) =
            (convert(&inp.params), convert(&inp.x), convert(&inp.s0));
        let dh: Vec<f32> = convert(&inp.dh_seq);
        let run = |threads: usize| {
            let be = CpuBackend::new().with_threads(threads).unwrap();
            let f = be.seq_forward(&cell, &p, shape, &x, Some(&s0)).unwrap();
            let up = SeqUpstream {
                dh_seq: Some(&dh),
                ds_final: None,
            };
            let g = be.seq_backward(&cell, &p, shape, &x, &f, up, true).unwrap();
            (f.h_seq, f.s_final, g.dparams, g.ds0, g.dx.unwrap())
        };
        let one = run(1);
        for threads in [2, 3] {
            let many = run(threads);
            assert!(
                one.0 == many.0 && one.1 == many.1,
                "{kind}: forward differs with {threads} threads (seed {seed})"
            );
            assert!(
                one.2 == many.2,
                "{kind}: dparams differ with {threads} threads (seed {seed})"
            );
            assert!(
                one.3 == many.3 && one.4 == many.4,
                "{kind}: ds0/dx differ with {threads} threads (seed {seed})"
            );
        }
    }
}

/// The bits of every output, so that `-0.0` against `0.0` (or two NaNs) count as different.
fn bits(outs: &[&[f32]]) -> Vec<Vec<u32>> {
    outs.iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// AVX2 and AVX-512VL give the same bits. Per lane the two run the same arithmetic: the
/// AVX-512VL level's micro-kernel computes two adjacent 8-column vectors as one 512-bit
/// FMA (the LSTM's 4 gates as 2 pairs, the GRU's 3 as a pair and a single, the backward's
/// 16 columns as a pair) and takes more rows per tile (32 registers), and an element's
/// arithmetic depends on neither. Every cell, forward and backward (`dx`, `ds0`,
/// `dparams`), f32/bf16/f16 storage, scratch NaN-poisoned, H 1, 7, 17, 33, 70 (one pair,
/// odd and padded widths), batches 1, 3, 5, 8, 9, 13, 37 on 1 thread (the batch split;
/// 8 fills one 8-row tile, 9 and 13 leave rows over) and 2 threads (the forward's unit
/// split where the batch is fewer row tiles than threads, else each thread its rows; the
/// backward's unit split below 16 rows where `Hp/16 ≥ 2`, else the batch split): every
/// row tile from 1 to 8 runs at both levels.
#[test]
fn avx2_and_avx512vl_give_identical_bits() {
    let levels = SimdLevel::available();
    if !levels.contains(&SimdLevel::Avx512Vl) {
        eprintln!("skipped: this CPU has no AVX-512VL (levels: {levels:?})");
        return;
    }
    for kind in CellKind::ALL {
        for hidden in [1, 7, 17, 33, 70] {
            for batch in [1, 3, 5, 8, 9, 13, 37] {
                let case = Case {
                    cell: CellDims::new(kind, 23, hidden).unwrap(),
                    shape: SeqShape::new(5, batch).unwrap(),
                };
                let (cell, shape) = (case.cell, case.shape);
                let seed = test_seed(&format!("levels-{kind}-{hidden}-{batch}"), 17);
                let inp = inputs(&case, seed);
                let (p, x, s0): (Vec<f32>, Vec<f32>, Vec<f32>) =
                    (convert(&inp.params), convert(&inp.x), convert(&inp.s0));
                let (dh, dsf): (Vec<f32>, Vec<f32>) =
                    (convert(&inp.dh_seq), convert(&inp.ds_final));
                for precision in [Precision::F32, Precision::Bf16, Precision::F16] {
                    for threads in [1, 2] {
                        let run = |level: SimdLevel| {
                            let be = CpuBackend::new()
                                .with_threads(threads)
                                .unwrap()
                                .with_simd(level)
                                .unwrap()
                                .with_precision(precision)
                                .with_panel_format(PanelFormat::Storage)
                                .with_poisoned_scratch(true);
                            let f = be.seq_forward(&cell, &p, shape, &x, Some(&s0)).unwrap();
                            let up = SeqUpstream {
                                dh_seq: Some(&dh),
                                ds_final: Some(&dsf),
                            };
                            let g = be.seq_backward(&cell, &p, shape, &x, &f, up, true).unwrap();
                            (
                                bits(&[&f.h_seq, &f.s_final]),
                                bits(&[&g.dparams, &g.ds0, g.dx.as_ref().unwrap()]),
                            )
                        };
                        let (a, b) = (run(SimdLevel::Avx2Fma), run(SimdLevel::Avx512Vl));
                        let what = format!(
                            "{kind} H{hidden} B{batch} {precision} {threads} thread(s) (seed {seed})"
                        );
                        assert!(a.0 == b.0, "{what}: forward differs");
                        assert!(a.1 == b.1, "{what}: backward differs");
                    }
                }
            }
        }
    }
}

/// The fused slow-point search (forward and backward row tiles of up to 8 candidates at
/// AVX-512VL, 512-bit pairs in its micro-kernel) gives the same bits at both levels:
/// 19 candidates make tiles of 8, 8 and 3, and candidates drop out as they converge.
#[test]
fn slow_point_search_is_identical_at_avx2_and_avx512vl() {
    let levels = SimdLevel::available();
    if !levels.contains(&SimdLevel::Avx512Vl) {
        eprintln!("skipped: this CPU has no AVX-512VL (levels: {levels:?})");
        return;
    }
    for kind in CellKind::ALL {
        for hidden in [7, 33] {
            let cell = CellDims::new(kind, 3, hidden).unwrap();
            let seed = test_seed(&format!("levels-slowpoints-{kind}-{hidden}"), 19);
            let mut r = rng(seed);
            let params: Vec<f32> = random_params(&mut r, &cell, 1.2);
            let x: Vec<f32> = uniform(&mut r, cell.input, -1.0, 1.0);
            let cand: Vec<f32> = uniform(&mut r, 19 * cell.state_size(), -0.9, 0.9);
            let cfg = SlowPointConfig {
                max_iters: 30,
                ..SlowPointConfig::default()
            };
            let search = |level: SimdLevel| {
                let be = CpuBackend::new()
                    .with_threads(2)
                    .unwrap()
                    .with_simd(level)
                    .unwrap();
                let mut s = SlowPointSearch::new(&be, &cell, &cand).unwrap();
                be.slow_point_iterations(&cell, &params, &x, &mut s, &cfg)
                    .unwrap();
                (bits(&[&s.states]), s.status)
            };
            let (a, b) = (search(SimdLevel::Avx2Fma), search(SimdLevel::Avx512Vl));
            let what = format!("{kind} H{hidden} (seed {seed})");
            assert!(a.0 == b.0, "{what}: slow-point states differ");
            assert_eq!(a.1, b.1, "{what}: statuses differ");
        }
    }
}

/// The forward's two ways of sharing work between threads (each thread its own batch
/// rows over the whole time loop, or its own unit tiles with a meeting per step) give the
/// same bits, with 2 and 3 threads, every cell and weight precision, at batches that
/// leave rows over in the row tiles and hidden sizes from one unit tile (H 7: the unit
/// split degenerates to the batch split) to several (H 45, 70) split unevenly.
#[test]
fn forward_batch_and_unit_splits_give_identical_bits() {
    for (kind, batch, hidden) in CellKind::ALL
        .into_iter()
        .flat_map(|k| [(k, 1, 45), (k, 5, 70), (k, 8, 45), (k, 13, 7)])
    {
        let case = Case {
            cell: CellDims::new(kind, 6, hidden).unwrap(),
            shape: SeqShape::new(4, batch).unwrap(),
        };
        let (cell, shape) = (case.cell, case.shape);
        let seed = test_seed(&format!("fwd-split-{kind}-{batch}-{hidden}"), 19);
        let inp = inputs(&case, seed);
        let (p, x, s0): (Vec<f32>, Vec<f32>, Vec<f32>) =
            (convert(&inp.params), convert(&inp.x), convert(&inp.s0));
        for precision in Precision::ALL {
            for threads in [2, 3] {
                let run = |split: FwdSplit| {
                    let be = CpuBackend::new()
                        .with_threads(threads)
                        .unwrap()
                        .with_precision(precision)
                        .with_forward_split(split)
                        .with_panel_format(PanelFormat::Storage)
                        .with_poisoned_scratch(true);
                    let f = be.seq_forward(&cell, &p, shape, &x, Some(&s0)).unwrap();
                    (f.h_seq, f.s_final)
                };
                let batch_split = run(FwdSplit::Batch);
                let what = format!(
                    "{kind} B{batch} H{hidden} {precision} {threads} threads (seed {seed})"
                );
                assert!(
                    batch_split.0.iter().all(|v| v.is_finite()),
                    "{what}: batch split left NaN"
                );
                for split in [FwdSplit::Units, FwdSplit::Auto] {
                    assert!(
                        run(split) == batch_split,
                        "{what}: {split:?} differs from the batch split"
                    );
                }
            }
        }
    }
}

#[test]
fn concurrent_small_batch_backwards_on_one_pool_finish_and_agree() {
    // The small-batch backward runs a team of tasks on the backend's own pool. Several
    // callers sharing one backend compete for the same pool threads: a team that waited
    // for all its members at a barrier could deadlock here; this one must finish, and
    // give every caller the single-caller result.
    let kind = CellKind::Lstm;
    let case = Case {
        cell: CellDims::new(kind, 9, 45).unwrap(),
        shape: SeqShape::new(12, 3).unwrap(),
    };
    let (cell, shape) = (case.cell, case.shape);
    let seed = test_seed("concurrent-backward", 15);
    let inp = inputs(&case, seed);
    let (p, x, dh): (Vec<f32>, Vec<f32>, Vec<f32>) =
        (convert(&inp.params), convert(&inp.x), convert(&inp.dh_seq));
    let be = CpuBackend::new().with_threads(3).unwrap();
    let run = || {
        let f = be.seq_forward(&cell, &p, shape, &x, None).unwrap();
        let up = SeqUpstream {
            dh_seq: Some(&dh),
            ds_final: None,
        };
        let g = be.seq_backward(&cell, &p, shape, &x, &f, up, true).unwrap();
        (g.dparams, g.ds0, g.dx.unwrap())
    };
    let alone = run();
    let results: Vec<_> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..4).map(|_| s.spawn(run)).collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, r) in results.iter().enumerate() {
        assert!(
            *r == alone,
            "caller {i}: concurrent backward differs from a lone one (seed {seed})"
        );
    }
}

#[test]
fn speed_gradient_and_jacobian_match_reference() {
    for kind in CellKind::ALL {
        for (i, h, n) in [(1, 1, 1), (5, 7, 3), (3, 19, 5)] {
            let cell = CellDims::new(kind, i, h).unwrap();
            let seed = test_seed(&format!("speed-{kind}-{i}-{h}"), 14);
            let mut r = rng(seed);
            let params: Vec<f64> = random_params(&mut r, &cell, 2.0);
            let states: Vec<f64> = uniform(&mut r, n * cell.state_size(), -0.9, 0.9);
            let x: Vec<f64> = uniform(&mut r, n * cell.input, -1.0, 1.0);
            let reference::RefSpeedGrad {
                speed: sp,
                dstate: ds,
                dparams: dp,
            } = reference::step_speed_grad(&cell, &params, &states, &x, n, true).unwrap();
            let jac = reference::step_jacobian(&cell, &params, &states, &x, n).unwrap();
            let (p, s, xx): (Vec<f32>, Vec<f32>, Vec<f32>) =
                (convert(&params), convert(&states), convert(&x));
            let be = CpuBackend::new().with_poisoned_scratch(true);
            let what = format!("{kind} I{i} H{h} N{n}");
            let got = be.step_speed(&cell, &p, &s, &xx, n).unwrap();
            assert_close(&format!("{what} speed"), &got, &sp, TOL, seed);
            let g = be.step_speed_grad(&cell, &p, &s, &xx, n, true).unwrap();
            assert_close(
                &format!("{what} speed (grad call)"),
                &g.speed,
                &sp,
                TOL,
                seed,
            );
            assert_close(&format!("{what} dS/ds"), &g.dstate, &ds, TOL, seed);
            assert_close(
                &format!("{what} dS/dθ"),
                g.dparams.as_ref().unwrap(),
                dp.as_ref().unwrap(),
                TOL,
                seed,
            );
            let j = be.step_jacobian(&cell, &p, &s, &xx, n).unwrap();
            assert_close(&format!("{what} Jacobian"), &j, &jac, TOL, seed);
        }
    }
}

#[test]
fn adam_first_step_moves_each_parameter_by_lr() {
    // After one step m̂ = g and v̂ = g², so every parameter moves by lr · g / (|g| + eps).
    let be = CpuBackend::new();
    let cfg = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    let mut p = vec![1.0f32, -2.0, 0.5, 3.0];
    let g = vec![0.3f32, -4.0, 1e-3, 0.0];
    let mut st = be.adam_state(4).unwrap();
    be.adam_update(&mut p, &g, &mut st, &cfg).unwrap();
    let want = [
        1.0 - 0.01,
        -2.0 + 0.01,
        0.5 - 0.01 * 1e-3 / (1e-3 + 1e-8),
        3.0,
    ];
    assert_all_close("parameters after one Adam step", &p, &want, 1e-6, 0.0);
    assert_eq!(st.step, 1);
    let bad = AdamConfig { lr: -1.0, ..cfg };
    assert!(be.adam_update(&mut p, &g, &mut st, &bad).is_err());
    assert!(be
        .adam_update(&mut p, &g[..3].to_vec(), &mut st, &cfg)
        .is_err());
}

#[test]
fn bad_input_gives_clear_errors() {
    let be = CpuBackend::new();
    let cell = CellDims::new(CellKind::Lstm, 3, 5).unwrap();
    let shape = SeqShape::new(2, 4).unwrap();
    let seed = test_seed("bad-input", 15);
    let mut r = rng(seed);
    let p: Vec<f32> = random_params(&mut r, &cell, 1.0);
    let x: Vec<f32> = uniform(&mut r, shape.rows() * 3, -1.0, 1.0);
    // NaN in a weight.
    let mut bad = p.clone();
    bad[7] = f32::NAN;
    match be.seq_forward(&cell, &bad, shape, &x, None) {
        Err(Error::NonFinite { what, index, .. }) => assert!(what == "params" && index == 7),
        other => panic!("expected a NonFinite error, got {:?}", other.err()),
    }
    // Inf in the data.
    let mut badx = x.clone();
    badx[20] = f32::INFINITY;
    let err = be.seq_forward(&cell, &p, shape, &badx, None).err().unwrap();
    assert!(
        err.to_string().contains("x contains a non-finite value"),
        "{err}"
    );
    // Mismatched shapes.
    let err = be
        .seq_forward(&cell, &p, shape, &x[1..].to_vec(), None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("shape mismatch for x"), "{err}");
    let err = be
        .seq_forward(&cell, &p[1..].to_vec(), shape, &x, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("params"), "{err}");
    let err = be
        .seq_forward(&cell, &p, shape, &x, Some(&vec![0.0; 4 * 5]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("s0"), "{err}");
    // A forward pass of another shape handed to the backward pass.
    let f = be.seq_forward(&cell, &p, shape, &x, None).unwrap();
    let other = SeqShape::new(1, 8).unwrap();
    let up = SeqUpstream {
        dh_seq: None,
        ds_final: None,
    };
    let err = be
        .seq_backward(&cell, &p, other, &x, &f, up, false)
        .err()
        .unwrap();
    assert!(err.to_string().contains("fwd (the forward pass)"), "{err}");
    // No states is valid (memrnn_core::checks): an empty result.
    assert!(be
        .step_speed(&cell, &p, &vec![], &vec![], 0)
        .unwrap()
        .is_empty());
    assert!(CpuBackend::new().with_threads(0).is_err());
}
