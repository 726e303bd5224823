//! `task_batch`, `task_chunk` and `delay_inputs` against the host definition
//! (`memrnn_core::task_gen`): bit for bit, at pixel counts off the groups of four, one-row
//! batches, every vocabulary size, several seeds and steps, a digit with a single image,
//! chunks far into a run.

use super::Cx;
use crate::{rng, uniform};
use memrnn_core::task_gen::{self, chunk_trial, draw_trial, fill_delay_row, fill_task_row};
use memrnn_core::{philox, Backend, DigitTable, TaskBatchSpec, TaskChunkSpec};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[track_caller]
fn same_bits<B: Backend>(cx: &Cx<'_, B>, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{}",
        cx.what(format!("{what}: length"))
    );
    if let Some(i) = bits(got).iter().zip(bits(want)).position(|(a, b)| *a != b) {
        panic!(
            "{}",
            cx.what(format!(
                "{what}: value {i} is {} ({:#010x}), the host definition draws {} ({:#010x})",
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            ))
        );
    }
}

pub fn batch_matches_host<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(61);
    for (k, &p) in [1usize, 5, 13, 33].iter().enumerate() {
        let mut r = rng(seed.wrapping_add(k as u64));
        let counts: [u32; 10] = std::array::from_fn(|d| 1 + (d as u32 * 7 + k as u32) % 4);
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let images: Vec<f32> = uniform(&mut r, n * p, 0.0, 1.0);
        let table = cx.ok("DigitTable::new", DigitTable::new(cx.b, &images, counts, p));
        for (t_max, vocab, delta_min, batch, step) in [
            (6usize, 10usize, 4usize, 9usize, 0u64),
            (20, 1, 4, 1, 3),
            (7, 2, 1, 17, 12345),
            (5, 10, 4, 4, u64::MAX),
        ] {
            let spec = TaskBatchSpec {
                seed: seed ^ 0x55,
                step,
                t_max,
                vocab,
                delta_min,
                batch,
                noise_mean: 0.1307,
                noise_std: 0.3081,
            };
            let what = format!("task_batch P={p} {spec:?}");
            let got = cx.ok(&what, cx.b.task_batch(&table, &spec));
            // The host definition.
            let key = philox::key(spec.seed, spec.step);
            let trials: Vec<_> = (0..batch as u32)
                .map(|b| draw_trial(&counts, key, b, t_max, vocab, delta_min))
                .collect();
            let mut x = vec![0f32; t_max * batch * (p + 1)];
            for (row, out) in x.chunks_mut(p + 1).enumerate() {
                let (t, b) = (row / batch, row % batch);
                let image = |tr: &task_gen::Trial, pix: &mut [f32]| {
                    let i = table.offset(tr.digit as usize) + tr.image as usize;
                    pix.copy_from_slice(&images[i * p..(i + 1) * p]);
                };
                fill_task_row(
                    key,
                    &trials[b],
                    t as u32,
                    b as u32,
                    spec.noise_mean,
                    spec.noise_std,
                    image,
                    out,
                );
            }
            let (targets, weights) = task_gen::task_targets(&trials, t_max);
            let targets: Vec<f32> = targets.iter().map(|&t| t as f32).collect();
            same_bits(cx, &format!("{what}: x"), &cx.down(&got.x), &x);
            same_bits(
                cx,
                &format!("{what}: targets"),
                &cx.down(&got.targets),
                &targets,
            );
            same_bits(
                cx,
                &format!("{what}: weights"),
                &cx.down(&got.weights),
                &weights,
            );
        }
    }
}

pub fn delay_inputs_match_host<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(67);
    for (n, p, step) in [
        (0usize, 5usize, 1u64),
        (1, 1, 0),
        (7, 13, 99),
        (3, 784, 123_456),
    ] {
        let what = format!("delay_inputs n={n} P={p} step={step}");
        let got = cx.ok(&what, cx.b.delay_inputs(seed, step, n, p, 0.1307, 0.3081));
        let key = philox::key(seed, step);
        let mut want = vec![0f32; n * (p + 1)];
        for (i, out) in want.chunks_mut(p + 1).enumerate() {
            fill_delay_row(key, i as u32, 0.1307, 0.3081, out);
        }
        same_bits(cx, &what, &cx.down(&got), &want);
    }
}

/// `task_chunk` against the host definition: chunks that start at 0 and far into a run,
/// with the image inside and outside the chunk, with and without the trigger, one-row
/// and odd batches, pixel counts off the groups of four.
pub fn chunk_matches_host<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(71);
    for (k, &p) in [1usize, 6, 13].iter().enumerate() {
        let mut r = rng(seed.wrapping_add(k as u64));
        let counts: [u32; 10] = std::array::from_fn(|d| 1 + (d as u32 * 5 + k as u32) % 3);
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let images: Vec<f32> = uniform(&mut r, n * p, 0.0, 1.0);
        let table = cx.ok("DigitTable::new", DigitTable::new(cx.b, &images, counts, p));
        for (batch, t0, len, t_read, t_report, step) in [
            (1usize, 0usize, 1usize, 0u32, None, 0u64),
            (9, 0, 5, 2, Some(4u32), 7),
            (17, 3, 4, 5, None, 123),
            (5, 1000, 3, 7, Some(1001), u64::MAX),
            (3, 2_000_000, 2, 2_000_001, Some(2_000_001), 9),
        ] {
            let spec = TaskChunkSpec {
                seed: seed ^ 0x77,
                step,
                batch,
                t0,
                len,
                t_read,
                t_report,
                noise_mean: 0.1307,
                noise_std: 0.3081,
            };
            let what = format!("task_chunk P={p} {spec:?}");
            let got = cx.ok(&what, cx.b.task_chunk(&table, &spec));
            // The host definition: chunk_trial's trials, fill_task_row at absolute steps.
            let key = philox::key(spec.seed, spec.step);
            let trials: Vec<_> = (0..batch as u32)
                .map(|b| chunk_trial(&counts, key, b, t_read, t_report.unwrap_or(u32::MAX)))
                .collect();
            assert_eq!(trials, spec.trials(&counts), "{}", cx.what(&what));
            let mut x = vec![0f32; len * batch * (p + 1)];
            for (row, out) in x.chunks_mut(p + 1).enumerate() {
                let (t, b) = (t0 + row / batch, row % batch);
                let image = |tr: &task_gen::Trial, pix: &mut [f32]| {
                    let i = table.offset(tr.digit as usize) + tr.image as usize;
                    pix.copy_from_slice(&images[i * p..(i + 1) * p]);
                };
                fill_task_row(
                    key,
                    &trials[b],
                    t as u32,
                    b as u32,
                    spec.noise_mean,
                    spec.noise_std,
                    image,
                    out,
                );
            }
            same_bits(cx, &what, &cx.down(&got), &x);
        }
    }
    // Bad specs: an error naming the problem, on every backend.
    let table = cx.ok(
        "DigitTable::new",
        DigitTable::new(cx.b, &[0.5; 10], [1; 10], 1),
    );
    let good = TaskChunkSpec {
        seed: 1,
        step: 0,
        batch: 2,
        t0: 0,
        len: 2,
        t_read: 0,
        t_report: None,
        noise_mean: 0.0,
        noise_std: 1.0,
    };
    for bad in [
        TaskChunkSpec { batch: 0, ..good },
        TaskChunkSpec { len: 0, ..good },
        TaskChunkSpec {
            t0: (1 << 31) - 1,
            ..good
        },
        TaskChunkSpec {
            t_report: Some(u32::MAX),
            ..good
        },
        TaskChunkSpec {
            noise_std: f32::NAN,
            ..good
        },
    ] {
        match cx.b.task_chunk(&table, &bad) {
            Err(memrnn_core::Error::InvalidArgument(m)) => {
                assert!(m.contains("task chunk"), "{}", cx.what(&m))
            }
            other => panic!(
                "{}",
                cx.what(format!(
                    "task_chunk {bad:?}: expected InvalidArgument, got {:?}",
                    other.map(|_| ())
                ))
            ),
        }
    }
}
