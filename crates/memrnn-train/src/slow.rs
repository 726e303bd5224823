//! Slow points of a trained network on the task (MATH.md §4), through
//! `memrnn-slowpoints`: the constant input `x̄` (every pixel at the noise mean, trigger 0),
//! the ICML paper's per-class slow points (Adam on the speed from each class's mean delay
//! state), and the full finder report (candidates from the class means and from delay
//! trajectories, de-duplicated, with Jacobians and eigenvalues).

use crate::error::{config_err, Result};
use crate::objective::SpeedSet;
use crate::task::{DigitSet, TaskConfig};
use crate::vset;
use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::lm::LmSearch;
use memrnn_core::{Backend, Model};
use memrnn_slowpoints::{
    find_slow_points, search_ensemble, EnsembleMember, FinderConfig, SearchMethod, SlowPointReport,
};

/// `x̄`: every pixel at the noise mean, trigger 0 (length `input`).
pub fn constant_input(task: &TaskConfig, input: usize) -> Vec<f32> {
    let mut x = vec![task.noise_mean; input];
    if let Some(trigger) = x.last_mut() {
        *trigger = 0.0;
    }
    x
}

/// The per-class slow points: each class's mean delay state moved by Adam down the speed
/// `S(s) = ‖F(s, x̄) − s‖²` (the ICML paper's initialisation), one point per class.
#[derive(Clone, Debug)]
pub struct ClassSlowPoints {
    /// `[10, S]`, class `d` in row `d`.
    pub states: SpeedSet,
    /// `S` at each class's slow point.
    pub speed_sq: Vec<f32>,
    /// Iterations each took (Adam updates or LM trial steps).
    pub iters: Vec<u32>,
}

impl ClassSlowPoints {
    /// The median of the per-class speeds `S`.
    pub fn median_speed_sq(&self) -> f64 {
        let mut s: Vec<f64> = self.speed_sq.iter().map(|&v| v as f64).collect();
        s.sort_by(|a, b| a.total_cmp(b));
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

/// Runs the search from the class means `means` (`[10, S]`) on `model`.
pub fn class_slow_points<B: Backend>(
    backend: &B,
    model: &Model,
    task: &TaskConfig,
    means: &SpeedSet,
    cfg: &SlowPointConfig,
) -> Result<ClassSlowPoints> {
    means.check(&model.cell)?;
    let params = backend.upload(&model.params)?;
    let x = backend.upload(&constant_input(task, model.cell.input))?;
    let mut search = SlowPointSearch::new(backend, &model.cell, &means.states)?;
    backend.slow_point_iterations(&model.cell, &params, &x, &mut search, cfg)?;
    let states = backend.download(&search.states)?;
    Ok(ClassSlowPoints {
        states: SpeedSet::new(
            states,
            model.cell.state_size(),
            "slow points (from the class means)",
        )?,
        speed_sq: search.status.iter().map(|s| s.speed_sq).collect(),
        iters: search.status.iter().map(|s| s.iters).collect(),
    })
}

/// [`class_slow_points`] with the search method `cfg.method` of a finder configuration:
/// Levenberg–Marquardt (`cfg.lm`; the default) or Adam (`cfg.search`). A class whose search
/// ends at a minimum of `S` above 0 keeps that state and its `S`.
pub fn class_slow_points_with<B: Backend>(
    backend: &B,
    model: &Model,
    task: &TaskConfig,
    means: &SpeedSet,
    cfg: &FinderConfig,
) -> Result<ClassSlowPoints> {
    if cfg.method == SearchMethod::Adam {
        return class_slow_points(backend, model, task, means, &cfg.search);
    }
    means.check(&model.cell)?;
    let params = backend.upload(&model.params)?;
    let x = backend.upload(&constant_input(task, model.cell.input))?;
    let mut search = LmSearch::new(backend, &model.cell, &means.states, &cfg.lm)?;
    backend.slow_point_lm(&model.cell, &params, &x, &mut search, &cfg.lm)?;
    let states = backend.download(&search.states)?;
    Ok(ClassSlowPoints {
        states: SpeedSet::new(
            states,
            model.cell.state_size(),
            "slow points (from the class means)",
        )?,
        speed_sq: search.status.iter().map(|s| s.speed_sq).collect(),
        iters: search.status.iter().map(|s| s.iters).collect(),
    })
}

/// [`class_slow_points_with`] for every network of an ensemble (`means[i]` the class
/// means of `models[i]`): the searches together, through the backend's ensemble
/// operation (one launch for all on a GPU, side by side on the CPU). Each network's
/// result is exactly what [`class_slow_points_with`] gives it alone; a network refused
/// (means of the wrong shape, an invalid model) gets that error and the others go on.
pub fn class_slow_points_ensemble<B: Backend>(
    backend: &B,
    models: &[&Model],
    task: &TaskConfig,
    means: &[&SpeedSet],
    cfg: &FinderConfig,
) -> Result<Vec<Result<ClassSlowPoints>>> {
    if models.len() != means.len() {
        return config_err(format!(
            "internal: {} networks and {} sets of class means",
            models.len(),
            means.len()
        ));
    }
    let checked: Vec<Result<()>> = models
        .iter()
        .zip(means)
        .map(|(m, mu)| mu.check(&m.cell))
        .collect();
    let inputs: Vec<Vec<f32>> = models
        .iter()
        .map(|m| constant_input(task, m.cell.input))
        .collect();
    let ok: Vec<usize> = (0..models.len()).filter(|&i| checked[i].is_ok()).collect();
    let members: Vec<EnsembleMember<'_>> = ok
        .iter()
        .map(|&i| EnsembleMember {
            model: models[i],
            x_bar: &inputs[i],
            candidates: &means[i].states,
        })
        .collect();
    let mut found = search_ensemble(backend, &members, cfg)?.into_iter();
    let mut out = Vec::with_capacity(models.len());
    for (i, c) in checked.into_iter().enumerate() {
        let r = c.and_then(|()| {
            let o = found.next().ok_or_else(|| {
                crate::TrainError::Config("internal: a network's search is missing".into())
            })??;
            Ok(ClassSlowPoints {
                states: SpeedSet::new(
                    o.states,
                    models[i].cell.state_size(),
                    "slow points (from the class means)",
                )?,
                speed_sq: o.ends.iter().map(|e| e.0).collect(),
                iters: o.ends.iter().map(|e| e.1).collect(),
            })
        });
        out.push(r);
    }
    Ok(out)
}

/// The full finder on `model`: candidates are the class means plus `trajectory` states
/// from delay trajectories (up to `delay` steps after the image), seeded.
#[allow(clippy::too_many_arguments)]
pub fn find_task_slow_points<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    means: &SpeedSet,
    trajectory: usize,
    delay: usize,
    seed: u64,
    cfg: &FinderConfig,
) -> Result<SlowPointReport> {
    if trajectory == 0 && means.n == 0 {
        return config_err(
            "the slow-point search needs candidates: class means or trajectory states",
        );
    }
    let mut candidates = means.states.clone();
    if trajectory > 0 {
        let t = vset::trajectory_states(backend, model, set, task, trajectory, delay, seed)?;
        candidates.extend_from_slice(&t.states);
    }
    let x_bar = constant_input(task, model.cell.input);
    Ok(find_slow_points(backend, model, &x_bar, &candidates, cfg)?)
}
