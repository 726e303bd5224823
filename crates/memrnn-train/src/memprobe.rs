//! The memory curve at long lags: how well a linear probe reads the digit shown at step 0
//! from the hidden state `lag` steps later, at log-spaced lags up to the longest delay
//! (the lags-0–20 curve of `memrnn diagnose` ends at its window, 0.9 on a network that
//! still remembers after 1000 steps).
//!
//! Trials as the other delay-period sources (digit at `t = 0`, noise after, no trigger;
//! Philox keyed by the seed; drawn on the backend with `task_chunk`), run forward in
//! chunks so memory stays bounded; at each lag
//! the states are probed by `memrnn_diagnostics::memory_curve` (ridge regression on the
//! first half of the trials, accuracy on the second half), the lag-0 case of which is
//! exactly "read the class from this one state".

use crate::error::{config_err, Result};
use crate::task::{digit_table, DigitSet, TaskConfig};
use memrnn_core::{Backend, Model, SeqShape, TaskChunkSpec};
use memrnn_diagnostics::{memory_curve, MemoryConfig, ProbeData};
use serde::{Deserialize, Serialize};

/// The probe accuracy at each lag, and how far memory reaches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongMemory {
    pub lags: Vec<usize>,
    /// Held-out probe accuracy at each lag (chance 0.1).
    pub accuracy: Vec<f64>,
    /// The longest probed lag at which the probe keeps at least half of its lag-1 margin
    /// over chance (accuracy ≥ 0.1 + (acc₁ − 0.1)/2): a memory half-life in steps; 0 when
    /// the lag-1 probe is at chance.
    pub span: usize,
    /// The probe is still above the threshold at the last lag probed: the memory reaches
    /// past the window, and `span` is a lower bound, not a measurement.
    pub past_window: bool,
}

impl LongMemory {
    /// One line for the diagnostics table: the span, as a lower bound when the probe
    /// still reads the digit at the last lag.
    pub fn summary(&self) -> String {
        let last = self.lags.last().copied().unwrap_or(0);
        let at = |i: usize| self.accuracy.get(i).copied().unwrap_or(f64::NAN);
        let reach = if self.past_window {
            format!(
                "≥ {} steps (still read at lag {last}: past the window)",
                self.span
            )
        } else {
            format!("{} steps", self.span)
        };
        format!(
            "  memory at long lags: half-margin span {reach}; probe accuracy {:.3} at lag 1, {:.3} at lag {last}",
            at(0),
            at(self.accuracy.len().saturating_sub(1)),
        )
    }
}

/// Chance for ten classes.
const CHANCE: f64 = 0.1;

/// Lags 1, 2, 4, … (×2) up to `max`, and `max` itself.
pub fn log_lags(max: usize) -> Vec<usize> {
    let mut v = vec![];
    let mut l = 1;
    while l < max {
        v.push(l);
        l *= 2;
    }
    if max >= 1 {
        v.push(max);
    }
    v
}

/// The span and whether it reaches past the window, from the accuracies at `lags`
/// (ascending): the last lag at or above half the lag-1 margin over chance (a single
/// noisy dip does not cut it short), past the window when the last lag still is.
pub fn span_of(lags: &[usize], accuracy: &[f64]) -> (usize, bool) {
    let Some(&first) = accuracy.first() else {
        return (0, false);
    };
    if first <= CHANCE {
        return (0, false);
    }
    let threshold = CHANCE + (first - CHANCE) / 2.0;
    let kept: Vec<usize> = lags
        .iter()
        .zip(accuracy)
        .filter(|(_, &a)| a >= threshold)
        .map(|(&l, _)| l)
        .collect();
    let span = kept.last().copied().unwrap_or(0);
    (span, span == *lags.last().unwrap_or(&0))
}

/// Probes `model` at [`log_lags`]`(max_lag)` over `trials` trials (at least 20; half
/// train the probe, half score it).
pub fn long_memory<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    trials: usize,
    max_lag: usize,
    seed: u64,
) -> Result<LongMemory> {
    if trials < 20 || max_lag == 0 || max_lag > crate::eval::MAX_DELAY {
        return config_err(format!(
            "a long-lag memory probe needs at least 20 trials and a lag of 1 to {}; got {trials} trials, lag {max_lag}",
            crate::eval::MAX_DELAY
        ));
    }
    let cell = model.cell;
    let h = cell.hidden;
    let params = backend.upload(&model.params)?;
    let digits = digit_table(backend, set)?;
    // Steps t0 .. t0 + len of the trials (image at 0, no trigger), drawn on the backend.
    let steps = |t0: usize, len: usize| TaskChunkSpec {
        seed,
        step: 0,
        batch: trials,
        t0,
        len,
        t_read: 0,
        t_report: None,
        noise_mean: task.noise_mean,
        noise_std: task.noise_std,
    };
    let tr = steps(0, 1).trials(digits.counts());
    let labels: Vec<Option<usize>> = tr.iter().map(|t| Some(t.digit as usize)).collect();
    let lags = log_lags(max_lag);
    let mut accuracy = vec![];
    let mut state: Option<B::Tensor> = None;
    let mut t = 0usize; // steps run; the state after step t−1 is `lag = t − 1` after the image
    let chunk = 64;
    let probe = MemoryConfig {
        max_delay: 0,
        ..MemoryConfig::default()
    };
    for &lag in &lags {
        // Run up to and including step `lag` (the image is step 0).
        while t <= lag {
            let len = (lag + 1 - t).min(chunk);
            let shape = SeqShape::new(len, trials)?;
            let xt = backend.task_chunk(&digits, &steps(t, len))?;
            let f = backend.seq_forward(&cell, &params, shape, &xt, state.as_ref())?;
            t += len;
            if t == lag + 1 {
                // h at the last step of this chunk: the state `lag` steps after the image.
                let hs = backend.download(&f.h_seq)?;
                let last = &hs[(len - 1) * trials * h..len * trials * h];
                let curve = memory_curve(
                    &ProbeData {
                        features: last,
                        labels: &labels,
                        shape: SeqShape::new(1, trials)?,
                        dim: h,
                        classes: 10,
                    },
                    &probe,
                )?;
                accuracy.push(curve.accuracy.first().copied().unwrap_or(f64::NAN));
            }
            state = Some(f.s_final);
        }
    }
    let (span, past_window) = span_of(&lags, &accuracy);
    Ok(LongMemory {
        lags,
        accuracy,
        span,
        past_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_and_spans() {
        assert_eq!(log_lags(1), vec![1]);
        assert_eq!(log_lags(10), vec![1, 2, 4, 8, 10]);
        assert_eq!(log_lags(16), vec![1, 2, 4, 8, 16]);
        let lags = [1, 2, 4, 8];
        // Lag-1 margin 0.8 over chance: the threshold is 0.1 + 0.4 = 0.5.
        // Falls below at 4 and 8: span 2, within the window.
        assert_eq!(span_of(&lags, &[0.9, 0.6, 0.45, 0.2]), (2, false));
        // A dip at 2 does not cut it short: span 4.
        assert_eq!(span_of(&lags, &[0.9, 0.45, 0.6, 0.3]), (4, false));
        // At or above 0.5 at the last lag: at least 8, past the window.
        assert_eq!(span_of(&lags, &[0.9, 0.9, 0.8, 0.5]), (8, true));
        // The lag-1 probe at chance: no memory to measure.
        assert_eq!(span_of(&lags, &[0.1, 0.9, 0.9, 0.9]), (0, false));
        assert_eq!(span_of(&[], &[]), (0, false));
    }

    #[test]
    fn the_summary_says_when_the_span_is_a_lower_bound() {
        let m = |accuracy: Vec<f64>, span, past_window| LongMemory {
            lags: vec![1, 2, 4],
            accuracy,
            span,
            past_window,
        };
        let s = m(vec![0.9, 0.8, 0.7], 4, true).summary();
        assert!(
            s.contains("≥ 4 steps") && s.contains("past the window"),
            "{s}"
        );
        assert!(s.contains("0.900 at lag 1, 0.700 at lag 4"), "{s}");
        let s = m(vec![0.9, 0.3, 0.1], 1, false).summary();
        assert!(s.contains("span 1 steps;") && !s.contains("past"), "{s}");
    }
}
