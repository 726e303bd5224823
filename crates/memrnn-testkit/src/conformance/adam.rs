//! `adam_update` against [`adam_update_host`] (the definition) over several steps, at
//! lengths 1, one past a small multiple of a block, and past the CPU backend's 2¹⁴-value
//! chunks; with PyTorch's defaults and with other hyper-parameters.

use super::Cx;
use crate::{rng, uniform};
use memrnn_core::{adam_update_host, AdamConfig, AdamState, Backend};

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
