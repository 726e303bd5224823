//! The readout's weighted softmax cross-entropy on the fast path (f32 with an f64 loss):
//! rows in chunks of [`CHUNK`] over rayon, each chunk's readout gradients summed in row
//! order and the chunks' sums added in chunk order, so the result does not depend on the
//! thread count. The arithmetic (and its order) is memrnn-train's former host readout's,
//! so the trainer's numbers did not move when the readout came onto the backend.

use memrnn_core::{CeStat, CE_STATS};
use rayon::prelude::*;

/// Rows per rayon task.
const CHUNK: usize = 64;

/// The class a target value names, or `None` when it is not a whole number in `0..classes`.
pub(crate) fn target_class(t: f32, classes: usize) -> Option<usize> {
    (t >= 0.0 && t < classes as f32 && t.fract() == 0.0).then_some(t as usize)
}

/// `(dh [rows, H], dreadout [C·H + C], stats [CE_STATS])`; see `Backend::readout_ce`.
pub fn readout_ce(
    hidden: usize,
    classes: usize,
    h: &[f32],
    readout: &[f32],
    targets: &[f32],
    weights: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = targets.len();
    let (w, b) = readout.split_at(classes * hidden);
    let norm = (1.0 / rows.max(1) as f64) as f32;
    // (loss, dW, db, [report_correct, report_total, silence_correct, silence_total])
    type Part = (f64, Vec<f32>, Vec<f32>, [usize; 4]);
    let mut dh = vec![0f32; rows * hidden];
    let parts: Vec<Part> = dh
        .par_chunks_mut(CHUNK * hidden)
        .enumerate()
        .map(|(ci, dh_chunk)| {
            let mut loss = 0f64;
            let mut dw = vec![0f32; classes * hidden];
            let mut db = vec![0f32; classes];
            let mut acc = [0usize; 4];
            let mut y = vec![0f32; classes];
            for (k, dhr) in dh_chunk.chunks_mut(hidden).enumerate() {
                let r = ci * CHUNK + k;
                let hr = &h[r * hidden..(r + 1) * hidden];
                for c in 0..classes {
                    let row = &w[c * hidden..(c + 1) * hidden];
                    y[c] = b[c] + row.iter().zip(hr).map(|(&a, &x)| a * x).sum::<f32>();
                }
                let (mut arg, mut mx) = (0usize, y[0]);
                for (c, &v) in y.iter().enumerate() {
                    if v > mx {
                        mx = v;
                        arg = c;
                    }
                }
                let z: f32 = y.iter().map(|&v| (v - mx).exp()).sum();
                let wt = weights[r];
                let Some(tgt) = target_class(targets[r], classes) else {
                    // Not a class: the loss and this row's gradients say so.
                    loss = f64::NAN;
                    dhr.iter_mut().for_each(|v| *v = f32::NAN);
                    dw.iter_mut().for_each(|v| *v = f32::NAN);
                    db.iter_mut().for_each(|v| *v = f32::NAN);
                    continue;
                };
                loss += (wt * (z.ln() + mx - y[tgt])) as f64;
                if tgt == 0 {
                    acc[3] += 1;
                    acc[2] += (arg == 0) as usize;
                } else {
                    acc[1] += 1;
                    acc[0] += (arg == tgt) as usize;
                }
                dhr.iter_mut().for_each(|v| *v = 0.0);
                for c in 0..classes {
                    let p = (y[c] - mx).exp() / z;
                    let g = wt * norm * (p - if c == tgt { 1.0 } else { 0.0 });
                    db[c] += g;
                    let row = &w[c * hidden..(c + 1) * hidden];
                    let dwr = &mut dw[c * hidden..(c + 1) * hidden];
                    for j in 0..hidden {
                        dhr[j] += g * row[j];
                        dwr[j] += g * hr[j];
                    }
                }
            }
            (loss, dw, db, acc)
        })
        .collect();
    let mut loss = 0f64;
    let mut dw = vec![0f32; classes * hidden];
    let mut db = vec![0f32; classes];
    let mut acc = [0usize; 4];
    for (l, w_, b_, a) in parts {
        loss += l;
        dw.iter_mut().zip(&w_).for_each(|(o, &v)| *o += v);
        db.iter_mut().zip(&b_).for_each(|(o, &v)| *o += v);
        acc.iter_mut().zip(a).for_each(|(o, v)| *o += v);
    }
    let mut stats = vec![0f32; CE_STATS];
    stats[CeStat::Loss as usize] = (loss / rows.max(1) as f64) as f32;
    stats[CeStat::ReportCorrect as usize] = acc[0] as f32;
    stats[CeStat::ReportTotal as usize] = acc[1] as f32;
    stats[CeStat::SilenceCorrect as usize] = acc[2] as f32;
    stats[CeStat::SilenceTotal as usize] = acc[3] as f32;
    dw.extend_from_slice(&db);
    (dh, dw, stats)
}

/// `[rows]`: the first largest logit's class of each row of `h [rows, H]` as f32, in the
/// arithmetic of memrnn-train's host `predict` (each logit `b_c + Σ_j W_cj h_j` summed in
/// `j` order; a strict `>` scan from −∞, so NaN never wins and an all-NaN row answers 0),
/// so that evaluation's scores did not move when scoring came onto the backend.
pub fn readout_argmax(hidden: usize, classes: usize, h: &[f32], readout: &[f32]) -> Vec<f32> {
    let (w, b) = readout.split_at(classes * hidden);
    h.par_chunks(hidden)
        .map(|hr| {
            let mut best = (0usize, f32::NEG_INFINITY);
            for c in 0..classes {
                let row = &w[c * hidden..(c + 1) * hidden];
                let y = b[c] + row.iter().zip(hr).map(|(&a, &x)| a * x).sum::<f32>();
                if y > best.1 {
                    best = (c, y);
                }
            }
            best.0 as f32
        })
        .collect()
}
