//! Memory curves (Zhang, Li, Hua & Song): how well a linear probe reads, from the state
//! at step `t`, the class of the input shown at step `t − d`, as a curve over `d`.
//!
//! For each delay `d` the samples are the pairs `(t, b)` with `t ≥ min_step`, `t ≥ d` and
//! a label at `(t − d, b)`; the features are `h_t` of trial `b` with a constant 1
//! appended. A ridge regression on one-hot targets, `W = (XᵀX + nαI')⁻¹ XᵀY` over `n` samples (the bias
//! not penalised; a Cholesky solve in f64), is fitted on the training trials and scored
//! by arg-max accuracy on the held-out trials.

use crate::linalg::cholesky_solve;
use crate::net::Net;
use memrnn_core::{check_len, Backend, Error, Result, SeqShape};
use serde::{Deserialize, Serialize};

/// What a memory curve measures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryConfig {
    /// Delays `0..=max_delay`.
    pub max_delay: usize,
    /// The ridge penalty `α`.
    pub ridge: f64,
    /// Only states at steps `t ≥ min_step` (0-based) are probed (a wash-out).
    pub min_step: usize,
    /// The first `round(train_fraction · B)` trials train the probe, the rest test it.
    pub train_fraction: f64,
    /// At most this many training samples per delay (evenly strided), to bound the cost.
    pub max_train_samples: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_delay: 20,
            ridge: 1e-3,
            min_step: 0,
            train_fraction: 0.5,
            max_train_samples: 50_000,
        }
    }
}

/// States and labels to probe.
#[derive(Clone, Copy, Debug)]
pub struct ProbeData<'a> {
    /// `[T, B, F]`: the features of trial `b` at step `t` (the hidden state `h_t`).
    pub features: &'a [f32],
    /// `[T, B]`: the class of the input shown at step `t` of trial `b`, if any.
    pub labels: &'a [Option<usize>],
    pub shape: SeqShape,
    /// `F`.
    pub dim: usize,
    /// `C`: labels are `0..C`.
    pub classes: usize,
}

/// Probe accuracy against delay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryCurve {
    pub definition: String,
    /// The delays with samples in both sets.
    pub delays: Vec<usize>,
    /// Held-out accuracy per delay.
    pub accuracy: Vec<f64>,
    /// Training accuracy per delay.
    pub train_accuracy: Vec<f64>,
    /// Held-out samples per delay.
    pub test_samples: Vec<usize>,
    pub classes: usize,
    /// `1 / C`.
    pub chance: f64,
    /// `Σ_d max(0, accuracy_d − chance)`: the memory-ability figure.
    pub area: f64,
    /// `Σ_d max(0, (accuracy_d − chance) / (1 − chance))`: the same in steps (a perfect
    /// memory of `L` steps, delays `0..L−1`, scores `L`).
    pub capacity: f64,
}

pub(crate) const MEMORY_DEF: &str = "Memory curve: held-out accuracy of a ridge-regression linear probe (one-hot targets, bias unpenalised) reading the class of the input shown d steps earlier from the hidden state h_t; area = Σ_d max(0, acc_d − 1/C); capacity = Σ_d max(0, (acc_d − 1/C)/(1 − 1/C)) (steps of perfect memory).";

/// The memory curve of `data` (see the module docs).
pub fn memory_curve(data: &ProbeData<'_>, cfg: &MemoryConfig) -> Result<MemoryCurve> {
    let (t_n, b_n, f, c) = (data.shape.steps, data.shape.batch, data.dim, data.classes);
    check_len("probe features", t_n * b_n * f, data.features.len(), || {
        format!("[T={t_n}, B={b_n}, F={f}]")
    })?;
    check_len("probe labels", t_n * b_n, data.labels.len(), || {
        format!("[T={t_n}, B={b_n}]")
    })?;
    memrnn_core::check_finite("probe features", data.features)?;
    if c < 2 {
        return Err(Error::InvalidArgument(format!(
            "a memory curve needs at least 2 classes, got {c}"
        )));
    }
    if let Some(i) = data.labels.iter().position(|l| l.is_some_and(|l| l >= c)) {
        return Err(Error::InvalidArgument(format!(
            "label at index {i} is {:?}, outside 0..{c}: pass the right number of classes",
            data.labels[i]
        )));
    }
    if !(cfg.ridge.is_finite() && cfg.ridge > 0.0) || cfg.max_train_samples == 0 {
        return Err(Error::InvalidArgument(format!(
            "a memory curve needs ridge > 0 and max_train_samples ≥ 1; got {cfg:?}"
        )));
    }
    let n_train = (cfg.train_fraction * b_n as f64).round() as usize;
    if n_train == 0 || n_train >= b_n {
        return Err(Error::InvalidArgument(format!(
            "train_fraction {} of {b_n} trials leaves an empty training or test set: give at least 2 trials and a fraction strictly between them",
            cfg.train_fraction
        )));
    }
    let fd = f + 1;
    let chance = 1.0 / c as f64;
    let mut out = MemoryCurve {
        definition: MEMORY_DEF.into(),
        delays: Vec::new(),
        accuracy: Vec::new(),
        train_accuracy: Vec::new(),
        test_samples: Vec::new(),
        classes: c,
        chance,
        area: 0.0,
        capacity: 0.0,
    };
    let samples = |d: usize, trials: std::ops::Range<usize>| -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for t in cfg.min_step.max(d)..t_n {
            for b in trials.clone() {
                if let Some(y) = data.labels[(t - d) * b_n + b] {
                    v.push(((t * b_n + b) * f, y));
                }
            }
        }
        v
    };
    let feat = |off: usize| data.features[off..off + f].iter().map(|&v| v as f64);
    for d in 0..=cfg.max_delay.min(t_n.saturating_sub(1)) {
        let mut train = samples(d, 0..n_train);
        let test = samples(d, n_train..b_n);
        if train.is_empty() || test.is_empty() {
            continue;
        }
        if train.len() > cfg.max_train_samples {
            let step = train.len().div_ceil(cfg.max_train_samples);
            train = train.into_iter().step_by(step).collect();
        }
        let mut xtx = vec![0f64; fd * fd];
        let mut xty = vec![0f64; fd * c];
        let mut x = vec![0f64; fd];
        for &(off, y) in &train {
            for (o, v) in x.iter_mut().zip(feat(off)) {
                *o = v;
            }
            x[f] = 1.0;
            for i in 0..fd {
                let xi = x[i];
                if xi != 0.0 {
                    for j in 0..=i {
                        xtx[i * fd + j] += xi * x[j];
                    }
                    xty[i * c + y] += xi;
                }
            }
        }
        for i in 0..fd {
            for j in 0..i {
                xtx[j * fd + i] = xtx[i * fd + j];
            }
        }
        // Scale α with the sample count so its effect does not depend on it.
        for i in 0..f {
            xtx[i * fd + i] += cfg.ridge * train.len() as f64;
        }
        cholesky_solve(&mut xtx, fd, &mut xty, c)?;
        let w = xty;
        let score = |set: &[(usize, usize)]| -> f64 {
            let mut hit = 0usize;
            let mut s = vec![0f64; c];
            for &(off, y) in set {
                s.iter_mut()
                    .enumerate()
                    .for_each(|(k, v)| *v = w[f * c + k]);
                for (i, xi) in feat(off).enumerate() {
                    for (k, v) in s.iter_mut().enumerate() {
                        *v += xi * w[i * c + k];
                    }
                }
                let pred = (0..c).fold(0, |best, k| if s[k] > s[best] { k } else { best });
                hit += (pred == y) as usize;
            }
            hit as f64 / set.len() as f64
        };
        let acc = score(&test);
        out.delays.push(d);
        out.train_accuracy.push(score(&train));
        out.accuracy.push(acc);
        out.test_samples.push(test.len());
        out.area += (acc - chance).max(0.0);
        out.capacity += ((acc - chance) / (1.0 - chance)).max(0.0);
    }
    if out.delays.is_empty() {
        return Err(Error::InvalidArgument(
            "no delay has labelled samples in both the training and the test trials: check the labels and min_step".into(),
        ));
    }
    Ok(out)
}

/// The memory curve of a network: runs `x [T, B, I]` from `s0` (zeros when `None`) and
/// probes its hidden states `h_t` with `labels [T, B]`.
pub fn memory_curve_of<B: Backend>(
    net: &Net<'_, B>,
    x: &[f32],
    shape: SeqShape,
    s0: Option<&[f32]>,
    labels: &[Option<usize>],
    classes: usize,
    cfg: &MemoryConfig,
) -> Result<MemoryCurve> {
    shape.check_inputs(&net.cell, x.len(), s0.map(<[f32]>::len))?;
    let be = net.backend;
    let s0t = s0.map(|s| be.upload(s)).transpose()?;
    let fwd = be.seq_forward(&net.cell, &net.params, shape, &be.upload(x)?, s0t.as_ref())?;
    let h = be.download(&fwd.h_seq)?;
    memory_curve(
        &ProbeData {
            features: &h,
            labels,
            shape,
            dim: net.cell.hidden,
            classes,
        },
        cfg,
    )
}
