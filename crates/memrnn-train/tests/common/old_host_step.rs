//! The training step as it was before it moved onto the backend (a copy of the former
//! `Trainer::gradients` + `train_step`): forward on the backend, `h_seq` downloaded, the
//! readout and cross-entropy on the host, `dh` uploaded, backward, `dparams` downloaded,
//! the penalty through `speed_penalty_grad`, norm and clipping on the host, the recurrent
//! Adam on the backend and the readout's on the host. Kept only to compare against:
//! tests/backend_step.rs checks that the backend path gives the same numbers, and
//! benches/train_step.rs times the two side by side.

use memrnn_core::{adam_update_host, AdamState, Backend, Model, SeqUpstream};
use memrnn_train::objective::{readout_ce, speed_penalty_grad, SpeedPenalty};
use memrnn_train::task::{self, DigitSet};
use memrnn_train::train::TrainConfig;

/// The old path's state: the recurrent parameters and their Adam state on the backend, the
/// readout and its Adam state on the host.
pub struct OldHost<B: Backend> {
    pub params: B::Tensor,
    pub adam: AdamState<B::Tensor>,
    pub ro: Vec<f32>,
    pub ro_m: Vec<f32>,
    pub ro_v: Vec<f32>,
    pub step: u64,
}

impl<B: Backend> OldHost<B> {
    /// Starts from `model` (which must have a readout).
    pub fn new(b: &B, model: &Model) -> Self {
        let r = model.readout.as_ref().expect("a readout");
        let mut ro = r.weight.clone();
        ro.extend_from_slice(&r.bias);
        OldHost {
            params: b.upload(&model.params).expect("upload"),
            adam: b.adam_state(model.params.len()).expect("adam state"),
            ro_m: vec![0.0; ro.len()],
            ro_v: vec![0.0; ro.len()],
            ro,
            step: 0,
        }
    }

    /// One step at the config's final task; `penalty` with this step's inputs. Returns
    /// `(loss, report_acc, silence_acc, grad_norm)`.
    pub fn step(
        &mut self,
        b: &B,
        set: &DigitSet,
        cfg: &TrainConfig,
        model: &Model,
        penalty: Option<(&SpeedPenalty, Vec<f32>)>,
    ) -> (f64, f64, f64, f64) {
        let cell = model.cell;
        let stage = cfg.curriculum.stages(&cfg.task)[0];
        let batch =
            task::make_batch(set, &cfg.task, stage, cfg.seed, self.step, cfg.batch).expect("batch");
        let x = b.upload(&batch.x).expect("upload");
        let fwd = b
            .seq_forward(&cell, &self.params, batch.shape, &x, None)
            .expect("forward");
        let h = b.download(&fwd.h_seq).expect("download");
        let nw = task::CLASSES * cell.hidden;
        let ce = readout_ce(
            &h,
            cell.hidden,
            &self.ro[..nw],
            &self.ro[nw..],
            &batch.targets,
            &batch.weights,
        );
        let dh = b.upload(&ce.dh).expect("upload");
        let g = b
            .seq_backward(
                &cell,
                &self.params,
                batch.shape,
                &x,
                &fwd,
                SeqUpstream {
                    dh_seq: Some(&dh),
                    ds_final: None,
                },
                false,
            )
            .expect("backward");
        let mut dparams = b.download(&g.dparams).expect("download");
        let mut pen = 0.0;
        if let Some((p, xs)) = penalty {
            let (v, _, d) = speed_penalty_grad(b, &cell, &self.params, p, &xs).expect("penalty");
            pen = v;
            dparams.iter_mut().zip(&d).for_each(|(a, &v)| *a += v);
        }
        let mut dro = ce.dw;
        dro.extend_from_slice(&ce.db);
        let norm = dparams
            .iter()
            .chain(&dro)
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        if let Some(c) = cfg.clip {
            if norm > c as f64 {
                let s = (c as f64 / norm) as f32;
                dparams
                    .iter_mut()
                    .chain(dro.iter_mut())
                    .for_each(|v| *v *= s);
            }
        }
        let gt = b.upload(&dparams).expect("upload");
        b.adam_update(&mut self.params, &gt, &mut self.adam, &cfg.adam)
            .expect("adam");
        adam_update_host(
            &mut self.ro,
            &dro,
            &mut self.ro_m,
            &mut self.ro_v,
            self.step,
            &cfg.adam,
        );
        self.step += 1;
        (
            ce.loss + pen,
            ce.accuracy.report(),
            ce.accuracy.silence(),
            norm,
        )
    }
}
