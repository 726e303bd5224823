//! Evaluation at long delays as it was before it moved onto the backend (a copy of the
//! former `eval::evaluate`, less its argument checks): each chunk's inputs built on the
//! host (`fill_inputs`) and uploaded, `h_seq` of each branch step downloaded and scored on
//! the host (`predict`). Kept only to compare against: tests/eval_backend.rs checks that
//! the backend path gives the same result.

use memrnn_core::{Backend, Model, SeqShape};
use memrnn_train::objective::predict;
use memrnn_train::philox::{self, Stream};
use memrnn_train::task::{fill_inputs, DigitSet, TaskConfig, Trial};
use memrnn_train::{EvalConfig, EvalResult};

pub fn old_evaluate<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    cfg: &EvalConfig,
) -> EvalResult {
    let readout = model.readout.as_ref().expect("a readout");
    let cell = model.cell;
    let params = backend.upload(&model.params).unwrap();
    let mut delays = cfg.delays.clone();
    delays.sort_unstable();
    delays.dedup();
    let n_batches = cfg.trials.div_ceil(cfg.batch);
    let mut correct = vec![[0usize; 10]; delays.len()];
    let mut counts = [0usize; 10];
    let input = set.input_size();
    for k in 0..n_batches {
        let rows = cfg.batch.min(cfg.trials - k * cfg.batch);
        let key = philox::key(cfg.seed, k as u64);
        let t_read = philox::below(
            philox::philox4x32_10([0, 0, 0, Stream::Sample as u32], key)[0],
            cfg.read_span as u32,
        );
        let trials: Vec<Trial> = (0..rows as u32)
            .map(|b| {
                let x = philox::philox4x32_10([0, b, 0, Stream::TaskTrial as u32], key);
                let digit = philox::below(x[0], 10);
                Trial {
                    digit: digit as u8,
                    image: philox::below(x[1], set.count(digit as usize) as u32),
                    t_read,
                    t_report: u32::MAX,
                }
            })
            .collect();
        for tr in &trials {
            counts[tr.digit as usize] += 1;
        }
        let mut state: Option<B::Tensor> = None;
        let mut t = 0usize;
        for (di, &d) in delays.iter().enumerate() {
            let t_s = t_read as usize + d;
            while t < t_s {
                let len = (t_s - t).min(cfg.chunk);
                let shape = SeqShape::new(len, rows).unwrap();
                let mut x = vec![0f32; shape.rows() * input];
                fill_inputs(set, task, key, &trials, shape, t, &mut x);
                let xt = backend.upload(&x).unwrap();
                let f = backend
                    .seq_forward(&cell, &params, shape, &xt, state.as_ref())
                    .unwrap();
                state = Some(f.s_final);
                t += len;
            }
            let branch: Vec<Trial> = trials
                .iter()
                .map(|tr| Trial {
                    t_report: t_s as u32,
                    ..*tr
                })
                .collect();
            let shape = SeqShape::new(1, rows).unwrap();
            let mut x = vec![0f32; rows * input];
            fill_inputs(set, task, key, &branch, shape, t_s, &mut x);
            let xt = backend.upload(&x).unwrap();
            let f = backend
                .seq_forward(&cell, &params, shape, &xt, state.as_ref())
                .unwrap();
            let h = backend.download(&f.h_seq).unwrap();
            let pred = predict(&h, cell.hidden, &readout.weight, &readout.bias);
            for (tr, &p) in trials.iter().zip(&pred) {
                if p as usize == tr.digit as usize + 1 {
                    correct[di][tr.digit as usize] += 1;
                }
            }
        }
    }
    let total: usize = counts.iter().sum();
    EvalResult {
        delays,
        accuracy: correct
            .iter()
            .map(|c| c.iter().sum::<usize>() as f64 / total as f64)
            .collect(),
        per_class: correct
            .iter()
            .map(|c| std::array::from_fn(|d| c[d] as f64 / counts[d].max(1) as f64))
            .collect(),
        counts,
        trials: total,
    }
}
