//! Does storing the carried hidden state in bf16 or f16 destroy the memory?
//!
//! memrnn stores `W_hh` in half precision on request ([`Precision`]) but always carries
//! the state `s_t` in f32. Half-precision RNN modules elsewhere (cuDNN, PyTorch's half
//! modules) also store the state they carry from step to step in half precision. Memory in
//! these networks lives near slow points, where one step moves the state by far less than
//! bf16's spacing (2⁻⁹ at |h| ≈ 0.5): rounding the state after every step may wash the
//! memory out, or freeze it (the step rounds back onto the same state: a spurious exact
//! fixed point). [`evaluate_storage`] measures which: accuracy against delay exactly as
//! [`crate::evaluate`] scores it (the same batches and trials, from [`EvalBatch::all`]),
//! under several [`StorageMode`]s side by side on the same inputs, and how often the
//! delay-period state stood still.
//!
//! Every mode steps the network one step per `seq_forward` call (T = 1) on the backend
//! whose precision is the mode's `W_hh` storage, and rounds the state it carries between
//! the calls. The readout reads the report step's `h`, rounded like the state in a mode
//! that rounds it (what a half-precision module outputs).

use crate::error::{config_err, Result};
use crate::eval::{eval_member, EvalBatch, EvalConfig, EvalResult};
use crate::task::{digit_table, DigitSet, TaskConfig};
use memrnn_core::{Backend, CellDims, CellKind, Model, Precision, SeqShape};
use serde::{Deserialize, Serialize};

/// How one evaluation stores the recurrent weights and the carried state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageMode {
    /// `W_hh`'s storage: the precision of the backend the mode runs on.
    pub weights: Precision,
    /// After every step the carried `h` is rounded to this format (f32: left as it is).
    pub state: Precision,
    /// The LSTM's cell state `c` is rounded too (else `h` only, `c` stays f32).
    pub round_cell: bool,
}

impl StorageMode {
    /// Everything in f32: what [`crate::evaluate`] computes on an f32 backend.
    pub const F32: StorageMode = StorageMode {
        weights: Precision::F32,
        state: Precision::F32,
        round_cell: false,
    };

    /// `W_hh` in `p`, the state in f32: memrnn's `--precision p`.
    pub const fn weights_only(p: Precision) -> StorageMode {
        StorageMode {
            weights: p,
            state: Precision::F32,
            round_cell: false,
        }
    }

    /// `W_hh` and the carried `h` in `p` (and `c` when `round_cell`).
    pub const fn carried(p: Precision, round_cell: bool) -> StorageMode {
        StorageMode {
            weights: p,
            state: p,
            round_cell,
        }
    }

    /// f32; then for bf16 and f16: `W_hh` alone, `W_hh` and `h`, and for the LSTM
    /// `W_hh`, `h` and `c`.
    pub fn standard(kind: CellKind) -> Vec<StorageMode> {
        let mut v = vec![StorageMode::F32];
        for p in [Precision::Bf16, Precision::F16] {
            v.push(StorageMode::weights_only(p));
            v.push(StorageMode::carried(p, false));
            if kind == CellKind::Lstm {
                v.push(StorageMode::carried(p, true));
            }
        }
        v
    }

    /// `w:bf16 h:f32`, `w:bf16 h:bf16`, `w:bf16 h,c:bf16`.
    pub fn name(&self) -> String {
        let state = if self.round_cell { "h,c" } else { "h" };
        format!("w:{} {state}:{}", self.weights, self.state)
    }

    /// Whether the mode rounds anything it carries.
    pub fn rounds_state(&self) -> bool {
        self.state != Precision::F32
    }

    fn check(&self, cell: &CellDims) -> Result<()> {
        if self.round_cell && cell.kind != CellKind::Lstm {
            return config_err(format!(
                "storage mode {}: only the LSTM carries a cell state c to round; drop round_cell",
                self.name()
            ));
        }
        if self.round_cell && !self.rounds_state() {
            return config_err(format!(
                "storage mode {}: rounding c needs a half-width state format (bf16 or f16)",
                self.name()
            ));
        }
        Ok(())
    }
}

/// One mode's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StorageResult {
    pub mode: StorageMode,
    /// [`StorageMode::name`].
    pub name: String,
    /// Accuracy against delay.
    pub eval: EvalResult,
    /// Delay-period (row, step) pairs observed: steps after the image's up to the
    /// longest delay's report step, on the main trajectory.
    pub delay_steps: u64,
    /// Fraction of them where the whole carried state (`h`, and `c` for the LSTM) did not
    /// change at all: `s_{t+1} == s_t` elementwise.
    pub frozen_state: f64,
    /// Fraction where `h` did not change (the same as `frozen_state` but for the LSTM).
    pub frozen_h: f64,
    /// Fraction of the state's elements that did not change, over the same steps.
    pub frozen_elements: f64,
    /// Median over the pairs of `‖s_{t+1} − s_t‖_∞`.
    pub median_step_inf: f64,
    /// Median over the pairs of `‖h_{t+1} − h_t‖_∞` (the same but for the LSTM).
    pub median_step_h_inf: f64,
}

/// Counts of one mode over the delay period.
#[derive(Default)]
struct StepStats {
    pairs: u64,
    frozen_state: u64,
    frozen_h: u64,
    elements: u64,
    frozen_elements: u64,
    step_inf: Vec<f32>,
    step_h_inf: Vec<f32>,
}

impl StepStats {
    /// One step of `rows` rows from `prev` to `next` (`[rows, S]`, `h` the first `hidden`
    /// values of a row).
    fn add(&mut self, prev: &[f32], next: &[f32], state_size: usize, hidden: usize) {
        for (p, n) in prev
            .chunks_exact(state_size)
            .zip(next.chunks_exact(state_size))
        {
            let same = p.iter().zip(n).filter(|(a, b)| a == b).count();
            self.pairs += 1;
            self.elements += state_size as u64;
            self.frozen_elements += same as u64;
            self.frozen_state += u64::from(same == state_size);
            self.frozen_h += u64::from(p[..hidden] == n[..hidden]);
            let inf = |p: &[f32], n: &[f32]| {
                p.iter()
                    .zip(n)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
            };
            self.step_inf.push(inf(p, n));
            self.step_h_inf.push(inf(&p[..hidden], &n[..hidden]));
        }
    }

    fn frac(part: u64, whole: u64) -> f64 {
        if whole == 0 {
            f64::NAN
        } else {
            part as f64 / whole as f64
        }
    }

    fn median(v: &mut [f32]) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable_by(f32::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
        }
    }
}

/// Rounds the carried state `s [rows, S]` as `mode` stores it: `h` (the first `hidden`
/// values of each row), and `c` (the rest) with `round_cell`. A value the format cannot
/// hold (an f16 beyond 65504) is an error naming it.
pub fn round_state(mode: &StorageMode, cell: &CellDims, s: &mut [f32]) -> Result<()> {
    if !mode.rounds_state() {
        return Ok(());
    }
    let (sd, h) = (cell.state_size(), cell.hidden);
    for row in s.chunks_exact_mut(sd) {
        let upto = if mode.round_cell { sd } else { h };
        for v in &mut row[..upto] {
            let r = mode.state.round(*v);
            if v.is_finite() && !r.is_finite() {
                return config_err(format!(
                    "storage mode {}: a state value {v} does not fit in {} (largest finite \
                     value {}): this network's state cannot be carried in {}; use bf16",
                    mode.name(),
                    mode.state,
                    mode.state.max_finite(),
                    mode.state
                ));
            }
            *v = r;
        }
    }
    Ok(())
}

/// One mode under evaluation: its backend, uploaded network and running counts.
struct Runner<'a, B: Backend> {
    mode: StorageMode,
    backend: &'a B,
    /// Index of the backend in the caller's list (the inputs are uploaded once each).
    backend_index: usize,
    params: B::Tensor,
    readout: B::Tensor,
    classes: usize,
    correct: Vec<[usize; 10]>,
    stats: StepStats,
}

/// The step's input on backend `i`.
fn input_for<T>(xs: &[Option<T>], i: usize) -> Result<&T> {
    match xs.get(i).and_then(Option::as_ref) {
        Some(x) => Ok(x),
        None => config_err(format!("internal: no input drawn for backend {i}")),
    }
}

/// Scores `model` at every delay of `cfg` under each of `modes`, on the same trials as
/// [`crate::evaluate`] (see the module docs). Each mode runs on the backend of `backends`
/// whose [`Backend::precision`] is its `W_hh` storage (an error when none is); the inputs
/// are drawn on `backends[0]`. Results in the order of `modes`.
pub fn evaluate_storage<B: Backend>(
    backends: &[&B],
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    cfg: &EvalConfig,
    modes: &[StorageMode],
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Vec<StorageResult>> {
    cfg.validate()?;
    task.validate()?;
    let Some(&source) = backends.first() else {
        return config_err("no backend to evaluate on: give at least one");
    };
    if modes.is_empty() {
        return config_err("no storage modes to evaluate: give at least one");
    }
    let cell = model.cell;
    let delays = cfg.sorted_delays();
    let mut runners = vec![];
    for &mode in modes {
        mode.check(&cell)?;
        let Some(backend_index) = backends.iter().position(|b| b.precision() == mode.weights)
        else {
            return config_err(format!(
                "storage mode {}: no backend stores W_hh in {}; pass one made with \
                 with_precision({})",
                mode.name(),
                mode.weights,
                mode.weights
            ));
        };
        let backend = backends[backend_index];
        let (params, readout, classes) = eval_member(backend, model, set, cfg)?;
        runners.push(Runner {
            mode,
            backend,
            backend_index,
            params,
            readout,
            classes,
            correct: vec![[0usize; 10]; delays.len()],
            stats: StepStats::default(),
        });
    }
    let digits = digit_table(source, set)?;
    let mut used = vec![false; backends.len()];
    for r in &runners {
        used[r.backend_index] = true;
    }
    let (sd, hidden) = (cell.state_size(), cell.hidden);
    let mut counts = [0usize; 10];
    for plan in EvalBatch::all(cfg, task) {
        let rows = plan.rows;
        let shape = SeqShape::new(1, rows)?;
        let trials = plan.chunk(0, 1, None).trials(digits.counts());
        for tr in &trials {
            counts[tr.digit as usize] += 1;
        }
        // The step's inputs, drawn on `source` and uploaded once to every other backend
        // a mode runs on.
        let inputs = |t: usize, t_report: Option<u32>| -> Result<Vec<Option<B::Tensor>>> {
            let x = source.task_chunk(&digits, &plan.chunk(t, 1, t_report))?;
            let mut xs: Vec<Option<B::Tensor>> = backends.iter().map(|_| None).collect();
            if used.iter().skip(1).any(|&u| u) {
                let host = source.download(&x)?;
                for (i, _) in used.iter().enumerate().skip(1).filter(|(_, &u)| u) {
                    xs[i] = Some(backends[i].upload(&host)?);
                }
            }
            xs[0] = Some(x);
            Ok(xs)
        };
        // Each mode's carried state, on its backend and on the host (`None`: zeros).
        let mut states: Vec<Option<B::Tensor>> = runners.iter().map(|_| None).collect();
        let mut host_states = vec![vec![0f32; rows * sd]; runners.len()];
        let mut t = 0usize; // steps done on the main trajectory
        for (di, &d) in delays.iter().enumerate() {
            let t_s = plan.t_read as usize + d;
            while t < t_s {
                let xs = inputs(t, None)?;
                // Step t reads noise after the image: the delay period.
                let in_delay = t > plan.t_read as usize;
                for (j, r) in runners.iter_mut().enumerate() {
                    let x = input_for(&xs, r.backend_index)?;
                    let f =
                        r.backend
                            .seq_forward(&cell, &r.params, shape, x, states[j].as_ref())?;
                    let mut s = r.backend.download(&f.s_final)?;
                    round_state(&r.mode, &cell, &mut s)?;
                    if in_delay {
                        r.stats.add(&host_states[j], &s, sd, hidden);
                    }
                    states[j] = Some(if r.mode.rounds_state() {
                        r.backend.upload(&s)?
                    } else {
                        f.s_final
                    });
                    host_states[j] = s;
                }
                t += 1;
            }
            // Branch: step t_s with the trigger on (t_s ≤ 2·MAX_DELAY fits a u32).
            let xs = inputs(t_s, Some(t_s as u32))?;
            for (j, r) in runners.iter_mut().enumerate() {
                let x = input_for(&xs, r.backend_index)?;
                let f = r
                    .backend
                    .seq_forward(&cell, &r.params, shape, x, states[j].as_ref())?;
                let h = if r.mode.rounds_state() {
                    let mut h = r.backend.download(&f.h_seq)?;
                    for v in &mut h {
                        *v = r.mode.state.round(*v);
                    }
                    r.backend.upload(&h)?
                } else {
                    f.h_seq
                };
                let pred = r
                    .backend
                    .readout_argmax(hidden, r.classes, &h, &r.readout)?;
                let pred = r.backend.download(&pred)?;
                for (tr, &p) in trials.iter().zip(&pred) {
                    if p as usize == tr.digit as usize + 1 {
                        r.correct[di][tr.digit as usize] += 1;
                    }
                }
                if let Some(pb) = progress {
                    pb.inc(1);
                }
            }
        }
    }
    Ok(runners
        .into_iter()
        .map(|mut r| StorageResult {
            mode: r.mode,
            name: r.mode.name(),
            eval: EvalResult::from_counts(&delays, &r.correct, counts),
            delay_steps: r.stats.pairs,
            frozen_state: StepStats::frac(r.stats.frozen_state, r.stats.pairs),
            frozen_h: StepStats::frac(r.stats.frozen_h, r.stats.pairs),
            frozen_elements: StepStats::frac(r.stats.frozen_elements, r.stats.elements),
            median_step_inf: StepStats::median(&mut r.stats.step_inf),
            median_step_h_inf: StepStats::median(&mut r.stats.step_h_inf),
        })
        .collect())
}

/// A plain-text table of `results`: one row per mode, accuracy per delay, then the
/// delay period's frozen fractions and median step.
pub fn storage_table(results: &[StorageResult]) -> String {
    let Some(first) = results.first() else {
        return String::new();
    };
    let mut s = format!("{:<18}", "storage");
    for d in &first.eval.delays {
        s += &format!(" {:>7}", format!("acc@{d}"));
    }
    s += &format!(
        " | {:>9} {:>9} {:>9} {:>10} {:>10}\n",
        "frozen s", "frozen h", "frozen el", "med|Δs|∞", "med|Δh|∞"
    );
    for r in results {
        s += &format!("{:<18}", r.name);
        for a in &r.eval.accuracy {
            s += &format!(" {a:>7.3}");
        }
        s += &format!(
            " | {:>9.4} {:>9.4} {:>9.4} {:>10.3e} {:>10.3e}\n",
            r.frozen_state, r.frozen_h, r.frozen_elements, r.median_step_inf, r.median_step_h_inf
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_modes_name_what_they_round() {
        let names: Vec<String> = StorageMode::standard(CellKind::Lstm)
            .iter()
            .map(StorageMode::name)
            .collect();
        assert_eq!(
            names,
            [
                "w:f32 h:f32",
                "w:bf16 h:f32",
                "w:bf16 h:bf16",
                "w:bf16 h,c:bf16",
                "w:f16 h:f32",
                "w:f16 h:f16",
                "w:f16 h,c:f16"
            ]
        );
        assert_eq!(StorageMode::standard(CellKind::Gru).len(), 5);
    }

    #[test]
    fn round_state_rounds_h_and_only_with_round_cell_c() {
        let cell = CellDims::new(CellKind::Lstm, 3, 2).unwrap();
        let row = [0.1f32, -0.3, 1.7, 2.9];
        for round_cell in [false, true] {
            let mode = StorageMode::carried(Precision::Bf16, round_cell);
            let mut s: Vec<f32> = row.iter().chain(&row).copied().collect();
            round_state(&mode, &cell, &mut s).unwrap();
            for (i, (&got, &was)) in s.iter().zip(row.iter().cycle()).enumerate() {
                let rounded = i % 4 < 2 || round_cell;
                let want = if rounded {
                    Precision::Bf16.round(was)
                } else {
                    was
                };
                assert_eq!(got, want, "element {i}, round_cell {round_cell}");
            }
        }
        let mut big = vec![0.0f32, 0.0, 7e4, 0.0];
        let err = round_state(&StorageMode::carried(Precision::F16, true), &cell, &mut big)
            .unwrap_err()
            .to_string();
        assert!(err.contains("70000") && err.contains("bf16"), "{err}");
    }

    #[test]
    fn step_stats_count_frozen_rows_and_elements() {
        let mut st = StepStats::default();
        // Two rows of S = 4, H = 2: the first unchanged, the second changes c only.
        let prev = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0];
        let next = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.5, 4.0];
        st.add(&prev, &next, 4, 2);
        assert_eq!((st.pairs, st.frozen_state, st.frozen_h), (2, 1, 2));
        assert_eq!((st.elements, st.frozen_elements), (8, 7));
        assert_eq!(StepStats::median(&mut st.step_inf), 0.25);
        assert_eq!(StepStats::median(&mut st.step_h_inf), 0.0);
    }

    #[test]
    fn modes_that_do_not_fit_the_cell_are_refused() {
        let gru = CellDims::new(CellKind::Gru, 3, 2).unwrap();
        let err = StorageMode::carried(Precision::Bf16, true)
            .check(&gru)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cell state"), "{err}");
        let lstm = CellDims::new(CellKind::Lstm, 3, 2).unwrap();
        let odd = StorageMode {
            weights: Precision::Bf16,
            state: Precision::F32,
            round_cell: true,
        };
        assert!(odd.check(&lstm).is_err());
    }
}
