//! The training step on the backend against the host path it replaced (a copy of it,
//! kept here only for this comparison): on the CPU the weights are bit-identical step for
//! step (the arithmetic and its order are unchanged), and the logged scalars, which now
//! pass through f32 on the backend, agree within 1e-6 relative. Plus: a run that reads
//! its numbers back only at its intervals checkpoints exactly what a run reading every
//! step does, and the transfers over ten steps are counted.

#[path = "common/old_host_step.rs"]
mod old_host_step;

use memrnn_core::CellKind;
use memrnn_cpu::CpuBackend;
use memrnn_testkit::Counting;
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::objective::{SpeedPenalty, SpeedSet};
use memrnn_train::task::{self, Curriculum, DigitSet, StageSchedule};
use memrnn_train::train::{RunOutput, TrainConfig, Trainer};
use memrnn_train::TrainError;
use old_host_step::OldHost;
use std::path::PathBuf;
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-step-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cfg() -> TrainConfig {
    let mut c = TrainConfig {
        cell: CellKind::Gru,
        hidden: 16,
        batch: 8,
        steps: 12,
        seed: 5,
        log_every: 5,
        checkpoint_every: 7,
        // Small enough that clipping acts on most steps.
        clip: Some(0.05),
        ..TrainConfig::default()
    };
    c.adam.lr = 3e-3;
    c
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

/// Twelve steps, without and with a speed penalty: weights bit-identical to the host
/// path, scalars within 1e-6.
#[test]
fn cpu_steps_match_the_old_host_path() {
    let b = CpuBackend::new();
    for with_penalty in [false, true] {
        let cfg = cfg();
        let mut t = Trainer::new(&b, set(), cfg.clone()).unwrap();
        let model = t.model().unwrap();
        let sd = t.cell.state_size();
        let penalty = with_penalty.then(|| {
            let v: Vec<f32> = (0..3 * sd)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0)
                .collect();
            SpeedPenalty::new(0.05, SpeedSet::new(v, sd, "fixed").unwrap()).unwrap()
        });
        t.set_penalty(penalty.clone()).unwrap();
        let mut old = OldHost::new(&b, &model);
        for k in 0..cfg.steps {
            let xs = t.penalty_inputs();
            let want = old.step(&b, set(), &cfg, &model, penalty.as_ref().zip(xs));
            let got = t.train_step("none").unwrap();
            let what = format!("step {k}, penalty {with_penalty}");
            assert!(
                rel(got.loss, want.0) < 1e-6,
                "{what}: loss {} vs {}",
                got.loss,
                want.0
            );
            assert_eq!(
                (got.report_acc, got.silence_acc),
                (want.1, want.2),
                "{what}"
            );
            assert!(
                rel(got.grad_norm, want.3) < 1e-6,
                "{what}: norm {} vs {}",
                got.grad_norm,
                want.3
            );
            let m = t.model().unwrap();
            let r = m.readout.unwrap();
            assert!(
                m.params == old.params,
                "{what}: recurrent parameters differ"
            );
            let nw = r.weight.len();
            assert!(
                r.weight == old.ro[..nw] && r.bias == old.ro[nw..],
                "{what}: readout differs"
            );
        }
    }
}

/// A run reading its numbers back every 5 and 7 steps (with a curriculum that moves
/// every 4) checkpoints exactly what one reading back every step does.
#[test]
fn deferred_reads_change_nothing() {
    let b = CpuBackend::new();
    let mut c = cfg();
    c.curriculum = Curriculum::Delay;
    c.schedule = StageSchedule::Every(4);
    let a_out = RunOutput {
        dir: tmp("deferred"),
        name: "a".into(),
        progress: false,
    };
    let mut a = Trainer::new(&b, set(), c.clone()).unwrap();
    a.run(&a_out).unwrap();
    let mut each = c.clone();
    each.log_every = 1;
    each.checkpoint_every = 1;
    let e_out = RunOutput {
        dir: tmp("each"),
        name: "e".into(),
        progress: false,
    };
    let mut e = Trainer::new(&b, set(), each).unwrap();
    e.run(&e_out).unwrap();
    assert_eq!((a.step, a.stage), (e.step, e.stage));
    assert!(a.stage >= 2, "the curriculum moved on (stage {})", a.stage);
    let (ta, ma) = memrnn_core::checkpoint::read_tensors(&a_out.checkpoint()).unwrap();
    let (te, me) = memrnn_core::checkpoint::read_tensors(&e_out.checkpoint()).unwrap();
    for k in [
        "memrnn.train.step",
        "memrnn.train.stage",
        "memrnn.train.stage_start",
        "memrnn.train.acc_ema",
        "memrnn.train.adam_step",
    ] {
        assert_eq!(ma.get(k), me.get(k), "{k}");
    }
    assert_eq!(ta.len(), te.len());
    for (name, t) in &ta {
        assert!(
            te.get(name).is_some_and(|u| u.to_f32() == t.to_f32()),
            "{name} differs"
        );
    }
    // Both metrics files end at step 12 with the same numbers there.
    let last = |p: PathBuf| -> serde_json::Value {
        let text = std::fs::read_to_string(p).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("elapsed_s");
        o.remove("report_acc_window");
        v
    };
    assert_eq!(last(a_out.metrics()), last(e_out.metrics()));
}

/// Over ten steps the trainer downloads only its record (once per log interval) and the
/// final checkpoint's six tensors, and uploads nothing: batches and the penalty's inputs
/// are drawn on the backend.
#[test]
fn ten_steps_transfer_only_the_record() {
    let b = Counting::new(CpuBackend::new());
    for (log_every, reads, penalty) in [(10u64, 1usize, false), (5, 2, true)] {
        let mut c = cfg();
        c.steps = 10;
        c.log_every = log_every;
        c.checkpoint_every = 1000;
        let out = RunOutput {
            dir: tmp(&format!("count{log_every}")),
            name: "c".into(),
            progress: false,
        };
        let mut t = Trainer::new(&b, set(), c).unwrap();
        if penalty {
            let sd = t.cell.state_size();
            let v = SpeedSet::new(vec![0.1; 2 * sd], sd, "fixed").unwrap();
            t.set_penalty(Some(SpeedPenalty::new(0.01, v).unwrap()))
                .unwrap();
        }
        b.reset();
        t.run(&out).unwrap();
        let (up, down) = b.transfers();
        assert_eq!(
            down,
            reads + 6,
            "log every {log_every}: {down} downloads; expected {reads} record reads and the \
             checkpoint's params, readout and 4 Adam moments"
        );
        assert_eq!(
            up, 0,
            "log every {log_every} (penalty {penalty}): {up} uploads"
        );
    }
}

/// A divergence found when the record is read (three steps after the bad one) names the
/// bad step and leaves the trainer exactly where it was before it: the guard skipped the
/// bad update and every later one.
#[test]
fn divergence_read_late_rewinds_to_the_bad_step() {
    let b = CpuBackend::new();
    let mut c = cfg();
    c.steps = 6;
    c.log_every = 3;
    c.checkpoint_every = 3;
    let out = RunOutput {
        dir: tmp("diverge"),
        name: "d".into(),
        progress: false,
    };
    let mut t = Trainer::new(&b, set(), c.clone()).unwrap();
    t.run(&out).unwrap();
    let at6 = t.model().unwrap();
    let mut more = c;
    more.steps = 20;
    more.log_every = 4;
    more.checkpoint_every = 4;
    more.diverge_loss = 1e-3;
    let mut r = Trainer::resume(&b, set(), more, &out.checkpoint()).unwrap();
    match r.run(&out) {
        Err(TrainError::Diverged { step, reason, .. }) => {
            assert_eq!(step, 6, "{reason}");
            assert!(reason.contains("exceeds the divergence limit"), "{reason}");
        }
        other => panic!("expected divergence, got {other:?}"),
    }
    assert_eq!(r.step, 6);
    assert!(
        r.model().unwrap() == at6,
        "the trainer did not rewind to step 6"
    );
    let ck = memrnn_core::checkpoint::load_checkpoint(&out.checkpoint()).unwrap();
    assert_eq!(
        ck.metadata.get("memrnn.train.step").map(String::as_str),
        Some("6")
    );
    // Stepping again meets the same bad step.
    match r.train_step("x") {
        Err(TrainError::Diverged { step, .. }) => assert_eq!(step, 6),
        other => panic!("expected divergence again, got {other:?}"),
    }
}

/// The backend's batches are `make_batch`'s, bit for bit, on the bundled digits: at the
/// final task and at curriculum stages with shorter sequences and fewer digits.
#[test]
fn backend_batches_are_make_batch() {
    use memrnn_core::{Backend, DigitTable, TaskBatchSpec};
    let b = CpuBackend::new();
    let s = set();
    let table = DigitTable::new(&b, &s.images_by_digit(), s.counts(), s.pixels).unwrap();
    let task = task::TaskConfig::default();
    for (stage, step, batch) in [
        (
            task::Stage {
                t_max: 20,
                vocab: 10,
            },
            0u64,
            5usize,
        ),
        (
            task::Stage {
                t_max: 6,
                vocab: 10,
            },
            77,
            3,
        ),
        (
            task::Stage {
                t_max: 20,
                vocab: 2,
            },
            123_456,
            1,
        ),
    ] {
        let want = task::make_batch(s, &task, stage, 9, step, batch).unwrap();
        let spec = TaskBatchSpec {
            seed: 9,
            step,
            t_max: stage.t_max,
            vocab: stage.vocab,
            delta_min: task.delta_min,
            batch,
            noise_mean: task.noise_mean,
            noise_std: task.noise_std,
        };
        let got = b.task_batch(&table, &spec).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.x), bits(&want.x), "{stage:?} step {step}: x");
        let tf: Vec<f32> = want.targets.iter().map(|&t| t as f32).collect();
        assert_eq!(got.targets, tf, "{stage:?} step {step}: targets");
        assert_eq!(
            bits(&got.weights),
            bits(&want.weights),
            "{stage:?} step {step}"
        );
    }
}
