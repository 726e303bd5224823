//! The reference implementation: plain loops, generic over f32 and f64, one batch row at
//! a time, gates recomputed in the backward pass rather than cached. Obviously correct
//! beats fast here: every other backend is tested against it, and it is tested against
//! finite differences (f64) and PyTorch (fixtures from `tests/fixtures/make_fixtures.py`).
//!
//! Per-cell gate math lives in [`rnn`], [`gru`], [`lstm`]; this module does the affine
//! products, one step forward and backward, and the speed and Jacobian of MATH.md §4.
//! [`seq`] runs whole sequences (forward and backpropagation through time).

pub mod gru;
pub mod jvp;
pub mod lstm;
pub mod readout;
pub mod rnn;
pub mod seq;

pub use jvp::step_jvp;
pub use seq::{seq_backward, seq_forward, RefForward, RefGrads};

use memrnn_core::{
    check_len, CellDims, CellKind, ParamView, ParamViewMut, Real, Result, SpeedGrad,
};

/// `out = W v + b` for `W [rows, cols]` row-major.
pub(crate) fn affine<T: Real>(w: &[T], b: &[T], v: &[T], out: &mut [T]) {
    let cols = v.len();
    for (r, o) in out.iter_mut().enumerate() {
        let row = &w[r * cols..(r + 1) * cols];
        *o = b[r] + row.iter().zip(v).map(|(&a, &x)| a * x).sum::<T>();
    }
}

/// `out += Wᵀ d` for `W [rows, cols]` row-major, `d [rows]`, `out [cols]`.
pub(crate) fn affine_t_acc<T: Real>(w: &[T], d: &[T], out: &mut [T]) {
    let cols = out.len();
    for (r, &dr) in d.iter().enumerate() {
        let row = &w[r * cols..(r + 1) * cols];
        for (o, &wv) in out.iter_mut().zip(row) {
            *o = *o + dr * wv;
        }
    }
}

/// `dw += d ⊗ v`, `db += d`.
pub(crate) fn outer_acc<T: Real>(dw: &mut [T], db: &mut [T], d: &[T], v: &[T]) {
    let cols = v.len();
    for (r, &dr) in d.iter().enumerate() {
        db[r] = db[r] + dr;
        let row = &mut dw[r * cols..(r + 1) * cols];
        for (o, &x) in row.iter_mut().zip(v) {
            *o = *o + dr * x;
        }
    }
}

/// The input and recurrent pre-activations `a = W_ih x + b_ih`, `u = W_hh h + b_hh`.
fn pre_activations<T: Real>(
    cell: &CellDims,
    p: &ParamView<'_, T>,
    s: &[T],
    x: &[T],
) -> (Vec<T>, Vec<T>) {
    let gh = cell.gate_rows();
    let mut a = vec![T::zero(); gh];
    let mut u = vec![T::zero(); gh];
    affine(p.w_ih, p.b_ih, x, &mut a);
    affine(p.w_hh, p.b_hh, &s[..cell.hidden], &mut u);
    (a, u)
}

/// One step `s_new = F(s, x)` for one row: `s [S]`, `x [I]`, `s_new [S]`.
pub fn step<T: Real>(cell: &CellDims, p: &ParamView<'_, T>, s: &[T], x: &[T], s_new: &mut [T]) {
    let (a, u) = pre_activations(cell, p, s, x);
    match cell.kind {
        CellKind::Rnn => rnn::gates_forward(&a, &u, s_new),
        CellKind::Gru => gru::gates_forward(&a, &u, s, s_new),
        CellKind::Lstm => lstm::gates_forward(&a, &u, s, s_new),
    }
}

/// The backward pass of one step for one row: given `ds_new = ∂L/∂F(s, x)`, overwrites
/// `ds = ∂L/∂s`, accumulates the parameter gradients into `grad`, and, when given,
/// overwrites `dx = ∂L/∂x`.
#[allow(clippy::too_many_arguments)]
pub fn step_backward<T: Real>(
    cell: &CellDims,
    p: &ParamView<'_, T>,
    s: &[T],
    x: &[T],
    ds_new: &[T],
    ds: &mut [T],
    dx: Option<&mut [T]>,
    grad: Option<&mut ParamViewMut<'_, T>>,
) {
    let gh = cell.gate_rows();
    let (a, u) = pre_activations(cell, p, s, x);
    let mut da = vec![T::zero(); gh];
    let mut du = vec![T::zero(); gh];
    match cell.kind {
        CellKind::Rnn => rnn::gates_backward(&a, &u, ds_new, &mut da, &mut du, ds),
        CellKind::Gru => gru::gates_backward(&a, &u, s, ds_new, &mut da, &mut du, ds),
        CellKind::Lstm => lstm::gates_backward(&a, &u, s, ds_new, &mut da, &mut du, ds),
    }
    affine_t_acc(p.w_hh, &du, &mut ds[..cell.hidden]);
    if let Some(dx) = dx {
        dx.iter_mut().for_each(|v| *v = T::zero());
        affine_t_acc(p.w_ih, &da, dx);
    }
    if let Some(g) = grad {
        outer_acc(g.w_ih, g.b_ih, &da, x);
        outer_acc(g.w_hh, g.b_hh, &du, &s[..cell.hidden]);
    }
}

fn check_points<T>(cell: &CellDims, params: &[T], states: &[T], x: &[T], n: usize) -> Result<()> {
    cell.layout().check("params", params.len())?;
    check_len("states", n * cell.state_size(), states.len(), || {
        format!("[N={n}, S={}]", cell.state_size())
    })?;
    check_len("x", n * cell.input, x.len(), || {
        format!("[N={n}, I={}]", cell.input)
    })
}

/// `S_n = ‖F(s_n, x_n) − s_n‖²` for `N` points.
pub fn step_speed<T: Real>(
    cell: &CellDims,
    params: &[T],
    states: &[T],
    x: &[T],
    n: usize,
) -> Result<Vec<T>> {
    check_points(cell, params, states, x, n)?;
    let p = cell.layout().split(params);
    let (sd, id) = (cell.state_size(), cell.input);
    let mut next = vec![T::zero(); sd];
    Ok((0..n)
        .map(|k| {
            let s = &states[k * sd..(k + 1) * sd];
            step(cell, &p, s, &x[k * id..(k + 1) * id], &mut next);
            next.iter().zip(s).map(|(&f, &v)| (f - v) * (f - v)).sum()
        })
        .collect())
}

/// The speed of `N` points and its gradients: the trait's [`SpeedGrad`] on host vectors.
pub type RefSpeedGrad<T> = SpeedGrad<Vec<T>>;

/// The speed of `N` points, `∂S_n/∂s_n = 2 (J − I)ᵀ (F(s_n) − s_n)`, and, when asked,
/// `Σ_n ∂S_n/∂θ`.
pub fn step_speed_grad<T: Real>(
    cell: &CellDims,
    params: &[T],
    states: &[T],
    x: &[T],
    n: usize,
    want_dparams: bool,
) -> Result<RefSpeedGrad<T>> {
    check_points(cell, params, states, x, n)?;
    let layout = cell.layout();
    let p = layout.split(params);
    let (sd, id) = (cell.state_size(), cell.input);
    let mut speeds = vec![T::zero(); n];
    let mut dstate = vec![T::zero(); n * sd];
    let mut dparams = want_dparams.then(|| vec![T::zero(); layout.len()]);
    let mut next = vec![T::zero(); sd];
    let two = T::from_f64(2.0);
    for k in 0..n {
        let s = &states[k * sd..(k + 1) * sd];
        let xk = &x[k * id..(k + 1) * id];
        step(cell, &p, s, xk, &mut next);
        let e: Vec<T> = next.iter().zip(s).map(|(&f, &v)| f - v).collect();
        speeds[k] = e.iter().map(|&v| v * v).sum();
        let ds_new: Vec<T> = e.iter().map(|&v| two * v).collect();
        let ds = &mut dstate[k * sd..(k + 1) * sd];
        let mut g = dparams.as_mut().map(|d| layout.split_mut(d));
        step_backward(cell, &p, s, xk, &ds_new, ds, None, g.as_mut());
        for (d, &gn) in ds.iter_mut().zip(&ds_new) {
            *d = *d - gn;
        }
    }
    Ok(RefSpeedGrad {
        speed: speeds,
        dstate,
        dparams,
    })
}

/// The one-step Jacobians `J_n = ∂F/∂s` at `N` points, `[N, S, S]`, row `i` = `∂F_i/∂s`,
/// one vector–Jacobian product per row.
pub fn step_jacobian<T: Real>(
    cell: &CellDims,
    params: &[T],
    states: &[T],
    x: &[T],
    n: usize,
) -> Result<Vec<T>> {
    check_points(cell, params, states, x, n)?;
    let p = cell.layout().split(params);
    let (sd, id) = (cell.state_size(), cell.input);
    let mut out = vec![T::zero(); n * sd * sd];
    let mut unit = vec![T::zero(); sd];
    for k in 0..n {
        let s = &states[k * sd..(k + 1) * sd];
        let xk = &x[k * id..(k + 1) * id];
        for i in 0..sd {
            unit[i] = T::one();
            let row = &mut out[(k * sd + i) * sd..(k * sd + i + 1) * sd];
            step_backward(cell, &p, s, xk, &unit, row, None, None);
            unit[i] = T::zero();
        }
    }
    Ok(out)
}
