//! `seq_forward` / `seq_backward` against the f64 reference: `h_seq`, `s_final`, every
//! parameter block's gradient, `ds0` and `dx`, with and without `s0`, `dh_seq`,
//! `ds_final` and `dx`.
//!
//! Sizes: the simulated device runs these too (see the module docs of
//! [`crate::conformance`]), so no case exceeds `T·B·H² ≈ 4·10⁶`; the largest,
//! `(I 8, H 129, B 130, T 2)`, runs one forward and two backward passes, the rest are far
//! smaller.

use super::{f64s, Cx, TOL};
use crate::{awkward_cases, random_params, rng, uniform, Case};
use memrnn_core::{Backend, CellDims, CellKind, ParamBlock, SeqShape, SeqUpstream};
use memrnn_cpu::reference;

/// Which optional inputs a forward + backward check uses.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// Start from a random `s0` (else zeros).
    pub s0: bool,
    /// Loss on the outputs (`dh_seq`, zero on every third step).
    pub dh: bool,
    /// Loss on the final state (`ds_final`, the LSTM's `c_T` included).
    pub ds_final: bool,
    /// Ask for `dx`.
    pub dx: bool,
}

/// The three backward variants every case gets, after a forward with or without `s0`:
/// both upstream gradients with `dx`, outputs only with `dx`, final state only without.
fn backward_variants(s0: bool) -> [Variant; 3] {
    [
        Variant {
            s0,
            dh: true,
            ds_final: true,
            dx: true,
        },
        Variant {
            s0,
            dh: true,
            ds_final: false,
            dx: true,
        },
        Variant {
            s0,
            dh: false,
            ds_final: true,
            dx: false,
        },
    ]
}

fn case(kind: CellKind, (i, h, b, t): (usize, usize, usize, usize)) -> Case {
    Case {
        cell: CellDims::new(kind, i, h).expect("valid test dims"),
        shape: SeqShape::new(t, b).expect("valid test shape"),
    }
}

/// Random inputs of one case, f32 (what the backend gets) and f64 (what the reference
/// gets, the same values).
struct Inputs {
    params: Vec<f32>,
    x: Vec<f32>,
    s0: Vec<f32>,
    dh: Vec<f32>,
    dsf: Vec<f32>,
}

fn inputs(case: &Case, seed: u64) -> Inputs {
    let Case { cell, shape } = *case;
    let mut r = rng(seed);
    let params = random_params(&mut r, &cell, 1.5);
    let x = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
    let s0 = uniform(&mut r, shape.batch * cell.state_size(), -0.8, 0.8);
    let mut dh: Vec<f32> = uniform(&mut r, shape.rows() * cell.hidden, -1.0, 1.0);
    // Loss on a subset of steps: every third step (the first included) carries none.
    let n = shape.batch * cell.hidden;
    for t in (0..shape.steps).step_by(3) {
        dh[t * n..(t + 1) * n].iter_mut().for_each(|v| *v = 0.0);
    }
    let dsf = uniform(&mut r, shape.batch * cell.state_size(), -1.0, 1.0);
    Inputs {
        params,
        x,
        s0,
        dh,
        dsf,
    }
}

/// One forward from `s0` (or zeros), compared with the reference, then one backward per
/// variant in `backs` (all with the same `s0` setting), each compared in full.
pub fn check_case<B: Backend>(cx: &Cx<'_, B>, case: Case, seed: u64, s0: bool, backs: &[Variant]) {
    let Case { cell, shape } = case;
    let mut inp = inputs(&case, seed);
    inp.params = cx.storable_params(&cell, inp.params);
    let (p64, x64, s064, dh64, dsf64) = (
        f64s(&inp.params),
        f64s(&inp.x),
        f64s(&inp.s0),
        f64s(&inp.dh),
        f64s(&inp.dsf),
    );
    let base = format!(
        "{} I{} H{} B{} T{} s0={s0}",
        cell.kind, cell.input, cell.hidden, shape.batch, shape.steps
    );
    let rf = reference::seq_forward(&cell, &p64, shape, &x64, s0.then_some(&s064[..]))
        .expect("reference forward");

    let (gp, gx, gs0, gdh, gdsf) = (
        cx.up(&inp.params),
        cx.up(&inp.x),
        cx.up(&inp.s0),
        cx.up(&inp.dh),
        cx.up(&inp.dsf),
    );
    let fwd = cx.ok(
        format!("{base}: seq_forward"),
        cx.b.seq_forward(&cell, &gp, shape, &gx, s0.then_some(&gs0)),
    );
    cx.close(
        format!("{base}: h_seq"),
        &cx.down(&fwd.h_seq),
        &rf.h_seq,
        TOL,
        seed,
    );
    cx.close(
        format!("{base}: s_final"),
        &cx.down(&fwd.s_final),
        &rf.s_final,
        TOL,
        seed,
    );

    let layout = cell.layout();
    for v in backs {
        debug_assert_eq!(v.s0, s0);
        let what = format!("{base} dh={} ds_final={} dx={}", v.dh, v.ds_final, v.dx);
        let want = reference::seq_backward(
            &cell,
            &p64,
            shape,
            &x64,
            &rf,
            SeqUpstream {
                dh_seq: v.dh.then_some(&dh64[..]),
                ds_final: v.ds_final.then_some(&dsf64[..]),
            },
            v.dx,
        )
        .expect("reference backward");
        let up = SeqUpstream {
            dh_seq: v.dh.then_some(&gdh),
            ds_final: v.ds_final.then_some(&gdsf),
        };
        let g = cx.ok(
            format!("{what}: seq_backward"),
            cx.b.seq_backward(&cell, &gp, shape, &gx, &fwd, up, v.dx),
        );
        let dp = cx.down(&g.dparams);
        assert_eq!(
            dp.len(),
            layout.len(),
            "{}",
            cx.what(format!("{what}: dparams length"))
        );
        for block in ParamBlock::ALL {
            let r = layout.range(block);
            cx.close(
                format!("{what}: d{}", block.torch_name()),
                &dp[r.clone()],
                &want.dparams[r],
                TOL,
                seed,
            );
        }
        cx.close(
            format!("{what}: ds0"),
            &cx.down(&g.ds0),
            &want.ds0,
            TOL,
            seed,
        );
        match (&g.dx, &want.dx) {
            (Some(got), Some(w)) => cx.close(format!("{what}: dx"), &cx.down(got), w, TOL, seed),
            (None, None) => {}
            (got, _) => panic!(
                "{}",
                cx.what(format!(
                    "{what}: dx is {} though want_dx = {}",
                    if got.is_some() { "present" } else { "absent" },
                    v.dx
                ))
            ),
        }
    }
}

/// Ones, odd sizes, sizes just off the SIMD width and the row tiles (the testkit's awkward
/// cases), plus `T = 1`, `B = 1`, `H = 1`, `I = 1` in other combinations and a longer
/// sequence; each from `s0` and from zeros, with all three backward variants.
pub fn small<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(0xC0DA);
    let mut cases = awkward_cases(kind);
    // (input, hidden, batch, steps)
    for dims in [
        (1, 12, 1, 6),  // I = 1, B = 1
        (6, 1, 4, 1),   // H = 1, T = 1
        (12, 33, 9, 1), // T = 1, H one past a 32-unit tile, B one past 8 rows
        (5, 10, 3, 25), // a longer sequence: 25 steps, so 25 grid-wide syncs each way
    ] {
        cases.push(case(kind, dims));
    }
    for (n, c) in cases.into_iter().enumerate() {
        let s = seed.wrapping_add(2 * n as u64);
        check_case(cx, c, s, true, &backward_variants(true));
        check_case(cx, c, s ^ 0x55, false, &backward_variants(false));
    }
}

/// Sizes off every GPU tile: `H` 70 (two 32-unit tiles and 6), 129 (four and 1), 300
/// (K in several chunks); `B` 19, 130 (rows past 8-row tiles and past 128); `I` 37 and 20
/// (input products off the SGEMM tiles). `T·B·H²` ≤ 4.3·10⁶ (the H 129 case, run with
/// `s0` only).
pub fn tiles<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(0xC0DB);
    for (n, dims) in [(37, 70, 19, 7), (8, 129, 130, 2), (20, 300, 3, 3)]
        .into_iter()
        .enumerate()
    {
        let c = case(kind, dims);
        let s = seed.wrapping_add(2 * n as u64);
        let [full, outputs_only, final_only] = backward_variants(true);
        check_case(cx, c, s, true, &[full, final_only]);
        if dims.1 < 129 {
            let mut v = outputs_only;
            v.s0 = false;
            check_case(cx, c, s ^ 0x55, false, &[v]);
        }
    }
}

/// Every combination of `s0` × `dh_seq` × `ds_final` × `dx` on one small case (none of
/// the upstream gradients: all gradients are zero).
pub fn upstream_combinations<B: Backend>(cx: &Cx<'_, B>, kind: CellKind) {
    let seed = cx.seed(0xC0DC);
    let c = case(kind, (6, 11, 3, 4));
    for s0 in [false, true] {
        let mut backs = Vec::new();
        for dh in [false, true] {
            for ds_final in [false, true] {
                for dx in [false, true] {
                    backs.push(Variant {
                        s0,
                        dh,
                        ds_final,
                        dx,
                    });
                }
            }
        }
        check_case(cx, c, seed, s0, &backs);
    }
}
