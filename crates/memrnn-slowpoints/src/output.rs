//! Writing a report: the points as safetensors, a JSON summary, and a table for people.

use crate::finder::{Counts, Eigenvalue, FinderConfig, SlowPointReport};
use memrnn_core::checkpoint::write_tensors;
use memrnn_core::lm::SearchStop;
use memrnn_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Eigenvalues listed per point in the JSON summary (the largest in magnitude).
pub const SUMMARY_EIGENVALUES: usize = 8;

/// Writes the points of `report` as safetensors at `path` (`P` points, state size `S`):
///
/// | name | shape | meaning |
/// | --- | --- | --- |
/// | `states` | `[P, S]` | the points |
/// | `speed_sq` | `[P]` | `S = ‖F(s, x̄) − s‖²` |
/// | `jacobians` | `[P, S, S]` | `J = ∂F/∂s`, row `i` = `∂F_i/∂s` |
/// | `eigenvalues_re`, `eigenvalues_im` | `[P, S]` | eigenvalues of `J`, largest `|λ|` first |
/// | `class` | `[P]` | readout class, −1 without a readout |
/// | `stable` | `[P]` | 1 when `max |λ| < 1`, else 0 |
/// | `near_unit` | `[P]` | eigenvalues with `||λ| − 1| < unit_tol` |
/// | `candidate`, `iters`, `merged` | `[P]` | see [`SlowPoint`](crate::SlowPoint) |
/// | `input` | `[I]` | the constant input `x̄` |
///
/// Metadata: `memrnn.cell`, `memrnn.hidden`, `memrnn.input`, `memrnn.backend`, and
/// `memrnn.slowpoints.config` / `memrnn.slowpoints.counts` as JSON.
pub fn write_safetensors(report: &SlowPointReport, path: &Path) -> Result<()> {
    let p = report.points.len();
    let sd = report.cell.state_size();
    let mut states = Vec::with_capacity(p * sd);
    let mut jac = Vec::with_capacity(p * sd * sd);
    let mut re = Vec::with_capacity(p * sd);
    let mut im = Vec::with_capacity(p * sd);
    let mut per_point: [Vec<f32>; 7] = Default::default();
    for pt in &report.points {
        states.extend_from_slice(&pt.state);
        jac.extend_from_slice(&pt.jacobian);
        for k in 0..sd {
            let e = pt.eigenvalues.get(k).copied().unwrap_or(Eigenvalue {
                re: f64::NAN,
                im: f64::NAN,
            });
            re.push(e.re as f32);
            im.push(e.im as f32);
        }
        let vals = [
            pt.speed_sq,
            pt.class.map_or(-1.0, |c| c as f32),
            if pt.stable { 1.0 } else { 0.0 },
            pt.near_unit as f32,
            pt.candidate as f32,
            pt.iters as f32,
            pt.merged as f32,
        ];
        for (dst, v) in per_point.iter_mut().zip(vals) {
            dst.push(v);
        }
    }
    let names = [
        "speed_sq",
        "class",
        "stable",
        "near_unit",
        "candidate",
        "iters",
        "merged",
    ];
    let mut tensors: Vec<(&str, Vec<usize>, &[f32])> = vec![
        ("states", vec![p, sd], &states),
        ("jacobians", vec![p, sd, sd], &jac),
        ("eigenvalues_re", vec![p, sd], &re),
        ("eigenvalues_im", vec![p, sd], &im),
        ("input", vec![report.input.len()], &report.input),
    ];
    for (name, v) in names.iter().zip(&per_point) {
        tensors.push((name, vec![p], v));
    }
    let json = |v: serde_json::Result<String>| {
        v.map_err(|e| Error::InvalidArgument(format!("could not encode the report as JSON: {e}")))
    };
    let mut meta = BTreeMap::new();
    meta.insert("memrnn.cell".into(), report.cell.kind.name().to_string());
    meta.insert("memrnn.hidden".into(), report.cell.hidden.to_string());
    meta.insert("memrnn.input".into(), report.cell.input.to_string());
    meta.insert("memrnn.backend".into(), report.backend.clone());
    meta.insert(
        "memrnn.slowpoints.config".into(),
        json(serde_json::to_string(&report.config))?,
    );
    meta.insert(
        "memrnn.slowpoints.counts".into(),
        json(serde_json::to_string(&report.counts))?,
    );
    write_tensors(path, &tensors, &meta)
}

/// One point in the JSON summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    pub index: usize,
    pub candidate: usize,
    pub class: Option<usize>,
    pub speed: f32,
    pub speed_sq: f32,
    pub max_abs_eig: f64,
    pub stable: bool,
    pub near_unit: usize,
    pub iters: u32,
    pub stop: SearchStop,
    pub merged: usize,
    /// The largest eigenvalues (at most [`SUMMARY_EIGENVALUES`]).
    pub top_eigenvalues: Vec<Eigenvalue>,
}

/// The JSON summary of a report (everything but the states and Jacobians).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub cell: String,
    pub input_size: usize,
    pub hidden: usize,
    pub backend: String,
    pub config: FinderConfig,
    pub counts: Counts,
    pub points: Vec<PointSummary>,
}

pub fn summary(report: &SlowPointReport) -> Summary {
    Summary {
        cell: report.cell.kind.name().to_string(),
        input_size: report.cell.input,
        hidden: report.cell.hidden,
        backend: report.backend.clone(),
        config: report.config,
        counts: report.counts,
        points: report
            .points
            .iter()
            .enumerate()
            .map(|(index, p)| PointSummary {
                index,
                candidate: p.candidate,
                class: p.class,
                speed: p.speed,
                speed_sq: p.speed_sq,
                max_abs_eig: p.max_abs_eig,
                stable: p.stable,
                near_unit: p.near_unit,
                iters: p.iters,
                stop: p.stop,
                merged: p.merged,
                top_eigenvalues: p
                    .eigenvalues
                    .iter()
                    .take(SUMMARY_EIGENVALUES)
                    .copied()
                    .collect(),
            })
            .collect(),
    }
}

/// The summary as pretty-printed JSON.
pub fn summary_json(report: &SlowPointReport) -> Result<String> {
    serde_json::to_string_pretty(&summary(report))
        .map_err(|e| Error::InvalidArgument(format!("could not encode the report as JSON: {e}")))
}

/// Writes [`summary_json`] to `path`.
pub fn write_summary_json(report: &SlowPointReport, path: &Path) -> Result<()> {
    let text = summary_json(report)?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// A plain-text table, one line per point (class, speed, largest `|λ|`, stable, count of
/// eigenvalues near the unit circle, iterations, candidates merged, how its search
/// ended), after a line of counts.
pub fn format_table(report: &SlowPointReport) -> String {
    let c = &report.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} slow points of a {} cell (H {}) from {} candidates ({} search): {} converged, {} at a minimum of S, {} stalled, {} at the iteration cap; dropped {} non-finite, {} too fast, {} outliers; {} duplicates merged",
        c.points,
        report.cell.kind,
        report.cell.hidden,
        c.candidates,
        report.config.method,
        c.converged,
        c.minima,
        c.stalled,
        c.max_iters,
        c.non_finite,
        c.too_fast,
        c.outliers,
        c.duplicates
    );
    let _ = writeln!(
        out,
        "{:>5} {:>5} {:>11} {:>9} {:>6} {:>9} {:>7} {:>6}  end",
        "point", "class", "speed", "max|λ|", "stable", "near|λ|=1", "iters", "merged"
    );
    for (i, p) in report.points.iter().enumerate() {
        let class = p.class.map_or_else(|| "-".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "{:>5} {:>5} {:>11.3e} {:>9.5} {:>6} {:>9} {:>7} {:>6}  {}",
            i,
            class,
            p.speed,
            p.max_abs_eig,
            if p.stable { "yes" } else { "no" },
            p.near_unit,
            p.iters,
            p.merged,
            p.stop.describe()
        );
    }
    out
}
