//! The recurrence of an ensemble (E networks of one cell and shape) in cooperative launches
//! of many members each (`<cell>_seq_{fwd,bwd}_ens_f32`, kernels/common.cuh): the
//! co-residency planner and the grouped launches.
//!
//! **The plan.** A launch of `m` members runs `m · blocks_per_member` blocks, all
//! co-resident (occupancy × SMs ≥ m · blocks_per_member), every member tiled alike. The
//! planner chooses the tiling for each candidate group size `m = ⌈E / groups⌉` and keeps
//! the cheapest total (`groups` launches of one grid sync per step each); when one member
//! per launch is cheapest, or a lone member cannot be persistent at all (the per-step path),
//! the ensemble runs member by member through the single-network kernels, so each member
//! gives exactly what it gives alone.
//!
//! **What a member gets.** The members of a launch are tiled alike but not necessarily as
//! a lone network is (fewer blocks per member, so larger tiles); the tiling changes only
//! how the K-length dot products are split over a warp's lanes (`ks`), so a member's result
//! is its lone result up to f32 reordering of those sums, bit for bit where `ks` agrees.

use crate::device::{backend_err, Device, Elem, LaunchDims};
use crate::kernels::{
    BwdArgs, DevPtr, FwdArgs, Kernel, KernelParams, RecBwdEnsParams, RecFwdEnsParams, TileArgs,
};
use crate::ops::recurrence::{ceil4, lanes, Plan, THREADS};
use memrnn_core::Result;

/// The cost of one grid-wide barrier (and its share of the launch) in the planner's unit,
/// FMAs of one block per step: a grid sync costs a few µs on an H100, the time a block
/// of 256 threads takes for about a million FMAs. An order of magnitude, not a
/// measurement: it decides how strongly the planner prefers fewer launches.
const SYNC_COST: usize = 1 << 20;

/// How an ensemble's recurrence is launched: `per_launch` members in each of `groups`
/// cooperative launches (the last may hold fewer), each member on `plan.blocks` blocks of
/// the tiling in `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EnsemblePlan {
    pub plan: Plan,
    pub per_launch: usize,
    pub groups: usize,
}

/// One tiling the planner may use for every member of a launch.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    plan: Plan,
    /// Blocks that can be co-resident on the whole device at this tiling's shared memory.
    capacity: usize,
    /// Per step, per block: the planner's cost unit.
    cost: usize,
}

/// FMAs per block per step, plus the staging and the block barriers per chunk: the cost
/// model of the single-network planner (ops/recurrence.rs), here for every candidate.
pub(crate) fn block_cost(go: usize, k: usize, jt: usize, bt: usize, kc: usize) -> usize {
    let btp = ceil4(bt);
    jt * btp * k * go + btp * k + k.div_ceil(kc.max(1)) * 2048
}

/// Every persistent tiling of a member (`go` products of length `k` per unit and row, `h`
/// units, `b` rows) that fits the device's shared memory, with its co-residency capacity.
fn candidates<P: KernelParams>(
    device: &Device,
    f: &Kernel<P>,
    go: usize,
    k: usize,
    h: usize,
    b: usize,
) -> Result<Vec<Candidate>> {
    let dev = device.info();
    let sms = dev.sms as usize;
    let limit = dev.max_smem_optin as usize;
    let kp = k | 1;
    let mut occupancy: Vec<(usize, usize)> = Vec::new();
    let mut out = Vec::new();
    let mut last_bt = 0;
    for nb in 1..=b {
        let bt = b.div_ceil(nb);
        if bt == last_bt {
            continue;
        }
        last_bt = bt;
        let nb = b.div_ceil(bt);
        let btp = ceil4(bt);
        let mut last_jt = 0;
        for nj in 1..=h {
            let jt = h.div_ceil(nj);
            if jt == last_jt {
                continue;
            }
            last_jt = jt;
            let nj = h.div_ceil(jt);
            let blocks = nj * nb;
            let w_bytes = go * jt * kp * 4;
            if w_bytes + btp * k.min(32) * 4 > limit {
                continue;
            }
            // One chunk when it fits (fewest barriers), else the largest multiple of 32
            // (a multiple of every ks, so the lanes' summation order is the unchunked one).
            let kc = if w_bytes + btp * k * 4 <= limit {
                k
            } else {
                ((limit - w_bytes) / (btp * 4) / 32 * 32).max(32)
            };
            let smem = w_bytes + btp * kc * 4;
            let per_sm = match occupancy.iter().find(|(s, _)| *s == smem) {
                Some(&(_, o)) => o,
                None => {
                    let o = device.occupancy(f, THREADS, smem)?;
                    occupancy.push((smem, o));
                    o
                }
            };
            let capacity = per_sm * sms;
            if capacity < blocks {
                continue;
            }
            let items = jt * bt.div_ceil(crate::ops::recurrence::ROWS);
            out.push(Candidate {
                plan: Plan {
                    jt: jt as i32,
                    bt: bt as i32,
                    kc: kc as i32,
                    ks: lanes(items, k),
                    blocks: blocks as u32,
                    smem: smem as u32,
                    persistent: true,
                },
                capacity,
                cost: block_cost(go, k, jt, bt, kc),
            });
        }
    }
    Ok(out)
}

/// Plans `members` networks' recurrence given `single`, the plan of one of them alone.
/// `None`: run them member by member (one member, a lone member on the per-step path, or
/// one member per launch the cheapest).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<P: KernelParams>(
    device: &Device,
    ens_fn: &Kernel<P>,
    single: &Plan,
    go: usize,
    k: usize,
    h: usize,
    b: usize,
    members: usize,
) -> Result<Option<EnsemblePlan>> {
    if members < 2 || !single.persistent {
        return Ok(None);
    }
    let sms = device.info().sms as usize;
    let cands = candidates(device, ens_fn, go, k, h, b)?;
    let single_cost = block_cost(
        go,
        k,
        single.jt as usize,
        single.bt as usize,
        single.kc as usize,
    );
    // Member by member: E launches, each one block per SM at most (the single planner's
    // rule), so one block's cost per step.
    let mut best_total = members.saturating_mul(SYNC_COST + single_cost);
    let mut best: Option<EnsemblePlan> = None;
    let mut last_m = 0;
    for groups in 1..=members {
        let m = members.div_ceil(groups);
        if m == last_m || m < 2 {
            continue;
        }
        last_m = m;
        let groups = members.div_ceil(m);
        let pick = cands
            .iter()
            .filter(|c| m * c.plan.blocks as usize <= c.capacity)
            .map(|c| {
                // Blocks sharing an SM share its throughput.
                let waves = (m * c.plan.blocks as usize).div_ceil(sms);
                (waves * c.cost, c)
            })
            .min_by_key(|(cost, c)| (*cost, c.plan.blocks));
        if let Some((step, c)) = pick {
            let total = groups.saturating_mul(SYNC_COST + step);
            if total < best_total {
                best_total = total;
                best = Some(EnsemblePlan {
                    plan: c.plan,
                    per_launch: m,
                    groups,
                });
            }
        }
    }
    Ok(best)
}

/// What the planner chose for one direction, as [`crate::CudaBackend::ensemble_plan`]
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnsembleLaunches {
    /// Members per cooperative launch (the last launch may hold fewer).
    pub per_launch: usize,
    /// Launches per recurrence.
    pub groups: usize,
    /// Blocks each member runs on.
    pub blocks_per_member: u32,
    /// Whether the members' dot products are split over a warp's lanes as a lone
    /// network's are (then a member is bit for bit its lone self).
    pub same_lanes_as_alone: bool,
}

impl EnsembleLaunches {
    pub(crate) fn of(p: &Option<EnsemblePlan>, single: &Plan) -> Option<EnsembleLaunches> {
        p.map(|p| EnsembleLaunches {
            per_launch: p.per_launch,
            groups: p.groups,
            blocks_per_member: p.plan.blocks,
            same_lanes_as_alone: p.plan.ks == single.ks,
        })
    }
}

/// The recurrence launches of an ensemble, forward and backward: `None` where the members
/// run one after another through the single-network kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnsemblePlans {
    pub forward: Option<EnsembleLaunches>,
    pub backward: Option<EnsembleLaunches>,
}

impl std::fmt::Display for EnsemblePlans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = |l: &Option<EnsembleLaunches>| match l {
            Some(l) => format!(
                "{} members per launch x {} launch(es), {} blocks per member",
                l.per_launch, l.groups, l.blocks_per_member
            ),
            None => "member by member".to_string(),
        };
        write!(
            f,
            "forward {}; backward {}",
            one(&self.forward),
            one(&self.backward)
        )
    }
}

impl EnsemblePlan {
    fn dims(&self, members: usize) -> LaunchDims {
        LaunchDims::linear(self.plan.blocks * members as u32, THREADS, self.plan.smem)
            .cooperative(true)
    }

    fn params(&self, members: usize) -> Result<(TileArgs, i32, i32)> {
        let n = i32::try_from(members)
            .map_err(|_| backend_err(format!("{members} ensemble members exceed 32 bits")))?;
        Ok((self.plan.tile(), n, self.plan.blocks as i32))
    }

    /// The members `0..n` in launch groups.
    pub(crate) fn groups(&self, n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let m = self.per_launch.max(1);
        (0..n.div_ceil(m)).map(move |g| g * m..((g + 1) * m).min(n))
    }
}

/// Runs the forward recurrence of every member (`args`, built by
/// `recurrence::fwd_args`, all of one shape) in `plan.groups` cooperative launches.
pub(crate) fn forward(
    dev: &Device,
    ens_fn: &Kernel<RecFwdEnsParams>,
    plan: &EnsemblePlan,
    args: &[FwdArgs],
) -> Result<()> {
    let shape = |a: &FwdArgs| (a.t, a.b, a.h);
    launch_groups(
        dev,
        ens_fn,
        plan,
        args,
        shape,
        |a, tile, members, blocks_per_member| RecFwdEnsParams {
            a,
            tile,
            members,
            blocks_per_member,
        },
    )
}

/// Runs the backward recurrence of every member (`args`, built by
/// `recurrence::bwd_args`, all of one shape) in `plan.groups` cooperative launches.
pub(crate) fn backward(
    dev: &Device,
    ens_fn: &Kernel<RecBwdEnsParams>,
    plan: &EnsemblePlan,
    args: &[BwdArgs],
) -> Result<()> {
    let shape = |a: &BwdArgs| (a.t, a.b, a.h);
    launch_groups(
        dev,
        ens_fn,
        plan,
        args,
        shape,
        |a, tile, members, blocks_per_member| RecBwdEnsParams {
            a,
            tile,
            members,
            blocks_per_member,
        },
    )
}

/// One cooperative launch of `ens_fn` per group of `plan`, its members' argument structs
/// uploaded as the table the kernel indexes by member.
fn launch_groups<A: Elem, P: KernelParams>(
    dev: &Device,
    ens_fn: &Kernel<P>,
    plan: &EnsemblePlan,
    args: &[A],
    shape: impl Fn(&A) -> (i32, i32, i32),
    params: impl Fn(DevPtr, TileArgs, i32, i32) -> P,
) -> Result<()> {
    same_shape(args.iter().map(shape))?;
    for r in plan.groups(args.len()) {
        let n = r.len();
        let table = dev.htod(&args[r])?;
        let (tile, members, blocks_per_member) = plan.params(n)?;
        // Every member's buffers were checked by recurrence::{fwd,bwd}_args for the shape
        // all of them share (checked above); `table` holds the n argument structs the n ·
        // blocks_per_member blocks read; the tiling passed the co-residency check for
        // per_launch ≥ n members at this shared memory. `table` lives until the
        // synchronous launch has been queued and is freed in stream order.
        let p = params(dev.ptr(table.all())?, tile, members, blocks_per_member);
        dev.launch(ens_fn, plan.dims(n), p)?;
    }
    Ok(())
}

/// Every member of a launch must run the same number of steps (one grid sync per step
/// for all of them) over the same tiling.
fn same_shape(mut dims: impl Iterator<Item = (i32, i32, i32)>) -> Result<()> {
    let Some(first) = dims.next() else {
        return Ok(());
    };
    match dims.find(|d| *d != first) {
        None => Ok(()),
        Some(d) => Err(backend_err(format!(
            "internal: ensemble members of different shapes (T, B, H) {first:?} and {d:?} in \
             one launch"
        ))),
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::device::sim::SimDevice;
    use crate::kernels::GRU;
    use crate::ops::recurrence::{self, RecurrencePath};
    use crate::SimProps;

    fn dev(props: SimProps) -> Device {
        Device::Sim(SimDevice::new(props).expect("sim device"))
    }

    /// The forward plan of `e` GRUs (H `h`, B `b`), with the lone network's plan.
    fn gru_fwd(d: &Device, e: usize, h: usize, b: usize) -> (Plan, Option<EnsemblePlan>) {
        let single = recurrence::plan(d, &GRU.seq_fwd, 3, h, h, b, 4, RecurrencePath::Auto)
            .expect("single plan");
        let ens = plan(
            d,
            GRU.seq_fwd_ens
                .as_ref()
                .expect("f32 has the ensemble kernels"),
            &single,
            3,
            h,
            h,
            b,
            e,
        )
        .expect("ensemble plan");
        (single, ens)
    }

    /// What every plan must satisfy: co-resident launches that cover every member, every
    /// unit and every row, within the device's shared memory.
    fn check_plan(d: &Device, p: &EnsemblePlan, e: usize, h: usize, b: usize, what: &str) {
        let info = d.info();
        let nj = h.div_ceil(p.plan.jt as usize);
        let nb = b.div_ceil(p.plan.bt as usize);
        assert_eq!(p.plan.blocks as usize, nj * nb, "{what}: blocks per member");
        assert!(p.plan.smem <= info.max_smem_optin, "{what}: shared memory");
        let per_sm = d
            .occupancy(
                GRU.seq_fwd_ens
                    .as_ref()
                    .expect("f32 has the ensemble kernels"),
                THREADS,
                p.plan.smem as usize,
            )
            .expect("occupancy");
        assert!(
            p.per_launch * p.plan.blocks as usize <= per_sm * info.sms as usize,
            "{what}: {p:?} is not co-resident ({per_sm} blocks per SM)"
        );
        assert!(
            p.per_launch >= 2,
            "{what}: one member per launch is member by member"
        );
        assert_eq!(p.groups, e.div_ceil(p.per_launch), "{what}: groups");
        let covered: Vec<usize> = p.groups(e).flatten().collect();
        assert_eq!(
            covered,
            (0..e).collect::<Vec<_>>(),
            "{what}: groups cover the members"
        );
        assert!(p.groups(e).all(|r| r.len() <= p.per_launch));
        assert!(p.plan.ks >= 1 && p.plan.ks <= 32 && p.plan.ks & (p.plan.ks - 1) == 0);
        // Chunks are multiples of 32 (so of every ks) or the whole K.
        assert!(p.plan.kc as usize == h || p.plan.kc % 32 == 0, "{what}: kc");
    }

    #[test]
    fn paper_shape_on_an_h100_packs_members_until_the_chip_is_full() {
        let d = dev(SimProps::h100_like());
        let (h, b) = (200, 128);
        let (single, one) = gru_fwd(&d, 1, h, b);
        assert!(
            single.persistent,
            "the lone paper-shape GRU is persistent on an H100"
        );
        assert_eq!(one, None, "one network runs alone");
        let mut groups = Vec::new();
        for e in [8, 32, 64] {
            let (_, p) = gru_fwd(&d, e, h, b);
            let p = p.unwrap_or_else(|| panic!("E {e}: the paper shape packs"));
            check_plan(&d, &p, e, h, b, &format!("E {e}"));
            groups.push(p.groups);
        }
        // 482 KB of W_hh per member (at the odd pitch): 8 and 32 members fit the chip's
        // 132 × 227 KB of shared memory at once, 64 do not.
        assert_eq!(groups[0], 1, "E 8 in one launch");
        assert_eq!(groups[1], 1, "E 32 in one launch");
        assert!(groups[2] >= 2, "E 64 needs more than one launch");
    }

    #[test]
    fn a_small_device_runs_the_paper_shape_member_by_member_and_packs_small_networks() {
        let d = dev(SimProps::small());
        // The paper shape is not persistent on 2 SMs of 48 KiB: member by member.
        let (single, p) = gru_fwd(&d, 8, 200, 128);
        assert!(!single.persistent);
        assert_eq!(p, None);
        // Small networks fit several per launch, and enough of them need two launches.
        let (h, b) = (9, 5);
        let (_, p3) = gru_fwd(&d, 3, h, b);
        let p3 = p3.expect("3 small GRUs pack");
        check_plan(&d, &p3, 3, h, b, "E 3");
        assert_eq!(p3.groups, 1);
        let (_, pm) = gru_fwd(&d, 40, h, b);
        let pm = pm.expect("40 small GRUs pack");
        check_plan(&d, &pm, 40, h, b, "E 40");
        assert!(
            pm.groups >= 2,
            "40 members on 2 small SMs take several launches: {pm:?}"
        );
    }

    #[test]
    fn the_step_path_and_single_members_are_member_by_member() {
        let d = dev(SimProps::h100_like());
        let step = recurrence::plan(&d, &GRU.seq_fwd, 3, 16, 16, 4, 4, RecurrencePath::Step)
            .expect("step plan");
        assert_eq!(
            plan(
                &d,
                GRU.seq_fwd_ens
                    .as_ref()
                    .expect("f32 has the ensemble kernels"),
                &step,
                3,
                16,
                16,
                4,
                8
            )
            .expect("plan"),
            None
        );
        let (_, p) = gru_fwd(&d, 1, 16, 4);
        assert_eq!(p, None);
        let (_, p0) = gru_fwd(&d, 0, 16, 4);
        assert_eq!(p0, None);
    }

    #[test]
    fn groups_split_members_evenly_enough() {
        let p = EnsemblePlan {
            plan: Plan {
                jt: 1,
                bt: 1,
                kc: 1,
                ks: 1,
                blocks: 1,
                smem: 0,
                persistent: true,
            },
            per_launch: 3,
            groups: 3,
        };
        let g: Vec<_> = p.groups(7).collect();
        assert_eq!(g, vec![0..3, 3..6, 6..7]);
        assert!(same_shape([(3, 4, 5), (3, 4, 5)].into_iter()).is_ok());
        assert!(same_shape([(3, 4, 5), (2, 4, 5)].into_iter()).is_err());
    }
}
