//! The options of the analysis commands (`memrnn slow-points`, `memrnn diagnose`),
//! validated here, in the library, as [`crate::train::TrainConfig`] and
//! [`crate::eval::EvalConfig`] validate training and evaluation: ranges first, then the
//! memory the command would allocate for a given network against this machine's
//! ([`crate::limits`]).

use crate::error::{config_err, Result};
use crate::eval::MAX_DELAY;
use crate::limits::{self, MemoryBudget};
use memrnn_core::CellDims;
use memrnn_diagnostics::DiagnoseConfig;
use memrnn_slowpoints::FinderConfig;

/// `memrnn slow-points`: the per-class mean states and `candidates` delay-trajectory
/// states as candidates of a finder run.
#[derive(Clone, Debug)]
pub struct SlowPointOptions {
    /// Candidates from delay trajectories (besides the 10 per-class mean states).
    pub candidates: usize,
    /// Trajectory candidates are taken up to this many steps after the image.
    pub delay: usize,
    /// Trials behind the class means.
    pub mean_trials: usize,
    pub finder: FinderConfig,
    pub seed: u64,
}

impl SlowPointOptions {
    pub fn validate(&self) -> Result<()> {
        self.finder.validate()?;
        if self.candidates > limits::MAX_CANDIDATES {
            return config_err(format!(
                "{} candidates (--candidates): at most {} (de-duplication merges far fewer points)",
                self.candidates,
                limits::MAX_CANDIDATES
            ));
        }
        if self.delay == 0 || self.delay > MAX_DELAY {
            return config_err(format!(
                "delay {} (--delay): trajectory candidates are taken 1 to {MAX_DELAY} steps after the image",
                self.delay
            ));
        }
        if self.mean_trials < 10 || self.mean_trials > limits::MAX_TRIALS {
            return config_err(format!(
                "{} trials for the class means: give 10 to {}",
                self.mean_trials,
                limits::MAX_TRIALS
            ));
        }
        let it = self.finder.search.max_iters;
        if it == 0 || it > limits::MAX_SEARCH_ITERS {
            return config_err(format!(
                "{it} slow-point search iterations (--max-iters; --finder-iters in `run`): give 1 to {} (0 would report the candidates \
                 themselves as if they had been searched)",
                limits::MAX_SEARCH_ITERS
            ));
        }
        Ok(())
    }

    /// [`Self::validate`], then the memory a search on `cell` would allocate, its
    /// starting states run from a digit table of `images` images.
    pub fn validate_for(&self, cell: &CellDims, images: usize) -> Result<()> {
        self.validate()?;
        let need = limits::slow_point_bytes(cell, self.candidates, self.delay, self.mean_trials)
            .saturating_add(limits::digit_table_bytes(
                images,
                cell.input.saturating_sub(1),
            ));
        MemoryBudget::detect()?.check(
            &format!(
                "a slow-point search from {} candidates of a {} cell (H {}) over {} steps \
                 (starting states run from {images} digit images)",
                self.candidates + 10,
                cell.kind,
                cell.hidden,
                self.delay
            ),
            need,
            "lower --candidates or --delay",
        )
    }
}

/// `memrnn diagnose`: `trials` delay sequences of `steps` steps and the diagnostics of
/// `config`.
#[derive(Clone, Debug)]
pub struct DiagnoseOptions {
    pub trials: usize,
    pub steps: usize,
    pub config: DiagnoseConfig,
    pub seed: u64,
}

impl DiagnoseOptions {
    /// A [`DiagnoseConfig`] from JSON, refusing unknown keys (by name) and invalid values.
    pub fn config_from_json(text: &str) -> Result<DiagnoseConfig> {
        let c: DiagnoseConfig = limits::from_json_strict(text)
            .map_err(|e| crate::TrainError::Config(format!("not a DiagnoseConfig: {e}")))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.trials < 2 || self.trials > limits::MAX_TRIALS {
            return config_err(format!(
                "{} trials (--trials): give 2 to {} (the memory probe trains on some and tests on the rest)",
                self.trials,
                limits::MAX_TRIALS
            ));
        }
        if self.steps < 2 || self.steps > MAX_DELAY {
            return config_err(format!(
                "{} steps per trial (--steps): give 2 to {MAX_DELAY} (a trial is the image, then noise)",
                self.steps
            ));
        }
        let c = &self.config;
        if c.lipschitz.is_none()
            && c.lyapunov.is_none()
            && c.attractors.is_none()
            && c.memory.is_none()
        {
            return config_err(
                "the diagnostics config turns every diagnostic off (all null): nothing would be \
                 measured; enable at least one of lipschitz, lyapunov, attractors, memory",
            );
        }
        if let Some(l) = &c.lipschitz {
            l.validate()?;
        }
        if let Some(a) = &c.attractors {
            a.validate()?;
        }
        if let Some(l) = &c.lyapunov {
            if l.exponents == 0 {
                return config_err(
                    "lyapunov.exponents is 0: ask for at least 1 (or set lyapunov to null)",
                );
            }
        }
        if let Some(m) = &c.memory {
            let ok = m.train_fraction > 0.0
                && m.train_fraction < 1.0
                && m.ridge.is_finite()
                && m.ridge >= 0.0;
            if !ok {
                return config_err(format!(
                    "memory.train_fraction {} must be in (0, 1) and memory.ridge {} finite and ≥ 0",
                    m.train_fraction, m.ridge
                ));
            }
            if m.min_step >= self.steps {
                return config_err(format!(
                    "memory.min_step {} leaves nothing to probe in trials of {} steps (--steps)",
                    m.min_step, self.steps
                ));
            }
        }
        Ok(())
    }

    /// What the run will do differently from what the options say, in words (shown to
    /// the user): the memory curve stops at the trial's last step.
    pub fn notes(&self) -> Vec<String> {
        let mut v = vec![];
        if let Some(l) = &self.config.lyapunov {
            if l.transient >= self.steps {
                v.push(format!(
                    "lyapunov.transient {} is not below the {} steps per trial: the diagnostics use {}",
                    l.transient,
                    self.steps,
                    self.steps / 2
                ));
            }
        }
        if let Some(m) = &self.config.memory {
            if m.max_delay >= self.steps {
                v.push(format!(
                    "the memory curve goes up to delay {} (trials of {} steps), not memory.max_delay {}",
                    self.steps - 1,
                    self.steps,
                    m.max_delay
                ));
            }
        }
        v
    }

    /// [`Self::validate`], then the memory the diagnostics of `cell` would allocate.
    pub fn validate_for(&self, cell: &CellDims) -> Result<()> {
        self.validate()?;
        let c = &self.config;
        if let Some(l) = &c.lyapunov {
            if l.exponents > cell.state_size() {
                return config_err(format!(
                    "lyapunov.exponents {}: a {} cell of hidden size {} has {} exponents",
                    l.exponents,
                    cell.kind,
                    cell.hidden,
                    cell.state_size()
                ));
            }
        }
        let need = limits::diagnose_bytes(
            cell,
            self.trials,
            self.steps,
            c.lyapunov.map_or(0, |l| l.exponents),
            c.attractors.map_or(0, |a| a.runs),
            c.attractors.map_or(0, |a| a.record),
            c.lipschitz.map_or(0, |l| l.chunk),
        );
        MemoryBudget::detect()?.check(
            &format!(
                "diagnostics of {} trials of {} steps of a {} cell (H {})",
                self.trials, self.steps, cell.kind, cell.hidden
            ),
            need,
            "lower --trials or --steps (or the attractor runs / record in --config)",
        )
    }
}
