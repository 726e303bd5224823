//! The CUDA backend against the CPU reference (f64), on fresh random inputs, with every
//! GPU output poisoned (NaN) before the kernels write it: forward states, every gradient,
//! both recurrence paths (persistent cooperative, per-step fallback), awkward shapes,
//! speed, speed gradients, Jacobians and Adam.
//!
//! Without a GPU every test prints a loud SKIPPED line and passes; `MEMRNN_REQUIRE_GPU=1`
//! makes a missing GPU a failure.

use memrnn_core::{
    adam_update_host, AdamConfig, AdamState, Backend, CellDims, CellKind, SeqShape, SeqUpstream,
};
use memrnn_cpu::reference;
use memrnn_cuda::testing::gpu_or_skip;
use memrnn_cuda::{CudaBackend, RecurrencePath};
use memrnn_testkit::{assert_close, awkward_cases, random_params, rng, test_seed, uniform, Case};

/// f32 kernels against the f64 reference: relative error in norm.
const TOL: f64 = 1e-4;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn gpu(test: &str) -> Option<CudaBackend> {
    let g = gpu_or_skip(test)?;
    g.set_poison_outputs(true);
    eprintln!("{test}: running on {}", g.name());
    Some(g)
}

/// Shapes beyond the testkit's awkward ones: wider than a tile, K chunked, odd sizes.
fn extra_cases(kind: CellKind) -> Vec<Case> {
    [(37, 70, 19, 7), (20, 300, 64, 3), (8, 129, 130, 2)]
        .iter()
        .map(|&(i, h, b, t)| Case {
            cell: CellDims::new(kind, i, h).expect("valid dims"),
            shape: SeqShape::new(t, b).expect("valid shape"),
        })
        .collect()
}

fn check_sequence(g: &CudaBackend, case: Case, seed: u64, with_s0: bool, with_up: bool) {
    let Case { cell, shape } = case;
    let mut r = rng(seed);
    let params: Vec<f32> = random_params(&mut r, &cell, 1.5);
    let x: Vec<f32> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
    let s0: Vec<f32> = uniform(&mut r, shape.batch * cell.state_size(), -0.8, 0.8);
    let dh: Vec<f32> = uniform(&mut r, shape.rows() * cell.hidden, -1.0, 1.0);
    let dsf: Vec<f32> = uniform(&mut r, shape.batch * cell.state_size(), -1.0, 1.0);
    let what = format!("{:?} {:?} s0={with_s0} ds_final={with_up}", cell, shape);

    let (p64, x64, s064, dh64, dsf64) = (f64s(&params), f64s(&x), f64s(&s0), f64s(&dh), f64s(&dsf));
    let rf = reference::seq_forward(&cell, &p64, shape, &x64, with_s0.then_some(&s064[..]))
        .expect("reference forward");
    let rg = reference::seq_backward(
        &cell,
        &p64,
        shape,
        &x64,
        &rf,
        Some(&dh64),
        with_up.then_some(&dsf64[..]),
        true,
    )
    .expect("reference backward");

    let up = |v: &[f32]| g.upload(v).expect("upload");
    let (gp, gx, gs0, gdh, gdsf) = (up(&params), up(&x), up(&s0), up(&dh), up(&dsf));
    let fwd = g
        .seq_forward(&cell, &gp, shape, &gx, with_s0.then_some(&gs0))
        .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
    let down = |t: &memrnn_cuda::CudaTensor| g.download(t).expect("download");
    assert_close(
        &format!("{what}: h_seq"),
        &down(&fwd.h_seq),
        &rf.h_seq,
        TOL,
        seed,
    );
    assert_close(
        &format!("{what}: s_final"),
        &down(&fwd.s_final),
        rf.s_final(&cell, shape),
        TOL,
        seed,
    );
    let upstream = SeqUpstream {
        dh_seq: Some(&gdh),
        ds_final: with_up.then_some(&gdsf),
    };
    let grads = g
        .seq_backward(&cell, &gp, shape, &gx, &fwd, upstream, true)
        .unwrap_or_else(|e| panic!("{what}: backward: {e}"));
    let layout = cell.layout();
    let gd = down(&grads.dparams);
    for block in memrnn_core::ParamBlock::ALL {
        let rng_ = layout.range(block);
        assert_close(
            &format!("{what}: d{}", block.torch_name()),
            &gd[rng_.clone()],
            &rg.dparams[rng_],
            TOL,
            seed,
        );
    }
    assert_close(
        &format!("{what}: ds0"),
        &down(&grads.ds0),
        &rg.ds0,
        TOL,
        seed,
    );
    let dx = grads.dx.as_ref().expect("dx was asked for");
    let rdx = rg.dx.as_ref().expect("reference dx");
    assert_close(&format!("{what}: dx"), &down(dx), rdx, TOL, seed);

    // Without dx and without any upstream on h_seq: only ds_final drives the gradients.
    let upstream = SeqUpstream {
        dh_seq: None,
        ds_final: Some(&gdsf),
    };
    let grads = g
        .seq_backward(&cell, &gp, shape, &gx, &fwd, upstream, false)
        .unwrap_or_else(|e| panic!("{what}: backward (no dh): {e}"));
    assert!(grads.dx.is_none());
    let rg = reference::seq_backward(&cell, &p64, shape, &x64, &rf, None, Some(&dsf64), false)
        .expect("reference backward");
    assert_close(
        &format!("{what}: dparams (ds_final only)"),
        &down(&grads.dparams),
        &rg.dparams,
        TOL,
        seed,
    );
    assert_close(
        &format!("{what}: ds0 (ds_final only)"),
        &down(&grads.ds0),
        &rg.ds0,
        TOL,
        seed,
    );
}

fn conformance(kind: CellKind, path: RecurrencePath, name: &str) {
    let Some(g) = gpu(name) else { return };
    g.set_recurrence_path(path);
    let seed = test_seed(name, 0xC0DA);
    let mut cases = awkward_cases(kind);
    cases.extend(extra_cases(kind));
    for (n, case) in cases.into_iter().enumerate() {
        let s = seed.wrapping_add(n as u64);
        check_sequence(&g, case, s, true, true);
        check_sequence(&g, case, s ^ 0x55, false, false);
    }
}

#[test]
fn cuda_rnn_persistent() {
    conformance(
        CellKind::Rnn,
        RecurrencePath::Persistent,
        "cuda_rnn_persistent",
    );
}
#[test]
fn cuda_rnn_step() {
    conformance(CellKind::Rnn, RecurrencePath::Step, "cuda_rnn_step");
}
#[test]
fn cuda_gru_persistent() {
    conformance(
        CellKind::Gru,
        RecurrencePath::Persistent,
        "cuda_gru_persistent",
    );
}
#[test]
fn cuda_gru_step() {
    conformance(CellKind::Gru, RecurrencePath::Step, "cuda_gru_step");
}
#[test]
fn cuda_lstm_persistent() {
    conformance(
        CellKind::Lstm,
        RecurrencePath::Persistent,
        "cuda_lstm_persistent",
    );
}
#[test]
fn cuda_lstm_step() {
    conformance(CellKind::Lstm, RecurrencePath::Step, "cuda_lstm_step");
}

/// The paper's shape on the automatic path (persistent on an H100): one check of the
/// shape the benchmarks time.
#[test]
fn cuda_gru_paper_shape_auto() {
    let Some(g) = gpu("cuda_gru_paper_shape_auto") else {
        return;
    };
    let seed = test_seed("cuda_gru_paper_shape_auto", 7);
    let case = Case {
        cell: CellDims::new(CellKind::Gru, 785, 200).expect("dims"),
        shape: SeqShape::new(20, 128).expect("shape"),
    };
    check_sequence(&g, case, seed, true, true);
}

#[test]
fn cuda_speed_grad_and_jacobian() {
    let Some(g) = gpu("cuda_speed_grad_and_jacobian") else {
        return;
    };
    let seed = test_seed("cuda_speed_grad_and_jacobian", 11);
    for kind in CellKind::ALL {
        for (n, (i, h, pts)) in [(3, 5, 4), (1, 1, 1), (6, 17, 9), (9, 40, 33)]
            .into_iter()
            .enumerate()
        {
            let s = seed.wrapping_add(n as u64 * 31 + kind.gates() as u64);
            let cell = CellDims::new(kind, i, h).expect("dims");
            let mut r = rng(s);
            let params: Vec<f32> = random_params(&mut r, &cell, 1.5);
            let states: Vec<f32> = uniform(&mut r, pts * cell.state_size(), -0.9, 0.9);
            let x: Vec<f32> = uniform(&mut r, pts * i, -1.0, 1.0);
            let (p64, s64, x64) = (f64s(&params), f64s(&states), f64s(&x));
            let what = format!("{cell:?} N={pts}");
            let (gp, gs, gx) = (
                g.upload(&params).expect("upload"),
                g.upload(&states).expect("upload"),
                g.upload(&x).expect("upload"),
            );
            let down = |t: &memrnn_cuda::CudaTensor| g.download(t).expect("download");

            let want = reference::speed(&cell, &p64, &s64, &x64, pts).expect("reference speed");
            let got = g.step_speed(&cell, &gp, &gs, &gx, pts).expect("speed");
            assert_close(&format!("{what}: speed"), &down(&got), &want, TOL, s);

            let rsg = reference::speed_grad(&cell, &p64, &s64, &x64, pts, true).expect("reference");
            let (ws, wd, wp) = (rsg.speed, rsg.dstate, rsg.dparams);
            let sg = g
                .step_speed_grad(&cell, &gp, &gs, &gx, pts, true)
                .expect("speed grad");
            assert_close(
                &format!("{what}: speed (grad)"),
                &down(&sg.speed),
                &ws,
                TOL,
                s,
            );
            assert_close(&format!("{what}: dS/ds"), &down(&sg.dstate), &wd, TOL, s);
            let dp = sg.dparams.as_ref().expect("dparams asked for");
            assert_close(
                &format!("{what}: dS/dθ"),
                &down(dp),
                wp.as_ref().expect("ref"),
                TOL,
                s,
            );
            let sg = g
                .step_speed_grad(&cell, &gp, &gs, &gx, pts, false)
                .expect("speed grad");
            assert!(sg.dparams.is_none());

            let wj = reference::jacobian(&cell, &p64, &s64, &x64, pts).expect("reference J");
            let gj = g
                .step_jacobian(&cell, &gp, &gs, &gx, pts)
                .expect("jacobian");
            assert_close(&format!("{what}: jacobian"), &down(&gj), &wj, TOL, s);
        }
    }
}

#[test]
fn cuda_adam_matches_host() {
    let Some(g) = gpu("cuda_adam_matches_host") else {
        return;
    };
    let seed = test_seed("cuda_adam_matches_host", 3);
    let mut r = rng(seed);
    let n = 1000 + 37;
    let mut p: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
    let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
    let cfg = AdamConfig {
        lr: 3e-3,
        ..AdamConfig::default()
    };
    let mut gp = g.upload(&p).expect("upload");
    let mut st: AdamState<_> = g.adam_state(n).expect("state");
    for step in 0..5u64 {
        let grad: Vec<f32> = uniform(&mut r, n, -2.0, 2.0);
        adam_update_host(&mut p, &grad, &mut m, &mut v, step, &cfg);
        let gg = g.upload(&grad).expect("upload");
        g.adam_update(&mut gp, &gg, &mut st, &cfg).expect("adam");
    }
    assert_eq!(st.step, 5);
    let got = g.download(&gp).expect("download");
    assert_close("adam params", &got, &p, 1e-6, seed);
    assert_close("adam m", &g.download(&st.m).expect("m"), &m, 1e-6, seed);
    assert_close("adam v", &g.download(&st.v).expect("v"), &v, 1e-6, seed);
}

/// Errors, not panics, on misuse: wrong lengths, and a forced persistent path that
/// cannot hold the weights.
#[test]
fn cuda_rejects_bad_shapes() {
    let Some(g) = gpu("cuda_rejects_bad_shapes") else {
        return;
    };
    let cell = CellDims::new(CellKind::Gru, 3, 4).expect("dims");
    let shape = SeqShape::new(2, 2).expect("shape");
    let p = g.zeros(cell.layout().len()).expect("zeros");
    let x = g.zeros(shape.rows() * 3 + 1).expect("zeros");
    assert!(g.seq_forward(&cell, &p, shape, &x, None).is_err());
    g.set_recurrence_path(RecurrencePath::Persistent);
    let big = CellDims::new(CellKind::Lstm, 1, 8192).expect("dims");
    let p = g.zeros(big.layout().len()).expect("zeros");
    let x = g.zeros(2).expect("zeros");
    let r = g.seq_forward(&big, &p, SeqShape::new(1, 2).expect("shape"), &x, None);
    assert!(r.is_err(), "an LSTM with H 8192 cannot keep W_hh on chip");
}
