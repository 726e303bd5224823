//! Sequences through the reference: forward, and backpropagation through time with loss
//! gradients on any subset of steps.

use super::{step, step_backward};
use memrnn_core::{check_len, CellDims, Real, Result, SeqGrads, SeqShape, SeqUpstream};

/// A forward pass: the fields of the `Backend` trait's `SeqForward` (`h_seq`, `s_final`),
/// plus every state, `s_0` included, which the reference backward needs.
#[derive(Clone, Debug)]
pub struct RefForward<T> {
    /// `h_t` for `t = 1..=T`, `[T, B, H]`.
    pub h_seq: Vec<T>,
    /// The final state `s_T`, `[B, S]`.
    pub s_final: Vec<T>,
    /// `s_t` for `t = 0..=T`, `[T + 1, B, S]`.
    pub states: Vec<T>,
}

/// Gradients of a sequence: the trait's [`SeqGrads`] (`∂L/∂θ` in ParamLayout order,
/// `∂L/∂s_0`, and `∂L/∂x` if asked) on host vectors.
pub type RefGrads<T> = SeqGrads<Vec<T>>;

/// Runs the sequence `x [T, B, I]` from `s0 [B, S]` (zeros when `None`).
pub fn seq_forward<T: Real>(
    cell: &CellDims,
    params: &[T],
    shape: SeqShape,
    x: &[T],
    s0: Option<&[T]>,
) -> Result<RefForward<T>> {
    cell.layout().check("params", params.len())?;
    shape.check_inputs(cell, x.len(), s0.map(<[T]>::len))?;
    let p = cell.layout().split(params);
    let (b, sd, hd, id) = (shape.batch, cell.state_size(), cell.hidden, cell.input);
    let mut states = vec![T::zero(); (shape.steps + 1) * b * sd];
    if let Some(s0) = s0 {
        states[..b * sd].copy_from_slice(s0);
    }
    let mut h_seq = vec![T::zero(); shape.steps * b * hd];
    for t in 0..shape.steps {
        let (done, rest) = states.split_at_mut((t + 1) * b * sd);
        let prev = &done[t * b * sd..];
        for r in 0..b {
            let s = &prev[r * sd..(r + 1) * sd];
            let xr = &x[(t * b + r) * id..(t * b + r + 1) * id];
            let out = &mut rest[r * sd..(r + 1) * sd];
            step(cell, &p, s, xr, out);
            h_seq[(t * b + r) * hd..(t * b + r + 1) * hd].copy_from_slice(&out[..hd]);
        }
    }
    let s_final = states[shape.steps * b * sd..].to_vec();
    Ok(RefForward {
        h_seq,
        s_final,
        states,
    })
}

/// Backpropagation through time, with the `Backend` trait's upstream: `dh_seq [T, B, H]`
/// holds `∂L/∂h_t` (zeros where a step carries no loss) and `ds_final [B, S]` holds
/// `∂L/∂s_T`; either may be absent.
pub fn seq_backward<T: Real>(
    cell: &CellDims,
    params: &[T],
    shape: SeqShape,
    x: &[T],
    fwd: &RefForward<T>,
    upstream: SeqUpstream<'_, [T]>,
    want_dx: bool,
) -> Result<RefGrads<T>> {
    let SeqUpstream { dh_seq, ds_final } = upstream;
    let layout = cell.layout();
    layout.check("params", params.len())?;
    shape.check_inputs(cell, x.len(), None)?;
    let (b, sd, hd, id) = (shape.batch, cell.state_size(), cell.hidden, cell.input);
    check_len(
        "forward states",
        (shape.steps + 1) * b * sd,
        fwd.states.len(),
        || "the forward pass must come from the same cell and shape".into(),
    )?;
    if let Some(d) = dh_seq {
        check_len("dh_seq", shape.rows() * hd, d.len(), || {
            format!("[T={}, B={b}, H={hd}]", shape.steps)
        })?;
    }
    if let Some(d) = ds_final {
        check_len("ds_final", b * sd, d.len(), || format!("[B={b}, S={sd}]"))?;
    }
    let p = layout.split(params);
    let mut dparams = vec![T::zero(); layout.len()];
    let mut dx = want_dx.then(|| vec![T::zero(); shape.rows() * id]);
    // `carry` holds ∂L/∂s_t for the step being processed, one row per batch entry.
    let mut carry = match ds_final {
        Some(d) => d.to_vec(),
        None => vec![T::zero(); b * sd],
    };
    let mut ds_new = vec![T::zero(); sd];
    for t in (0..shape.steps).rev() {
        let prev = &fwd.states[t * b * sd..(t + 1) * b * sd];
        for r in 0..b {
            ds_new.copy_from_slice(&carry[r * sd..(r + 1) * sd]);
            if let Some(d) = dh_seq {
                let row = &d[(t * b + r) * hd..(t * b + r + 1) * hd];
                for (g, &v) in ds_new[..hd].iter_mut().zip(row) {
                    *g = *g + v;
                }
            }
            let xr = &x[(t * b + r) * id..(t * b + r + 1) * id];
            let dxr = dx
                .as_mut()
                .map(|d| &mut d[(t * b + r) * id..(t * b + r + 1) * id]);
            let mut g = layout.split_mut(&mut dparams);
            step_backward(
                cell,
                &p,
                &prev[r * sd..(r + 1) * sd],
                xr,
                &ds_new,
                &mut carry[r * sd..(r + 1) * sd],
                dxr,
                Some(&mut g),
            );
        }
    }
    Ok(RefGrads {
        dparams,
        ds0: carry,
        dx,
    })
}
