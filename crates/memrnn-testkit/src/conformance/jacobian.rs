//! `step_jacobian` and `step_jvp` (the backend's own and the trait's default,
//! [`step_jvp_default`], which goes through the backend's Jacobian) against the f64
//! reference. Sizes: a Jacobian is a one-step backward of `N·S` rows, so `N·S·H²` stays
//! below 2·10⁷ (the LSTM at `H` 40, `N` 33).

use super::speed::points;
use super::{f64s, Cx, TOL};
use crate::{rng, uniform};
use memrnn_core::backend::step_jvp_default;
use memrnn_core::{Backend, CellKind};
use memrnn_cpu::reference;

/// `(I, H, N)`: ones, odd sizes, past the 32-unit tiles.
const JAC_CASES: [(usize, usize, usize); 5] =
    [(1, 1, 1), (3, 5, 4), (6, 17, 9), (9, 40, 33), (4, 70, 3)];

pub fn jacobian<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(12);
    for (k, (i, h, n)) in JAC_CASES.into_iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut p = points(kind, i, h, n, s);
        p.params = cx.storable_params(&p.cell, p.params);
        let cell = p.cell;
        let what = format!("{kind} I{i} H{h} N{n}");
        let want =
            reference::step_jacobian(&cell, &f64s(&p.params), &f64s(&p.states), &f64s(&p.x), n)
                .expect("reference Jacobian");
        let (gp, gs, gx) = (cx.up(&p.params), cx.up(&p.states), cx.up(&p.x));
        let got = cx.ok(
            format!("{what}: step_jacobian"),
            cx.b.step_jacobian(&cell, &gp, &gs, &gx, n),
        );
        cx.close(format!("{what}: Jacobian"), &cx.down(&got), &want, TOL, s);
    }
}

pub fn jvp<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(13);
    for (k, (i, h, n)) in JAC_CASES.into_iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut p = points(kind, i, h, n, s);
        p.params = cx.storable_params(&p.cell, p.params);
        let cell = p.cell;
        let v: Vec<f32> = uniform(&mut rng(s ^ 0x77), n * cell.state_size(), -1.0, 1.0);
        let what = format!("{kind} I{i} H{h} N{n}");
        let want = reference::step_jvp(
            &cell,
            &f64s(&p.params),
            &f64s(&p.states),
            &f64s(&p.x),
            &f64s(&v),
            n,
        )
        .expect("reference JVP");
        let (gp, gs, gx, gv) = (cx.up(&p.params), cx.up(&p.states), cx.up(&p.x), cx.up(&v));
        let got = cx.ok(
            format!("{what}: step_jvp"),
            cx.b.step_jvp(&cell, &gp, &gs, &gx, &gv, n),
        );
        cx.close(format!("{what}: step_jvp"), &cx.down(&got), &want, TOL, s);
        let dflt = cx.ok(
            format!("{what}: step_jvp_default"),
            step_jvp_default(cx.b, &cell, &gp, &gs, &gx, &gv, n),
        );
        cx.close(
            format!("{what}: step_jvp_default"),
            &cx.down(&dflt),
            &want,
            TOL,
            s,
        );
    }
}
