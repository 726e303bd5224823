//! The top-level entry point: a model and input sequences in, a serialisable report out,
//! written as JSON and SVG plots.

use crate::attractors::{attractors, AttractorConfig, AttractorReport};
use crate::lipschitz::{lipschitz, LipschitzConfig, LipschitzReport};
use crate::lyapunov::{lyapunov, LyapunovConfig, LyapunovReport};
use crate::memory::{memory_curve_of, MemoryConfig, MemoryCurve};
use crate::net::Net;
use memrnn_core::{check_len, Backend, CellDims, Error, Model, Result, SeqShape};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to diagnose: sequences (for the delayed-classification task, delay-period inputs:
/// noise, trigger 0, optionally the digit at the read time), and, for the memory curve,
/// which class each step showed.
#[derive(Clone, Debug)]
pub struct DiagnoseInputs {
    /// `[T, B, I]`, time-major.
    pub x: Vec<f32>,
    pub shape: SeqShape,
    /// `[B, S]` initial states; zeros when `None`.
    pub s0: Option<Vec<f32>>,
    /// `[T, B]`: the class shown at step `t` of trial `b`, if any (memory curve only).
    pub labels: Option<Vec<Option<usize>>>,
    /// The number of classes of `labels`.
    pub classes: usize,
    /// `x̄ [I]` for the attractor search; `None`: the mean of `x` over all steps and trials.
    pub constant_input: Option<Vec<f32>>,
}

/// Which diagnostics run, and how; `None` skips one. The default runs all four with
/// their defaults (the memory curve only when labels are given).
/// In [`diagnose`], a Lyapunov transient not shorter than the sequences is cut to half
/// their length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiagnoseConfig {
    pub lipschitz: Option<LipschitzConfig>,
    pub lyapunov: Option<LyapunovConfig>,
    pub attractors: Option<AttractorConfig>,
    pub memory: Option<MemoryConfig>,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        DiagnoseConfig {
            lipschitz: Some(LipschitzConfig::default()),
            lyapunov: Some(LyapunovConfig::default()),
            attractors: Some(AttractorConfig::default()),
            memory: Some(MemoryConfig::default()),
        }
    }
}

/// Everything measured, serialisable (each part carries a `definition` in words).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsReport {
    pub cell: CellDims,
    pub backend: String,
    pub steps: usize,
    pub trials: usize,
    pub lipschitz: Option<LipschitzReport>,
    pub lyapunov: Option<LyapunovReport>,
    pub attractors: Option<AttractorReport>,
    pub memory: Option<MemoryCurve>,
}

/// Runs the diagnostics `cfg` asks for on `model` (its recurrent layer; the readout is
/// not used) with `inputs`.
pub fn diagnose<B: Backend>(
    backend: &B,
    model: &Model,
    inputs: &DiagnoseInputs,
    cfg: &DiagnoseConfig,
) -> Result<DiagnosticsReport> {
    let net = Net::new(backend, model)?;
    let shape = inputs.shape;
    shape.check_inputs(&net.cell, inputs.x.len(), inputs.s0.as_ref().map(Vec::len))?;
    memrnn_core::check_finite("x", &inputs.x)?;
    let s0 = inputs.s0.as_deref();
    let lip = cfg
        .lipschitz
        .as_ref()
        .map(|c| lipschitz(&net, &inputs.x, shape, s0, c))
        .transpose()?;
    let lya = match &cfg.lyapunov {
        Some(c) => {
            let mut c = *c;
            if c.transient >= shape.steps {
                c.transient = shape.steps / 2;
            }
            Some(lyapunov(&net, &inputs.x, shape, s0, &c)?)
        }
        None => None,
    };
    let att = match &cfg.attractors {
        Some(c) => {
            let xbar = match &inputs.constant_input {
                Some(v) => v.clone(),
                None => {
                    let i = net.cell.input;
                    let mut m = vec![0f64; i];
                    for row in inputs.x.chunks_exact(i) {
                        m.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
                    }
                    m.iter().map(|a| (a / shape.rows() as f64) as f32).collect()
                }
            };
            Some(attractors(&net, &xbar, c)?)
        }
        None => None,
    };
    let mem = match (&cfg.memory, &inputs.labels) {
        (Some(c), Some(labels)) => {
            check_len("labels", shape.rows(), labels.len(), || {
                format!("[T={}, B={}]", shape.steps, shape.batch)
            })?;
            Some(memory_curve_of(
                &net,
                &inputs.x,
                shape,
                s0,
                labels,
                inputs.classes,
                c,
            )?)
        }
        _ => None,
    };
    Ok(DiagnosticsReport {
        cell: net.cell,
        backend: backend.name(),
        steps: shape.steps,
        trials: shape.batch,
        lipschitz: lip,
        lyapunov: lya,
        attractors: att,
        memory: mem,
    })
}

impl DiagnosticsReport {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| {
            Error::io(
                path,
                std::io::Error::other(format!("could not serialise the report: {e}")),
            )
        })?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// Reads a report written by [`write_json`](Self::write_json).
    pub fn read_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::io(
                path,
                std::io::Error::other(format!(
                    "not a diagnostics report ({e}); write it with DiagnosticsReport::write_json"
                )),
            )
        })
    }

    /// The headline figure of each part present, one line each (what `memrnn diagnose`
    /// prints at the end).
    pub fn summary_table(&self) -> String {
        let mut s = format!(
            "{} cell, I {} H {}: {} trials × {} steps ({})\n",
            self.cell.kind,
            self.cell.input,
            self.cell.hidden,
            self.trials,
            self.steps,
            self.backend
        );
        if let Some(l) = &self.lipschitz {
            s += &format!(
                "  Lipschitz L̂ = max_t ‖J_t‖₂      {:>10.4} (step {}, trial {})\n",
                l.lipschitz, l.argmax_step, l.argmax_trial
            );
        }
        if let Some(l) = &self.lyapunov {
            let ex: Vec<String> = l.exponents.iter().map(|e| format!("{e:.4}")).collect();
            let verdict = match l.exponents.first() {
                Some(&e) if e > 1e-3 => "chaotic",
                Some(&e) if e > -1e-2 => "near 0: long memory",
                Some(_) => "fading memory",
                None => "",
            };
            s += &format!(
                "  Lyapunov exponents             {:>10} ({verdict})\n",
                ex.join(", ")
            );
        }
        if let Some(a) = &self.attractors {
            s += &format!(
                "  attractors under x̄              {:>10} ({} fixed points; {} of {} runs settled)\n",
                a.attractors.len(),
                a.fixed_points,
                a.runs - a.unresolved,
                a.runs,
            );
            if a.unresolved > 0 {
                let drift: Vec<f64> = (a.orbit.runs.iter())
                    .filter(|r| r.attractor.is_none())
                    .map(|r| r.drift)
                    .collect();
                s += &format!(
                    "    {} runs still moving after {} steps: median step ‖Δs‖∞ {:.1e} (a period needs < {:.0e})\n",
                    a.unresolved,
                    a.max_steps,
                    crate::linalg::quantile(&drift, 0.5),
                    a.period_tol,
                );
            }
        }
        if let Some(m) = &self.memory {
            s += &format!(
                "  memory curve: area above chance {:>10.3} (capacity {:.2} steps, chance {:.3})\n",
                m.area, m.capacity, m.chance
            );
        }
        s
    }

    /// Writes `report.json` and the plots of the parts present (`lipschitz.svg`,
    /// `lyapunov.svg`, `orbit.svg`, `memory.svg`) into `dir` (created if missing);
    /// returns the paths written.
    pub fn write_all(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = dir.join("report.json");
        self.write_json(&json)?;
        let mut out = vec![json];
        out.extend(crate::plot::write_plots(self, dir)?);
        Ok(out)
    }
}
