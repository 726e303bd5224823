//! The finder: search, filter, de-duplicate, analyse (see the crate docs for the rules).

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::ensemble::{LmArgs, SlowPointArgs};
use memrnn_core::lm::{LmConfig, LmSearch, SearchStop};
use memrnn_core::{check_finite, check_len, Backend, CellDims, Error, Model, Result};
use serde::{Deserialize, Serialize};

/// Which search moves the candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMethod {
    /// Levenberg–Marquardt on the residual `F(s) − s`
    /// ([`Backend::slow_point_lm`]): tens of
    /// iterations, ends at fixed points and at minima of `S` above 0.
    #[default]
    Lm,
    /// Adam on `S` ([`Backend::slow_point_iterations`]).
    Adam,
}

impl SearchMethod {
    pub fn name(self) -> &'static str {
        match self {
            SearchMethod::Lm => "lm",
            SearchMethod::Adam => "adam",
        }
    }
}

impl std::fmt::Display for SearchMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SearchMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "lm" | "levenberg-marquardt" => Ok(SearchMethod::Lm),
            "adam" => Ok(SearchMethod::Adam),
            _ => Err(format!(
                "unknown slow-point search method {s:?}: use lm (Levenberg–Marquardt) or adam"
            )),
        }
    }
}

/// Everything the finder does after the search, and the search's own settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinderConfig {
    /// The search method (default Levenberg–Marquardt).
    #[serde(default)]
    pub method: SearchMethod,
    /// Adam, iteration cap, convergence and stall rule of the Adam search.
    pub search: SlowPointConfig,
    /// The Levenberg–Marquardt search's settings.
    #[serde(default)]
    pub lm: LmConfig,
    /// A point is kept only when `S ≤ max_speed_sq`, or when the search ended at a
    /// minimum of `S` ([`SearchStop::Minimum`], whatever its `S`: the paper's slow points
    /// are the minima of `S`).
    /// (default 1e-6: it moves less than 1e-3 per step).
    pub max_speed_sq: f32,
    /// Outlier rule: a point farther than `outlier_scale` × (the candidates' mean
    /// distance to their centroid) from that centroid is dropped (default 10, as
    /// FixedPointFinder's `outlier_distance_scale`). 0 turns the rule off.
    pub outlier_scale: f32,
    /// Points closer than this (Euclidean) are one point; the slowest is kept (default
    /// 1e-3, FixedPointFinder's `tol_unique`).
    pub dedup_tol: f32,
    /// An eigenvalue counts as near the unit circle when `||λ| − 1| < unit_tol`
    /// (default 1e-2).
    pub unit_tol: f64,
}

impl Default for FinderConfig {
    fn default() -> Self {
        FinderConfig {
            method: SearchMethod::default(),
            search: SlowPointConfig::default(),
            lm: LmConfig::default(),
            max_speed_sq: 1e-6,
            outlier_scale: 10.0,
            dedup_tol: 1e-3,
            unit_tol: 1e-2,
        }
    }
}

impl FinderConfig {
    pub fn validate(&self) -> Result<()> {
        self.search.validate()?;
        self.lm.validate()?;
        let ok = self.max_speed_sq.is_finite()
            && self.max_speed_sq >= 0.0
            && self.outlier_scale.is_finite()
            && self.outlier_scale >= 0.0
            && self.dedup_tol.is_finite()
            && self.dedup_tol >= 0.0
            && self.unit_tol.is_finite()
            && self.unit_tol >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "the finder's max_speed_sq, outlier_scale, dedup_tol and unit_tol must be finite and ≥ 0; got {self:?}"
            )))
        }
    }
}

/// An eigenvalue of a Jacobian.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eigenvalue {
    pub re: f64,
    pub im: f64,
}

impl Eigenvalue {
    pub fn abs(&self) -> f64 {
        self.re.hypot(self.im)
    }
}

/// One slow point and its linearisation.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowPoint {
    /// The candidate (row of the candidates given) that reached it.
    pub candidate: usize,
    /// The state `[S]`.
    pub state: Vec<f32>,
    /// `S = ‖F(s, x̄) − s‖²`.
    pub speed_sq: f32,
    /// `√S`: how far the state moves in one step.
    pub speed: f32,
    /// The readout's class at `h` (argmax of `W_out h + b_out`), when the model has one.
    pub class: Option<usize>,
    /// `J = ∂F/∂s`, `[S, S]`, row `i` = `∂F_i/∂s`.
    pub jacobian: Vec<f32>,
    /// The eigenvalues of `J`, largest magnitude first.
    pub eigenvalues: Vec<Eigenvalue>,
    /// `max |λ|`.
    pub max_abs_eig: f64,
    /// `max |λ| < 1`.
    pub stable: bool,
    /// How many eigenvalues have `||λ| − 1| < unit_tol`.
    pub near_unit: usize,
    /// Iterations the candidate took (Adam updates, or LM trial steps).
    pub iters: u32,
    /// Why its search stopped.
    pub stop: SearchStop,
    /// How many kept candidates were merged into this point (itself included).
    pub merged: usize,
}

/// What happened to the candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub candidates: usize,
    pub converged: usize,
    pub stalled: usize,
    /// Ended at a minimum of `S` above `tol` (LM only): kept whatever their speed.
    #[serde(default)]
    pub minima: usize,
    pub max_iters: usize,
    /// Dropped: the speed became NaN or infinite.
    pub non_finite: usize,
    /// Dropped: `S > max_speed_sq`.
    pub too_fast: usize,
    /// Dropped by the distance rule.
    pub outliers: usize,
    /// Merged into a slower point.
    pub duplicates: usize,
    /// Distinct points reported.
    pub points: usize,
}

/// The finder's result: the points, slowest first, and how the candidates fared.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowPointReport {
    pub cell: CellDims,
    /// The constant input `x̄ [I]`.
    pub input: Vec<f32>,
    pub config: FinderConfig,
    /// The backend that ran the search.
    pub backend: String,
    pub counts: Counts,
    pub points: Vec<SlowPoint>,
}

/// Checks a model and an input for the finder: the model's parameters fit its cell and
/// are finite, and `x̄` has `I` finite values.
fn check_model_input(model: &Model, x_bar: &[f32]) -> Result<()> {
    model.validate()?;
    check_len(
        "x̄ (the constant input)",
        model.cell.input,
        x_bar.len(),
        || {
            format!(
                "[I={}] for the model's {} cell",
                model.cell.input, model.cell.kind
            )
        },
    )?;
    check_finite("x̄ (the constant input)", x_bar)
}

/// Per candidate: `S` at its final state, its iterations, and how its search ended.
pub type CandidateEnd = (f32, u32, SearchStop);

/// What a search left: the final states `[K, S]` and how each candidate ended.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOutcome {
    pub states: Vec<f32>,
    pub ends: Vec<CandidateEnd>,
}

/// One network's share of an ensemble search ([`search_ensemble`],
/// [`find_slow_points_ensemble`]): its model, constant input `x̄ [I]` and candidates `[K, S]`.
#[derive(Clone, Copy, Debug)]
pub struct EnsembleMember<'a> {
    pub model: &'a Model,
    pub x_bar: &'a [f32],
    pub candidates: &'a [f32],
}

/// Runs the search (`cfg.method`) of every member, the members of one cell together
/// through the backend's ensemble operation (`ensemble_slow_point_lm` or
/// `ensemble_slow_point_iterations`: one launch for all of them on a GPU, side by side on
/// the CPU), and returns each member's outcome, exactly what its search alone leaves.
/// A member whose model, input or candidates are refused gets that error and is left out;
/// the others go on. A backend failure of a shared call is the outer error.
pub fn search_ensemble<B: Backend>(
    backend: &B,
    members: &[EnsembleMember<'_>],
    cfg: &FinderConfig,
) -> Result<Vec<Result<SearchOutcome>>> {
    cfg.validate()?;
    let mut out: Vec<Option<Result<SearchOutcome>>> = members
        .iter()
        .map(|m| {
            check_model_input(m.model, m.x_bar)
                .and_then(|()| {
                    memrnn_core::checks::check_candidates(&m.model.cell, m.candidates).map(|_| ())
                })
                .err()
                .map(Err)
        })
        .collect();
    // Members of one cell (one shape) are searched together, in their order.
    let mut groups: Vec<(CellDims, Vec<usize>)> = vec![];
    for (i, m) in members.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        match groups.iter_mut().find(|(c, _)| *c == m.model.cell) {
            Some((_, g)) => g.push(i),
            None => groups.push((m.model.cell, vec![i])),
        }
    }
    for (cell, group) in groups {
        let params = group
            .iter()
            .map(|&i| backend.upload(&members[i].model.params))
            .collect::<Result<Vec<_>>>()?;
        let xs = group
            .iter()
            .map(|&i| backend.upload(members[i].x_bar))
            .collect::<Result<Vec<_>>>()?;
        match cfg.method {
            SearchMethod::Adam => {
                let mut searches = group
                    .iter()
                    .map(|&i| SlowPointSearch::new(backend, &cell, members[i].candidates))
                    .collect::<Result<Vec<_>>>()?;
                let mut args: Vec<SlowPointArgs<'_, B::Tensor>> = searches
                    .iter_mut()
                    .zip(params.iter().zip(&xs))
                    .map(|(search, (params, x))| SlowPointArgs { params, x, search })
                    .collect();
                backend.ensemble_slow_point_iterations(&cell, &mut args, &cfg.search)?;
                for (&i, search) in group.iter().zip(&searches) {
                    let ends = search
                        .status
                        .iter()
                        .map(|s| (s.speed_sq, s.iters, s.stop.into()))
                        .collect();
                    let states = backend.download(&search.states)?;
                    out[i] = Some(Ok(SearchOutcome { states, ends }));
                }
            }
            SearchMethod::Lm => {
                let mut searches = group
                    .iter()
                    .map(|&i| LmSearch::new(backend, &cell, members[i].candidates, &cfg.lm))
                    .collect::<Result<Vec<_>>>()?;
                let mut args: Vec<LmArgs<'_, B::Tensor>> = searches
                    .iter_mut()
                    .zip(params.iter().zip(&xs))
                    .map(|(search, (params, x))| LmArgs { params, x, search })
                    .collect();
                backend.ensemble_slow_point_lm(&cell, &mut args, &cfg.lm)?;
                for (&i, search) in group.iter().zip(&searches) {
                    let ends = search
                        .status
                        .iter()
                        .map(|s| (s.speed_sq, s.iters, s.stop))
                        .collect();
                    let states = backend.download(&search.states)?;
                    out[i] = Some(Ok(SearchOutcome { states, ends }));
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(Error::InvalidArgument(
                    "internal: a member was never searched".into(),
                ))
            })
        })
        .collect())
}

/// [`find_slow_points`] for every member of an ensemble: the searches together
/// ([`search_ensemble`]), then each member's filtering, de-duplication and analysis on
/// its own. Each member's report is exactly what [`find_slow_points`] gives it alone; a
/// member refused (bad model, input or candidates) gets its error, the others go on.
pub fn find_slow_points_ensemble<B: Backend>(
    backend: &B,
    members: &[EnsembleMember<'_>],
    cfg: &FinderConfig,
) -> Result<Vec<Result<SlowPointReport>>> {
    let outcomes = search_ensemble(backend, members, cfg)?;
    Ok(members
        .iter()
        .zip(outcomes)
        .map(|(m, o)| o.and_then(|o| report(backend, m.model, m.x_bar, m.candidates, o, cfg)))
        .collect())
}

/// Runs the search from `candidates [K, S]` at the constant input `x_bar [I]`, then
/// filters, de-duplicates and analyses the points (see the crate docs).
pub fn find_slow_points<B: Backend>(
    backend: &B,
    model: &Model,
    x_bar: &[f32],
    candidates: &[f32],
    cfg: &FinderConfig,
) -> Result<SlowPointReport> {
    cfg.validate()?;
    check_model_input(model, x_bar)?;
    let cell = model.cell;
    let params = backend.upload(&model.params)?;
    let x = backend.upload(x_bar)?;
    let outcome = match cfg.method {
        SearchMethod::Adam => {
            let mut search = SlowPointSearch::new(backend, &cell, candidates)?;
            backend.slow_point_iterations(&cell, &params, &x, &mut search, &cfg.search)?;
            let ends = search
                .status
                .iter()
                .map(|s| (s.speed_sq, s.iters, s.stop.into()))
                .collect();
            SearchOutcome {
                states: backend.download(&search.states)?,
                ends,
            }
        }
        SearchMethod::Lm => {
            let mut search = LmSearch::new(backend, &cell, candidates, &cfg.lm)?;
            backend.slow_point_lm(&cell, &params, &x, &mut search, &cfg.lm)?;
            let ends = search
                .status
                .iter()
                .map(|s| (s.speed_sq, s.iters, s.stop))
                .collect();
            SearchOutcome {
                states: backend.download(&search.states)?,
                ends,
            }
        }
    };
    report(backend, model, x_bar, candidates, outcome, cfg)
}

/// Filters, de-duplicates and analyses what a search left (see the crate docs).
fn report<B: Backend>(
    backend: &B,
    model: &Model,
    x_bar: &[f32],
    candidates: &[f32],
    outcome: SearchOutcome,
    cfg: &FinderConfig,
) -> Result<SlowPointReport> {
    let cell = model.cell;
    let sd = cell.state_size();
    let SearchOutcome {
        states: found,
        ends: status,
    } = outcome;
    let k = status.len();

    let mut counts = Counts {
        candidates: k,
        ..Counts::default()
    };
    for st in &status {
        match st.2 {
            SearchStop::Converged => counts.converged += 1,
            SearchStop::Minimum => counts.minima += 1,
            SearchStop::Stalled => counts.stalled += 1,
            SearchStop::MaxIters | SearchStop::Running => counts.max_iters += 1,
            SearchStop::NonFinite => counts.non_finite += 1,
        }
    }

    // 1. Speed: finite, and at most max_speed_sq or at a minimum of S.
    let mut kept: Vec<usize> = Vec::with_capacity(k);
    for (i, &(speed_sq, _, stop)) in status.iter().enumerate() {
        if stop == SearchStop::NonFinite || !speed_sq.is_finite() {
            continue;
        }
        if speed_sq > cfg.max_speed_sq && stop != SearchStop::Minimum {
            counts.too_fast += 1;
            continue;
        }
        kept.push(i);
    }
    // 2. Distance to the candidates' centroid (FixedPointFinder's outlier rule).
    if cfg.outlier_scale > 0.0 {
        let mut centroid = vec![0.0f64; sd];
        for row in candidates.chunks_exact(sd) {
            for (c, &v) in centroid.iter_mut().zip(row) {
                *c += v as f64;
            }
        }
        centroid.iter_mut().for_each(|c| *c /= k as f64);
        let dist = |row: &[f32]| -> f64 {
            row.iter()
                .zip(&centroid)
                .map(|(&v, &c)| (v as f64 - c) * (v as f64 - c))
                .sum::<f64>()
                .sqrt()
        };
        let spread = candidates.chunks_exact(sd).map(dist).sum::<f64>() / k as f64;
        if spread > 0.0 {
            let limit = cfg.outlier_scale as f64 * spread;
            let before = kept.len();
            kept.retain(|&i| dist(&found[i * sd..(i + 1) * sd]) <= limit);
            counts.outliers = before - kept.len();
        }
    }
    // 3. De-duplicate, slowest first (ties: lower candidate index).
    kept.sort_by(|&a, &b| status[a].0.total_cmp(&status[b].0).then(a.cmp(&b)));
    let tol2 = (cfg.dedup_tol as f64) * (cfg.dedup_tol as f64);
    let mut unique: Vec<(usize, usize)> = Vec::new();
    for &i in &kept {
        let row = &found[i * sd..(i + 1) * sd];
        let dup = unique.iter_mut().find(|(u, _)| {
            let other = &found[*u * sd..(*u + 1) * sd];
            let d2: f64 = row
                .iter()
                .zip(other)
                .map(|(&a, &b)| (a as f64 - b as f64) * (a as f64 - b as f64))
                .sum();
            d2 < tol2
        });
        match dup {
            Some((_, merged)) => {
                *merged += 1;
                counts.duplicates += 1;
            }
            None => unique.push((i, 1)),
        }
    }
    counts.points = unique.len();

    // 4. Analyse the distinct points.
    let mut states = Vec::with_capacity(unique.len() * sd);
    for &(i, _) in &unique {
        states.extend_from_slice(&found[i * sd..(i + 1) * sd]);
    }
    let analysed = analyse_points(backend, model, x_bar, &states, cfg.unit_tol)?;
    let points = analysed
        .into_iter()
        .zip(&unique)
        .map(|(mut p, &(i, merged))| {
            p.candidate = i;
            p.iters = status[i].1;
            p.stop = status[i].2;
            p.merged = merged;
            p
        })
        .collect();
    Ok(SlowPointReport {
        cell,
        input: x_bar.to_vec(),
        config: *cfg,
        backend: backend.name(),
        counts,
        points,
    })
}

/// Points per `step_jacobian` call (bounds the memory of the `[N, S, S]` batch).
const JACOBIAN_BATCH: usize = 64;

/// The analysis of given states `[P, S]` without a search: speed (recomputed with
/// `step_speed`), readout class, Jacobian, its eigenvalues, stability and the count near
/// the unit circle. `candidate` is the row index, `iters` 0, `stop` `Running`, `merged` 1.
/// Useful on its own for the per-class mean states.
pub fn analyse_points<B: Backend>(
    backend: &B,
    model: &Model,
    x_bar: &[f32],
    states: &[f32],
    unit_tol: f64,
) -> Result<Vec<SlowPoint>> {
    check_model_input(model, x_bar)?;
    let cell = model.cell;
    let sd = cell.state_size();
    if states.len() % sd != 0 {
        return Err(Error::shape(
            "states",
            states.len().div_ceil(sd) * sd,
            states.len(),
            format!("[P, S={sd}]"),
        ));
    }
    check_finite("states", states)?;
    let p = states.len() / sd;
    let params = backend.upload(&model.params)?;
    let mut out = Vec::with_capacity(p);
    for start in (0..p).step_by(JACOBIAN_BATCH) {
        let n = JACOBIAN_BATCH.min(p - start);
        let rows = &states[start * sd..(start + n) * sd];
        let s = backend.upload(rows)?;
        let xs: Vec<f32> = x_bar.iter().copied().cycle().take(n * cell.input).collect();
        let x = backend.upload(&xs)?;
        let speed = backend.download(&backend.step_speed(&cell, &params, &s, &x, n)?)?;
        let jac = backend.download(&backend.step_jacobian(&cell, &params, &s, &x, n)?)?;
        for j in 0..n {
            let jacobian = jac[j * sd * sd..(j + 1) * sd * sd].to_vec();
            let eigenvalues = crate::eigen::eigenvalues_sorted(&jacobian, sd)?;
            let max_abs_eig = eigenvalues.first().map_or(0.0, Eigenvalue::abs);
            let near_unit = eigenvalues
                .iter()
                .filter(|e| (e.abs() - 1.0).abs() < unit_tol)
                .count();
            let state = rows[j * sd..(j + 1) * sd].to_vec();
            let class = model.readout.as_ref().map(|r| {
                let h = &state[..cell.hidden];
                let mut best = (0usize, f32::NEG_INFINITY);
                for c in 0..r.classes {
                    let w = &r.weight[c * r.hidden..(c + 1) * r.hidden];
                    let y = r.bias[c] + w.iter().zip(h).map(|(a, b)| a * b).sum::<f32>();
                    if y > best.1 {
                        best = (c, y);
                    }
                }
                best.0
            });
            out.push(SlowPoint {
                candidate: start + j,
                state,
                speed_sq: speed[j],
                speed: speed[j].sqrt(),
                class,
                jacobian,
                eigenvalues,
                max_abs_eig,
                stable: max_abs_eig < 1.0,
                near_unit,
                iters: 0,
                stop: SearchStop::Running,
                merged: 1,
            });
        }
    }
    Ok(out)
}
