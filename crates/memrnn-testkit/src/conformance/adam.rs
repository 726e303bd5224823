//! `adam_update` against [`adam_update_host`] (the definition) over several steps, at
//! lengths 1, one past a small multiple of a block, and past the CPU backend's 2¹⁴-value
//! chunks; with PyTorch's defaults and with other hyper-parameters. `clip_adam_update`
//! (global-norm clipping and Adam over several tensors at once) against its host
//! definition, and its divergence guard; `axpy`, `sum` and `copy_into`.

use super::Cx;
use crate::{rng, uniform};
use memrnn_core::{
    adam_update_host, clip_scale, AdamConfig, AdamGroup, AdamState, Backend, ClipNorm, StepGuard,
    CLIP_NORM_LEN,
};

pub fn matches_host<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(3);
    let cfgs = [
        AdamConfig {
            lr: 3e-3,
            ..AdamConfig::default()
        },
        AdamConfig {
            lr: 0.05,
            beta1: 0.5,
            beta2: 0.9,
            eps: 1e-4,
        },
    ];
    for (k, (n, cfg)) in [(1, cfgs[0]), (1037, cfgs[0]), (70_001, cfgs[1])]
        .into_iter()
        .enumerate()
    {
        let s = seed.wrapping_add(k as u64);
        let mut r = rng(s);
        let what = format!("Adam n={n} {cfg:?}");
        let mut p: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
        let mut gp = cx.up(&p);
        let mut st: AdamState<B::Tensor> = cx.ok(format!("{what}: adam_state"), cx.b.adam_state(n));
        assert_eq!(st.step, 0, "{}", cx.what(&what));
        for (q, t) in [("m", &st.m), ("v", &st.v)] {
            assert!(
                cx.down(t) == vec![0.0; n],
                "{}",
                cx.what(format!("{what}: fresh {q} is not {n} zeros"))
            );
        }
        for step in 0..5u64 {
            let grad: Vec<f32> = uniform(&mut r, n, -2.0, 2.0);
            adam_update_host(&mut p, &grad, &mut m, &mut v, step, &cfg);
            let gg = cx.up(&grad);
            cx.ok(
                format!("{what}: adam_update step {step}"),
                cx.b.adam_update(&mut gp, &gg, &mut st, &cfg),
            );
        }
        assert_eq!(st.step, 5, "{}", cx.what(format!("{what}: step count")));
        let tol = 1e-6;
        let f = super::f64s;
        cx.close(format!("{what}: params"), &cx.down(&gp), &f(&p), tol, s);
        cx.close(format!("{what}: m"), &cx.down(&st.m), &f(&m), tol, s);
        cx.close(format!("{what}: v"), &cx.down(&st.v), &f(&v), tol, s);
    }
}

/// The host definition of `clip_adam_update`: the f64 norm over every gradient in order,
/// the scale of [`clip_scale`], then [`adam_update_host`] on the scaled gradients.
fn clip_adam_host(
    groups: &mut [(Vec<f32>, Vec<f32>, Vec<f32>)],
    grads: &[Vec<f32>],
    step: u64,
    clip: Option<f32>,
    cfg: &AdamConfig,
) -> (f64, f32) {
    let norm = grads
        .iter()
        .flatten()
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>()
        .sqrt();
    let scale = clip_scale(norm, clip);
    if norm.is_finite() {
        for ((p, m, v), g) in groups.iter_mut().zip(grads) {
            let g: Vec<f32> = g.iter().map(|&x| x * scale).collect();
            adam_update_host(p, &g, m, v, step, cfg);
        }
    }
    (norm, scale)
}

/// `clip_adam_update` over one to four groups (one of them empty) against the host
/// definition over several steps, with clipping off, inactive and active; and a
/// non-finite gradient, which updates nothing.
pub fn clip_matches_host<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(47);
    let cfg = AdamConfig {
        lr: 3e-3,
        ..AdamConfig::default()
    };
    let cases: [(&[usize], Option<f32>); 4] = [
        (&[37], None),
        (&[1037, 11 * 7 + 11], Some(1e6)),
        (&[1037, 11 * 7 + 11], Some(0.5)),
        (&[5, 0, 70_001, 1], Some(2.0)),
    ];
    for (k, (lens, clip)) in cases.into_iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut r = rng(s);
        let what = format!("clip_adam_update lens {lens:?} clip {clip:?}");
        let mut host: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = lens
            .iter()
            .map(|&n| (uniform(&mut r, n, -1.0, 1.0), vec![0.0; n], vec![0.0; n]))
            .collect();
        let mut dev_p: Vec<B::Tensor> = host.iter().map(|(p, _, _)| cx.up(p)).collect();
        let mut dev_st: Vec<AdamState<B::Tensor>> = lens
            .iter()
            .map(|&n| cx.ok(format!("{what}: adam_state"), cx.b.adam_state(n)))
            .collect();
        for step in 0..4u64 {
            let grads: Vec<Vec<f32>> = lens
                .iter()
                .map(|&n| uniform(&mut r, n, -2.0, 2.0))
                .collect();
            let (norm, scale) = clip_adam_host(&mut host, &grads, step, clip, &cfg);
            let dev_g: Vec<B::Tensor> = grads.iter().map(|g| cx.up(g)).collect();
            let mut groups: Vec<AdamGroup<'_, B::Tensor>> = dev_p
                .iter_mut()
                .zip(dev_st.iter_mut())
                .zip(&dev_g)
                .map(|((params, state), grad)| AdamGroup {
                    params,
                    grad,
                    state,
                })
                .collect();
            let out = cx.ok(
                format!("{what}: step {step}"),
                cx.b.clip_adam_update(&mut groups, clip, None, &cfg),
            );
            let out = cx.down(&out);
            assert_eq!(out.len(), CLIP_NORM_LEN, "{}", cx.what(&what));
            assert_eq!(
                out[ClipNorm::Skipped as usize],
                0.0,
                "{}",
                cx.what(format!("{what}: step {step} skipped"))
            );
            cx.close(
                format!("{what}: step {step} norm"),
                &out[ClipNorm::Norm as usize..=ClipNorm::Norm as usize],
                &[norm],
                1e-6,
                s,
            );
            cx.close(
                format!("{what}: step {step} scale"),
                &out[ClipNorm::Scale as usize..=ClipNorm::Scale as usize],
                &[scale as f64],
                1e-6,
                s,
            );
            // The gradients are inputs: unchanged.
            for (g, dg) in grads.iter().zip(&dev_g) {
                assert!(
                    cx.down(dg) == *g,
                    "{}",
                    cx.what(format!("{what}: grad changed"))
                );
            }
        }
        let f = super::f64s;
        for (i, ((p, m, v), (dp, st))) in host.iter().zip(dev_p.iter().zip(&dev_st)).enumerate() {
            assert_eq!(st.step, 4, "{}", cx.what(format!("{what}: group {i} step")));
            cx.close(
                format!("{what}: group {i} params"),
                &cx.down(dp),
                &f(p),
                1e-6,
                s,
            );
            cx.close(
                format!("{what}: group {i} m"),
                &cx.down(&st.m),
                &f(m),
                1e-6,
                s,
            );
            cx.close(
                format!("{what}: group {i} v"),
                &cx.down(&st.v),
                &f(v),
                1e-6,
                s,
            );
        }
    }
    // A NaN anywhere: the norm is NaN, nothing moves, the step counts advance.
    let p0 = vec![0.25f32; 9];
    let mut p = cx.up(&p0);
    let mut q = cx.up(&p0[..3]);
    let mut st = cx.ok("adam_state", cx.b.adam_state(9));
    let mut st2 = cx.ok("adam_state", cx.b.adam_state(3));
    let mut g = vec![0.5f32; 9];
    g[4] = f32::NAN;
    let (g, g2) = (cx.up(&g), cx.up(&[0.1; 3]));
    let out = cx.ok(
        "clip_adam_update with a NaN gradient",
        cx.b.clip_adam_update(
            &mut [
                AdamGroup {
                    params: &mut p,
                    grad: &g,
                    state: &mut st,
                },
                AdamGroup {
                    params: &mut q,
                    grad: &g2,
                    state: &mut st2,
                },
            ],
            Some(1.0),
            None,
            &cfg,
        ),
    );
    let out = cx.down(&out);
    assert!(
        out[ClipNorm::Norm as usize].is_nan() && out[ClipNorm::Skipped as usize] == 1.0,
        "{}",
        cx.what(format!("NaN gradient: [norm, scale, skipped] = {out:?}"))
    );
    assert!(
        cx.down(&p) == p0 && cx.down(&q) == p0[..3] && cx.down(&st.m) == vec![0.0; 9],
        "{}",
        cx.what("NaN gradient: parameters or moments moved")
    );
    assert_eq!(
        (st.step, st2.step),
        (1, 1),
        "{}",
        cx.what("NaN gradient: steps")
    );
}

/// `axpy` and `sum` against the host, at lengths 0, 1 and past a block.
pub fn axpy_and_sum<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(53);
    for (k, n) in [0usize, 1, 1037].into_iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut r = rng(s);
        let y0: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
        let x: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
        let mut y = cx.up(&y0);
        cx.ok(format!("axpy n={n}"), cx.b.axpy(&mut y, -0.37, &cx.up(&x)));
        let want: Vec<f64> = y0
            .iter()
            .zip(&x)
            .map(|(&a, &b)| (a + -0.37 * b) as f64)
            .collect();
        cx.close(format!("axpy n={n}"), &cx.down(&y), &want, 1e-6, s);
        let total = cx.down(&cx.ok(format!("sum n={n}"), cx.b.sum(&cx.up(&x))));
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        assert_eq!(total.len(), 1, "{}", cx.what("sum: one value"));
        assert!(
            (total[0] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{}",
            cx.what(format!("sum n={n}: {} vs {want} (seed {s})", total[0]))
        );
    }
}

/// The divergence guard of `clip_adam_update`: a good loss updates as without a guard; a
/// loss above the limit, or NaN, skips the update and sets `halted`, after which every
/// update is skipped until `halted` is cleared.
pub fn clip_guard<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(59);
    let mut r = rng(seed);
    let cfg = AdamConfig::default();
    let n = 45;
    let mut p_host: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let mut p = cx.up(&p_host);
    let mut st = cx.ok("adam_state", cx.b.adam_state(n));
    let mut halted = cx.up(&[0.0]);
    // (loss, expect skipped, halted afterwards, clear halted first)
    let script: [(f32, bool, f32, bool); 6] = [
        (3.0, false, 0.0, false),
        (11.0, true, 1.0, false),
        (3.0, true, 1.0, false),
        (3.0, false, 0.0, true),
        (f32::NAN, true, 1.0, false),
        (f32::INFINITY, true, 1.0, true),
    ];
    for (k, (loss, skipped, halted_after, clear)) in script.into_iter().enumerate() {
        let what = format!("guard call {k}: loss {loss}");
        if clear {
            halted = cx.up(&[0.0]);
        }
        let g: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
        let loss_t = cx.up(&[loss]);
        let out = cx.ok(
            &what,
            cx.b.clip_adam_update(
                &mut [AdamGroup {
                    params: &mut p,
                    grad: &cx.up(&g),
                    state: &mut st,
                }],
                Some(0.5),
                Some(StepGuard {
                    loss: &loss_t,
                    max_loss: 10.0,
                    halted: &mut halted,
                }),
                &cfg,
            ),
        );
        let out = cx.down(&out);
        assert_eq!(
            (out[ClipNorm::Skipped as usize], cx.down(&halted)[0]),
            (skipped as u8 as f32, halted_after),
            "{}",
            cx.what(format!("{what}: (skipped, halted) (seed {seed})"))
        );
        if !skipped {
            let norm = g.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            let s = clip_scale(norm, Some(0.5));
            let gs: Vec<f32> = g.iter().map(|&x| x * s).collect();
            // The device's bias correction uses the step count, which advances on skipped
            // calls too: call k is update number k + 1.
            adam_update_host(&mut p_host, &gs, &mut m, &mut v, k as u64, &cfg);
        }
        let f = super::f64s;
        cx.close(
            format!("{what}: params"),
            &cx.down(&p),
            &f(&p_host),
            1e-6,
            seed,
        );
        cx.close(format!("{what}: m"), &cx.down(&st.m), &f(&m), 1e-6, seed);
        cx.close(format!("{what}: v"), &cx.down(&st.v), &f(&v), 1e-6, seed);
    }
    assert_eq!(
        st.step,
        script.len() as u64,
        "{}",
        cx.what("guard: step counts")
    );
}

/// `copy_into` against slices, including an empty copy and one to the end.
pub fn copy_into<B: Backend>(cx: &Cx<'_, B>) {
    let src: Vec<f32> = (0..10).map(|i| i as f32 + 0.5).collect();
    let mut want = vec![-1.0f32; 7];
    let mut dst = cx.up(&want);
    let s = cx.up(&src);
    for (doff, soff, len) in [(0, 3, 2), (5, 8, 2), (2, 0, 0), (6, 9, 1)] {
        cx.ok(
            format!("copy_into({doff}, {soff}, {len})"),
            cx.b.copy_into(&mut dst, doff, &s, soff, len),
        );
        want[doff..doff + len].copy_from_slice(&src[soff..soff + len]);
        assert!(
            cx.down(&dst) == want,
            "{}",
            cx.what(format!("copy_into({doff}, {soff}, {len})"))
        );
    }
}
