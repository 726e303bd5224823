//! Hand-built tanh RNNs with known dynamics: the known answers of the tests and examples.

use memrnn_core::{CellDims, CellKind, Error, Model, Result};

fn rnn(input: usize, hidden: usize) -> Result<Model> {
    let cell = CellDims::new(CellKind::Rnn, input, hidden)?;
    Ok(Model {
        cell,
        params: vec![0.0; cell.layout().len()],
        readout: None,
    })
}

/// `h' = tanh(W_ih x + W_hh h)` with `W_ih [H, I]` and `W_hh [H, H]` given row-major,
/// zero biases.
pub fn tanh_rnn(w_ih: &[f32], w_hh: &[f32], input: usize, hidden: usize) -> Result<Model> {
    let mut m = rnn(input, hidden)?;
    let l = m.layout();
    let v = l.split_mut(&mut m.params);
    if w_ih.len() != v.w_ih.len() || w_hh.len() != v.w_hh.len() {
        return Err(Error::InvalidArgument(format!(
            "tanh_rnn: W_ih must be [{hidden}, {input}] and W_hh [{hidden}, {hidden}], got {} and {} values",
            w_ih.len(),
            w_hh.len()
        )));
    }
    v.w_ih.copy_from_slice(w_ih);
    v.w_hh.copy_from_slice(w_hh);
    Ok(m)
}

/// `W_hh = w·I`, `W_ih [H, I]` given, zero biases: each unit `h_j' = tanh(w h_j + (W_ih x)_j)`.
/// For `b = 0` and no input: `0 < w < 1` one stable fixed point at 0 (decay rate `w`),
/// `w > 1` two stable fixed points `±h*` per unit (`h* = tanh(w h*)`), `w < −1` a 2-cycle
/// `±h*` per unit.
pub fn scaled_identity(w: f32, w_ih: &[f32], input: usize, hidden: usize) -> Result<Model> {
    let mut w_hh = vec![0.0; hidden * hidden];
    for j in 0..hidden {
        w_hh[j * hidden + j] = w;
    }
    tanh_rnn(w_ih, &w_hh, input, hidden)
}

/// A shift register of `length` stages over one-hot inputs of `classes` symbols:
/// `H = length · classes`, stage 0 `= tanh(gain · x)`, stage `k = tanh(gain · stage k−1)`,
/// so `h_t` holds the inputs of steps `t, t−1, …, t−length+1` and nothing older.
pub fn shift_register(classes: usize, length: usize, gain: f32) -> Result<Model> {
    if classes == 0 || length == 0 {
        return Err(Error::InvalidArgument(
            "a shift register needs at least one class and one stage".into(),
        ));
    }
    let h = classes * length;
    let mut w_ih = vec![0.0; h * classes];
    for c in 0..classes {
        w_ih[c * classes + c] = gain;
    }
    let mut w_hh = vec![0.0; h * h];
    for k in 1..length {
        for c in 0..classes {
            let (to, from) = (k * classes + c, (k - 1) * classes + c);
            w_hh[to * h + from] = gain;
        }
    }
    tanh_rnn(&w_ih, &w_hh, classes, h)
}
