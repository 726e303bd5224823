//! A member of an ensemble gives what it gives alone: the CUDA backend's
//! `ensemble_seq_forward` / `ensemble_seq_backward` (one cooperative launch per group of
//! members) against `seq_forward` / `seq_backward` member by member, on the simulated
//! device, for every cell, at awkward shapes (H odd, B not a multiple of 4), with
//! NaN-poisoned outputs, a member whose weights are NaN (which must reach no other member),
//! and enough members for two launches on `SimProps::small()`.
//!
//! Exactness: a member of a launch is tiled differently from a lone network (fewer blocks,
//! larger tiles), which changes only how the K-length recurrent dot products are split
//! over a warp's lanes (`ks`, then a shuffle tree). Where the plan keeps the lone `ks`
//! (`same_lanes_as_alone`), every operation is the same in the same order and the results
//! must be bit for bit equal; otherwise they differ by the f32 reordering of sums of at
//! most G·H = 3·33 terms per step, carried through T ≤ 5 steps of contracting gates:
//! [`REORDER_TOL`] (relative to max(1, |value|)) is a hundred times that rounding
//! (~K·2⁻²⁴·Σ|terms| ≈ 1e-7 at these sizes).

use crate::{CudaBackend, CudaTensor, RecurrencePath, SimProps};
use memrnn_core::ensemble::{BackwardArgs, SeqArgs};
use memrnn_core::{Backend, CellDims, CellKind, SeqShape, SeqUpstream};

const REORDER_TOL: f32 = 2e-5;

/// SplitMix64: seeded inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// One member's host inputs.
struct Inputs {
    params: Vec<f32>,
    x: Vec<f32>,
    s0: Vec<f32>,
    dh: Vec<f32>,
    ds: Vec<f32>,
}

fn inputs(seed: u64, cell: &CellDims, shape: SeqShape, nan: bool) -> Inputs {
    let mut r = Rng(seed);
    let scale = 1.5 / (cell.hidden as f32).sqrt();
    let mut params = r.vec(cell.layout().len(), scale);
    if nan {
        params.iter_mut().for_each(|v| *v = f32::NAN);
    }
    let rows = shape.rows();
    Inputs {
        params,
        x: r.vec(rows * cell.input, 1.0),
        s0: r.vec(shape.batch * cell.state_size(), 0.5),
        dh: r.vec(rows * cell.hidden, 1.0),
        ds: r.vec(shape.batch * cell.state_size(), 1.0),
    }
}

fn sim(props: SimProps) -> CudaBackend {
    let b = CudaBackend::simulated(props).expect("simulated device");
    b.set_poison_outputs(true);
    b
}

/// `got` against `want`: bit for bit when `exact`, else within [`REORDER_TOL`]; NaN only
/// where the member's own weights are NaN (then everything it computes is NaN).
fn same(want: &[f32], got: &[f32], exact: bool, nan_member: bool, what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    for (k, (&w, &g)) in want.iter().zip(got).enumerate() {
        if nan_member {
            assert!(
                w.is_nan() && g.is_nan(),
                "{what}[{k}]: alone {w}, together {g}"
            );
            continue;
        }
        assert!(
            g.is_finite(),
            "{what}[{k}] = {g}: a poisoned element was never written"
        );
        let ok = if exact {
            w.to_bits() == g.to_bits()
        } else {
            (w - g).abs() <= REORDER_TOL * w.abs().max(1.0)
        };
        assert!(ok, "{what}[{k}]: alone {w}, together {g} (exact {exact})");
    }
}

/// Runs `e` members of `kind` (I, H, B, T) alone and as one ensemble on two simulated
/// devices with `props` and compares every output; `nan` members have NaN weights.
/// Returns the plan the ensemble ran under.
#[allow(clippy::too_many_arguments)]
fn compare(
    props: SimProps,
    kind: CellKind,
    (i, h, b, t): (usize, usize, usize, usize),
    e: usize,
    nan: &[usize],
    seed: u64,
) -> crate::EnsemblePlans {
    let cell = CellDims::new(kind, i, h).expect("dims");
    let shape = SeqShape::new(t, b).expect("shape");
    let alone = sim(props);
    let together = sim(props);
    let plans = together.ensemble_plan(&cell, b, e).expect("plan");
    let what = |m: usize, op: &str| {
        format!("{kind} I {i} H {h} B {b} T {t} E {e} member {m} (seed {seed}, {plans}): {op}")
    };
    let ins: Vec<Inputs> = (0..e)
        .map(|m| inputs(seed.wrapping_add(m as u64), &cell, shape, nan.contains(&m)))
        .collect();
    let up = |d: &CudaBackend, v: &[f32]| d.upload(v).expect("upload");
    let tensors = |d: &CudaBackend| -> Vec<[CudaTensor; 5]> {
        ins.iter()
            .map(|m| {
                [
                    up(d, &m.params),
                    up(d, &m.x),
                    up(d, &m.s0),
                    up(d, &m.dh),
                    up(d, &m.ds),
                ]
            })
            .collect()
    };
    let (ta, tt) = (tensors(&alone), tensors(&together));
    let down = |d: &CudaBackend, t: &CudaTensor| d.download(t).expect("download");

    let args: Vec<SeqArgs<'_, CudaTensor>> = tt
        .iter()
        .map(|m| SeqArgs {
            params: &m[0],
            x: &m[1],
            s0: Some(&m[2]),
        })
        .collect();
    let fwd_t = together
        .ensemble_seq_forward(&cell, shape, &args)
        .expect("ensemble forward");
    let bw: Vec<BackwardArgs<'_, CudaTensor, _>> = tt
        .iter()
        .zip(&fwd_t)
        .map(|(m, f)| BackwardArgs {
            params: &m[0],
            x: &m[1],
            fwd: f,
            upstream: SeqUpstream {
                dh_seq: Some(&m[3]),
                ds_final: Some(&m[4]),
            },
        })
        .collect();
    let grads_t = together
        .ensemble_seq_backward(&cell, shape, &bw, true)
        .expect("ensemble backward");
    assert_eq!((fwd_t.len(), grads_t.len()), (e, e));

    let fexact = plans.forward.is_none_or(|l| l.same_lanes_as_alone);
    let bexact = plans.backward.is_none_or(|l| l.same_lanes_as_alone);
    for (m, a) in ta.iter().enumerate() {
        let isnan = nan.contains(&m);
        let f = alone
            .seq_forward(&cell, &a[0], shape, &a[1], Some(&a[2]))
            .expect("forward alone");
        let up = SeqUpstream {
            dh_seq: Some(&a[3]),
            ds_final: Some(&a[4]),
        };
        let g = alone
            .seq_backward(&cell, &a[0], shape, &a[1], &f, up, true)
            .expect("backward alone");
        let (ft, gt) = (&fwd_t[m], &grads_t[m]);
        same(
            &down(&alone, &f.h_seq),
            &down(&together, &ft.h_seq),
            fexact,
            isnan,
            &what(m, "h_seq"),
        );
        same(
            &down(&alone, &f.s_final),
            &down(&together, &ft.s_final),
            fexact,
            isnan,
            &what(m, "s_final"),
        );
        // The backward reads the forward's outputs: exact only when both directions are.
        let exact = fexact && bexact;
        same(
            &down(&alone, &g.dparams),
            &down(&together, &gt.dparams),
            exact,
            isnan,
            &what(m, "dparams"),
        );
        same(
            &down(&alone, &g.ds0),
            &down(&together, &gt.ds0),
            exact,
            isnan,
            &what(m, "ds0"),
        );
        let dx = |d: &CudaBackend, t: &Option<CudaTensor>| down(d, t.as_ref().expect("dx"));
        same(
            &dx(&alone, &g.dx),
            &dx(&together, &gt.dx),
            exact,
            isnan,
            &what(m, "dx"),
        );
    }
    plans
}

const CELLS: [CellKind; 3] = [CellKind::Rnn, CellKind::Gru, CellKind::Lstm];

#[test]
fn one_member_is_the_network_alone() {
    for (k, kind) in CELLS.into_iter().enumerate() {
        let p = compare(
            SimProps::small(),
            kind,
            (3, 7, 3, 4),
            1,
            &[],
            1300 + k as u64,
        );
        assert_eq!((p.forward, p.backward), (None, None), "{kind}: {p}");
    }
}

#[test]
fn three_members_in_one_launch_at_awkward_shapes() {
    for (k, kind) in CELLS.into_iter().enumerate() {
        // H odd, B not a multiple of 4, I ≠ H.
        for (n, dims) in [(5, 9, 5, 3), (2, 13, 7, 5)].into_iter().enumerate() {
            let seed = 1400 + 10 * k as u64 + n as u64;
            let p = compare(SimProps::small(), kind, dims, 3, &[], seed);
            let f = p.forward.unwrap_or_else(|| panic!("{kind} {dims:?}: {p}"));
            assert_eq!((f.per_launch, f.groups), (3, 1), "{kind} {dims:?}: {p}");
            assert!(p.backward.is_some(), "{kind} {dims:?}: {p}");
        }
    }
}

#[test]
fn a_nan_member_disturbs_no_other_member() {
    for (k, kind) in CELLS.into_iter().enumerate() {
        let p = compare(
            SimProps::small(),
            kind,
            (4, 9, 5, 3),
            3,
            &[1],
            1500 + k as u64,
        );
        assert!(p.forward.is_some() && p.backward.is_some(), "{kind}: {p}");
    }
}

#[test]
fn members_beyond_one_launch_run_in_groups() {
    for (k, kind) in CELLS.into_iter().enumerate() {
        // Enough members that the small device's co-resident blocks hold only part of
        // them; the last member NaN, so that the last group holds a NaN member too.
        let e = 40;
        let p = compare(
            SimProps::small(),
            kind,
            (3, 9, 5, 2),
            e,
            &[e - 1],
            1600 + k as u64,
        );
        let f = p.forward.unwrap_or_else(|| panic!("{kind}: {p}"));
        let b = p.backward.unwrap_or_else(|| panic!("{kind}: {p}"));
        assert!(f.groups >= 2 && b.groups >= 2, "{kind}: {p}");
    }
}

#[test]
fn the_step_path_runs_member_by_member_bit_for_bit() {
    for (k, kind) in CELLS.into_iter().enumerate() {
        let cell = CellDims::new(kind, 3, 9).expect("dims");
        let d = sim(SimProps::small());
        d.set_recurrence_path(RecurrencePath::Step);
        let p = d.ensemble_plan(&cell, 5, 3).expect("plan");
        assert_eq!((p.forward, p.backward), (None, None), "{kind}: {p}");
        // And on a device that cannot launch cooperatively at all.
        let no_coop = SimProps {
            cooperative: false,
            ..SimProps::small()
        };
        let p = compare(no_coop, kind, (3, 9, 5, 3), 3, &[0], 1700 + k as u64);
        assert_eq!((p.forward, p.backward), (None, None), "{kind}: {p}");
    }
}

#[test]
fn members_tiled_unlike_a_lone_network_match_within_reordering() {
    for (k, kind) in CELLS.into_iter().enumerate() {
        // Wider networks, more members: each member gets fewer blocks than alone.
        let p = compare(
            SimProps::small(),
            kind,
            (6, 33, 9, 3),
            8,
            &[3],
            1800 + k as u64,
        );
        let f = p.forward.unwrap_or_else(|| panic!("{kind}: {p}"));
        // The case exists to cover the tolerance branch of `same`.
        assert!(!f.same_lanes_as_alone, "{kind}: {p} keeps the lone lanes");
    }
}
