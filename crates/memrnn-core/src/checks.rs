//! Argument checks for every [`Backend`](crate::Backend) operation, on lengths and shapes
//! only, so that every backend validates the same things in the same order and answers a
//! bad call with the same error. A backend calls the matching `check_*` function first
//! thing in each operation, before it allocates, copies or launches anything. Each function
//! takes the operation's arguments in the trait's order, every tensor replaced by its
//! length.
//!
//! The rules (the conformance suite in `memrnn-testkit` holds every backend to them):
//!
//! - A buffer of the wrong length is [`Error::Shape`] whose `what` is the argument's name
//!   as the trait spells it: `params`, `x`, `s0`, `states`, `v`, `dh_seq`, `ds_final`,
//!   `grad`, `adam m`, `adam v`, and `fwd.h_seq` / `fwd.s_final` for a forward pass's
//!   outputs.
//! - A [`CellDims`] with a size outside `1..=MAX_DIM`, or a [`SeqShape`] with no step or no
//!   row, is [`Error::Dimension`]: both types have public fields, and their constructors
//!   refuse these. So is a point count `N` whose buffers would overflow `usize`.
//! - **Empty point batches are valid.** `step_speed`, `step_speed_grad`, `step_jacobian`
//!   and `step_jvp` with `N = 0` (and empty `states`, `x`, `v`) return empty outputs;
//!   `step_speed_grad`'s `dparams`, when asked for, is then the sum over no points: zeros
//!   of the parameter length.
//! - `adam_update` on an empty tensor is valid: nothing changes but the step count.
//! - Sequences have at least one step and one row ([`SeqShape::new`]), and a slow-point
//!   search at least one candidate ([`SlowPointSearch::new`](crate::backend::SlowPointSearch::new)
//!   says so): `K = 0` is [`Error::InvalidArgument`].
//! - A backward pass handed a forward pass of another cell or shape, and an invalid
//!   [`AdamConfig`] or [`SlowPointConfig`], are [`Error::InvalidArgument`].
//! - The order: the cell, the shape, then the arguments in the trait's order (configs
//!   last), so a call with several bad arguments gets the same error from every backend.
//!
//! Values (NaN, ±∞) are not checked here: these functions see lengths only.

use crate::backend::{AdamConfig, SlowPointConfig};
use crate::cell::{CellDims, SeqShape, MAX_DIM};
use crate::error::{check_len, Error, Result};

/// The cell's sizes are in `1..=MAX_DIM` (what [`CellDims::new`] enforces; the fields are
/// public, so a backend cannot assume it).
pub fn check_cell(cell: &CellDims) -> Result<()> {
    for (name, v) in [("input size", cell.input), ("hidden size", cell.hidden)] {
        if v == 0 || v > MAX_DIM {
            return Err(Error::Dimension(format!(
                "cell: {name} is {v}: it must be between 1 and {MAX_DIM}"
            )));
        }
    }
    Ok(())
}

/// The shape has at least one step and one row, and `T·B` is within [`SeqShape::new`]'s
/// limit (the fields are public, so a backend cannot assume it).
pub fn check_shape(shape: SeqShape) -> Result<()> {
    SeqShape::new(shape.steps, shape.batch)
        .map(|_| ())
        .map_err(|e| match e {
            Error::Dimension(m) => Error::Dimension(format!("shape: {m}")),
            other => other,
        })
}

/// `a · b`, or [`Error::Dimension`] naming `what` when it overflows.
fn mul(a: usize, b: usize, what: impl FnOnce() -> String) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::Dimension(format!("{} overflows", what())))
}

fn check_params(cell: &CellDims, params: usize) -> Result<()> {
    cell.layout().check("params", params)
}

/// [`Backend::seq_forward`](crate::Backend::seq_forward): `params` of the cell's layout,
/// `x [T, B, I]`, `s0 [B, S]` when given.
pub fn check_seq_forward(
    cell: &CellDims,
    params: usize,
    shape: SeqShape,
    x: usize,
    s0: Option<usize>,
) -> Result<()> {
    check_cell(cell)?;
    check_shape(shape)?;
    check_params(cell, params)?;
    shape.check_inputs(cell, x, s0)
}

/// What a forward pass handed to a backward pass was run with: the cell and shape its
/// cache records, and the lengths of its `h_seq` and `s_final`.
#[derive(Clone, Copy, Debug)]
pub struct ForwardInfo {
    pub cell: CellDims,
    pub shape: SeqShape,
    pub h_seq: usize,
    pub s_final: usize,
}

/// The lengths of a backward pass's upstream gradients, when given
/// ([`SeqUpstream`](crate::SeqUpstream)'s fields).
#[derive(Clone, Copy, Debug, Default)]
pub struct UpstreamLens {
    pub dh_seq: Option<usize>,
    pub ds_final: Option<usize>,
}

/// [`Backend::seq_backward`](crate::Backend::seq_backward): the forward pass `fwd` must
/// come from the same cell and shape (else [`Error::InvalidArgument`] naming `fwd`), its
/// outputs `h_seq [T, B, H]`, `s_final [B, S]`; `dh_seq [T, B, H]` and
/// `ds_final [B, S]` when given.
pub fn check_seq_backward(
    cell: &CellDims,
    params: usize,
    shape: SeqShape,
    x: usize,
    fwd: &ForwardInfo,
    upstream: UpstreamLens,
) -> Result<()> {
    check_cell(cell)?;
    check_shape(shape)?;
    check_params(cell, params)?;
    shape.check_inputs(cell, x, None)?;
    if fwd.cell != *cell || fwd.shape != shape {
        return Err(Error::InvalidArgument(format!(
            "seq_backward: fwd (the forward pass) ran a {} cell (I {}, H {}) over T {} × B {}, \
             not this call's {} cell (I {}, H {}) over T {} × B {}; pass the forward pass of \
             the same cell and shape",
            fwd.cell.kind,
            fwd.cell.input,
            fwd.cell.hidden,
            fwd.shape.steps,
            fwd.shape.batch,
            cell.kind,
            cell.input,
            cell.hidden,
            shape.steps,
            shape.batch
        )));
    }
    let (t, b, h, s) = (shape.steps, shape.batch, cell.hidden, cell.state_size());
    let seq = || format!("[T={t}, B={b}, H={h}]");
    let state = || format!("[B={b}, S={s}]");
    check_len("fwd.h_seq", shape.rows() * h, fwd.h_seq, seq)?;
    check_len("fwd.s_final", b * s, fwd.s_final, state)?;
    if let Some(len) = upstream.dh_seq {
        check_len("dh_seq", shape.rows() * h, len, seq)?;
    }
    if let Some(len) = upstream.ds_final {
        check_len("ds_final", b * s, len, state)?;
    }
    Ok(())
}

/// The checks shared by the point operations: `params`, `states [N, S]`, `x [N, I]`.
/// `N = 0` is valid (empty buffers).
fn check_points(cell: &CellDims, params: usize, states: usize, x: usize, n: usize) -> Result<()> {
    check_cell(cell)?;
    check_params(cell, params)?;
    let (s, i) = (cell.state_size(), cell.input);
    let ns = mul(n, s, || format!("N = {n} states of S = {s}"))?;
    check_len("states", ns, states, || format!("[N={n}, S={s}]"))?;
    let ni = mul(n, i, || format!("N = {n} inputs of I = {i}"))?;
    check_len("x", ni, x, || format!("[N={n}, I={i}]"))
}

/// [`Backend::step_speed`](crate::Backend::step_speed): `states [N, S]`, `x [N, I]`;
/// `N = 0` returns an empty tensor.
pub fn check_step_speed(
    cell: &CellDims,
    params: usize,
    states: usize,
    x: usize,
    n: usize,
) -> Result<()> {
    check_points(cell, params, states, x, n)
}

/// [`Backend::step_speed_grad`](crate::Backend::step_speed_grad): as
/// [`check_step_speed`]; `N = 0` returns empty `speed` and `dstate` and, when asked,
/// zero `dparams`.
pub fn check_step_speed_grad(
    cell: &CellDims,
    params: usize,
    states: usize,
    x: usize,
    n: usize,
) -> Result<()> {
    check_points(cell, params, states, x, n)
}

/// [`Backend::step_jacobian`](crate::Backend::step_jacobian): as [`check_step_speed`],
/// and the result `[N, S, S]` must be addressable; `N = 0` returns an empty tensor.
pub fn check_step_jacobian(
    cell: &CellDims,
    params: usize,
    states: usize,
    x: usize,
    n: usize,
) -> Result<()> {
    check_points(cell, params, states, x, n)?;
    let s = cell.state_size();
    mul(n, s, String::new)
        .and_then(|ns| mul(ns, s, String::new))
        .map_err(|_| Error::Dimension(format!("the Jacobians [N={n}, S={s}, S={s}] overflow")))?;
    Ok(())
}

/// [`Backend::step_jvp`](crate::Backend::step_jvp): as [`check_step_speed`], and the
/// tangents `v [N, S]`; `N = 0` returns an empty tensor.
pub fn check_step_jvp(
    cell: &CellDims,
    params: usize,
    states: usize,
    x: usize,
    v: usize,
    n: usize,
) -> Result<()> {
    check_points(cell, params, states, x, n)?;
    let s = cell.state_size();
    // `N·S` was checked for overflow above.
    check_len("v", n * s, v, || format!("[N={n}, S={s}]"))
}

/// [`Backend::adam_update`](crate::Backend::adam_update): `grad` and the moments `m`, `v`
/// of the parameters' length (any, zero included), then the config.
pub fn check_adam_update(
    params: usize,
    grad: usize,
    m: usize,
    v: usize,
    cfg: &AdamConfig,
) -> Result<()> {
    let detail = || format!("one per parameter: the tensor updated holds {params}");
    check_len("grad", params, grad, detail)?;
    check_len("adam m", params, m, detail)?;
    check_len("adam v", params, v, detail)?;
    cfg.validate()
}

/// [`Backend::readout_ce`](crate::Backend::readout_ce): `hidden` and `classes` at least 1
/// (else [`Error::Dimension`]), then `h [rows, H]`, `readout [C·H + C]`, `targets [rows]`
/// and `weights [rows]`, where `rows` is the length of `targets` (zero rows are valid:
/// the loss is then 0 and every gradient zero).
pub fn check_readout_ce(
    hidden: usize,
    classes: usize,
    h: usize,
    readout: usize,
    targets: usize,
    weights: usize,
) -> Result<()> {
    for (name, v) in [("hidden size", hidden), ("classes", classes)] {
        if v == 0 || v > MAX_DIM {
            return Err(Error::Dimension(format!(
                "readout: {name} is {v}: it must be between 1 and {MAX_DIM}"
            )));
        }
    }
    let rows = targets;
    let h_len = mul(rows, hidden, || {
        format!("readout: h [rows={rows}, H={hidden}]")
    })?;
    check_len("h", h_len, h, || {
        format!("[rows={rows}, H={hidden}]: one hidden state per target")
    })?;
    let ro = mul(classes, hidden + 1, || {
        format!("readout [C={classes}, H={hidden}] + bias")
    })?;
    check_len("readout", ro, readout, || {
        format!("[W_out (C={classes} × H={hidden}) | b_out (C)]")
    })?;
    check_len("weights", rows, weights, || {
        format!("one per target ({rows})")
    })
}

/// [`Backend::readout_argmax`](crate::Backend::readout_argmax): sizes as for
/// `readout_ce`, `h` a whole number of rows; returns the row count.
pub fn check_readout_argmax(
    hidden: usize,
    classes: usize,
    h: usize,
    readout: usize,
) -> Result<usize> {
    let rows = h.checked_div(hidden).unwrap_or(0);
    check_readout_ce(hidden, classes, rows * hidden, readout, rows, rows)?;
    if h != rows * hidden {
        return Err(Error::shape(
            "h",
            rows * hidden,
            h,
            format!("[rows, H={hidden}]: a whole number of hidden states"),
        ));
    }
    Ok(rows)
}

/// [`Backend::axpy`](crate::Backend::axpy): `x` as long as `y`.
pub fn check_axpy(y: usize, x: usize) -> Result<()> {
    check_len("x", y, x, || format!("as long as y ({y})"))
}

/// [`Backend::clip_adam_update`](crate::Backend::clip_adam_update): one to
/// [`MAX_ADAM_GROUPS`](crate::MAX_ADAM_GROUPS) groups;
/// each group's `grad` and moments as long as its parameters; every group at the same
/// Adam step (they are one optimiser); the guard's `loss` and `halted` one value each
/// (given as their lengths, with `max_loss`, which must not be NaN); a clip limit, when given, positive and finite; then the
/// config. `groups` holds `(params, grad, m, v, step)` per group.
pub fn check_clip_adam_update(
    groups: &[(usize, usize, usize, usize, u64)],
    guard: Option<(usize, usize, f32)>,
    clip: Option<f32>,
    cfg: &AdamConfig,
) -> Result<()> {
    let Some(&(_, _, _, _, step0)) = groups.first() else {
        return Err(Error::InvalidArgument(
            "clip_adam_update needs at least one parameter group".into(),
        ));
    };
    if groups.len() > crate::MAX_ADAM_GROUPS {
        return Err(Error::InvalidArgument(format!(
            "clip_adam_update takes at most {} parameter groups, got {}; concatenate some",
            crate::MAX_ADAM_GROUPS,
            groups.len()
        )));
    }
    for (k, &(p, g, m, v, step)) in groups.iter().enumerate() {
        let detail = || format!("one per parameter of group {k}, which holds {p}");
        check_len("grad", p, g, detail)?;
        check_len("adam m", p, m, detail)?;
        check_len("adam v", p, v, detail)?;
        if step != step0 {
            return Err(Error::InvalidArgument(format!(
                "clip_adam_update: group {k} is at Adam step {step} but group 0 at {step0}; the \
                 groups of one optimiser must move together"
            )));
        }
    }
    if let Some((loss, halted, max_loss)) = guard {
        check_len("guard loss", 1, loss, || "[1]: the step's loss".into())?;
        check_len("guard halted", 1, halted, || "[1]: the halt flag".into())?;
        if max_loss.is_nan() {
            return Err(Error::InvalidArgument(
                "the divergence guard's max_loss is NaN: give a loss limit (∞ for none)".into(),
            ));
        }
    }
    if let Some(c) = clip {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "gradient clip {c}: it must be a positive, finite norm (None turns clipping off)"
            )));
        }
    }
    cfg.validate()
}

/// [`Backend::copy_into`](crate::Backend::copy_into): both ranges inside their tensors.
pub fn check_copy_into(
    dst: usize,
    dst_offset: usize,
    src: usize,
    src_offset: usize,
    len: usize,
) -> Result<()> {
    for (what, total, off) in [("dst", dst, dst_offset), ("src", src, src_offset)] {
        if off.checked_add(len).is_none_or(|end| end > total) {
            return Err(Error::InvalidArgument(format!(
                "copy_into: {what} range {off}..{off}+{len} is outside its {total} values"
            )));
        }
    }
    Ok(())
}

/// [`Backend::delay_inputs`](crate::Backend::delay_inputs): `n < 2³¹` rows (zero is
/// valid), `1 ≤ pixels`, `n·(pixels + 1)` addressable, a finite noise mean and std.
pub fn check_delay_inputs(n: usize, pixels: usize, noise_mean: f32, noise_std: f32) -> Result<()> {
    if pixels == 0 || n > i32::MAX as usize {
        return Err(Error::Dimension(format!(
            "delay inputs: {n} rows of {pixels} pixels; need pixels ≥ 1 and fewer than 2^31 rows"
        )));
    }
    mul(n, pixels + 1, || {
        format!("delay inputs [n={n}, P+1={}]", pixels + 1)
    })?;
    if !(noise_mean.is_finite() && noise_std.is_finite()) {
        return Err(Error::InvalidArgument(
            "delay inputs: the noise mean and std must be finite".into(),
        ));
    }
    Ok(())
}

/// The lengths of a [`SlowPointSearch`](crate::backend::SlowPointSearch): its `k`, and
/// the lengths of `states`, `m`, `v` (each `[K, S]`) and `status` (`[K]`).
#[derive(Clone, Copy, Debug)]
pub struct SearchLens {
    pub k: usize,
    pub states: usize,
    pub m: usize,
    pub v: usize,
    pub status: usize,
}

/// [`Backend::slow_point_iterations`](crate::Backend::slow_point_iterations): `params`,
/// the constant input `x [I]`, a search of `K ≥ 1` candidates with buffers `[K, S]` and
/// `K` statuses, then the config.
pub fn check_slow_point_iterations(
    cell: &CellDims,
    params: usize,
    x: usize,
    search: SearchLens,
    cfg: &SlowPointConfig,
) -> Result<()> {
    check_cell(cell)?;
    check_params(cell, params)?;
    let i = cell.input;
    check_len("x", i, x, || format!("one constant input [I={i}]"))?;
    let (k, s) = (search.k, cell.state_size());
    if k == 0 {
        return Err(Error::InvalidArgument(
            "a slow-point search needs at least one candidate state (K = 0)".into(),
        ));
    }
    let ks = mul(k, s, || format!("K = {k} candidates of S = {s}"))?;
    for (what, len) in [
        ("states", search.states),
        ("adam m", search.m),
        ("adam v", search.v),
    ] {
        check_len(what, ks, len, || format!("[K={k}, S={s}]"))?;
    }
    check_len("status", k, search.status, || {
        format!("one per candidate, K={k}")
    })?;
    cfg.validate()
}

/// Candidate states `[K, S]` for a slow-point search (Adam or Levenberg–Marquardt):
/// at least one, a whole number of states of `cell`, all finite. Returns `K`.
pub fn check_candidates(cell: &CellDims, candidates: &[f32]) -> Result<usize> {
    check_cell(cell)?;
    let sd = cell.state_size();
    if candidates.is_empty() {
        return Err(Error::InvalidArgument(
            "a slow-point search needs at least one candidate state (K = 0)".into(),
        ));
    }
    if candidates.len() % sd != 0 {
        return Err(Error::shape(
            "candidates",
            candidates.len().div_ceil(sd) * sd,
            candidates.len(),
            format!(
                "[K, S={sd}] for a {} cell with hidden {}{}",
                cell.kind,
                cell.hidden,
                if sd != cell.hidden {
                    " (states are [h | c])"
                } else {
                    ""
                }
            ),
        ));
    }
    crate::error::check_finite("candidates", candidates)?;
    Ok(candidates.len() / sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::CellKind;

    fn what(e: Error) -> String {
        match e {
            Error::Shape { what, .. } => what,
            other => panic!("expected a shape error, got {other}"),
        }
    }

    #[test]
    fn lengths_are_named() {
        let cell = CellDims::new(CellKind::Lstm, 3, 5).expect("dims");
        let shape = SeqShape::new(2, 4).expect("shape");
        let p = cell.layout().len();
        assert!(check_seq_forward(&cell, p, shape, 24, Some(40)).is_ok());
        let e = check_seq_forward(&cell, p, shape, 23, None).expect_err("x");
        assert_eq!(what(e), "x");
        let e = check_seq_forward(&cell, p, shape, 24, Some(20)).expect_err("s0");
        assert_eq!(what(e), "s0");
        let e = check_step_jvp(&cell, p, 20, 6, 19, 2).expect_err("v");
        assert_eq!(what(e), "v");
        let e = check_adam_update(7, 7, 7, 6, &AdamConfig::default()).expect_err("v");
        assert_eq!(what(e), "adam v");
    }

    #[test]
    fn empty_points_are_valid_and_zero_sizes_are_not() {
        let cell = CellDims::new(CellKind::Gru, 3, 5).expect("dims");
        let p = cell.layout().len();
        assert!(check_step_speed(&cell, p, 0, 0, 0).is_ok());
        assert!(check_step_jacobian(&cell, p, 0, 0, 0).is_ok());
        assert!(check_step_jvp(&cell, p, 0, 0, 0, 0).is_ok());
        assert!(check_adam_update(0, 0, 0, 0, &AdamConfig::default()).is_ok());
        let bad = CellDims { hidden: 0, ..cell };
        assert!(matches!(
            check_step_speed(&bad, 0, 0, 0, 0),
            Err(Error::Dimension(_))
        ));
        let shape = SeqShape { steps: 0, batch: 3 };
        assert!(matches!(
            check_seq_forward(&cell, p, shape, 0, None),
            Err(Error::Dimension(_))
        ));
        assert!(matches!(
            check_step_jacobian(&cell, p, 0, 0, usize::MAX / 2),
            Err(Error::Dimension(_))
        ));
    }
}
