//! The objective: readout, weighted softmax cross-entropy, and the speed penalty
//! (MATH.md §5–§6).
//!
//! # Normalisation
//!
//! `L = L_CE + λ · Σ_{i ∈ V} S(s_i, x_i)` with
//! - `L_CE = (1 / (B·T)) Σ_{b,t} w_{b,t} · CE(softmax(W_out h_{b,t} + b_out), y_{b,t})`: a
//!   **per-step mean** over the `B·T` (row, step) pairs, the report step weighted
//!   `w = T_max − 1` and every other step 1 (so a chance-level network starts near
//!   `2 (T−1)/T · ln 11 ≈ 4.6` at `T = 20`);
//! - the speed term a **sum over the points** of `V` (not a mean), each point with its own
//!   delay-period input `x_i` (noise drawn afresh every step, trigger 0).
//!
//! The paper's `λ = 1e-3` was stated for a cross-entropy about 1/11 of this one and 100
//! points; MATH.md §5 reports `λ ≈ 0.01` working at this normalisation with 100 points.
//!
//! Training runs the readout and cross-entropy on the backend (`Backend::readout_ce`,
//! see [`crate::train`]); [`readout_ce`] and [`speed_penalty_grad`] here are their host
//! definitions, generic over [`Real`], which the f64 gradient check and the comparison
//! with the former host training step (tests/backend_step.rs) run.

use crate::error::{config_err, Result};
use memrnn_core::{Backend, CellDims, Real};
use rayon::prelude::*;

/// What a batch's readout got right.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Accuracy {
    pub report_correct: usize,
    pub report_total: usize,
    pub silence_correct: usize,
    pub silence_total: usize,
}

impl Accuracy {
    pub fn report(&self) -> f64 {
        self.report_correct as f64 / self.report_total.max(1) as f64
    }
    pub fn silence(&self) -> f64 {
        self.silence_correct as f64 / self.silence_total.max(1) as f64
    }
    fn add(mut self, o: Accuracy) -> Accuracy {
        self.report_correct += o.report_correct;
        self.report_total += o.report_total;
        self.silence_correct += o.silence_correct;
        self.silence_total += o.silence_total;
        self
    }
}

/// The readout's cross-entropy on a batch and its gradients.
#[derive(Clone, Debug)]
pub struct CeGrad<T> {
    /// `L_CE` (per-step mean, see the module docs).
    pub loss: f64,
    /// `∂L_CE/∂h_t`, `[T, B, H]`.
    pub dh: Vec<T>,
    /// `∂L_CE/∂W_out`, `[C, H]`.
    pub dw: Vec<T>,
    /// `∂L_CE/∂b_out`, `[C]`.
    pub db: Vec<T>,
    pub accuracy: Accuracy,
}

/// The argmax of `W h + b` for each row of `h [rows, H]`.
pub fn predict<T: Real>(h: &[T], hidden: usize, w: &[T], b: &[T]) -> Vec<u8> {
    let classes = b.len();
    h.par_chunks(hidden)
        .map(|hr| {
            let mut best = (0usize, T::neg_infinity());
            for c in 0..classes {
                let row = &w[c * hidden..(c + 1) * hidden];
                let y = b[c] + row.iter().zip(hr).map(|(&a, &x)| a * x).sum::<T>();
                if y > best.1 {
                    best = (c, y);
                }
            }
            best.0 as u8
        })
        .collect()
}

/// Weighted softmax cross-entropy of the readout over `rows = T·B` rows of `h`, with its
/// gradients, normalised by `rows` (per-step mean).
pub fn readout_ce<T: Real>(
    h: &[T],
    hidden: usize,
    w: &[T],
    b: &[T],
    targets: &[u8],
    weights: &[f32],
) -> CeGrad<T> {
    let classes = b.len();
    let rows = targets.len();
    assert_eq!(h.len(), rows * hidden, "readout_ce: h has the wrong length");
    assert_eq!(
        weights.len(),
        rows,
        "readout_ce: weights have the wrong length"
    );
    let norm = T::from_f64(1.0 / rows as f64);
    const CHUNK: usize = 64;
    let mut dh = vec![T::zero(); rows * hidden];
    let parts: Vec<(f64, Vec<T>, Vec<T>, Accuracy)> = dh
        .par_chunks_mut(CHUNK * hidden)
        .enumerate()
        .map(|(ci, dh_chunk)| {
            let mut loss = 0f64;
            let mut dw = vec![T::zero(); classes * hidden];
            let mut db = vec![T::zero(); classes];
            let mut acc = Accuracy::default();
            let mut y = vec![T::zero(); classes];
            for (k, dhr) in dh_chunk.chunks_mut(hidden).enumerate() {
                let r = ci * CHUNK + k;
                let hr = &h[r * hidden..(r + 1) * hidden];
                for c in 0..classes {
                    let row = &w[c * hidden..(c + 1) * hidden];
                    y[c] = b[c] + row.iter().zip(hr).map(|(&a, &x)| a * x).sum::<T>();
                }
                let (mut arg, mut mx) = (0usize, y[0]);
                for (c, &v) in y.iter().enumerate() {
                    if v > mx {
                        mx = v;
                        arg = c;
                    }
                }
                let z: T = y.iter().map(|&v| (v - mx).exp()).sum();
                let tgt = targets[r] as usize;
                let wt = T::from_f64(weights[r] as f64);
                loss += (wt * (z.ln() + mx - y[tgt])).as_f64();
                if tgt == 0 {
                    acc.silence_total += 1;
                    acc.silence_correct += (arg == 0) as usize;
                } else {
                    acc.report_total += 1;
                    acc.report_correct += (arg == tgt) as usize;
                }
                dhr.iter_mut().for_each(|v| *v = T::zero());
                for c in 0..classes {
                    let p = (y[c] - mx).exp() / z;
                    let g = wt * norm * (p - if c == tgt { T::one() } else { T::zero() });
                    db[c] = db[c] + g;
                    let row = &w[c * hidden..(c + 1) * hidden];
                    let dwr = &mut dw[c * hidden..(c + 1) * hidden];
                    for j in 0..hidden {
                        dhr[j] = dhr[j] + g * row[j];
                        dwr[j] = dwr[j] + g * hr[j];
                    }
                }
            }
            (loss, dw, db, acc)
        })
        .collect();
    let mut loss = 0f64;
    let mut dw = vec![T::zero(); classes * hidden];
    let mut db = vec![T::zero(); classes];
    let mut accuracy = Accuracy::default();
    for (l, w_, b_, a) in parts {
        loss += l;
        dw.iter_mut().zip(&w_).for_each(|(o, &v)| *o = *o + v);
        db.iter_mut().zip(&b_).for_each(|(o, &v)| *o = *o + v);
        accuracy = accuracy.add(a);
    }
    CeGrad {
        loss: loss / rows as f64,
        dh,
        dw,
        db,
        accuracy,
    }
}

/// A set `V` of constant states `[N, S]` where memory should not move: slow points, class
/// means, or trajectory states. Build one from any source with [`SpeedSet::new`]; this is
/// where a slow-point finder plugs in.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedSet {
    /// `[N, S]`, row-major.
    pub states: Vec<f32>,
    pub n: usize,
    pub state_size: usize,
    /// Where the points came from ("class means", "slow points", ...), for reports.
    pub source: String,
}

impl SpeedSet {
    pub fn new(states: Vec<f32>, state_size: usize, source: impl Into<String>) -> Result<Self> {
        if state_size == 0 || states.is_empty() || states.len() % state_size != 0 {
            return config_err(format!(
                "a speed set needs N ≥ 1 states of size S = {state_size} ([N, S] row-major); got {} values",
                states.len()
            ));
        }
        if let Some(i) = states.iter().position(|v| !v.is_finite()) {
            return config_err(format!("speed set state value {i} is not finite"));
        }
        Ok(SpeedSet {
            n: states.len() / state_size,
            states,
            state_size,
            source: source.into(),
        })
    }

    /// Each point repeated `copies` times (each copy gets its own noise input).
    pub fn replicate(&self, copies: usize) -> SpeedSet {
        let mut states = Vec::with_capacity(self.states.len() * copies);
        for row in self.states.chunks_exact(self.state_size) {
            for _ in 0..copies {
                states.extend_from_slice(row);
            }
        }
        SpeedSet {
            n: self.n * copies,
            states,
            state_size: self.state_size,
            source: format!("{} ×{copies}", self.source),
        }
    }

    /// Checks that the points fit `cell`.
    pub fn check(&self, cell: &CellDims) -> Result<()> {
        if self.state_size != cell.state_size() {
            return config_err(format!(
                "the speed set's states have size {} but the {} cell's state has size {}",
                self.state_size,
                cell.kind,
                cell.state_size()
            ));
        }
        Ok(())
    }
}

/// The speed penalty `λ · Σ_i S(s_i, x_i)`.
#[derive(Clone, Debug)]
pub struct SpeedPenalty {
    pub lambda: f32,
    pub set: SpeedSet,
}

impl SpeedPenalty {
    /// `λ` must be finite and ≥ 0.
    pub fn new(lambda: f32, set: SpeedSet) -> Result<Self> {
        check_lambda(lambda)?;
        Ok(SpeedPenalty { lambda, set })
    }
}

/// `λ < 0` (or NaN) rewards speed and is an error.
pub fn check_lambda(lambda: f32) -> Result<()> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        return config_err(format!(
            "λ = {lambda}: the speed penalty's weight must be finite and ≥ 0 (a negative λ would reward fast states); use 0 for the control run"
        ));
    }
    Ok(())
}

/// The penalty's value `λ Σ S` (and `Σ S`) and its parameter gradient `λ Σ ∂S/∂θ` on the
/// host, for inputs `x [N, I]`.
pub fn speed_penalty_grad<B: Backend>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    penalty: &SpeedPenalty,
    x: &[f32],
) -> Result<(f64, f64, Vec<f32>)> {
    penalty.set.check(cell)?;
    let states = backend.upload(&penalty.set.states)?;
    let xt = backend.upload(x)?;
    let g = backend.step_speed_grad(cell, params, &states, &xt, penalty.set.n, true)?;
    let speeds = backend.download(&g.speed)?;
    let sum: f64 = speeds.iter().map(|&v| v as f64).sum();
    let mut d = match g.dparams {
        Some(d) => backend.download(&d)?,
        None => {
            return Err(memrnn_core::Error::Backend {
                backend: backend.name(),
                reason: "step_speed_grad returned no parameter gradient although one was asked for"
                    .into(),
            }
            .into())
        }
    };
    d.iter_mut().for_each(|v| *v *= penalty.lambda);
    Ok((penalty.lambda as f64 * sum, sum, d))
}

/// Mean speed `S` of the set's points under `params`, with inputs `x [N, I]`.
pub fn mean_speed<B: Backend>(
    backend: &B,
    cell: &CellDims,
    params: &B::Tensor,
    set: &SpeedSet,
    x: &[f32],
) -> Result<f64> {
    set.check(cell)?;
    let states = backend.upload(&set.states)?;
    let xt = backend.upload(x)?;
    let s = backend.download(&backend.step_speed(cell, params, &states, &xt, set.n)?)?;
    Ok(s.iter().map(|&v| v as f64).sum::<f64>() / set.n as f64)
}
