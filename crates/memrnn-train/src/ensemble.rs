//! Ensembles: many networks trained as one job on one backend.
//!
//! An [`EnsembleTrainer`] holds E [`Trainer`]s (each its own seed, curriculum stage,
//! parameters, optimiser state, checkpoint and metrics) sharing one upload of the digits,
//! and takes their steps together ([`Trainer::steps_together`]): one backend call per
//! operation for the members of one cell and sequence length, through the backend's
//! `ensemble_*` operations (on the CPU the members run side by side across the pool; a
//! GPU backend may fuse them into one launch). Everything around the step (reading the
//! record back, logging, checkpoints, divergence) is the single trainer's own code, run
//! per member, so a member writes exactly the files it writes trained alone. A member that
//! diverges (or whose numbers the backend refuses) stops with its error; the others go on.

use crate::error::{config_err, Result};
use crate::task::DigitSet;
use crate::train::{RunLog, RunOutput, StepStats, TrainConfig, TrainSummary, Trainer};
use memrnn_core::Backend;
use std::sync::Arc;

/// Checks every member's configuration, then the memory the whole ensemble's step
/// allocates (every member's at once) against this machine's.
fn check_memory(set: &DigitSet, cfgs: &[TrainConfig]) -> Result<()> {
    check_memory_in(set, cfgs, &crate::limits::MemoryBudget::detect()?)
}

/// [`check_memory`] against `budget`.
fn check_memory_in(
    set: &DigitSet,
    cfgs: &[TrainConfig],
    budget: &crate::limits::MemoryBudget,
) -> Result<()> {
    // One digit table, shared by every member.
    let mut need = crate::limits::digit_table_bytes(set.image_count(), set.pixels);
    for c in cfgs {
        c.validate_for(set.input_size(), set.image_count(), 0)?;
        let cell = memrnn_core::CellDims::new(c.cell, set.input_size(), c.hidden)?;
        need = need.saturating_add(crate::limits::train_bytes(&cell, c.task.t_max, c.batch, 0));
    }
    budget.check(
        &format!("training an ensemble of {} networks at once", cfgs.len()),
        need,
        "train fewer networks together (--ensemble N), or lower --batch or --hidden",
    )
}

/// E networks trained as one job on one backend (see the module docs).
pub struct EnsembleTrainer<'a, B: Backend> {
    backend: &'a B,
    /// The members, in the order of the configurations they were made from.
    pub members: Vec<Trainer<'a, B>>,
}

impl<'a, B: Backend> EnsembleTrainer<'a, B> {
    /// Fresh networks, one per configuration (each exactly [`Trainer::new`]'s), sharing one
    /// copy of the digits on the backend. Members of different cells or batch sizes are
    /// allowed (they are stepped in groups of one shape); an empty list is an error.
    pub fn new(backend: &'a B, set: &'a DigitSet, cfgs: Vec<TrainConfig>) -> Result<Self> {
        if cfgs.is_empty() {
            return config_err("an ensemble needs at least one network");
        }
        check_memory(set, &cfgs)?;
        let digits = Arc::new(crate::task::digit_table(backend, set)?);
        let members = cfgs
            .into_iter()
            .map(|c| Trainer::new_sharing(backend, set, c, digits.clone()))
            .collect::<Result<_>>()?;
        Ok(EnsembleTrainer { backend, members })
    }

    /// Networks continuing from `models` (one per configuration, each exactly
    /// [`Trainer::from_model`]'s: fresh optimiser, step 0, first stage), sharing one copy
    /// of the digits: an ensemble of fine-tunings.
    pub fn from_models(
        backend: &'a B,
        set: &'a DigitSet,
        cfgs: Vec<TrainConfig>,
        models: Vec<memrnn_core::Model>,
    ) -> Result<Self> {
        if cfgs.is_empty() || cfgs.len() != models.len() {
            return config_err(format!(
                "an ensemble needs at least one network, and one model per configuration \
                 ({} configurations, {} models)",
                cfgs.len(),
                models.len()
            ));
        }
        check_memory(set, &cfgs)?;
        let digits = Arc::new(crate::task::digit_table(backend, set)?);
        let members = cfgs
            .into_iter()
            .zip(models)
            .map(|(c, m)| Trainer::from_model_sharing(backend, set, c, m, Some(digits.clone())))
            .collect::<Result<_>>()?;
        Ok(EnsembleTrainer { backend, members })
    }

    /// Trains every member up to its `cfg.steps`, member `i` writing to `outs[i]` exactly
    /// as [`Trainer::run`] does. Returns each member's outcome: its summary, or the error
    /// that stopped it (divergence, a refused checkpoint, nothing to train). The outer
    /// error (a backend failure in a shared call) stops the whole ensemble.
    pub fn run(&mut self, outs: &[RunOutput]) -> Result<Vec<Result<TrainSummary>>> {
        let n = self.members.len();
        if outs.len() != n {
            return config_err(format!(
                "internal: {} outputs for an ensemble of {n} networks",
                outs.len()
            ));
        }
        let mut logs: Vec<Option<RunLog>> = (0..n).map(|_| None).collect();
        let mut ended: Vec<Option<Result<TrainSummary>>> = (0..n).map(|_| None).collect();
        for (i, t) in self.members.iter_mut().enumerate() {
            match t.run_begin(&outs[i]) {
                Ok(l) => logs[i] = Some(l),
                Err(e) => ended[i] = Some(Err(e)),
            }
        }
        loop {
            let active: Vec<usize> = (0..n).filter(|&i| ended[i].is_none()).collect();
            if active.is_empty() {
                break;
            }
            let outcomes = self.step_members(&active)?;
            for (i, outcome) in active.into_iter().zip(outcomes) {
                let (t, out) = (&mut self.members[i], &outs[i]);
                let Some(log) = logs[i].as_mut() else {
                    continue;
                };
                let after = outcome
                    .and_then(|()| t.run_after_step(out, log, 0, &mut |_: &Trainer<'a, B>| Ok(())));
                if let Err(e) = after {
                    log.pb.abandon_with_message("stopped");
                    ended[i] = Some(Err(e));
                    logs[i] = None;
                } else if t.step >= t.cfg.steps {
                    if let Some(log) = logs[i].take() {
                        ended[i] = Some(t.run_end(out, log));
                    }
                }
            }
        }
        Ok(ended
            .into_iter()
            .map(|r| r.unwrap_or_else(|| config_err("internal: a member never ended")))
            .collect())
    }

    /// One step of the members `active` (ascending indices) together; each one's outcome,
    /// in that order.
    fn step_members(&mut self, active: &[usize]) -> Result<Vec<Result<()>>> {
        let mut stepping: Vec<&mut Trainer<'a, B>> = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active.binary_search(i).is_ok())
            .map(|(_, t)| t)
            .collect();
        Trainer::steps_together(self.backend, &mut stepping)
    }

    /// [`Self::run`], then each member's trained network (or what stopped it).
    pub fn run_models(&mut self, outs: &[RunOutput]) -> Result<Vec<Result<memrnn_core::Model>>> {
        let ended = self.run(outs)?;
        Ok(ended
            .into_iter()
            .zip(&self.members)
            .map(|(r, t)| r.and_then(|_| t.model()))
            .collect())
    }

    /// `n` steps of every member (no logging, no checkpoints: [`Trainer::train_steps`] for
    /// the ensemble, for benchmarks and library use). Each member's outcome: the stats of
    /// its steps, or what stopped it (a member that stops takes no further steps).
    pub fn train_steps(&mut self, n: u64) -> Result<Vec<Result<Vec<StepStats>>>> {
        let e = self.members.len();
        let mut done: Vec<Result<Vec<StepStats>>> = (0..e).map(|_| Ok(vec![])).collect();
        for k in 0..n {
            let active: Vec<usize> = (0..e).filter(|&i| done[i].is_ok()).collect();
            if active.is_empty() {
                break;
            }
            let outcomes = self.step_members(&active)?;
            for (i, outcome) in active.into_iter().zip(outcomes) {
                let t = &mut self.members[i];
                let read = outcome.and_then(|()| t.read_when_needed(k + 1 == n, "none"));
                match (read, &mut done[i]) {
                    (Ok(stats), Ok(all)) => all.extend(stats),
                    (Err(err), slot) => *slot = Err(err),
                    (Ok(_), Err(_)) => {}
                }
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MemoryBudget;

    #[test]
    fn an_ensemble_too_large_for_the_memory_is_refused_by_its_size() {
        let set = DigitSet::new(crate::idx::load_bundled().unwrap()).unwrap();
        let cfg = TrainConfig {
            hidden: 8,
            batch: 4,
            ..TrainConfig::default()
        };
        let budget = MemoryBudget {
            available: 64 << 20,
            total: None,
            source: "a test's limit".into(),
        };
        assert!(check_memory_in(&set, std::slice::from_ref(&cfg), &budget).is_ok());
        let e = check_memory_in(&set, &vec![cfg; 100], &budget)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ensemble of 100 networks") && e.contains("--ensemble"),
            "{e}"
        );
    }
}
