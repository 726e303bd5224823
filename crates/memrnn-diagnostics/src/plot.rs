//! SVG plots of a [`DiagnosticsReport`] (plotters).

use crate::report::DiagnosticsReport;
use memrnn_core::{Error, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

fn perr(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |e| Error::io(path, std::io::Error::other(format!("plotting failed: {e}")))
}

/// `(lo, hi)` of finite values, widened when flat.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
type OwnedSeries = (String, RGBColor, Vec<(f64, f64)>);

/// One line chart: several series, optional dashed reference lines `y = c`.
fn line_chart(
    path: &Path,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    series: &[Series<'_>],
    refs: &[(&str, f64)],
    points: bool,
) -> Result<()> {
    let e = perr(path);
    let (x0, x1) = range(series.iter().flat_map(|s| s.2.iter().map(|p| p.0)));
    let (y0, y1) = range(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .chain(refs.iter().map(|r| r.1)),
    );
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(xdesc)
        .y_desc(ydesc)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (name, color, pts) in series {
        let c = *color;
        if points {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))
                .map_err(|x| e(x.to_string()))?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, c.filled()));
        } else {
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(|x| e(x.to_string()))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
    }
    for (name, y) in refs {
        let y = *y;
        chart
            .draw_series(LineSeries::new(vec![(x0, y), (x1, y)], BLACK.mix(0.35)))
            .map_err(|x| e(x.to_string()))?
            .label(*name)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.35)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Writes the plots of the parts of `report` present into `dir`; returns their paths.
pub fn write_plots(report: &DiagnosticsReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if let Some(l) = &report.lipschitz {
        let p = dir.join("lipschitz.svg");
        let pts = |v: &[f64]| -> Vec<(f64, f64)> {
            l.steps
                .iter()
                .zip(v)
                .map(|(&t, &y)| (t as f64, y))
                .collect()
        };
        line_chart(
            &p,
            &format!("local Lipschitz constant ‖J_t‖₂ (L̂ = {:.4})", l.lipschitz),
            "step t",
            "‖J_t‖₂",
            &[
                ("max over trials", RED, pts(&l.per_step_max)),
                ("median over trials", BLUE, pts(&l.per_step_median)),
            ],
            &[("1", 1.0)],
            false,
        )?;
        out.push(p);
    }
    if let Some(l) = &report.lyapunov {
        let p = dir.join("lyapunov.svg");
        let pts = l
            .curve_steps
            .iter()
            .zip(&l.curve)
            .map(|(&t, &y)| (t as f64, y))
            .collect();
        let lam = l.exponents.first().copied().unwrap_or(f64::NAN);
        line_chart(
            &p,
            &format!("largest Lyapunov exponent: running estimate (λ₁ = {lam:.4})"),
            "steps averaged after the transient",
            "λ₁ estimate (log per step)",
            &[("mean over trials", BLUE, pts)],
            &[("0", 0.0)],
            false,
        )?;
        out.push(p);
    }
    if let Some(a) = &report.attractors {
        let p = dir.join("orbit.svg");
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        let mut series: Vec<OwnedSeries> = Vec::new();
        for (r, run) in a.orbit.runs.iter().enumerate() {
            let (name, color) = match run.attractor {
                Some(k) => {
                    let at = &a.attractors[k];
                    (
                        format!(
                            "attractor {k} (period {}, basin {})",
                            at.period, at.basin_size
                        ),
                        colors[k % colors.len()],
                    )
                }
                None => ("unresolved".to_string(), RGBColor(150, 150, 150)),
            };
            let pts = run.values.iter().map(|&v| (r as f64, v));
            match series.iter_mut().find(|s| s.0 == name) {
                Some(s) => s.2.extend(pts),
                None => series.push((name, color, pts.collect())),
            }
        }
        let s: Vec<Series<'_>> = series
            .iter()
            .map(|(n, c, v)| (n.as_str(), *c, v.clone()))
            .collect();
        line_chart(
            &p,
            &format!(
                "orbit diagram under constant input ({} attractors, {} fixed points)",
                a.attractors.len(),
                a.fixed_points
            ),
            "run (sorted by attractor)",
            &format!("last states projected on {}", a.orbit.axis),
            &s,
            &[],
            true,
        )?;
        out.push(p);
    }
    if let Some(m) = &report.memory {
        let p = dir.join("memory.svg");
        let pts = m
            .delays
            .iter()
            .zip(&m.accuracy)
            .map(|(&d, &a)| (d as f64, a))
            .collect();
        line_chart(
            &p,
            &format!(
                "memory curve (linear probe; capacity {:.2} steps)",
                m.capacity
            ),
            "delay d (steps)",
            "held-out accuracy",
            &[("probe accuracy", BLUE, pts)],
            &[("chance", m.chance), ("1", 1.0)],
            false,
        )?;
        out.push(p);
    }
    Ok(out)
}
