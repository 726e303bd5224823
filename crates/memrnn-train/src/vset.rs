//! Sources of the constant state set `V` of the speed penalty (MATH.md §5): per-class mean
//! delay states and delay-trajectory states. A slow-point finder's output plugs in the
//! same way: any `[N, S]` states through [`SpeedSet::new`].
//!
//! Both run trials with the digit shown at `t = 0` and `delay` steps of noise after it
//! (no trigger), from Philox keyed by `(seed, batch index)`, through the network's own
//! forward pass, in batches of at most 512 rows. The inputs are drawn on the backend
//! (`task_chunk`, from the digits uploaded once per call); only the final states come
//! back (the class means are summed in f64 on the host, as they always were).

use crate::error::{config_err, Result};
use crate::objective::SpeedSet;
use crate::philox::{self, Stream};
use crate::task::{digit_table, fill_inputs, DigitSet, TaskConfig, Trial};
use memrnn_core::{Backend, Model, SeqShape, TaskChunkSpec};

const ROWS: usize = 512;

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

/// Steps `t0 .. t0 + len` of batch `step`'s delay-period trials (image at 0, no trigger).
fn delay_chunk(
    task: &TaskConfig,
    seed: u64,
    step: u64,
    rows: usize,
    t0: usize,
    len: usize,
) -> TaskChunkSpec {
    TaskChunkSpec {
        seed,
        step,
        batch: rows,
        t0,
        len,
        t_read: 0,
        t_report: None,
        noise_mean: task.noise_mean,
        noise_std: task.noise_std,
    }
}

fn check(model: &Model, set: &DigitSet, trials: usize, delay: usize) -> Result<()> {
    model.validate()?;
    if model.cell.input != set.input_size() {
        return config_err(format!(
            "the model reads inputs of size {} but the data gives {}",
            model.cell.input,
            set.input_size()
        ));
    }
    if trials == 0 || delay == 0 || delay > 1_000_000 {
        return config_err(format!(
            "{trials} trials with a delay of {delay}: both must be at least 1 (delay ≤ 10^6)"
        ));
    }
    Ok(())
}

/// The mean state of each digit's trials `delay` steps after the image: 10 points
/// `[10, S]`. Every digit must occur among the `trials`.
pub fn class_mean_states<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    trials: usize,
    delay: usize,
    seed: u64,
) -> Result<SpeedSet> {
    check(model, set, trials, delay)?;
    let cell = model.cell;
    let sd = cell.state_size();
    let params = backend.upload(&model.params)?;
    let digits = digit_table(backend, set)?;
    let mut sums = vec![0f64; 10 * sd];
    let mut counts = [0usize; 10];
    for (k, start) in (0..trials).step_by(ROWS).enumerate() {
        let rows = ROWS.min(trials - start);
        let spec = delay_chunk(task, seed, k as u64, rows, 0, delay + 1);
        let tr = spec.trials(digits.counts());
        let shape = SeqShape::new(delay + 1, rows)?;
        let xt = backend.task_chunk(&digits, &spec)?;
        let f = backend.seq_forward(&cell, &params, shape, &xt, None)?;
        let s = backend.download(&f.s_final)?;
        for (t, row) in tr.iter().zip(s.chunks_exact(sd)) {
            let d = t.digit as usize;
            counts[d] += 1;
            for (o, &v) in sums[d * sd..(d + 1) * sd].iter_mut().zip(row) {
                *o += v as f64;
            }
        }
    }
    if let Some(d) = (0..10).find(|&d| counts[d] == 0) {
        return config_err(format!(
            "no trial of digit {d} among {trials}: use more trials for the class means"
        ));
    }
    let states: Vec<f32> = sums
        .chunks_exact(sd)
        .zip(counts)
        .flat_map(|(s, c)| s.iter().map(move |&v| (v / c as f64) as f32))
        .collect();
    SpeedSet::new(states, sd, format!("class means at delay {delay}"))
}

/// `n` states sampled from delay-period trajectories: point `i` is trial `i mod trials`
/// at a step drawn uniformly in `1..=delay` after the image.
pub fn trajectory_states<B: Backend>(
    backend: &B,
    model: &Model,
    set: &DigitSet,
    task: &TaskConfig,
    n: usize,
    delay: usize,
    seed: u64,
) -> Result<SpeedSet> {
    let trials = n.min(ROWS);
    check(model, set, trials, delay)?;
    let cell = model.cell;
    let sd = cell.state_size();
    let params = backend.upload(&model.params)?;
    let digits = digit_table(backend, set)?;
    let key = philox::key(seed, 0);
    let when: Vec<usize> = (0..n as u32)
        .map(|i| {
            1 + philox::below(
                philox::philox4x32_10([0, i, 1, Stream::Sample as u32], key)[0],
                delay as u32,
            ) as usize
        })
        .collect();
    let mut out = vec![0f32; n * sd];
    let mut wanted = vec![false; delay + 1];
    when.iter().for_each(|&w| wanted[w] = true);
    let mut state: Option<B::Tensor> = None;
    // Step by step so that the full state (the LSTM's c too) is seen at every step; it
    // comes back only at the steps some point is drawn from.
    for (t, &want) in wanted.iter().enumerate() {
        let shape = SeqShape::new(1, trials)?;
        let xt = backend.task_chunk(&digits, &delay_chunk(task, seed, 0, trials, t, 1))?;
        let f = backend.seq_forward(&cell, &params, shape, &xt, state.as_ref())?;
        if want {
            let s = backend.download(&f.s_final)?;
            // After input step t the state is the one `t` steps after the image.
            for (i, &w) in when.iter().enumerate() {
                if w == t {
                    let b = i % trials;
                    out[i * sd..(i + 1) * sd].copy_from_slice(&s[b * sd..(b + 1) * sd]);
                }
            }
        }
        state = Some(f.s_final);
    }
    SpeedSet::new(out, sd, format!("trajectory states within {delay} steps"))
}

/// `trials` delay-period sequences of `steps` steps, `x [T, B, I]`: each trial's digit
/// image at `t = 0`, noise after it, no trigger (the same trials as the other sources,
/// from Philox keyed by `seed`), and each trial's digit. What the memory diagnostics
/// read: the class shown `d` steps before each state.
pub fn delay_sequences(
    set: &DigitSet,
    task: &TaskConfig,
    trials: usize,
    steps: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<u8>)> {
    if trials == 0 || steps == 0 {
        return config_err(format!(
            "{trials} trials of {steps} steps: both must be at least 1"
        ));
    }
    let shape = SeqShape::new(steps, trials)?;
    let key = philox::key(seed, 0);
    let tr = trials_for(set, key, trials);
    let mut x = vec![0f32; shape.rows() * set.input_size()];
    fill_inputs(set, task, key, &tr, shape, 0, &mut x);
    Ok((x, tr.iter().map(|t| t.digit).collect()))
}
