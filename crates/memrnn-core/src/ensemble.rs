//! The ensemble dimension: E independent networks of one cell and shape, each with its own
//! parameters, optimiser state, task batch and losses, run through one backend call per
//! operation ([`Backend::ensemble_seq_forward`](crate::Backend::ensemble_seq_forward) and
//! its siblings).
//!
//! **Members as lists of tensors, not one stacked tensor.** Each member's arguments are its
//! own tensors (a slice of [`SeqArgs`], [`ReadoutArgs`], …), not one `[E, …]` buffer:
//! members leave an ensemble (diverged, finished, at another curriculum stage and so
//! another sequence length this step) and rejoin without a compaction copy, each keeps the
//! tensors its checkpoint is written from, and a GPU override still runs them in one
//! launch from an array of per-member pointers (cuBLAS's `GemmBatchedEx` takes pointer
//! arrays; a persistent kernel reads its member's pointers once, from its block index).
//!
//! **Defaults.** Every ensemble operation has a default that runs the single-network
//! operation for each member in order ([`for_members`]), so every backend is correct at
//! once and a member gives exactly what it gives alone; a backend overrides an operation
//! where one launch (or running members side by side) pays. Results must not depend on
//! how a backend groups the members, nor on the thread count. Argument checks are the
//! single operation's, member by member; an error names the member.

use crate::backend::{Backend, SeqForward, SeqUpstream};
use crate::error::{Error, Result};
use crate::step::{AdamGroup, StepGuard};

/// One member's arguments of [`Backend::ensemble_seq_forward`](crate::Backend::ensemble_seq_forward).
pub struct SeqArgs<'a, T> {
    pub params: &'a T,
    pub x: &'a T,
    pub s0: Option<&'a T>,
}

/// One member's arguments of [`Backend::ensemble_readout_ce`](crate::Backend::ensemble_readout_ce).
pub struct ReadoutArgs<'a, T> {
    pub h: &'a T,
    pub readout: &'a T,
    pub targets: &'a T,
    pub weights: &'a T,
}

/// One member's arguments of [`Backend::ensemble_seq_backward`](crate::Backend::ensemble_seq_backward).
pub struct BackwardArgs<'a, T, C> {
    pub params: &'a T,
    pub x: &'a T,
    pub fwd: &'a SeqForward<T, C>,
    pub upstream: SeqUpstream<'a, T>,
}

/// One member's arguments of [`Backend::ensemble_step_speed_grad`](crate::Backend::ensemble_step_speed_grad):
/// its `n` states `[n, S]` and inputs `[n, I]` (members may have different `n`).
pub struct SpeedArgs<'a, T> {
    pub params: &'a T,
    pub states: &'a T,
    pub x: &'a T,
    pub n: usize,
}

/// One member's update in [`Backend::ensemble_clip_adam_update`](crate::Backend::ensemble_clip_adam_update):
/// its groups (clipped by their own global norm) and its own divergence guard.
pub struct MemberAdam<'a, T> {
    pub groups: Vec<AdamGroup<'a, T>>,
    pub guard: Option<StepGuard<'a, T>>,
}

/// One member's arguments of
/// [`Backend::ensemble_slow_point_iterations`](crate::Backend::ensemble_slow_point_iterations):
/// its parameters, its constant input `x̄ [I]` and its own search (any number of candidates).
pub struct SlowPointArgs<'a, T> {
    pub params: &'a T,
    pub x: &'a T,
    pub search: &'a mut crate::slow_point::SlowPointSearch<T>,
}

/// One member's arguments of
/// [`Backend::ensemble_slow_point_lm`](crate::Backend::ensemble_slow_point_lm).
pub struct LmArgs<'a, T> {
    pub params: &'a T,
    pub x: &'a T,
    pub search: &'a mut crate::lm::LmSearch<T>,
}

/// A guard reborrowed for one `clip_adam_update` call (the member keeps it).
pub fn reborrow_guard<'s, T>(g: &'s mut Option<StepGuard<'_, T>>) -> Option<StepGuard<'s, T>> {
    g.as_mut().map(|g| StepGuard {
        loss: g.loss,
        max_loss: g.max_loss,
        halted: &mut *g.halted,
    })
}

/// Prefixes an error with the member it came from (`member 2 of 5: …`), keeping its
/// variant so that callers (and the conformance suite) see the single operation's answer.
pub fn member_error(member: usize, count: usize, e: Error) -> Error {
    let at = format!("ensemble member {member} of {count}");
    match e {
        Error::Shape {
            what,
            expected,
            got,
            detail,
        } => Error::Shape {
            what: format!("{at}: {what}"),
            expected,
            got,
            detail,
        },
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{at}: {m}")),
        Error::Dimension(m) => Error::Dimension(format!("{at}: {m}")),
        other => other,
    }
}

/// Runs `op` for members `0..n` in order, naming the member in an error: the default of
/// every ensemble operation.
pub fn for_members<R>(n: usize, mut op: impl FnMut(usize) -> Result<R>) -> Result<Vec<R>> {
    (0..n)
        .map(|i| op(i).map_err(|e| member_error(i, n, e)))
        .collect()
}

/// The default [`Backend::ensemble_clip_adam_update`](crate::Backend::ensemble_clip_adam_update):
/// `clip_adam_update` for each member, with its own groups, norm and guard.
pub fn clip_adam_members<B: Backend + ?Sized>(
    b: &B,
    members: &mut [MemberAdam<'_, B::Tensor>],
    clip: Option<f32>,
    cfg: &crate::AdamConfig,
) -> Result<Vec<B::Tensor>> {
    let n = members.len();
    members
        .iter_mut()
        .enumerate()
        .map(|(i, m)| {
            let guard = reborrow_guard(&mut m.guard);
            let r = b.clip_adam_update(&mut m.groups, clip, guard, cfg);
            r.map_err(|e| member_error(i, n, e))
        })
        .collect()
}
