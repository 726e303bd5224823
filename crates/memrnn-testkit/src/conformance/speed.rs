//! `step_speed` and `step_speed_grad` (with and without `dparams`) against the f64
//! reference, at `N`, `I`, `H` from 1 to past several tiles. Sizes: one step of `N` rows
//! each, so even the largest (`H` 129, `N` 130: `N·H²` ≈ 2·10⁶) is small.

use super::{f64s, Cx, TOL};
use crate::{random_params, rng, uniform};
use memrnn_core::{Backend, CellDims, CellKind};
use memrnn_cpu::reference;

/// Random parameters, `N` states and `N` inputs.
pub(crate) struct Points {
    pub cell: CellDims,
    pub params: Vec<f32>,
    pub states: Vec<f32>,
    pub x: Vec<f32>,
}

pub(crate) fn points(kind: CellKind, input: usize, hidden: usize, n: usize, seed: u64) -> Points {
    let cell = CellDims::new(kind, input, hidden).expect("valid test dims");
    let mut r = rng(seed);
    Points {
        cell,
        params: random_params(&mut r, &cell, 1.5),
        states: uniform(&mut r, n * cell.state_size(), -0.9, 0.9),
        x: uniform(&mut r, n * input, -1.0, 1.0),
    }
}

/// `(I, H, N)`: ones, small odd sizes, and past the 32-unit and 8-row tiles.
pub(crate) const POINT_CASES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 5, 4),
    (6, 17, 9),
    (9, 40, 33),
    (37, 70, 19),
    (8, 129, 130),
];

pub fn speed_and_grad<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(11);
    for (k, (i, h, n)) in POINT_CASES.into_iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut p = points(kind, i, h, n, s);
        p.params = cx.storable_params(&p.cell, p.params);
        let cell = p.cell;
        let what = format!("{kind} I{i} H{h} N{n}");
        let (p64, s64, x64) = (f64s(&p.params), f64s(&p.states), f64s(&p.x));
        let (gp, gs, gx) = (cx.up(&p.params), cx.up(&p.states), cx.up(&p.x));

        let want = reference::step_speed(&cell, &p64, &s64, &x64, n).expect("reference speed");
        let got = cx.ok(
            format!("{what}: step_speed"),
            cx.b.step_speed(&cell, &gp, &gs, &gx, n),
        );
        cx.close(format!("{what}: speed"), &cx.down(&got), &want, TOL, s);

        let rsg = reference::step_speed_grad(&cell, &p64, &s64, &x64, n, true).expect("reference");
        let sg = cx.ok(
            format!("{what}: step_speed_grad"),
            cx.b.step_speed_grad(&cell, &gp, &gs, &gx, n, true),
        );
        cx.close(
            format!("{what}: speed (grad call)"),
            &cx.down(&sg.speed),
            &rsg.speed,
            TOL,
            s,
        );
        cx.close(
            format!("{what}: dS/ds"),
            &cx.down(&sg.dstate),
            &rsg.dstate,
            TOL,
            s,
        );
        let dp = sg
            .dparams
            .as_ref()
            .unwrap_or_else(|| panic!("{}", cx.what(format!("{what}: no dparams though asked"))));
        cx.close(
            format!("{what}: dS/dθ"),
            &cx.down(dp),
            rsg.dparams.as_ref().expect("reference dparams"),
            TOL,
            s,
        );

        let sg = cx.ok(
            format!("{what}: step_speed_grad without dparams"),
            cx.b.step_speed_grad(&cell, &gp, &gs, &gx, n, false),
        );
        assert!(
            sg.dparams.is_none(),
            "{}",
            cx.what(format!("{what}: dparams returned though not asked for"))
        );
        cx.close(
            format!("{what}: speed (grad call, no dparams)"),
            &cx.down(&sg.speed),
            &rsg.speed,
            TOL,
            s,
        );
        cx.close(
            format!("{what}: dS/ds (no dparams)"),
            &cx.down(&sg.dstate),
            &rsg.dstate,
            TOL,
            s,
        );
    }
}
