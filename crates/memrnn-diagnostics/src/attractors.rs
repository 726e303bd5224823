//! Attractors under a constant input: run `F(·, x̄)` from many random initial states, drop
//! the transient, detect each run's period (fixed point = period 1, cycles of period
//! `p`) from its last states, cluster the orbits, and project the last states for an
//! orbit diagram.

use crate::net::Net;
use memrnn_core::{check_len, Backend, Error, Result, SeqShape};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The axis of the orbit diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// The first principal component of all recorded states (sign: its largest
    /// component positive).
    FirstPrincipalComponent,
    /// One state coordinate (a hidden unit, or `H + j` for the LSTM's `c_j`).
    Unit(usize),
}

/// What an attractor search runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttractorConfig {
    /// Random initial states (runs).
    pub runs: usize,
    /// Initial states are uniform in `[−init_scale, init_scale]^S`.
    pub init_scale: f32,
    /// Steps dropped before the first record.
    pub transient: usize,
    /// Runs with no period after `transient` steps go on, the transient doubling each
    /// round, up to this many steps before their last record.
    pub max_steps: usize,
    /// States recorded per run after the transient (`M`).
    pub record: usize,
    /// The longest period looked for (`< record`).
    pub max_period: usize,
    /// A run has period `p` when `max_t ‖s_{t+p} − s_t‖_∞ < period_tol` over its record.
    /// The default, 1e-6, is a few f32 ulps of a state near 1: a run that still moves
    /// 1e-4 per step along a slow manifold is not a fixed point (it may travel far yet).
    pub period_tol: f32,
    /// Two orbits of one period are one attractor when, for some phase shift, their
    /// points are within `cluster_tol` (∞-norm).
    pub cluster_tol: f32,
    pub projection: Projection,
    pub seed: u64,
}

impl Default for AttractorConfig {
    fn default() -> Self {
        AttractorConfig {
            runs: 64,
            init_scale: 1.0,
            transient: 1000,
            max_steps: 65_536,
            record: 64,
            max_period: 16,
            period_tol: 1e-6,
            cluster_tol: 1e-2,
            projection: Projection::FirstPrincipalComponent,
            seed: 0xa77,
        }
    }
}

impl AttractorConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = self.runs > 0
            && self.record >= 2
            && self.max_period >= 1
            && self.max_period < self.record
            && self.max_steps >= self.transient
            && self.init_scale.is_finite()
            && self.init_scale >= 0.0
            && self.period_tol > 0.0
            && self.cluster_tol > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "an attractor search needs runs ≥ 1, 1 ≤ max_period < record, max_steps ≥ transient, init_scale ≥ 0 and positive tolerances; got {self:?}"
            )))
        }
    }
}

/// One attractor found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attractor {
    /// 1 for a fixed point, `p` for a `p`-cycle.
    pub period: usize,
    /// The orbit's `p` states `[p][S]`, in the order the map visits them.
    pub points: Vec<Vec<f32>>,
    /// Runs that ended on it, and their fraction of all runs.
    pub basin_size: usize,
    pub basin_fraction: f64,
    /// `max_i ‖F(a_i, x̄) − a_{i+1 mod p}‖`: how well the stored orbit closes (for a fixed
    /// point, its speed `√S`).
    pub residual: f64,
    /// The points projected on the orbit diagram's axis.
    pub projection: Vec<f64>,
}

/// One run's last `M` states projected on the diagram's axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrbitRun {
    /// Index into [`AttractorReport::attractors`], `None` when no period was found.
    pub attractor: Option<usize>,
    pub values: Vec<f64>,
    /// Steps the run took before its last `M` states.
    #[serde(default)]
    pub steps: usize,
    /// `max_t ‖s_{t+1} − s_t‖_∞` over those states: how far from settled an unresolved
    /// run still was (a slow drift along a slow manifold, or a long cycle, or chaos).
    #[serde(default)]
    pub drift: f64,
}

/// The data of an orbit diagram: runs (sorted by attractor) against their projected
/// last states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrbitDiagram {
    /// "pc1" or "unit j".
    pub axis: String,
    /// The projection is `direction · (s − center)`.
    pub direction: Vec<f64>,
    pub center: Vec<f64>,
    pub runs: Vec<OrbitRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttractorReport {
    pub definition: String,
    /// The constant input `x̄`.
    pub input: Vec<f32>,
    /// Attractors, largest basin first.
    pub attractors: Vec<Attractor>,
    /// How many of them are fixed points.
    pub fixed_points: usize,
    /// Runs with no period up to `max_period` after `max_steps` steps (still drifting,
    /// longer cycles, chaos).
    pub unresolved: usize,
    pub runs: usize,
    /// The most steps a run was followed before its last record (the config's).
    #[serde(default)]
    pub max_steps: usize,
    /// The period tolerance used (the config's).
    #[serde(default)]
    pub period_tol: f32,
    pub orbit: OrbitDiagram,
}

pub(crate) const ATTRACTOR_DEF: &str = "Attractors of s ↦ F(s, x̄) under a constant input: runs from random initial states, transient dropped; a run has period p when its last states repeat every p steps within period_tol (runs without one go on, the transient doubling, up to max_steps); orbits of one period within cluster_tol (up to phase) are one attractor; basin size = runs ending on it. Orbit diagram: each run's last states projected on an axis (first principal component or one unit).";

/// Searches the attractors of `F(·, x̄)` for `x̄ = x_const [I]`.
pub fn attractors<B: Backend>(
    net: &Net<'_, B>,
    x_const: &[f32],
    cfg: &AttractorConfig,
) -> Result<AttractorReport> {
    cfg.validate()?;
    let (sd, n, m) = (net.state_size(), cfg.runs, cfg.record);
    check_len("constant input", net.cell.input, x_const.len(), || {
        format!("[I={}]", net.cell.input)
    })?;
    memrnn_core::check_finite("constant input", x_const)?;
    if let Projection::Unit(u) = cfg.projection {
        if u >= sd {
            return Err(Error::InvalidArgument(format!(
                "orbit-diagram unit {u} is out of range: the state has {sd} coordinates (0..{sd})"
            )));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let s0: Vec<f32> = (0..n * sd)
        .map(|_| {
            if cfg.init_scale > 0.0 {
                rng.random_range(-cfg.init_scale..=cfg.init_scale)
            } else {
                0.0
            }
        })
        .collect();
    let search = follow_runs(net, x_const, &s0, cfg)?;
    let (periods, records) = (&search.periods, &search.records);
    let state = |t: usize, r: usize| &records[r][t * sd..(t + 1) * sd];
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };

    // Cluster orbits: (period, points, members).
    let mut clusters: Vec<(usize, Vec<Vec<f32>>, usize)> = Vec::new();
    let mut run_cluster = vec![None; n];
    for r in 0..n {
        let Some(p) = periods[r] else { continue };
        let pts: Vec<Vec<f32>> = (m - p..m).map(|t| state(t, r).to_vec()).collect();
        let found = clusters.iter().position(|(cp, cpts, _)| {
            *cp == p
                && (0..p).any(|shift| {
                    (0..p).all(|i| dist(&pts[i], &cpts[(i + shift) % p]) < cfg.cluster_tol)
                })
        });
        let c = match found {
            Some(c) => c,
            None => {
                clusters.push((p, pts, 0));
                clusters.len() - 1
            }
        };
        clusters[c].2 += 1;
        run_cluster[r] = Some(c);
    }
    // Largest basin first; renumber.
    let mut order: Vec<usize> = (0..clusters.len()).collect();
    order.sort_by(|&a, &b| {
        clusters[b]
            .2
            .cmp(&clusters[a].2)
            .then(clusters[a].0.cmp(&clusters[b].0))
    });
    let mut new_index = vec![0; clusters.len()];
    for (i, &c) in order.iter().enumerate() {
        new_index[c] = i;
    }
    let run_cluster: Vec<Option<usize>> = run_cluster
        .iter()
        .map(|c| c.map(|c| new_index[c]))
        .collect();

    // Projection axis.
    let (axis, direction, center) = match cfg.projection {
        Projection::Unit(u) => {
            let mut d = vec![0.0; sd];
            d[u] = 1.0;
            (format!("unit {u}"), d, vec![0.0; sd])
        }
        Projection::FirstPrincipalComponent => {
            let all: Vec<f32> = records.iter().flatten().copied().collect();
            let (d, c) = first_pc(&all, m * n, sd)?;
            ("pc1".to_string(), d, c)
        }
    };
    let project = |s: &[f32]| -> f64 {
        s.iter()
            .zip(&direction)
            .zip(&center)
            .map(|((&v, &d), &c)| (v as f64 - c) * d)
            .sum()
    };

    // Residuals: one step from every stored point.
    let all_pts: Vec<f32> = order
        .iter()
        .flat_map(|&c| clusters[c].1.iter().flatten().copied())
        .collect();
    let n_pts = all_pts.len() / sd;
    let next = if n_pts > 0 {
        let xs: Vec<f32> = (0..n_pts).flat_map(|_| x_const.iter().copied()).collect();
        net.step(&all_pts, &xs, n_pts)?
    } else {
        Vec::new()
    };
    let mut offset = 0;
    let mut list = Vec::with_capacity(order.len());
    for &c in &order {
        let (p, pts, size) = &clusters[c];
        let residual = (0..*p)
            .map(|i| {
                let f = &next[(offset + i) * sd..(offset + i + 1) * sd];
                let want = &pts[(i + 1) % p];
                f.iter()
                    .zip(want)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0f64, f64::max);
        offset += p;
        list.push(Attractor {
            period: *p,
            projection: pts.iter().map(|s| project(s)).collect(),
            points: pts.clone(),
            basin_size: *size,
            basin_fraction: *size as f64 / n as f64,
            residual,
        });
    }
    let mut runs: Vec<OrbitRun> = (0..n)
        .map(|r| OrbitRun {
            attractor: run_cluster[r],
            values: (0..m).map(|t| project(state(t, r))).collect(),
            steps: search.steps[r],
            drift: (1..m)
                .map(|t| dist(state(t, r), state(t - 1, r)) as f64)
                .fold(0.0, f64::max),
        })
        .collect();
    runs.sort_by_key(|r| r.attractor.unwrap_or(usize::MAX));
    Ok(AttractorReport {
        definition: ATTRACTOR_DEF.into(),
        input: x_const.to_vec(),
        fixed_points: list.iter().filter(|a| a.period == 1).count(),
        unresolved: periods.iter().filter(|p| p.is_none()).count(),
        runs: n,
        max_steps: cfg.max_steps,
        period_tol: cfg.period_tol,
        attractors: list,
        orbit: OrbitDiagram {
            axis,
            direction,
            center,
            runs,
        },
    })
}

/// Where the runs ended: each run's period (if found), its last `M` states `[M·S]`, and
/// the steps it ran before them.
struct RunSearch {
    periods: Vec<Option<usize>>,
    records: Vec<Vec<f32>>,
    steps: Vec<usize>,
}

/// The period of one record `[M·S]`: the least `p ≤ max_period` with
/// `max_t ‖s_{t+p} − s_t‖_∞ < period_tol`.
fn period_of(record: &[f32], sd: usize, cfg: &AttractorConfig) -> Option<usize> {
    let m = record.len() / sd;
    let state = |t: usize| &record[t * sd..(t + 1) * sd];
    (1..=cfg.max_period).find(|&p| {
        (0..m - p).all(|t| {
            state(t + p)
                .iter()
                .zip(state(t))
                .all(|(a, b)| (a - b).abs() < cfg.period_tol)
        })
    })
}

/// Runs every initial state until its last `M` states repeat, in rounds: after
/// `transient` steps each run records `M` states; runs without a period go on, the
/// transient doubling each round, until `max_steps`. Near a slow point of a trained
/// network a run can take tens of thousands of steps to settle, and a fixed transient
/// leaves every run unresolved. All rounds run on the folded network
/// ([`Net::with_constant_input`]), only the runs still going.
fn follow_runs<B: Backend>(
    net: &Net<'_, B>,
    x_const: &[f32],
    s0: &[f32],
    cfg: &AttractorConfig,
) -> Result<RunSearch> {
    let (sd, n, m) = (net.state_size(), cfg.runs, cfg.record);
    let folded = net.with_constant_input(x_const)?;
    let x0 = &Net::<B>::FOLDED_INPUT;
    let mut out = RunSearch {
        periods: vec![None; n],
        records: vec![Vec::new(); n],
        steps: vec![0; n],
    };
    let mut going: Vec<usize> = (0..n).collect();
    let mut states = s0.to_vec(); // [going, S]
    let (mut done, mut target) = (0usize, cfg.transient);
    loop {
        let rows = going.len();
        let s = folded.run_constant(x0, &states, rows, target - done)?;
        let xs = vec![0f32; (m - 1) * rows];
        let traj = folded.trajectory(&xs, SeqShape::new(m - 1, rows)?, Some(&s))?; // [M, rows, S]
        done = target + m - 1;
        let mut still = Vec::new();
        states.clear();
        for (k, &r) in going.iter().enumerate() {
            let rec: Vec<f32> = (0..m)
                .flat_map(|t| {
                    traj[(t * rows + k) * sd..(t * rows + k + 1) * sd]
                        .iter()
                        .copied()
                })
                .collect();
            out.periods[r] = period_of(&rec, sd, cfg);
            out.steps[r] = target;
            if out.periods[r].is_none() {
                still.push(r);
                states.extend_from_slice(&rec[(m - 1) * sd..]);
            }
            out.records[r] = rec;
        }
        going = still;
        let next = target.saturating_mul(2).max(done).min(cfg.max_steps);
        if going.is_empty() || next <= target || next < done {
            return Ok(out);
        }
        target = next;
    }
}

/// The first principal component (unit, largest component positive) and the mean of
/// `rows [n, d]`; the first axis when the states do not vary.
fn first_pc(rows: &[f32], n: usize, d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut mean = vec![0f64; d];
    for row in rows.chunks_exact(d).take(n) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = faer::Mat::<f64>::zeros(d, d);
    for row in rows.chunks_exact(d).take(n) {
        let c: Vec<f64> = row.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
        for i in 0..d {
            for j in 0..=i {
                cov[(i, j)] += c[i] * c[j];
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            cov[(j, i)] = cov[(i, j)];
        }
    }
    let mut dir = vec![0f64; d];
    if cov[(0, 0)] == 0.0 && (0..d).all(|i| cov[(i, i)] == 0.0) {
        dir[0] = 1.0;
        return Ok((dir, mean));
    }
    let eig = cov
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::Backend {
            backend: "faer".into(),
            reason: format!(
                "the eigendecomposition of a {d}×{d} state covariance did not converge ({e:?})"
            ),
        })?;
    let u = eig.U();
    for (i, v) in dir.iter_mut().enumerate() {
        *v = u[(i, d - 1)];
    }
    let big = dir
        .iter()
        .copied()
        .fold(0f64, |a, v| if v.abs() > a.abs() { v } else { a });
    if big < 0.0 {
        dir.iter_mut().for_each(|v| *v = -*v);
    }
    Ok((dir, mean))
}
