//! Bad arguments: every backend must answer them alike, with the [`Error`] variant
//! [`memrnn_core::checks`] prescribes, naming the argument, before doing any work (a
//! failed call leaves its in-place arguments as they were); and empty point batches
//! (`N = 0`) are valid and give empty outputs.

use super::{variant, Cx};
use crate::{random_params, rng, uniform};
use memrnn_core::backend::{step_jvp_default, SlowPointSearch};
use memrnn_core::{AdamConfig, Backend, CellDims, CellKind, Error, Result, SeqShape, SeqUpstream};

/// Panics unless `r` is an [`Error::Shape`] for the argument `arg`.
#[track_caller]
fn expect_shape<T, B: Backend>(cx: &Cx<'_, B>, call: &str, r: Result<T>, arg: &str) {
    match r {
        Err(Error::Shape { ref what, .. }) if what == arg => {}
        Err(e) => panic!(
            "{}",
            cx.what(format!(
                "{call}: expected a Shape error for {arg:?}, got {}: {e}",
                variant(&e)
            ))
        ),
        Ok(_) => panic!(
            "{}",
            cx.what(format!(
                "{call}: expected a Shape error for {arg:?}, got Ok"
            ))
        ),
    }
}

/// Panics unless `r` is an error of the variant `want` whose message mentions `mention`.
#[track_caller]
fn expect_err<T, B: Backend>(cx: &Cx<'_, B>, call: &str, r: Result<T>, want: &str, mention: &str) {
    match r {
        Err(e) if variant(&e) == want && e.to_string().contains(mention) => {}
        Err(e) => panic!(
            "{}",
            cx.what(format!(
                "{call}: expected a {want} error mentioning {mention:?}, got {}: {e}",
                variant(&e)
            ))
        ),
        Ok(_) => panic!(
            "{}",
            cx.what(format!(
                "{call}: expected a {want} error mentioning {mention:?}, got Ok"
            ))
        ),
    }
}

fn lstm() -> (CellDims, SeqShape) {
    (
        CellDims::new(CellKind::Lstm, 3, 5).expect("dims"),
        SeqShape::new(2, 4).expect("shape"),
    )
}

/// `seq_forward`: wrong lengths of `params`, `x`, `s0`; zero sizes in a hand-built cell or
/// shape; the first bad argument in the trait's order is the one reported.
pub fn seq_forward<B: Backend>(cx: &Cx<'_, B>) {
    let b = cx.b;
    let (cell, shape) = lstm();
    let mut r = rng(cx.seed(15));
    let p: Vec<f32> = random_params(&mut r, &cell, 1.0);
    let x: Vec<f32> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
    let (gp, gx) = (cx.up(&p), cx.up(&x));
    let short_p = cx.up(&p[1..]);
    let long_x = cx.zeros(x.len() + 1);
    let call = "seq_forward";
    expect_shape(
        cx,
        call,
        b.seq_forward(&cell, &short_p, shape, &gx, None),
        "params",
    );
    expect_shape(
        cx,
        call,
        b.seq_forward(&cell, &gp, shape, &long_x, None),
        "x",
    );
    expect_shape(
        cx,
        call,
        b.seq_forward(&cell, &short_p, shape, &long_x, None),
        "params",
    );
    let s0 = cx.zeros(shape.batch * cell.hidden); // [B, H]: the LSTM's state is [B, 2H]
    expect_shape(
        cx,
        call,
        b.seq_forward(&cell, &gp, shape, &gx, Some(&s0)),
        "s0",
    );
    let empty = cx.zeros(0);
    for bad in [
        SeqShape { steps: 0, batch: 4 },
        SeqShape { steps: 2, batch: 0 },
    ] {
        expect_err(
            cx,
            &format!("seq_forward over {bad:?}"),
            b.seq_forward(&cell, &gp, bad, &empty, None),
            "Dimension",
            "shape",
        );
    }
    for bad in [
        CellDims { hidden: 0, ..cell },
        CellDims { input: 0, ..cell },
    ] {
        let p = cx.zeros(bad.layout().len());
        let x = cx.zeros(shape.rows() * bad.input);
        expect_err(
            cx,
            &format!("seq_forward of {bad:?}"),
            b.seq_forward(&bad, &p, shape, &x, None),
            "Dimension",
            "size",
        );
    }
}

/// `seq_backward`: a forward pass of another shape or another cell; wrong lengths of
/// `params`, `x`, `dh_seq`, `ds_final`.
pub fn seq_backward<B: Backend>(cx: &Cx<'_, B>) {
    let b = cx.b;
    let (cell, shape) = lstm();
    let mut r = rng(cx.seed(16));
    let p: Vec<f32> = random_params(&mut r, &cell, 1.0);
    let x: Vec<f32> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
    let (gp, gx) = (cx.up(&p), cx.up(&x));
    let fwd = cx.ok("seq_forward", b.seq_forward(&cell, &gp, shape, &gx, None));
    let dh = cx.zeros(shape.rows() * cell.hidden);
    let dsf = cx.zeros(shape.batch * cell.state_size());
    let up = || SeqUpstream {
        dh_seq: Some(&dh),
        ds_final: Some(&dsf),
    };
    let call = "seq_backward";
    // Sanity: the good call works.
    cx.ok(
        call,
        b.seq_backward(&cell, &gp, shape, &gx, &fwd, up(), true),
    );

    // Another shape with as many rows (x has the same length): the forward pass is wrong.
    let other = SeqShape::new(1, 8).expect("shape");
    let dh8 = cx.zeros(other.rows() * cell.hidden);
    let dsf8 = cx.zeros(other.batch * cell.state_size());
    let up8 = SeqUpstream {
        dh_seq: Some(&dh8),
        ds_final: Some(&dsf8),
    };
    expect_err(
        cx,
        "seq_backward with the forward pass of another shape",
        b.seq_backward(&cell, &gp, other, &gx, &fwd, up8, false),
        "InvalidArgument",
        "fwd",
    );
    // Another cell with the same input size and shape.
    let gru = CellDims::new(CellKind::Gru, 3, 5).expect("dims");
    let gp_gru = cx.zeros(gru.layout().len());
    let dsf_gru = cx.zeros(shape.batch * gru.state_size());
    let up_gru = SeqUpstream {
        dh_seq: Some(&dh),
        ds_final: Some(&dsf_gru),
    };
    expect_err(
        cx,
        "seq_backward with the forward pass of another cell",
        b.seq_backward(&gru, &gp_gru, shape, &gx, &fwd, up_gru, false),
        "InvalidArgument",
        "fwd",
    );

    let short_p = cx.up(&p[1..]);
    expect_shape(
        cx,
        call,
        b.seq_backward(&cell, &short_p, shape, &gx, &fwd, up(), false),
        "params",
    );
    let long_x = cx.zeros(x.len() + 1);
    expect_shape(
        cx,
        call,
        b.seq_backward(&cell, &gp, shape, &long_x, &fwd, up(), false),
        "x",
    );
    let bad_dh = cx.zeros(shape.rows() * cell.hidden - 1);
    let up_bad = SeqUpstream {
        dh_seq: Some(&bad_dh),
        ds_final: None,
    };
    expect_shape(
        cx,
        call,
        b.seq_backward(&cell, &gp, shape, &gx, &fwd, up_bad, false),
        "dh_seq",
    );
    let bad_dsf = cx.zeros(shape.batch * cell.hidden); // [B, H]: the LSTM's is [B, 2H]
    let up_bad = SeqUpstream {
        dh_seq: None,
        ds_final: Some(&bad_dsf),
    };
    expect_shape(
        cx,
        call,
        b.seq_backward(&cell, &gp, shape, &gx, &fwd, up_bad, true),
        "ds_final",
    );
    expect_err(
        cx,
        "seq_backward over a zero-step shape",
        b.seq_backward(
            &cell,
            &gp,
            SeqShape { steps: 0, batch: 4 },
            &gx,
            &fwd,
            up(),
            false,
        ),
        "Dimension",
        "shape",
    );
}

/// A point operation with the arguments `(cell, params, states, x, n)`.
type PointOp<'a, B> = Box<
    dyn Fn(
            &CellDims,
            &<B as Backend>::Tensor,
            &<B as Backend>::Tensor,
            &<B as Backend>::Tensor,
            usize,
        ) -> Result<()>
        + 'a,
>;

fn op<'a, B: Backend>(
    f: impl Fn(&CellDims, &B::Tensor, &B::Tensor, &B::Tensor, usize) -> Result<()> + 'a,
) -> PointOp<'a, B> {
    Box::new(f)
}

/// The point operations: wrong lengths of `params`, `states`, `x`, `v`, an `N` that
/// does not match the buffers, a hand-built cell with no hidden units.
pub fn point_ops<B: Backend>(cx: &Cx<'_, B>) {
    let b = cx.b;
    for kind in CellKind::ALL {
        let cell = CellDims::new(kind, 3, 5).expect("dims");
        let (sd, n) = (cell.state_size(), 2);
        let mut r = rng(cx.seed(17));
        let p: Vec<f32> = random_params(&mut r, &cell, 1.0);
        let gp = cx.up(&p);
        let short_p = cx.up(&p[1..]);
        let s = cx.up(&uniform::<f32>(&mut r, n * sd, -0.5, 0.5));
        let x = cx.up(&uniform::<f32>(&mut r, n * cell.input, -1.0, 1.0));
        let v = cx.up(&uniform::<f32>(&mut r, n * sd, -1.0, 1.0));
        let (bad_s, bad_x, bad_v) = (
            cx.zeros(n * sd + 1),
            cx.zeros(n * cell.input - 1),
            cx.zeros(sd),
        );
        // Sanity: the good calls work.
        cx.ok("step_speed", b.step_speed(&cell, &gp, &s, &x, n));
        cx.ok("step_jvp", b.step_jvp(&cell, &gp, &s, &x, &v, n));

        let ops: [(&str, PointOp<'_, B>); 4] = [
            (
                "step_speed",
                op::<B>(|c, p, s, x, n| b.step_speed(c, p, s, x, n).map(drop)),
            ),
            (
                "step_speed_grad",
                op::<B>(|c, p, s, x, n| b.step_speed_grad(c, p, s, x, n, true).map(drop)),
            ),
            (
                "step_jacobian",
                op::<B>(|c, p, s, x, n| b.step_jacobian(c, p, s, x, n).map(drop)),
            ),
            (
                "step_jvp",
                op::<B>(|c, p, s, x, n| b.step_jvp(c, p, s, x, &v, n).map(drop)),
            ),
        ];
        for (name, op) in ops {
            let call = format!("{kind} {name}");
            expect_shape(cx, &call, op(&cell, &short_p, &s, &x, n), "params");
            expect_shape(cx, &call, op(&cell, &gp, &bad_s, &x, n), "states");
            expect_shape(cx, &call, op(&cell, &gp, &s, &bad_x, n), "x");
            expect_shape(cx, &call, op(&cell, &gp, &bad_s, &bad_x, n), "states");
            expect_shape(cx, &call, op(&cell, &gp, &s, &x, n + 1), "states");
            let none = CellDims { hidden: 0, ..cell };
            let e = cx.zeros(0);
            expect_err(cx, &call, op(&none, &e, &e, &x, n), "Dimension", "size");
        }
        let call = format!("{kind} step_jvp");
        expect_shape(cx, &call, b.step_jvp(&cell, &gp, &s, &x, &bad_v, n), "v");
        expect_shape(
            cx,
            &call,
            step_jvp_default(b, &cell, &gp, &s, &x, &bad_v, n),
            "v",
        );
        expect_shape(
            cx,
            &call,
            step_jvp_default(b, &cell, &gp, &s, &bad_x, &v, n),
            "x",
        );
    }
}

/// `N = 0` is valid for every point operation: empty outputs, and `step_speed_grad`'s
/// `dparams`, when asked for, zeros of the parameters' length.
pub fn empty_points<B: Backend>(cx: &Cx<'_, B>) {
    let b = cx.b;
    for kind in CellKind::ALL {
        let cell = CellDims::new(kind, 3, 5).expect("dims");
        let p: Vec<f32> = random_params(&mut rng(cx.seed(18)), &cell, 1.0);
        let gp = cx.up(&p);
        let e = cx.zeros(0);
        let what = |op: &str| format!("{kind} {op} with N = 0");
        let len = |t: &B::Tensor| b.len(t);
        let sp = cx.ok(what("step_speed"), b.step_speed(&cell, &gp, &e, &e, 0));
        assert_eq!(len(&sp), 0, "{}", cx.what(what("step_speed")));
        for want_dparams in [false, true] {
            let g = cx.ok(
                what("step_speed_grad"),
                b.step_speed_grad(&cell, &gp, &e, &e, 0, want_dparams),
            );
            assert!(
                len(&g.speed) == 0 && len(&g.dstate) == 0,
                "{}",
                cx.what(what("step_speed_grad: non-empty speed or dstate"))
            );
            match (&g.dparams, want_dparams) {
                (None, false) => {}
                (Some(d), true) => assert!(
                    cx.down(d) == vec![0.0; p.len()],
                    "{}",
                    cx.what(what(
                        "step_speed_grad: dparams are not zeros of the parameters' length"
                    ))
                ),
                (d, _) => panic!(
                    "{}",
                    cx.what(format!(
                        "{}: dparams {} though want_dparams = {want_dparams}",
                        what("step_speed_grad"),
                        if d.is_some() { "present" } else { "absent" }
                    ))
                ),
            }
        }
        let j = cx.ok(
            what("step_jacobian"),
            b.step_jacobian(&cell, &gp, &e, &e, 0),
        );
        assert_eq!(len(&j), 0, "{}", cx.what(what("step_jacobian")));
        let v = cx.ok(what("step_jvp"), b.step_jvp(&cell, &gp, &e, &e, &e, 0));
        assert_eq!(len(&v), 0, "{}", cx.what(what("step_jvp")));
        let v = cx.ok(
            what("step_jvp_default"),
            step_jvp_default(b, &cell, &gp, &e, &e, &e, 0),
        );
        assert_eq!(len(&v), 0, "{}", cx.what(what("step_jvp_default")));
        // The lengths are still checked at N = 0.
        let short_p = cx.up(&p[1..]);
        expect_shape(
            cx,
            &what("step_speed"),
            b.step_speed(&cell, &short_p, &e, &e, 0),
            "params",
        );
        let one = cx.zeros(1);
        expect_shape(
            cx,
            &what("step_jacobian"),
            b.step_jacobian(&cell, &gp, &one, &e, 0),
            "states",
        );
    }
}

/// `adam_update`: wrong lengths of `grad`, `m`, `v`, invalid configs; a failed call leaves
/// the parameters, the moments and the step count as they were; an empty tensor is valid.
pub fn adam<B: Backend>(cx: &Cx<'_, B>) {
    let b = cx.b;
    let n = 37;
    let mut r = rng(cx.seed(19));
    let p0: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
    let g: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
    let mut gp = cx.up(&p0);
    let gg = cx.up(&g);
    let cfg = AdamConfig::default();
    let mut st = cx.ok("adam_state", b.adam_state(n));
    let call = "adam_update";
    let short = cx.zeros(n - 1);
    expect_shape(
        cx,
        call,
        b.adam_update(&mut gp, &short, &mut st, &cfg),
        "grad",
    );
    let good_m = std::mem::replace(&mut st.m, cx.zeros(n + 1));
    expect_shape(
        cx,
        call,
        b.adam_update(&mut gp, &gg, &mut st, &cfg),
        "adam m",
    );
    st.m = good_m;
    let good_v = std::mem::replace(&mut st.v, cx.zeros(n - 1));
    expect_shape(
        cx,
        call,
        b.adam_update(&mut gp, &gg, &mut st, &cfg),
        "adam v",
    );
    st.v = good_v;
    for bad in [
        AdamConfig { lr: -1.0, ..cfg },
        AdamConfig {
            lr: f32::NAN,
            ..cfg
        },
        AdamConfig { beta1: 1.0, ..cfg },
        AdamConfig { beta2: -0.1, ..cfg },
        AdamConfig { eps: 0.0, ..cfg },
    ] {
        expect_err(
            cx,
            &format!("adam_update with {bad:?}"),
            b.adam_update(&mut gp, &gg, &mut st, &bad),
            "InvalidArgument",
            "Adam",
        );
    }
    // A bad config with bad lengths: the lengths come first.
    let bad = AdamConfig { lr: -1.0, ..cfg };
    expect_shape(
        cx,
        call,
        b.adam_update(&mut gp, &short, &mut st, &bad),
        "grad",
    );
    assert_eq!(
        st.step,
        0,
        "{}",
        cx.what("a failed adam_update moved the step count")
    );
    assert!(
        cx.down(&gp) == p0 && cx.down(&st.m) == vec![0.0; n] && cx.down(&st.v) == vec![0.0; n],
        "{}",
        cx.what("a failed adam_update changed the parameters or the moments")
    );
    // Empty: valid, only the step count moves.
    let mut e = cx.zeros(0);
    let mut st = cx.ok("adam_state(0)", b.adam_state(0));
    cx.ok(
        "adam_update of an empty tensor",
        b.adam_update(&mut e, &cx.zeros(0), &mut st, &cfg),
    );
    assert_eq!(st.step, 1, "{}", cx.what("empty adam_update: step count"));
    assert_eq!(b.len(&e), 0, "{}", cx.what("empty adam_update: length"));
}

/// `slow_point_iterations` and `SlowPointSearch::new`: wrong lengths, no candidates, a
/// non-finite input or parameter, an invalid config; a failed call leaves the search as
/// it was.
pub fn slow_points<B: Backend>(cx: &Cx<'_, B>) {
    use super::slowpoints::{problem, test_config};
    let b = cx.b;
    let p = problem(CellKind::Gru, 3, 7, 5, cx.seed(20));
    let cell = p.cell;
    let params = cx.up(&p.params);
    let x = cx.up(&p.x);
    let mut search = cx.ok(
        "SlowPointSearch::new",
        SlowPointSearch::new(b, &cell, &p.candidates),
    );
    let cfg = test_config(10);
    let call = "slow_point_iterations";

    let bad_x = cx.zeros(2);
    expect_shape(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &bad_x, &mut search, &cfg),
        "x",
    );
    let short_p = cx.up(&p.params[1..]);
    expect_shape(
        cx,
        call,
        b.slow_point_iterations(&cell, &short_p, &x, &mut search, &cfg),
        "params",
    );
    let nan_x = cx.up(&[f32::NAN, 0.0, 0.0]);
    expect_err(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &nan_x, &mut search, &cfg),
        "NonFinite",
        "x",
    );
    let mut nan_p = p.params.clone();
    nan_p[4] = f32::INFINITY;
    let nan_p = cx.up(&nan_p);
    expect_err(
        cx,
        call,
        b.slow_point_iterations(&cell, &nan_p, &x, &mut search, &cfg),
        "NonFinite",
        "params",
    );
    let mut bad_cfg = cfg;
    bad_cfg.adam.lr = 0.0;
    expect_err(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut search, &bad_cfg),
        "InvalidArgument",
        "Adam",
    );
    let mut bad_cfg = cfg;
    bad_cfg.tol = -1.0;
    expect_err(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut search, &bad_cfg),
        "InvalidArgument",
        "tol",
    );
    // The search's own buffers.
    let status = std::mem::take(&mut search.status);
    search.status = status[1..].to_vec();
    expect_shape(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut search, &cfg),
        "status",
    );
    search.status = status;
    let states = std::mem::replace(&mut search.states, cx.zeros(5 * 7 - 1));
    expect_shape(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut search, &cfg),
        "states",
    );
    search.states = states;
    let m = std::mem::replace(&mut search.m, cx.zeros(5 * 7 + 1));
    expect_shape(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut search, &cfg),
        "adam m",
    );
    search.m = m;
    // Nothing ran.
    assert!(
        cx.down(&search.states) == p.candidates
            && search
                .status
                .iter()
                .all(|s| s.iters == 0 && s.speed_sq.is_nan()),
        "{}",
        cx.what("a failed slow_point_iterations call changed the search")
    );
    // No candidates: SlowPointSearch::new refuses, and so does a hand-built search.
    expect_err(
        cx,
        "SlowPointSearch::new with no candidates",
        SlowPointSearch::new(b, &cell, &[]),
        "InvalidArgument",
        "K = 0",
    );
    let mut empty = SlowPointSearch {
        k: 0,
        states: cx.zeros(0),
        m: cx.zeros(0),
        v: cx.zeros(0),
        status: Vec::new(),
    };
    expect_err(
        cx,
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut empty, &cfg),
        "InvalidArgument",
        "K = 0",
    );
    expect_shape(
        cx,
        "SlowPointSearch::new",
        SlowPointSearch::new(b, &cell, &p.candidates[1..]),
        "candidates",
    );
    let mut nan_c = p.candidates.clone();
    nan_c[3] = f32::NAN;
    expect_err(
        cx,
        "SlowPointSearch::new",
        SlowPointSearch::new(b, &cell, &nan_c),
        "NonFinite",
        "candidates",
    );
    // And the good call still works.
    cx.ok(
        call,
        b.slow_point_iterations(&cell, &params, &x, &mut search, &cfg),
    );
}

/// `readout_ce`: a zero hidden size or class count is a Dimension error; each buffer of
/// the wrong length a Shape error naming it.
pub fn readout_ce<B: Backend>(cx: &Cx<'_, B>) {
    let b = cx.b;
    let (hidden, classes, rows) = (4, 11, 6);
    let h = cx.zeros(rows * hidden);
    let ro = cx.zeros(classes * hidden + classes);
    let t = cx.zeros(rows);
    let w = cx.zeros(rows);
    let call = "readout_ce";
    for (hd, c) in [(0, classes), (hidden, 0)] {
        expect_err(
            cx,
            call,
            b.readout_ce(hd, c, &h, &ro, &t, &w),
            "Dimension",
            "readout",
        );
    }
    let (h_bad, ro_bad, w_bad) = (
        cx.zeros(rows * hidden + 1),
        cx.zeros(classes * hidden),
        cx.zeros(rows - 1),
    );
    expect_shape(
        cx,
        call,
        b.readout_ce(hidden, classes, &h_bad, &ro, &t, &w),
        "h",
    );
    expect_shape(
        cx,
        call,
        b.readout_ce(hidden, classes, &h, &ro_bad, &t, &w),
        "readout",
    );
    expect_shape(
        cx,
        call,
        b.readout_ce(hidden, classes, &h, &ro, &t, &w_bad),
        "weights",
    );
    // Targets set the row count: one fewer makes h the wrong length.
    let t_short = cx.zeros(rows - 1);
    expect_shape(
        cx,
        call,
        b.readout_ce(hidden, classes, &h, &ro, &t_short, &w),
        "h",
    );
}

/// `clip_adam_update`: no group or too many is InvalidArgument; a short grad or moment a
/// Shape error naming it; groups at different steps, a bad clip limit or config are
/// InvalidArgument; and a refused call changes nothing.
pub fn clip_adam<B: Backend>(cx: &Cx<'_, B>) {
    use memrnn_core::{AdamGroup, MAX_ADAM_GROUPS};
    let b = cx.b;
    let cfg = AdamConfig::default();
    let call = "clip_adam_update";
    expect_err(
        cx,
        call,
        b.clip_adam_update(&mut [], Some(1.0), None, &cfg),
        "InvalidArgument",
        "at least one",
    );
    let n = 7;
    let p0 = vec![0.5f32; n];
    let mut ps: Vec<B::Tensor> = (0..=MAX_ADAM_GROUPS).map(|_| cx.up(&p0)).collect();
    let gs: Vec<B::Tensor> = (0..=MAX_ADAM_GROUPS).map(|_| cx.up(&[0.1; 7])).collect();
    let mut sts: Vec<_> = (0..=MAX_ADAM_GROUPS)
        .map(|_| cx.ok("adam_state", b.adam_state(n)))
        .collect();
    {
        let mut groups: Vec<AdamGroup<'_, B::Tensor>> = ps
            .iter_mut()
            .zip(&gs)
            .zip(sts.iter_mut())
            .map(|((params, grad), state)| AdamGroup {
                params,
                grad,
                state,
            })
            .collect();
        expect_err(
            cx,
            call,
            b.clip_adam_update(&mut groups, Some(1.0), None, &cfg),
            "InvalidArgument",
            "at most",
        );
        let two = &mut groups[..2];
        for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
            expect_err(
                cx,
                call,
                b.clip_adam_update(two, Some(bad), None, &cfg),
                "InvalidArgument",
                "clip",
            );
        }
        let bad_cfg = AdamConfig { lr: -1.0, ..cfg };
        expect_err(
            cx,
            call,
            b.clip_adam_update(two, None, None, &bad_cfg),
            "InvalidArgument",
            "Adam",
        );
        two[1].state.step = 3;
        expect_err(
            cx,
            call,
            b.clip_adam_update(two, None, None, &cfg),
            "InvalidArgument",
            "step",
        );
        two[1].state.step = 0;
    }
    let short = cx.zeros(n - 1);
    let mut st = cx.ok("adam_state", b.adam_state(n));
    let mut p = cx.up(&p0);
    expect_shape(
        cx,
        call,
        b.clip_adam_update(
            &mut [AdamGroup {
                params: &mut p,
                grad: &short,
                state: &mut st,
            }],
            None,
            None,
            &cfg,
        ),
        "grad",
    );
    st.v = cx.zeros(n + 1);
    expect_shape(
        cx,
        call,
        b.clip_adam_update(
            &mut [AdamGroup {
                params: &mut p,
                grad: &gs[0],
                state: &mut st,
            }],
            None,
            None,
            &cfg,
        ),
        "adam v",
    );
    assert_eq!(
        st.step,
        0,
        "{}",
        cx.what("a refused call advanced the step")
    );
    for (i, q) in ps.iter().enumerate() {
        assert!(
            cx.down(q) == p0,
            "{}",
            cx.what(format!("a refused call changed group {i}'s parameters"))
        );
    }
    assert!(
        cx.down(&p) == p0,
        "{}",
        cx.what("a refused call changed the parameters")
    );
    expect_shape(cx, "axpy", b.axpy(&mut p, 1.0, &short), "x");
    // The guard's buffers hold one value each, and its limit is a number.
    let (one, two) = (cx.zeros(1), cx.zeros(2));
    for (loss, halted_len, max_loss, want) in [
        (&two, 1, 1.0f32, "guard loss"),
        (&one, 2, 1.0, "guard halted"),
        (&one, 1, f32::NAN, "max_loss"),
    ] {
        let mut halted = cx.zeros(halted_len);
        let r = b.clip_adam_update(
            &mut [AdamGroup {
                params: &mut p,
                grad: &gs[0],
                state: &mut sts[0],
            }],
            None,
            Some(memrnn_core::StepGuard {
                loss,
                max_loss,
                halted: &mut halted,
            }),
            &cfg,
        );
        if want == "max_loss" {
            expect_err(cx, call, r, "InvalidArgument", want);
        } else {
            expect_shape(cx, call, r, want);
        }
    }
    assert_eq!(
        sts[0].step,
        0,
        "{}",
        cx.what("a refused guarded call advanced the step")
    );
    // copy_into: ranges outside either tensor.
    let mut dst = cx.zeros(4);
    let src = cx.zeros(3);
    for (doff, soff, len) in [(3, 0, 2), (0, 2, 2), (usize::MAX, 0, 1)] {
        expect_err(
            cx,
            "copy_into",
            b.copy_into(&mut dst, doff, &src, soff, len),
            "InvalidArgument",
            "outside",
        );
    }
}
