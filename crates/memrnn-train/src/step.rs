//! One training step on the backend, and the record of its numbers.
//!
//! A step draws its batch with `task_batch` (and the penalty's inputs with
//! `delay_inputs`) from the digits uploaded once, then runs `seq_forward` → `readout_ce` → `seq_backward` (→ the speed penalty through
//! `step_speed_grad` + `axpy`) → `clip_adam_update` over the recurrent parameters and the
//! readout together, with the divergence guard: nothing comes back to the host. Its
//! scalars (the cross-entropy's stats, the penalty's `Σ S`, `[norm, scale, skipped]`) are
//! filed with `copy_into` into one row of a record on the backend, which the trainer
//! downloads in one piece at its logging interval ([`RECORD_ROWS`] steps at most) and
//! replays on the host step by step ([`StepRow`]).

use crate::error::Result;
use crate::objective::SpeedPenalty;
use crate::task::Batch;
use memrnn_core::{
    Backend, CeStat, CellDims, ClipNorm, SeqShape, SeqUpstream, CE_STATS, CLIP_NORM_LEN,
};

/// Values per step in the record: `[CE stats | Σ S | norm, scale, skipped]`.
pub(crate) const RECORD_WIDTH: usize = CE_STATS + 1 + CLIP_NORM_LEN;
/// Where `Σ S` sits in a row.
pub(crate) const REC_SPEED: usize = CE_STATS;
/// Where `[norm, scale, skipped]` start in a row.
pub(crate) const REC_CLIP: usize = CE_STATS + 1;
/// Steps the record holds: the trainer reads it at least this often.
pub(crate) const RECORD_ROWS: usize = 1024;

/// The speed penalty of a step on the backend: its points `V` (uploaded once) and this
/// step's inputs.
pub(crate) struct PenaltyArgs<'a, T> {
    pub penalty: &'a SpeedPenalty,
    pub states: &'a T,
    pub x: &'a T,
}

/// A batch's gradients on the backend: `∂L/∂θ` (cross-entropy and penalty), `∂L/∂readout`,
/// the cross-entropy's stats and the penalty's `[Σ S]` (when there is one).
pub(crate) struct StepGrads<T> {
    pub dparams: T,
    pub dreadout: T,
    pub ce_stats: T,
    pub speed_sum: Option<T>,
}

/// The batch's targets as the backend takes them (class ids as f32).
pub(crate) fn targets_f32(batch: &Batch) -> Vec<f32> {
    batch.targets.iter().map(|&t| t as f32).collect()
}

/// One member's batch for [`ensemble_batch_gradients`]: its network and its tensors.
pub(crate) struct GradArgs<'a, T> {
    pub params: &'a T,
    pub readout: &'a T,
    pub x: &'a T,
    pub targets: &'a T,
    pub weights: &'a T,
    pub penalty: Option<PenaltyArgs<'a, T>>,
}

/// Forward, readout cross-entropy, backward and the penalty's gradient, all on the
/// backend; `x`, `targets` and `weights` are the batch's tensors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_gradients<B: Backend>(
    b: &B,
    cell: &CellDims,
    params: &B::Tensor,
    readout: &B::Tensor,
    shape: SeqShape,
    x: &B::Tensor,
    targets: &B::Tensor,
    weights: &B::Tensor,
    penalty: Option<PenaltyArgs<'_, B::Tensor>>,
) -> Result<StepGrads<B::Tensor>> {
    let one = GradArgs {
        params,
        readout,
        x,
        targets,
        weights,
        penalty,
    };
    let mut g = ensemble_batch_gradients(b, cell, shape, std::slice::from_ref(&one))?;
    g.pop()
        .ok_or_else(|| internal(b, "the ensemble step returned no gradients"))
}

fn internal<B: Backend>(b: &B, what: &str) -> crate::error::TrainError {
    memrnn_core::Error::Backend {
        backend: b.name(),
        reason: format!("internal: {what}"),
    }
    .into()
}

/// [`batch_gradients`] for the members of an ensemble, all of one cell and shape: one
/// backend call per operation for all of them (`ensemble_seq_forward`,
/// `ensemble_readout_ce`, `ensemble_seq_backward`, and `ensemble_step_speed_grad` for
/// the members with a speed penalty).
pub(crate) fn ensemble_batch_gradients<B: Backend>(
    b: &B,
    cell: &CellDims,
    shape: SeqShape,
    members: &[GradArgs<'_, B::Tensor>],
) -> Result<Vec<StepGrads<B::Tensor>>> {
    use memrnn_core::ensemble::{BackwardArgs, ReadoutArgs, SeqArgs, SpeedArgs};
    let fwd_args: Vec<_> = members
        .iter()
        .map(|m| SeqArgs {
            params: m.params,
            x: m.x,
            s0: None,
        })
        .collect();
    let fwd = b.ensemble_seq_forward(cell, shape, &fwd_args)?;
    let classes = crate::task::CLASSES;
    let ro_args: Vec<_> = members
        .iter()
        .zip(&fwd)
        .map(|(m, f)| ReadoutArgs {
            h: &f.h_seq,
            readout: m.readout,
            targets: m.targets,
            weights: m.weights,
        })
        .collect();
    let ce = b.ensemble_readout_ce(cell.hidden, classes, &ro_args)?;
    let bw_args: Vec<_> = members
        .iter()
        .zip(&fwd)
        .zip(&ce)
        .map(|((m, f), c)| BackwardArgs {
            params: m.params,
            x: m.x,
            fwd: f,
            upstream: SeqUpstream {
                dh_seq: Some(&c.dh),
                ds_final: None,
            },
        })
        .collect();
    let grads = b.ensemble_seq_backward(cell, shape, &bw_args, false)?;
    // The speed penalty of every member that has one, in one call.
    let mut speed_args = Vec::new();
    for m in members {
        if let Some(p) = &m.penalty {
            p.penalty.set.check(cell)?;
            speed_args.push(SpeedArgs {
                params: m.params,
                states: p.states,
                x: p.x,
                n: p.penalty.set.n,
            });
        }
    }
    let mut speeds = b
        .ensemble_step_speed_grad(cell, &speed_args, true)?
        .into_iter();
    let mut out = Vec::with_capacity(members.len());
    for ((m, g), c) in members.iter().zip(grads).zip(ce) {
        let mut dparams = g.dparams;
        let speed_sum = match &m.penalty {
            Some(p) => {
                let sg = speeds.next().ok_or_else(|| {
                    internal(b, "ensemble_step_speed_grad returned too few results")
                })?;
                let d = sg.dparams.ok_or_else(|| {
                    internal(
                        b,
                        "step_speed_grad returned no parameter gradient although one was asked for",
                    )
                })?;
                b.axpy(&mut dparams, p.penalty.lambda, &d)?;
                Some(b.sum(&sg.speed)?)
            }
            None => None,
        };
        out.push(StepGrads {
            dparams,
            dreadout: c.dreadout,
            ce_stats: c.stats,
            speed_sum,
        });
    }
    Ok(out)
}

/// One step's numbers as read back from the record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepRow {
    pub ce: f64,
    pub report_correct: f64,
    pub report_total: f64,
    pub silence_correct: f64,
    pub silence_total: f64,
    pub speed_sum: f64,
    pub grad_norm: f64,
    pub skipped: bool,
}

impl StepRow {
    /// Row `k` of a downloaded record.
    pub(crate) fn read(record: &[f32], k: usize) -> StepRow {
        let r = &record[k * RECORD_WIDTH..(k + 1) * RECORD_WIDTH];
        let at = |i: usize| r[i] as f64;
        StepRow {
            ce: at(CeStat::Loss as usize),
            report_correct: at(CeStat::ReportCorrect as usize),
            report_total: at(CeStat::ReportTotal as usize),
            silence_correct: at(CeStat::SilenceCorrect as usize),
            silence_total: at(CeStat::SilenceTotal as usize),
            speed_sum: at(REC_SPEED),
            grad_norm: at(REC_CLIP + ClipNorm::Norm as usize),
            skipped: r[REC_CLIP + ClipNorm::Skipped as usize] != 0.0,
        }
    }

    pub(crate) fn report_acc(&self) -> f64 {
        self.report_correct / self.report_total.max(1.0)
    }

    pub(crate) fn silence_acc(&self) -> f64 {
        self.silence_correct / self.silence_total.max(1.0)
    }
}
