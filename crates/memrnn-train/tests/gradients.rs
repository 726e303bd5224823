//! Gradients of the full objective (readout, weighted cross-entropy with the report step
//! weighted T_max − 1, speed penalty over constant states) against central finite
//! differences in f64, with the f64 CPU reference for the recurrence; and the f32
//! trainer (CpuBackend) against that f64 gradient.

use memrnn_core::{CellKind, Model, SeqUpstream};
use memrnn_cpu::{reference, CpuBackend};
use memrnn_testkit::{assert_close, rng, test_seed, uniform};
use memrnn_train::objective::{readout_ce, SpeedPenalty, SpeedSet};
use memrnn_train::task::{make_batch, Batch, DigitSet, Stage, TaskConfig};
use memrnn_train::train::{TrainConfig, Trainer};
use memrnn_train::Mnist;

/// Ten digits' worth of tiny 2×3 "images" (input size 7).
fn tiny_set(seed: u64) -> DigitSet {
    let mut r = rng(seed);
    let n = 30;
    let px: Vec<f64> = uniform(&mut r, n * 6, 0.0, 255.0);
    let images = px.iter().map(|&v| v as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    DigitSet::new(Mnist::new(images, labels, 2, 3).unwrap()).unwrap()
}

struct Problem {
    cfg: TrainConfig,
    params: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    batch: Batch,
    lambda: f64,
    v: Vec<f64>,
    n_v: usize,
    xs: Vec<f64>,
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The f64 loss and its analytic gradient `[dθ | dW_out | db_out]`.
fn loss_and_grad(
    p: &Problem,
    params: &[f64],
    w: &[f64],
    b: &[f64],
    want_grad: bool,
) -> (f64, Vec<f64>) {
    let cell = memrnn_core::CellDims::new(p.cfg.cell, 7, p.cfg.hidden).unwrap();
    let x = f64s(&p.batch.x);
    let fwd = reference::seq_forward(&cell, params, p.batch.shape, &x, None).unwrap();
    let ce = readout_ce(
        &fwd.h_seq,
        cell.hidden,
        w,
        b,
        &p.batch.targets,
        &p.batch.weights,
    );
    let sp = reference::step_speed_grad(&cell, params, &p.v, &p.xs, p.n_v, want_grad).unwrap();
    let loss = ce.loss + p.lambda * sp.speed.iter().sum::<f64>();
    if !want_grad {
        return (loss, vec![]);
    }
    let g = reference::seq_backward(
        &cell,
        params,
        p.batch.shape,
        &x,
        &fwd,
        SeqUpstream {
            dh_seq: Some(&ce.dh),
            ds_final: None,
        },
        false,
    )
    .unwrap();
    let mut grad: Vec<f64> = g
        .dparams
        .iter()
        .zip(sp.dparams.unwrap())
        .map(|(a, s)| a + p.lambda * s)
        .collect();
    grad.extend(ce.dw);
    grad.extend(ce.db);
    (loss, grad)
}

fn problem(kind: CellKind, seed: u64) -> (Problem, Vec<f32>, Vec<f32>, f64) {
    let set = tiny_set(seed);
    let task = TaskConfig {
        t_max: 7,
        delta_min: 2,
        ..TaskConfig::default()
    };
    let cfg = TrainConfig {
        cell: kind,
        hidden: 5,
        batch: 4,
        seed,
        task,
        ..TrainConfig::default()
    };
    let backend = CpuBackend::new();
    let mut t = Trainer::new(&backend, &set, cfg.clone()).unwrap();
    let sd = t.cell.state_size();
    let n_v = 3;
    let mut r = rng(seed ^ 1);
    let v: Vec<f64> = uniform(&mut r, n_v * sd, -0.8, 0.8);
    let vset = SpeedSet::new(v.iter().map(|&x| x as f32).collect(), sd, "random").unwrap();
    let lambda = 0.3f32;
    t.set_penalty(Some(SpeedPenalty::new(lambda, vset).unwrap()))
        .unwrap();
    let batch = make_batch(
        &set,
        &task,
        Stage {
            t_max: 7,
            vocab: 10,
        },
        seed,
        0,
        4,
    )
    .unwrap();
    let (stats, dparams, dro) = t.gradients(&batch).unwrap();
    let model: Model = t.model().unwrap();
    let ro = model.readout.unwrap();
    // Use the f32 values exactly, in f64.
    let p = Problem {
        cfg,
        params: f64s(&model.params),
        w: f64s(&ro.weight),
        b: f64s(&ro.bias),
        batch,
        lambda: lambda as f64,
        v: v.iter().map(|&x| x as f32 as f64).collect(),
        n_v,
        xs: f64s(&t.penalty_inputs().unwrap()),
    };
    (p, dparams, dro, stats.loss)
}

#[test]
fn full_objective_matches_finite_differences_in_f64() {
    for kind in CellKind::ALL {
        let seed = test_seed(&format!("objective-fd-{kind}"), 3);
        let (p, _, _, _) = problem(kind, seed);
        let (_, grad) = loss_and_grad(&p, &p.params, &p.w, &p.b, true);
        let np = p.params.len();
        let nw = p.w.len();
        let mut fd = vec![0f64; grad.len()];
        let h = 1e-6;
        for k in 0..grad.len() {
            let (mut th, mut w, mut b) = (p.params.clone(), p.w.clone(), p.b.clone());
            let slot = |th: &mut Vec<f64>, w: &mut Vec<f64>, b: &mut Vec<f64>, d: f64| {
                if k < np {
                    th[k] += d;
                } else if k < np + nw {
                    w[k - np] += d;
                } else {
                    b[k - np - nw] += d;
                }
            };
            slot(&mut th, &mut w, &mut b, h);
            let lp = loss_and_grad(&p, &th, &w, &b, false).0;
            slot(&mut th, &mut w, &mut b, -2.0 * h);
            let lm = loss_and_grad(&p, &th, &w, &b, false).0;
            fd[k] = (lp - lm) / (2.0 * h);
        }
        assert_close(
            &format!("{kind} objective gradient vs finite differences"),
            &grad,
            &fd,
            1e-6,
            seed,
        );
        // The report weighting matters: the loss must see it.
        assert!(p.batch.weights.contains(&6.0));
    }
}

#[test]
fn trainer_gradient_matches_f64_reference() {
    for kind in CellKind::ALL {
        let seed = test_seed(&format!("objective-f32-{kind}"), 5);
        let (p, dparams, dro, loss32) = problem(kind, seed);
        let (loss, grad) = loss_and_grad(&p, &p.params, &p.w, &p.b, true);
        let np = p.params.len();
        assert_close(
            &format!("{kind} dθ (f32 trainer vs f64)"),
            &dparams,
            &grad[..np],
            1e-4,
            seed,
        );
        assert_close(
            &format!("{kind} d readout (f32 trainer vs f64)"),
            &dro,
            &grad[np..],
            1e-4,
            seed,
        );
        assert!(
            (loss32 - loss).abs() < 1e-4 * loss.abs(),
            "{kind}: loss {loss32} vs {loss}"
        );
    }
}
