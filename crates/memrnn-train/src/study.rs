//! The study: the ICML paper's central figure. Train an ensemble (cells × curricula ×
//! seeds), find each network's per-class slow points, measure its report accuracy far
//! beyond the training delay, and report how slow-point speed predicts extrapolation:
//! Spearman's rank correlation and a scatter plot of speed against long-delay accuracy.
//! The paper's claim is a strong negative correlation (slower slow points, longer memory).
//!
//! Output folder: one checkpoint per network (`<cell>-<curriculum>-s<seed>.safetensors`),
//! `study.json` (every row and the correlation), `study.svg` (the scatter plot).

use crate::error::{config_err, Result, TrainError};
use crate::eval::{evaluate, EvalConfig};
use crate::slow::class_slow_points_with;
use crate::task::{Curriculum, DigitSet};
use crate::train::{RunOutput, TrainConfig, Trainer};
use crate::vset;
use memrnn_core::{Backend, CellKind};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct StudyConfig {
    pub cells: Vec<CellKind>,
    pub curricula: Vec<Curriculum>,
    pub seeds: Vec<u64>,
    /// The template every network is trained with (cell, curriculum and seed replaced).
    pub train: TrainConfig,
    /// Accuracy is reported at the training delay and at this one.
    pub long_delay: usize,
    pub eval_trials: usize,
    pub out_dir: PathBuf,
    pub progress: bool,
}

/// One network of the ensemble.
#[derive(Clone, Debug, Serialize)]
pub struct StudyRow {
    pub cell: CellKind,
    pub curriculum: Curriculum,
    pub seed: u64,
    /// Median over the ten classes of `S` at the class slow points.
    pub slow_point_speed_sq: f64,
    /// Report accuracy at the longest training delay (`T_max − 1`).
    pub acc_train_delay: f64,
    /// Report accuracy at `long_delay`.
    pub acc_long: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StudyReport {
    pub rows: Vec<StudyRow>,
    pub long_delay: usize,
    /// Spearman's ρ between slow-point speed and accuracy at the long delay.
    pub spearman: f64,
    pub svg: PathBuf,
}

impl StudyReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<6} {:<10} {:>5} {:>16} {:>10} {:>10}\n",
            "cell",
            "curriculum",
            "seed",
            "S slow pts (med)",
            "acc@train",
            format!("acc@{}", self.long_delay)
        );
        for r in &self.rows {
            s += &format!(
                "{:<6} {:<10} {:>5} {:>16.3e} {:>10.3} {:>10.3}\n",
                r.cell.name(),
                format!("{:?}", r.curriculum).to_lowercase(),
                r.seed,
                r.slow_point_speed_sq,
                r.acc_train_delay,
                r.acc_long
            );
        }
        s += &format!(
            "Spearman ρ(slow-point speed, accuracy at delay {}) = {:.3} over {} networks\n",
            self.long_delay,
            self.spearman,
            self.rows.len()
        );
        s
    }
}

pub use crate::stats::spearman;

/// Trains, analyses and evaluates every network of the ensemble.
pub fn run_study<B: Backend>(
    backend: &B,
    set: &DigitSet,
    cfg: &StudyConfig,
) -> Result<StudyReport> {
    if cfg.cells.is_empty() || cfg.curricula.is_empty() || cfg.seeds.is_empty() {
        return config_err("a study needs at least one cell, one curriculum and one seed");
    }
    fn dup<T: PartialEq + std::fmt::Debug>(what: &str, v: &[T]) -> Result<()> {
        if let Some((_, x)) = v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)) {
            let x = format!("{x:?}").to_lowercase();
            return config_err(format!(
                "{what} {x} is listed twice: the study would train the same network twice \
                 and count it as two"
            ));
        }
        Ok(())
    }
    dup("cell", &cfg.cells)?;
    dup("curriculum", &cfg.curricula)?;
    dup("seed", &cfg.seeds)?;
    cfg.train.validate()?;
    if cfg.eval_trials == 0 || cfg.eval_trials > crate::limits::MAX_TRIALS {
        return config_err(format!(
            "{} evaluation trials: give 1 to {}",
            cfg.eval_trials,
            crate::limits::MAX_TRIALS
        ));
    }
    if cfg.long_delay > crate::eval::MAX_DELAY {
        return config_err(format!(
            "long delay {}: at most {}",
            cfg.long_delay,
            crate::eval::MAX_DELAY
        ));
    }
    if cfg.long_delay < cfg.train.task.t_max {
        return config_err(format!(
            "the long delay ({}) must be beyond the training delays (T_max = {})",
            cfg.long_delay, cfg.train.task.t_max
        ));
    }
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| TrainError::io(&cfg.out_dir, e))?;
    let train_delay = cfg.train.task.t_max - 1;
    let eval = EvalConfig {
        delays: vec![train_delay, cfg.long_delay],
        trials: cfg.eval_trials,
        ..EvalConfig::default()
    };
    let mut rows = vec![];
    for &cell in &cfg.cells {
        for &curriculum in &cfg.curricula {
            for &seed in &cfg.seeds {
                let name = format!(
                    "{}-{}-s{seed}",
                    cell.name(),
                    format!("{curriculum:?}").to_lowercase()
                );
                let mut tc = cfg.train.clone();
                tc.cell = cell;
                tc.curriculum = curriculum;
                tc.seed = seed;
                let mut t = Trainer::new(backend, set, tc)?;
                t.run(&RunOutput {
                    dir: cfg.out_dir.clone(),
                    name: name.clone(),
                    progress: cfg.progress,
                })?;
                let model = t.model()?;
                let means = vset::class_mean_states(
                    backend,
                    &model,
                    set,
                    &cfg.train.task,
                    500,
                    20,
                    seed ^ 0x7E57,
                )?;
                let slow = class_slow_points_with(
                    backend,
                    &model,
                    &cfg.train.task,
                    &means,
                    &memrnn_slowpoints::FinderConfig::default(),
                )?;
                let r = evaluate(backend, &model, set, &cfg.train.task, &eval, None)?;
                let row = StudyRow {
                    cell,
                    curriculum,
                    seed,
                    slow_point_speed_sq: slow.median_speed_sq(),
                    acc_train_delay: r.at(train_delay),
                    acc_long: r.at(cfg.long_delay),
                };
                if cfg.progress {
                    eprintln!(
                        "study: {name}: S {:.3e}, accuracy {:.3} at delay {train_delay}, {:.3} at {}",
                        row.slow_point_speed_sq, row.acc_train_delay, row.acc_long, cfg.long_delay
                    );
                }
                rows.push(row);
            }
        }
    }
    let speeds: Vec<f64> = rows.iter().map(|r| r.slow_point_speed_sq).collect();
    let accs: Vec<f64> = rows.iter().map(|r| r.acc_long).collect();
    let svg = cfg.out_dir.join("study.svg");
    plot_scatter(&svg, &rows, cfg.long_delay)?;
    let report = StudyReport {
        spearman: spearman(&speeds, &accs),
        rows,
        long_delay: cfg.long_delay,
        svg,
    };
    let json = cfg.out_dir.join("study.json");
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| TrainError::io(&json, std::io::Error::other(e)))?;
    std::fs::write(&json, text).map_err(|e| TrainError::io(&json, e))?;
    Ok(report)
}

/// Slow-point speed (log scale) against accuracy at the long delay, one mark per network,
/// coloured by cell.
fn plot_scatter(path: &Path, rows: &[StudyRow], long_delay: usize) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: String| TrainError::io(path, std::io::Error::other(e));
    let pos: Vec<f64> = rows
        .iter()
        .map(|r| r.slow_point_speed_sq)
        .filter(|s| s.is_finite() && *s > 0.0)
        .collect();
    let lo = pos.iter().copied().fold(f64::INFINITY, f64::min).min(1e-8);
    let hi = pos.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let root = SVGBackend::new(path, (800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("slow-point speed vs memory", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo / 2.0..hi * 2.0).log_scale(), 0f64..1.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("median S at the class slow points (log scale)")
        .y_desc(format!("report accuracy at delay {long_delay}"))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (kind, color) in [
        (CellKind::Rnn, GREEN),
        (CellKind::Gru, BLUE),
        (CellKind::Lstm, RED),
    ] {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| {
                r.cell == kind && r.slow_point_speed_sq > 0.0 && r.slow_point_speed_sq.is_finite()
            })
            .map(|r| (r.slow_point_speed_sq, r.acc_long))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(|e| err(e.to_string()))?
            .label(kind.name())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ranks;

    #[test]
    fn spearman_known_answers() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Monotone but not linear: still ±1.
        assert!((spearman(&[1e-6, 1e-4, 1e-2, 1.0], &[0.9, 0.5, 0.3, 0.1]) + 1.0).abs() < 1e-12);
        // Ties averaged: x = [1, 2, 2, 3] ranks [1, 2.5, 2.5, 4].
        assert_eq!(ranks(&[1.0, 2.0, 2.0, 3.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert!(spearman(&[1.0, 1.0], &[2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0], &[2.0]).is_nan());
    }
}
