//! The delay-period sources as they were before their inputs moved onto the backend
//! (copies of the former `vset::class_mean_states`, `vset::trajectory_states` and
//! `memprobe::long_memory`, less their argument checks): each chunk's inputs built on the
//! host (`fill_inputs`) and uploaded. Kept only to compare against (tests/eval_backend.rs).

use memrnn_core::{Backend, Model, SeqShape};
use memrnn_diagnostics::{memory_curve, MemoryConfig, ProbeData};
use memrnn_train::memprobe::{log_lags, span_of, LongMemory};
use memrnn_train::philox::{self, Stream};
use memrnn_train::task::{fill_inputs, DigitSet, TaskConfig, Trial};

fn trials_for(set: &DigitSet, key: [u32; 2], rows: usize) -> Vec<Trial> {
    (0..rows as u32)
        .map(|b| {
            let x = philox::philox4x32_10([0, b, 0, Stream::TaskTrial as u32], key);
            let digit = philox::below(x[0], 10);
            Trial {
                digit: digit as u8,
                image: philox::below(x[1], set.count(digit as usize) as u32),
                t_read: 0,
                t_report: u32::MAX,
            }
        })
        .collect()
}

/// Steps `t0 .. t0 + len` of `tr`'s inputs, uploaded.
fn upload_steps<B: Backend>(
    backend: &B,
    set: &DigitSet,
    task: &TaskConfig,
    key: [u32; 2],
    tr: &[Trial],
    t0: usize,
    len: usize,
) -> B::Tensor {
    let shape = SeqShape::new(len, tr.len()).unwrap();
    let mut x = vec![0f32; shape.rows() * set.input_size()];
    fill_inputs(set, task, key, tr, shape, t0, &mut x);
    backend.upload(&x).unwrap()
}

/// `[10, S]` class means, as `vset::class_mean_states` returned them.
pub fn old_class_means<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    trials: usize,
    delay: usize,
    seed: u64,
) -> Vec<f32> {
    const ROWS: usize = 512;
    let cell = model.cell;
    let sd = cell.state_size();
    let params = backend.upload(&model.params).unwrap();
    let mut sums = vec![0f64; 10 * sd];
    let mut counts = [0usize; 10];
    for (k, start) in (0..trials).step_by(ROWS).enumerate() {
        let rows = ROWS.min(trials - start);
        let key = philox::key(seed, k as u64);
        let tr = trials_for(set, key, rows);
        let shape = SeqShape::new(delay + 1, rows).unwrap();
        let xt = upload_steps(backend, set, task, key, &tr, 0, delay + 1);
        let f = backend
            .seq_forward(&cell, &params, shape, &xt, None)
            .unwrap();
        let s = backend.download(&f.s_final).unwrap();
        for (t, row) in tr.iter().zip(s.chunks_exact(sd)) {
            let d = t.digit as usize;
            counts[d] += 1;
            for (o, &v) in sums[d * sd..(d + 1) * sd].iter_mut().zip(row) {
                *o += v as f64;
            }
        }
    }
    sums.chunks_exact(sd)
        .zip(counts)
        .flat_map(|(s, c)| s.iter().map(move |&v| (v / c as f64) as f32))
        .collect()
}

/// `[n, S]` trajectory states, as `vset::trajectory_states` returned them.
pub fn old_trajectory_states<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    n: usize,
    delay: usize,
    seed: u64,
) -> Vec<f32> {
    let trials = n.min(512);
    let cell = model.cell;
    let sd = cell.state_size();
    let params = backend.upload(&model.params).unwrap();
    let key = philox::key(seed, 0);
    let tr = trials_for(set, key, trials);
    let when: Vec<usize> = (0..n as u32)
        .map(|i| {
            1 + philox::below(
                philox::philox4x32_10([0, i, 1, Stream::Sample as u32], key)[0],
                delay as u32,
            ) as usize
        })
        .collect();
    let mut out = vec![0f32; n * sd];
    let mut state: Option<B::Tensor> = None;
    for t in 0..=delay {
        let shape = SeqShape::new(1, trials).unwrap();
        let xt = upload_steps(backend, set, task, key, &tr, t, 1);
        let f = backend
            .seq_forward(&cell, &params, shape, &xt, state.as_ref())
            .unwrap();
        let s = backend.download(&f.s_final).unwrap();
        for (i, &w) in when.iter().enumerate() {
            if w == t {
                let b = i % trials;
                out[i * sd..(i + 1) * sd].copy_from_slice(&s[b * sd..(b + 1) * sd]);
            }
        }
        state = Some(f.s_final);
    }
    out
}

/// As `memprobe::long_memory` computed it.
pub fn old_long_memory<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    trials: usize,
    max_lag: usize,
    seed: u64,
) -> LongMemory {
    let cell = model.cell;
    let h = cell.hidden;
    let params = backend.upload(&model.params).unwrap();
    let key = philox::key(seed, 0);
    let tr = trials_for(set, key, trials);
    let labels: Vec<Option<usize>> = tr.iter().map(|t| Some(t.digit as usize)).collect();
    let lags = log_lags(max_lag);
    let mut accuracy = vec![];
    let mut state: Option<B::Tensor> = None;
    let mut t = 0usize;
    let chunk = 64;
    let probe = MemoryConfig {
        max_delay: 0,
        ..MemoryConfig::default()
    };
    for &lag in &lags {
        while t <= lag {
            let len = (lag + 1 - t).min(chunk);
            let shape = SeqShape::new(len, trials).unwrap();
            let xt = upload_steps(backend, set, task, key, &tr, t, len);
            let f = backend
                .seq_forward(&cell, &params, shape, &xt, state.as_ref())
                .unwrap();
            t += len;
            if t == lag + 1 {
                let hs = backend.download(&f.h_seq).unwrap();
                let last = &hs[(len - 1) * trials * h..len * trials * h];
                let curve = memory_curve(
                    &ProbeData {
                        features: last,
                        labels: &labels,
                        shape: SeqShape::new(1, trials).unwrap(),
                        dim: h,
                        classes: 10,
                    },
                    &probe,
                )
                .unwrap();
                accuracy.push(curve.accuracy.first().copied().unwrap_or(f64::NAN));
            }
            state = Some(f.s_final);
        }
    }
    let (span, past_window) = span_of(&lags, &accuracy);
    LongMemory {
        lags,
        accuracy,
        span,
        past_window,
    }
}
