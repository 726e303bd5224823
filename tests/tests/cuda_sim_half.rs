//! The CUDA backend's half-width recurrence kernels (`<cell>_{seq,step}_{fwd,bwd}_{bf16,f16}`)
//! on the simulated device, bit for bit against the `_f32` kernels on weights rounded
//! beforehand (`Precision::round_recurrent` on the host): storage is the only thing a
//! half precision changes, so every output of the forward and the backward (`h_seq`,
//! `s_final`, every parameter gradient, `ds0`, `dx`) must be identical, on both
//! recurrence paths, at awkward shapes (H 1, odd H, B off the 4-row items, H off the
//! 32-unit tiles). Outputs are NaN-poisoned, so an element a half kernel misses fails.
//! Also: an f16 weight beyond 65504 is the same error as on the CPU.
//!
//! Bit identity needs the same launch plan for both: the per-step plan does not depend on
//! the weight size, and at these sizes every persistent plan on the H100-like device is
//! far inside its shared memory in f32 already (the planner's choice among tilings does
//! not depend on the weight size; only whether one fits, and the K chunk when shared
//! memory runs short).

use memrnn_core::{Backend, CellDims, CellKind, Precision, SeqShape, SeqUpstream};
use memrnn_cuda::{CudaBackend, RecurrencePath, SimProps};
use memrnn_testkit::{random_params, rng, uniform};

fn sim(precision: Precision, path: RecurrencePath) -> CudaBackend {
    let b = CudaBackend::simulated(SimProps::h100_like())
        .expect("the simulated device")
        .with_precision(precision);
    b.set_poison_outputs(true);
    b.set_recurrence_path(path);
    b
}

/// A sequence's inputs besides the parameters: `x`, `s0`, `dh_seq`, `ds_final`.
struct Inputs {
    x: Vec<f32>,
    s0: Vec<f32>,
    dh: Vec<f32>,
    ds: Vec<f32>,
}

/// Every output of one forward and one backward (with `dh_seq`, `ds_final` and `dx`).
fn run(
    b: &CudaBackend,
    cell: &CellDims,
    shape: SeqShape,
    params: &[f32],
    inp: &Inputs,
) -> Vec<(&'static str, Vec<f32>)> {
    let (p, x, s0, dh, ds) = (
        b.upload(params).expect("up"),
        b.upload(&inp.x).expect("up"),
        b.upload(&inp.s0).expect("up"),
        b.upload(&inp.dh).expect("up"),
        b.upload(&inp.ds).expect("up"),
    );
    let fwd = b
        .seq_forward(cell, &p, shape, &x, Some(&s0))
        .expect("forward");
    let up = SeqUpstream {
        dh_seq: Some(&dh),
        ds_final: Some(&ds),
    };
    let g = b
        .seq_backward(cell, &p, shape, &x, &fwd, up, true)
        .expect("backward");
    let down = |t| b.download(t).expect("download");
    vec![
        ("h_seq", down(&fwd.h_seq)),
        ("s_final", down(&fwd.s_final)),
        ("dparams", down(&g.dparams)),
        ("ds0", down(&g.ds0)),
        ("dx", down(g.dx.as_ref().expect("dx"))),
    ]
}

#[test]
fn half_kernels_match_f32_kernels_on_rounded_weights_bit_for_bit() {
    let seed = memrnn_testkit::test_seed("half_kernels_bit_for_bit", 0x00b1_7f15);
    // (input, hidden, batch, steps)
    const SIZES: [(usize, usize, usize, usize); 5] = [
        (1, 1, 1, 2),
        (3, 7, 5, 3),
        (2, 33, 6, 2),
        (4, 37, 9, 2),
        (5, 70, 3, 2),
    ];
    for kind in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
        for (c, &(i, h, bsz, t)) in SIZES.iter().enumerate() {
            let s = seed.wrapping_add(c as u64);
            let cell = CellDims::new(kind, i, h).expect("dims");
            let shape = SeqShape::new(t, bsz).expect("shape");
            let mut r = rng(s);
            // Weights of order 1, so that rounding changes most of them.
            let raw: Vec<f32> = random_params(&mut r, &cell, 2.0);
            let inp = Inputs {
                x: uniform(&mut r, shape.rows() * i, -1.0, 1.0),
                s0: uniform(&mut r, bsz * cell.state_size(), -0.9, 0.9),
                dh: uniform(&mut r, shape.rows() * h, -1.0, 1.0),
                ds: uniform(&mut r, bsz * cell.state_size(), -1.0, 1.0),
            };
            for path in [RecurrencePath::Persistent, RecurrencePath::Step] {
                for prec in [Precision::Bf16, Precision::F16] {
                    let rounded = prec.round_recurrent(&cell, &raw).expect("round").to_vec();
                    assert_ne!(rounded, raw, "rounding must change the weights");
                    let half = run(&sim(prec, path), &cell, shape, &raw, &inp);
                    let f32s = run(&sim(Precision::F32, path), &cell, shape, &rounded, &inp);
                    for ((name, got), (_, want)) in half.iter().zip(&f32s) {
                        assert_eq!(got.len(), want.len());
                        for (e, (g, w)) in got.iter().zip(want).enumerate() {
                            assert!(
                                g.to_bits() == w.to_bits(),
                                "seed {s:#x}: {kind} I{i} H{h} B{bsz} T{t} {path:?} {prec}: \
                                 {name}[{e}] = {g:e} with the half kernels, {w:e} with the \
                                 f32 kernels on rounded weights"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// An f16 weight beyond 65504 is refused with the CPU's error (naming the weight and the
/// way out), in the forward, the backward and the ops built on them; bf16 takes it.
#[test]
fn f16_overflow_is_the_cpu_error() {
    let cell = CellDims::new(CellKind::Gru, 2, 3).expect("dims");
    let shape = SeqShape::new(2, 2).expect("shape");
    let good = vec![0.1f32; cell.layout().len()];
    let mut bad = good.clone();
    let w_hh = cell.layout().range(memrnn_core::ParamBlock::WeightHh);
    bad[w_hh.start + 4] = 1e5;
    let want = Precision::F16
        .check_recurrent(&cell, &bad)
        .expect_err("overflows")
        .to_string();
    assert!(want.contains("W_hh[4]"), "{want}");
    let x = vec![0.5f32; shape.rows() * 2];
    let b = sim(Precision::F16, RecurrencePath::Auto);
    let (good, bad, gx) = (
        b.upload(&good).expect("up"),
        b.upload(&bad).expect("up"),
        b.upload(&x).expect("up"),
    );
    let err = b.seq_forward(&cell, &bad, shape, &gx, None).err();
    assert_eq!(err.expect("forward must refuse").to_string(), want);
    let fwd = b
        .seq_forward(&cell, &good, shape, &gx, None)
        .expect("forward");
    let up = SeqUpstream {
        dh_seq: None,
        ds_final: Some(&fwd.s_final),
    };
    let err = b
        .seq_backward(&cell, &bad, shape, &gx, &fwd, up, false)
        .err();
    assert_eq!(err.expect("backward must refuse").to_string(), want);
    let (states, xs) = (b.zeros(3).expect("z"), b.upload(&[0.5, 0.5]).expect("up"));
    let err = b.step_speed(&cell, &bad, &states, &xs, 1).err();
    assert_eq!(err.expect("speed must refuse").to_string(), want);
    let bf = sim(Precision::Bf16, RecurrencePath::Auto);
    let (p, gx) = (
        bf.upload(&b.download(&bad).expect("down")).expect("up"),
        bf.upload(&x).expect("up"),
    );
    bf.seq_forward(&cell, &p, shape, &gx, None)
        .expect("bf16 holds 1e5");
}

/// The fused slow-point search in half precision runs its f32 kernels on a copy of the
/// parameters whose `W_hh` is rounded on the device: bit for bit the f32 backend's search
/// on weights rounded beforehand (states, Adam moments, every candidate's status), for
/// every cell, over enough iterations for candidates to converge and stall.
#[test]
fn half_slow_point_search_matches_f32_on_rounded_weights_bit_for_bit() {
    use memrnn_testkit::conformance::slowpoints::{problem, run_search, test_config};
    let seed = memrnn_testkit::test_seed("half_slow_points_bit_for_bit", 0x5105_f015);
    let cfg = test_config(60);
    for kind in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
        for prec in [Precision::Bf16, Precision::F16] {
            let s = seed.wrapping_add(kind as u64);
            let raw = problem(kind, 5, 33, 40, s);
            let mut rounded = problem(kind, 5, 33, 40, s);
            rounded.params = prec
                .round_recurrent(&raw.cell, &raw.params)
                .expect("round")
                .to_vec();
            assert_ne!(rounded.params, raw.params);
            let what = format!("{kind} {prec} (seed {s:#x})");
            let half = sim(prec, RecurrencePath::Auto);
            let f32s = sim(Precision::F32, RecurrencePath::Auto);
            let got = run_search(&half, &raw, &[cfg], false, &what);
            let want = run_search(&f32s, &rounded, &[cfg], false, &what);
            for (q, a, b) in [
                ("states", &got.states, &want.states),
                ("adam m", &got.m, &want.m),
                ("adam v", &got.v, &want.v),
            ] {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "{what}: {q}");
            }
            for (c, (a, b)) in got.status.iter().zip(&want.status).enumerate() {
                assert_eq!(
                    (a.stop, a.iters, a.speed_sq.to_bits()),
                    (b.stop, b.iters, b.speed_sq.to_bits()),
                    "{what}: candidate {c}"
                );
            }
        }
    }
}
