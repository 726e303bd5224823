//! The ensemble operations (`Backend::ensemble_*`) against the single-network operations
//! member by member: a member must get what it gets alone, whatever the other members
//! hold. Ensembles of 1 and 3 members at odd sizes; in the 3-member ensembles the middle
//! member's readout gradient and guarded loss are NaN in the update (the backends refuse
//! non-finite parameters and upstream gradients before that), which must reach neither
//! neighbour's norm, and its guard must skip only its own update. Outputs are compared within [`ENSEMBLE_TOL`]
//! (relative, in norm), so that a backend that fuses the members into one launch passes
//! with f32 reordering; the defaults and the CPU backend are bit for bit (their own tests
//! say so).

use super::{f64s, Cx};
use crate::{random_params, rng, uniform};
use memrnn_core::ensemble::{BackwardArgs, MemberAdam, ReadoutArgs, SeqArgs};
use memrnn_core::{
    AdamConfig, AdamGroup, AdamState, Backend, CellDims, CellKind, ClipNorm, DigitTable, Error,
    SeqShape, SeqUpstream, StepGuard, TaskBatchSpec,
};

/// A member against itself alone: relative error in norm.
pub const ENSEMBLE_TOL: f64 = 1e-6;

const CLASSES: usize = 11;

/// One member's inputs.
struct Member {
    params: Vec<f32>,
    x: Vec<f32>,
    readout: Vec<f32>,
    targets: Vec<f32>,
    weights: Vec<f32>,
}

fn member(seed: u64, cell: &CellDims, shape: SeqShape) -> Member {
    let mut r = rng(seed);
    let params = random_params(&mut r, cell, 1.5);
    let rows = shape.rows();
    let targets: Vec<f32> = uniform::<f64>(&mut r, rows, 0.0, CLASSES as f64)
        .iter()
        .map(|v| v.floor().min((CLASSES - 1) as f64) as f32)
        .collect();
    Member {
        x: uniform(&mut r, rows * cell.input, -1.0, 1.0),
        readout: uniform(&mut r, CLASSES * cell.hidden + CLASSES, -0.5, 0.5),
        weights: uniform(&mut r, rows, 0.0, 1.0),
        targets,
        params,
    }
}

/// Forward, readout cross-entropy, backward and the clipped, guarded Adam update of an
/// ensemble against the same steps run member by member with the single operations.
pub fn training_ops<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(1300);
    for (k, &(e, (i, h, b, t))) in [
        (1usize, (5usize, 7usize, 3usize, 4usize)),
        (3, (6, 33, 9, 3)),
    ]
    .iter()
    .enumerate()
    {
        let cell = CellDims::new(kind, i, h).expect("test dims");
        let shape = SeqShape::new(t, b).expect("test shape");
        let s = seed.wrapping_add(k as u64 * 101);
        let poisoned = |m: usize| e == 3 && m == 1;
        let ms: Vec<Member> = (0..e)
            .map(|m| member(s.wrapping_add(m as u64), &cell, shape))
            .collect();
        let up = |v: &[f32]| cx.up(v);
        let params: Vec<B::Tensor> = ms.iter().map(|m| up(&m.params)).collect();
        let xs: Vec<B::Tensor> = ms.iter().map(|m| up(&m.x)).collect();
        let readouts: Vec<B::Tensor> = ms.iter().map(|m| up(&m.readout)).collect();
        let targets: Vec<B::Tensor> = ms.iter().map(|m| up(&m.targets)).collect();
        let weights: Vec<B::Tensor> = ms.iter().map(|m| up(&m.weights)).collect();
        let what = |m: usize, op: &str| {
            format!("{kind} E={e} member {m} (I {i}, H {h}, B {b}, T {t}): {op}")
        };

        // The ensemble.
        let args: Vec<SeqArgs<'_, B::Tensor>> = (0..e)
            .map(|m| SeqArgs {
                params: &params[m],
                x: &xs[m],
                s0: None,
            })
            .collect();
        let fwd = cx.ok(
            "ensemble_seq_forward",
            cx.b.ensemble_seq_forward(&cell, shape, &args),
        );
        assert_eq!(
            fwd.len(),
            e,
            "{}",
            cx.what("ensemble_seq_forward: one result per member")
        );
        let ro_args: Vec<ReadoutArgs<'_, B::Tensor>> = (0..e)
            .map(|m| ReadoutArgs {
                h: &fwd[m].h_seq,
                readout: &readouts[m],
                targets: &targets[m],
                weights: &weights[m],
            })
            .collect();
        let ce = cx.ok(
            "ensemble_readout_ce",
            cx.b.ensemble_readout_ce(h, CLASSES, &ro_args),
        );
        let bw_args: Vec<BackwardArgs<'_, B::Tensor, B::Cache>> = (0..e)
            .map(|m| BackwardArgs {
                params: &params[m],
                x: &xs[m],
                fwd: &fwd[m],
                upstream: SeqUpstream {
                    dh_seq: Some(&ce[m].dh),
                    ds_final: None,
                },
            })
            .collect();
        let grads = cx.ok(
            "ensemble_seq_backward",
            cx.b.ensemble_seq_backward(&cell, shape, &bw_args, false),
        );
        let cfg = AdamConfig {
            lr: 0.01,
            ..AdamConfig::default()
        };
        let clip = Some(0.5);
        let mut e_params: Vec<B::Tensor> = ms.iter().map(|m| up(&m.params)).collect();
        let mut e_ro: Vec<B::Tensor> = ms.iter().map(|m| up(&m.readout)).collect();
        let mut e_adam: Vec<AdamState<B::Tensor>> = (0..e)
            .map(|_| cx.ok("adam_state", cx.b.adam_state(cell.layout().len())))
            .collect();
        let mut e_ro_adam: Vec<AdamState<B::Tensor>> = (0..e)
            .map(|_| cx.ok("adam_state", cx.b.adam_state(ms[0].readout.len())))
            .collect();
        let mut e_halted: Vec<B::Tensor> = (0..e).map(|_| cx.zeros(1)).collect();
        let losses: Vec<B::Tensor> = (0..e)
            .map(|m| match poisoned(m) {
                true => up(&[f32::NAN]),
                false => up(&cx.down(&ce[m].stats)[..1]),
            })
            .collect();
        let nan_dreadout = up(&vec![f32::NAN; ms[0].readout.len()]);
        let clipped = {
            let mut members: Vec<MemberAdam<'_, B::Tensor>> = e_params
                .iter_mut()
                .zip(e_ro.iter_mut())
                .zip(e_adam.iter_mut().zip(e_ro_adam.iter_mut()))
                .zip(e_halted.iter_mut())
                .enumerate()
                .map(|(m, (((p, ro), (a, ra)), halted))| MemberAdam {
                    groups: vec![
                        AdamGroup {
                            params: p,
                            grad: &grads[m].dparams,
                            state: a,
                        },
                        AdamGroup {
                            params: ro,
                            grad: if poisoned(m) {
                                &nan_dreadout
                            } else {
                                &ce[m].dreadout
                            },
                            state: ra,
                        },
                    ],
                    guard: Some(StepGuard {
                        loss: &losses[m],
                        max_loss: 100.0,
                        halted,
                    }),
                })
                .collect();
            cx.ok(
                "ensemble_clip_adam_update",
                cx.b.ensemble_clip_adam_update(&mut members, clip, &cfg),
            )
        };

        for m in 0..e {
            let norm = cx.down(&clipped[m]);
            let skipped = norm[ClipNorm::Skipped as usize];
            if poisoned(m) {
                // A NaN gradient and loss in this member: it is skipped, and only it.
                assert_eq!(
                    skipped,
                    1.0,
                    "{}",
                    cx.what(what(m, "the NaN member was not skipped"))
                );
                assert!(
                    cx.down(&e_halted[m])[0] != 0.0,
                    "{}",
                    cx.what(what(m, "the NaN member's guard did not halt"))
                );
                for (name, now, was) in [
                    ("params", &e_params[m], &ms[m].params),
                    ("readout", &e_ro[m], &ms[m].readout),
                ] {
                    let now = cx.down(now);
                    assert!(
                        now.iter().zip(was).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{}",
                        cx.what(what(m, &format!("a skipped member's {name} changed")))
                    );
                }
                continue;
            }
            // The same member alone.
            let single = cx.ok(
                what(m, "seq_forward"),
                cx.b.seq_forward(&cell, &params[m], shape, &xs[m], None),
            );
            let close = |op: &str, got: &B::Tensor, want: &B::Tensor| {
                cx.close(
                    what(m, op),
                    &cx.down(got),
                    &f64s(&cx.down(want)),
                    ENSEMBLE_TOL,
                    s,
                );
            };
            close("h_seq", &fwd[m].h_seq, &single.h_seq);
            close("s_final", &fwd[m].s_final, &single.s_final);
            let sce = cx.ok(
                what(m, "readout_ce"),
                cx.b.readout_ce(
                    h,
                    CLASSES,
                    &single.h_seq,
                    &readouts[m],
                    &targets[m],
                    &weights[m],
                ),
            );
            close("readout_ce dh", &ce[m].dh, &sce.dh);
            close("readout_ce dreadout", &ce[m].dreadout, &sce.dreadout);
            close("readout_ce stats", &ce[m].stats, &sce.stats);
            let sg = cx.ok(
                what(m, "seq_backward"),
                cx.b.seq_backward(
                    &cell,
                    &params[m],
                    shape,
                    &xs[m],
                    &single,
                    SeqUpstream {
                        dh_seq: Some(&sce.dh),
                        ds_final: None,
                    },
                    false,
                ),
            );
            close("dparams", &grads[m].dparams, &sg.dparams);
            close("ds0", &grads[m].ds0, &sg.ds0);
            let mut p = up(&ms[m].params);
            let mut ro = up(&ms[m].readout);
            let mut a = cx.ok("adam_state", cx.b.adam_state(cell.layout().len()));
            let mut ra = cx.ok("adam_state", cx.b.adam_state(ms[m].readout.len()));
            let mut halted = cx.zeros(1);
            let loss = up(&cx.down(&sce.stats)[..1]);
            let sn = cx.ok(
                what(m, "clip_adam_update"),
                cx.b.clip_adam_update(
                    &mut [
                        AdamGroup {
                            params: &mut p,
                            grad: &sg.dparams,
                            state: &mut a,
                        },
                        AdamGroup {
                            params: &mut ro,
                            grad: &sce.dreadout,
                            state: &mut ra,
                        },
                    ],
                    clip,
                    Some(StepGuard {
                        loss: &loss,
                        max_loss: 100.0,
                        halted: &mut halted,
                    }),
                    &cfg,
                ),
            );
            assert_eq!(
                skipped,
                0.0,
                "{}",
                cx.what(what(m, "a healthy member was skipped"))
            );
            close("[norm, scale, skipped]", &clipped[m], &sn);
            close("updated params", &e_params[m], &p);
            close("updated readout", &e_ro[m], &ro);
            close("Adam m", &e_adam[m].m, &a.m);
            close("Adam v", &e_adam[m].v, &a.v);
            assert_eq!(e_adam[m].step, 1, "{}", cx.what(what(m, "Adam step count")));
        }
    }
}

/// `ensemble_clip_adam_update` over more members than one launch of a fused backend takes
/// (10), each with its own lengths, Adam step count (so its own bias corrections), clip
/// and guard outcome (member 4's loss is NaN, member 7's gradient is), against
/// `clip_adam_update` member by member.
pub fn clip_adam_many<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(1302);
    let e = 10usize;
    let cfg = AdamConfig {
        lr: 0.02,
        ..AdamConfig::default()
    };
    let clip = Some(0.7);
    let mut r = rng(seed);
    struct Host {
        p: [Vec<f32>; 2],
        g: [Vec<f32>; 2],
        m: [Vec<f32>; 2],
        v: [Vec<f32>; 2],
        step: u64,
        loss: f32,
    }
    let hosts: Vec<Host> = (0..e)
        .map(|k| {
            let lens = [1 + (k * 37) % 301, 1 + (k * 11) % 23];
            let mut g: [Vec<f32>; 2] = lens.map(|n| uniform(&mut r, n, -1.0, 1.0));
            if k == 7 {
                g[1][0] = f32::NAN;
            }
            Host {
                p: lens.map(|n| uniform(&mut r, n, -1.0, 1.0)),
                m: lens.map(|n| uniform(&mut r, n, -0.1, 0.1)),
                v: lens.map(|n| uniform(&mut r, n, 0.0, 0.1)),
                g,
                step: k as u64 * 3,
                loss: if k == 4 { f32::NAN } else { 1.0 },
            }
        })
        .collect();
    type Side<T> = (Vec<[T; 2]>, Vec<[AdamState<T>; 2]>, Vec<T>);
    let make = || -> Side<B::Tensor> {
        let params = hosts
            .iter()
            .map(|h| [cx.up(&h.p[0]), cx.up(&h.p[1])])
            .collect();
        let states = hosts
            .iter()
            .map(|h| {
                [0, 1].map(|j| AdamState {
                    m: cx.up(&h.m[j]),
                    v: cx.up(&h.v[j]),
                    step: h.step,
                })
            })
            .collect();
        let halted = (0..e).map(|_| cx.zeros(1)).collect();
        (params, states, halted)
    };
    let grads: Vec<[B::Tensor; 2]> = hosts
        .iter()
        .map(|h| [cx.up(&h.g[0]), cx.up(&h.g[1])])
        .collect();
    let losses: Vec<B::Tensor> = hosts.iter().map(|h| cx.up(&[h.loss])).collect();
    let (mut ep, mut es, mut eh) = make();
    let outs = {
        let mut members: Vec<MemberAdam<'_, B::Tensor>> = ep
            .iter_mut()
            .zip(es.iter_mut())
            .zip(eh.iter_mut())
            .enumerate()
            .map(|(k, ((p, s), halted))| {
                let [p0, p1] = p;
                let [s0, s1] = s;
                MemberAdam {
                    groups: vec![
                        AdamGroup {
                            params: p0,
                            grad: &grads[k][0],
                            state: s0,
                        },
                        AdamGroup {
                            params: p1,
                            grad: &grads[k][1],
                            state: s1,
                        },
                    ],
                    guard: Some(StepGuard {
                        loss: &losses[k],
                        max_loss: 10.0,
                        halted,
                    }),
                }
            })
            .collect();
        cx.ok(
            "ensemble_clip_adam_update (10 members)",
            cx.b.ensemble_clip_adam_update(&mut members, clip, &cfg),
        )
    };
    let (mut sp, mut ss, mut sh) = make();
    for k in 0..e {
        let what = |x: &str| format!("10 members, member {k}: {x}");
        let [p0, p1] = &mut sp[k];
        let [s0, s1] = &mut ss[k];
        let single = cx.ok(
            what("clip_adam_update"),
            cx.b.clip_adam_update(
                &mut [
                    AdamGroup {
                        params: p0,
                        grad: &grads[k][0],
                        state: s0,
                    },
                    AdamGroup {
                        params: p1,
                        grad: &grads[k][1],
                        state: s1,
                    },
                ],
                clip,
                Some(StepGuard {
                    loss: &losses[k],
                    max_loss: 10.0,
                    halted: &mut sh[k],
                }),
                &cfg,
            ),
        );
        let (got, want) = (cx.down(&outs[k]), cx.down(&single));
        let skipped = got[ClipNorm::Skipped as usize];
        assert_eq!(
            skipped,
            if k == 4 || k == 7 { 1.0 } else { 0.0 },
            "{}",
            cx.what(what("skipped"))
        );
        assert_eq!(
            skipped,
            want[ClipNorm::Skipped as usize],
            "{}",
            cx.what(what("skipped vs alone"))
        );
        if k != 7 {
            cx.close(
                what("[norm, scale, skipped]"),
                &got,
                &f64s(&want),
                ENSEMBLE_TOL,
                seed,
            );
        }
        for j in 0..2 {
            cx.close(
                what(&format!("params {j}")),
                &cx.down(&ep[k][j]),
                &f64s(&cx.down(&sp[k][j])),
                ENSEMBLE_TOL,
                seed,
            );
            cx.close(
                what(&format!("m {j}")),
                &cx.down(&es[k][j].m),
                &f64s(&cx.down(&ss[k][j].m)),
                ENSEMBLE_TOL,
                seed,
            );
            cx.close(
                what(&format!("v {j}")),
                &cx.down(&es[k][j].v),
                &f64s(&cx.down(&ss[k][j].v)),
                ENSEMBLE_TOL,
                seed,
            );
            assert_eq!(
                es[k][j].step,
                hosts[k].step + 1,
                "{}",
                cx.what(what("step count"))
            );
        }
        assert_eq!(
            cx.down(&eh[k]),
            cx.down(&sh[k]),
            "{}",
            cx.what(what("halted"))
        );
    }
}

/// `ensemble_task_batch`, each member its own seed, step and curriculum stage, bit for bit
/// against `task_batch` (the task is exact on every backend).
pub fn task_batches<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(1301);
    let p = 13;
    let mut r = rng(seed);
    let counts: [u32; 10] = std::array::from_fn(|d| 1 + d as u32 % 3);
    let n: usize = counts.iter().map(|&c| c as usize).sum();
    let images: Vec<f32> = uniform(&mut r, n * p, 0.0, 1.0);
    let table = cx.ok("DigitTable::new", DigitTable::new(cx.b, &images, counts, p));
    let spec = |s: u64, step: u64, t_max: usize, vocab: usize| TaskBatchSpec {
        seed: seed ^ s,
        step,
        t_max,
        vocab,
        delta_min: 1,
        batch: 5,
        noise_mean: 0.1307,
        noise_std: 0.3081,
    };
    let specs = [spec(1, 0, 6, 10), spec(2, 7, 3, 2), spec(3, 7, 9, 5)];
    for e in [0usize, 1, 3] {
        let got = cx.ok(
            "ensemble_task_batch",
            cx.b.ensemble_task_batch(&table, &specs[..e]),
        );
        assert_eq!(
            got.len(),
            e,
            "{}",
            cx.what("ensemble_task_batch: one batch per member")
        );
        for (m, (g, sp)) in got.iter().zip(&specs).enumerate() {
            let want = cx.ok("task_batch", cx.b.task_batch(&table, sp));
            for (name, a, b) in [
                ("x", &g.x, &want.x),
                ("targets", &g.targets, &want.targets),
                ("weights", &g.weights, &want.weights),
            ] {
                let (a, b) = (cx.down(a), cx.down(b));
                assert!(
                    a.len() == b.len() && a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()),
                    "{}",
                    cx.what(format!(
                        "E={e} member {m} {sp:?}: {name} differs from task_batch"
                    ))
                );
            }
        }
    }
}

/// The speed penalty's term for an ensemble (`ensemble_step_speed_grad`) against
/// `step_speed_grad` member by member: every cell, 3 members at their own points with
/// different counts (7, none, 4: an empty member is valid and gives empty speeds and zero
/// parameter gradients), with and without the parameter gradient.
pub fn speed_grads<B: Backend>(cx: &Cx<'_, B>) {
    use memrnn_core::ensemble::SpeedArgs;
    let seed = cx.seed(1700);
    for (k, kind) in CellKind::ALL.into_iter().enumerate() {
        let cell = CellDims::new(kind, 5, 13).expect("test dims");
        let s = seed.wrapping_add(k as u64 * 31);
        let counts = [7usize, 0, 4];
        let mut r = rng(s);
        let params: Vec<B::Tensor> = counts
            .iter()
            .map(|_| cx.up(&random_params(&mut r, &cell, 1.5)))
            .collect();
        let states: Vec<B::Tensor> = counts
            .iter()
            .map(|&n| cx.up(&uniform::<f32>(&mut r, n * cell.state_size(), -1.0, 1.0)))
            .collect();
        let xs: Vec<B::Tensor> = counts
            .iter()
            .map(|&n| cx.up(&uniform::<f32>(&mut r, n * cell.input, -1.0, 1.0)))
            .collect();
        let args: Vec<SpeedArgs<'_, B::Tensor>> = (0..counts.len())
            .map(|m| SpeedArgs {
                params: &params[m],
                states: &states[m],
                x: &xs[m],
                n: counts[m],
            })
            .collect();
        for want_dparams in [true, false] {
            let got = cx.ok(
                "ensemble_step_speed_grad",
                cx.b.ensemble_step_speed_grad(&cell, &args, want_dparams),
            );
            assert_eq!(
                got.len(),
                counts.len(),
                "{}",
                cx.what("ensemble_step_speed_grad: one result per member")
            );
            for (m, g) in got.iter().enumerate() {
                let what = |op: &str| {
                    format!(
                        "{kind} member {m} (n {}, dparams {want_dparams}): {op}",
                        counts[m]
                    )
                };
                let single = cx.ok(
                    what("step_speed_grad"),
                    cx.b.step_speed_grad(
                        &cell,
                        &params[m],
                        &states[m],
                        &xs[m],
                        counts[m],
                        want_dparams,
                    ),
                );
                let close = |op: &str, got: &B::Tensor, want: &B::Tensor| {
                    cx.close(
                        what(op),
                        &cx.down(got),
                        &f64s(&cx.down(want)),
                        ENSEMBLE_TOL,
                        s,
                    );
                };
                close("speed", &g.speed, &single.speed);
                close("dstate", &g.dstate, &single.dstate);
                match (&g.dparams, &single.dparams) {
                    (Some(a), Some(b)) => close("dparams", a, b),
                    (None, None) => {}
                    _ => panic!(
                        "{}",
                        cx.what(what("dparams present in one result and not the other"))
                    ),
                }
                assert_eq!(
                    g.dparams.is_some(),
                    want_dparams,
                    "{}",
                    cx.what(what("dparams returned although not asked for, or missing"))
                );
            }
        }
    }
}

/// A member with a bad length is refused with the single operation's error, naming the
/// member; an empty ensemble is valid and gives nothing.
pub fn bad_member<B: Backend>(cx: &Cx<'_, B>) {
    let cell = CellDims::new(CellKind::Gru, 3, 5).expect("test dims");
    let shape = SeqShape::new(2, 3).expect("test shape");
    let p = cx.zeros(cell.layout().len());
    let x = cx.zeros(shape.rows() * cell.input);
    let short = cx.zeros(shape.rows() * cell.input - 1);
    let args = [
        SeqArgs {
            params: &p,
            x: &x,
            s0: None,
        },
        SeqArgs {
            params: &p,
            x: &short,
            s0: None,
        },
    ];
    match cx.b.ensemble_seq_forward(&cell, shape, &args) {
        Err(e @ Error::Shape { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("member 1") && m.contains('x'),
                "{}",
                cx.what(format!("the error should name member 1 and x: {m}"))
            );
        }
        Err(e) => panic!("{}", cx.what(format!("expected a Shape error, got {e}"))),
        Ok(_) => panic!("{}", cx.what("a member with a short x was accepted")),
    }
    let none = cx.ok(
        "empty ensemble",
        cx.b.ensemble_seq_forward(&cell, shape, &[]),
    );
    assert!(
        none.is_empty(),
        "{}",
        cx.what("an empty ensemble gave results")
    );
    let none = cx.ok(
        "empty ensemble",
        cx.b.ensemble_clip_adam_update(&mut [], Some(1.0), &AdamConfig::default()),
    );
    assert!(
        none.is_empty(),
        "{}",
        cx.what("an empty ensemble gave results")
    );
}
