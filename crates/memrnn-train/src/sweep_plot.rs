//! The sweep's two plots. Legends sit in a strip right of the plot area, never on the
//! curves; every delay is plotted once (the evaluation de-duplicates them).

use crate::error::{Result, TrainError};
use crate::stats::MeanCi;
use crate::sweep::{SweepConfig, SweepReport};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::io(path, std::io::Error::other(e.to_string()))
}

/// The legend strip: one line per entry, a colour swatch and its label.
pub(crate) fn legend(
    area: &DrawingArea<SVGBackend, Shift>,
    entries: &[(String, RGBColor)],
    path: &Path,
) -> Result<()> {
    for (i, (label, c)) in entries.iter().enumerate() {
        let y = 60 + 24 * i as i32;
        area.draw(&PathElement::new(vec![(8, y), (32, y)], c.stroke_width(3)))
            .map_err(|e| io(path, e))?;
        area.draw(&Text::new(label.clone(), (38, y - 7), ("sans-serif", 14)))
            .map_err(|e| io(path, e))?;
    }
    Ok(())
}

fn bounds(m: &MeanCi) -> (f64, f64) {
    m.ci95.unwrap_or((m.mean, m.mean))
}

/// `delay_<target>.svg` per target: the mean accuracy over seeds against delay with its
/// 95% band, one curve per λ, the control and the base network beside them.
pub fn plot_delay_bands(dir: &Path, cfg: &SweepConfig, r: &SweepReport) -> Result<()> {
    if r.delays.is_empty() {
        return Ok(());
    }
    let min_d = r.delays[0].max(1) as f64;
    let max_d = (*r.delays.last().unwrap_or(&10)).max(10) as f64;
    for t in &cfg.targets {
        let path = dir.join(format!("delay_{}.svg", t.name()));
        let root = SVGBackend::new(&path, (1000, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| io(&path, e))?;
        let (left, right) = root.split_horizontally(770);
        let mut chart = ChartBuilder::on(&left)
            .caption(
                format!(
                    "{} H{}, target {}: accuracy vs delay ({} seeds, 95% bands)",
                    cfg.train.cell,
                    cfg.train.hidden,
                    t.name(),
                    r.seeds.len()
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d((min_d..max_d * 1.05).log_scale(), 0f64..1.0)
            .map_err(|e| io(&path, e))?;
        chart
            .configure_mesh()
            .x_desc("delay t_s − t_a (steps, log scale)")
            .y_desc("report accuracy")
            .draw()
            .map_err(|e| io(&path, e))?;
        let mut entries = vec![];
        let groups = r
            .groups
            .iter()
            .filter(|g| g.target.is_none() || g.target.as_deref() == Some(t.name().as_str()));
        for (i, g) in groups.enumerate() {
            let c = COLORS[i % COLORS.len()];
            let mean: Vec<(f64, f64)> = r
                .delays
                .iter()
                .zip(&g.accuracy)
                .map(|(&d, a)| (d as f64, a.mean))
                .collect();
            let mut band: Vec<(f64, f64)> = r
                .delays
                .iter()
                .zip(&g.accuracy)
                .map(|(&d, a)| (d as f64, bounds(a).1.min(1.0)))
                .collect();
            band.extend(
                r.delays
                    .iter()
                    .zip(&g.accuracy)
                    .rev()
                    .map(|(&d, a)| (d as f64, bounds(a).0.max(0.0))),
            );
            chart
                .draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))
                .map_err(|e| io(&path, e))?;
            chart
                .draw_series(LineSeries::new(mean, c.stroke_width(2)))
                .map_err(|e| io(&path, e))?;
            let label = match g.lambda {
                None => "base (before fine-tuning)".to_string(),
                Some(l) if g.target.is_none() => format!("control (λ = {l})"),
                Some(l) => format!("λ = {l}"),
            };
            entries.push((label, c));
        }
        chart
            .draw_series(LineSeries::new(
                vec![(min_d, 0.1), (max_d, 0.1)],
                BLACK.mix(0.3),
            ))
            .map_err(|e| io(&path, e))?;
        entries.push(("chance (0.1)".into(), RGBColor(170, 170, 170)));
        legend(&right, &entries, &path)?;
        root.present().map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Accuracy at the longest delay against λ (λ on a categorical axis: 0 has no log), mean
/// over seeds with 95% error bars, one series per target (offset sideways); the control
/// is λ = 0, shared by every target.
pub fn plot_longest_vs_lambda(path: &Path, cfg: &SweepConfig, r: &SweepReport) -> Result<()> {
    let Some(&longest) = r.delays.last() else {
        return Ok(());
    };
    let mut lambdas = cfg.lambdas.clone();
    lambdas.sort_by(f32::total_cmp);
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| io(path, e))?;
    let (left, right) = root.split_horizontally(770);
    let n = lambdas.len() as f64;
    let labels = lambdas.clone();
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!(
                "{} H{}: accuracy at delay {longest} vs λ ({} seeds, 95% intervals)",
                cfg.train.cell,
                cfg.train.hidden,
                r.seeds.len()
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..1.0)
        .map_err(|e| io(path, e))?;
    chart
        .configure_mesh()
        .x_labels(lambdas.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                format!("{}", labels[i as usize])
            } else {
                String::new()
            }
        })
        .x_desc("λ")
        .y_desc(format!("report accuracy at delay {longest}"))
        .draw()
        .map_err(|e| io(path, e))?;
    let mut entries = vec![];
    let k = cfg.targets.len() as f64;
    let bar = |chart: &mut ChartContext<_, _>, x: f64, m: &MeanCi, c: RGBColor| -> Result<()> {
        let (lo, hi) = bounds(m);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, hi)],
                c.stroke_width(2),
            )))
            .map_err(|e| io(path, e))?;
        for y in [lo, hi] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x - 0.04, y), (x + 0.04, y)],
                    c.stroke_width(2),
                )))
                .map_err(|e| io(path, e))?;
        }
        chart
            .draw_series(std::iter::once(Circle::new((x, m.mean), 4, c.filled())))
            .map_err(|e| io(path, e))?;
        Ok(())
    };
    if let Some(c) = r
        .groups
        .iter()
        .find(|g| g.target.is_none() && g.lambda == Some(0.0))
    {
        if let (Some(m), Some(i)) = (c.accuracy.last(), lambdas.iter().position(|&l| l == 0.0)) {
            bar(&mut chart, i as f64, m, RGBColor(0, 0, 0))?;
            entries.push(("control (λ = 0)".to_string(), RGBColor(0, 0, 0)));
        }
    }
    for (ti, t) in cfg.targets.iter().enumerate() {
        let c = COLORS[ti % COLORS.len()];
        let off = if k > 1.0 {
            (ti as f64 - (k - 1.0) / 2.0) * 0.12
        } else {
            0.0
        };
        let mut line = vec![];
        for g in r
            .groups
            .iter()
            .filter(|g| g.target.as_deref() == Some(t.name().as_str()))
        {
            let (Some(l), Some(m)) = (g.lambda, g.accuracy.last()) else {
                continue;
            };
            if let Some(i) = lambdas.iter().position(|&x| x == l) {
                bar(&mut chart, i as f64 + off, m, c)?;
                line.push((i as f64 + off, m.mean));
            }
        }
        chart
            .draw_series(LineSeries::new(line, c.mix(0.5)))
            .map_err(|e| io(path, e))?;
        entries.push((t.name(), c));
    }
    legend(&right, &entries, path)?;
    root.present().map_err(|e| io(path, e))?;
    Ok(())
}
