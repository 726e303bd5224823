//! Training on the bundled data learns the task; the speed penalty slows the class-mean
//! states relative to a λ = 0 control; checkpoints resume; evaluation in chunks matches
//! evaluation in one piece; the pipeline writes its report; bad input is a clear error.

use memrnn_core::{CellDims, CellKind, Model, Readout};
use memrnn_cpu::CpuBackend;
use memrnn_train::eval::{evaluate, EvalConfig};
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::objective::{mean_speed, SpeedPenalty};
use memrnn_train::pipeline::{run_pipeline, PipelineConfig, VSource};
use memrnn_train::task::{delay_inputs, DigitSet};
use memrnn_train::train::{RunOutput, TrainConfig, Trainer};
use memrnn_train::vset::{class_mean_states, trajectory_states};
use memrnn_train::TrainError;
use std::path::PathBuf;
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-train-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn base_cfg() -> TrainConfig {
    let mut c = TrainConfig {
        cell: CellKind::Gru,
        hidden: 64,
        batch: 64,
        steps: 350,
        seed: 7,
        log_every: 25,
        checkpoint_every: 100,
        ..TrainConfig::default()
    };
    c.adam.lr = 2e-3;
    c
}

/// A GRU trained for 350 steps on the bundled data (shared by the tests below).
fn trained() -> &'static (Model, f64, f64) {
    static M: OnceLock<(Model, f64, f64)> = OnceLock::new();
    M.get_or_init(|| {
        let b = CpuBackend::new();
        let out = RunOutput {
            dir: tmp("learn"),
            name: "base".into(),
            progress: false,
        };
        let mut t = Trainer::new(&b, set(), base_cfg()).unwrap();
        let s = t.run(&out).unwrap();
        assert!(out.checkpoint().is_file() && out.metrics().is_file());
        (t.model().unwrap(), s.report_acc, s.silence_acc)
    })
}

#[test]
fn short_training_learns_the_task() {
    let (model, report, silence) = trained();
    // Chance is 0.1 for the report and the network starts near 0.
    assert!(*report > 0.5, "report accuracy {report} after 350 steps");
    assert!(*silence > 0.95, "silence accuracy {silence}");
    let cfg = EvalConfig {
        delays: vec![6, 12, 16],
        trials: 300,
        batch: 150,
        ..EvalConfig::default()
    };
    let r = evaluate(
        &CpuBackend::new(),
        model,
        set(),
        &Default::default(),
        &cfg,
        None,
    )
    .unwrap();
    assert!(
        r.accuracy.iter().all(|&a| a > 0.4),
        "held-out accuracy at training delays {:?}",
        r.accuracy
    );
    assert_eq!(r.counts.iter().sum::<usize>(), 300);
    assert!(r.table().contains("delay"));
}

#[test]
fn speed_penalty_slows_the_class_means_against_a_control() {
    let (model, _, _) = trained();
    let b = CpuBackend::new();
    let cfg = base_cfg();
    let v = class_mean_states(&b, model, set(), &cfg.task, 500, 20, 11)
        .unwrap()
        .replicate(4);
    assert_eq!(v.n, 40);
    let xs = delay_inputs(&cfg.task, set().input_size(), 99, 0, v.n);
    let mut ft = cfg.clone();
    ft.steps = 60;
    ft.seed = 8;
    ft.adam.lr = 1e-3;
    let mut speeds = vec![];
    for lambda in [0.1f32, 0.0] {
        let mut t = Trainer::from_model(&b, set(), ft.clone(), model.clone()).unwrap();
        t.set_penalty(Some(SpeedPenalty::new(lambda, v.clone()).unwrap()))
            .unwrap();
        for _ in 0..ft.steps {
            t.train_step("none").unwrap();
        }
        speeds.push(mean_speed(&b, &t.cell, t.params(), &v, &xs).unwrap());
    }
    let before = {
        let p = b_upload(&b, &model.params);
        mean_speed(&b, &model.cell, &p, &v, &xs).unwrap()
    };
    assert!(
        speeds[0] < 0.7 * speeds[1],
        "mean speed on V: λ = 0.1 → {:.3e}, control → {:.3e} (before {:.3e})",
        speeds[0],
        speeds[1],
        before
    );
}

fn b_upload(b: &CpuBackend, v: &[f32]) -> Vec<f32> {
    use memrnn_core::Backend;
    b.upload(v).unwrap()
}

#[test]
fn checkpoints_resume_and_reject_other_cells() {
    let b = CpuBackend::new();
    let mut cfg = base_cfg();
    cfg.hidden = 16;
    cfg.batch = 16;
    cfg.steps = 12;
    cfg.checkpoint_every = 5;
    let out = RunOutput {
        dir: tmp("resume"),
        name: "r".into(),
        progress: false,
    };
    let mut t = Trainer::new(&b, set(), cfg.clone()).unwrap();
    t.run(&out).unwrap();
    let m12 = t.model().unwrap();
    // Resume to 20 steps.
    let mut more = cfg.clone();
    more.steps = 20;
    let mut r = Trainer::resume(&b, set(), more.clone(), &out.checkpoint()).unwrap();
    assert_eq!(r.step, 12);
    assert_eq!(r.model().unwrap(), m12);
    r.run(&out).unwrap();
    assert_eq!(r.step, 20);
    // Same 20 steps in one go give the same network (Adam state and batches resume exactly).
    let mut once = Trainer::new(&b, set(), more).unwrap();
    for _ in 0..20 {
        once.train_step("none").unwrap();
    }
    let (a, c) = (r.model().unwrap(), once.model().unwrap());
    let diff = a
        .params
        .iter()
        .zip(&c.params)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-5,
        "resumed run differs from an uninterrupted one by {diff}"
    );
    // Another hidden size, another cell.
    for (kind, hidden) in [(CellKind::Gru, 32), (CellKind::Lstm, 16)] {
        let mut other = cfg.clone();
        other.cell = kind;
        other.hidden = hidden;
        let e = Trainer::resume(&b, set(), other, &out.checkpoint())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("gru cell") && e.contains(&format!("{kind} cell")) && e.contains("--hidden"),
            "{e}"
        );
    }
    // A checkpoint with the wrong input size.
    let cell = CellDims::new(CellKind::Gru, 10, 16).unwrap();
    let mut m = Model::init(cell, 1);
    m.readout = Some(Readout::init(11, 16, 1).unwrap());
    let e = Trainer::from_model(&b, set(), cfg.clone(), m)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("input 10") && e.contains("input 785"), "{e}");
    // A missing checkpoint.
    let e = Trainer::resume(&b, set(), cfg, &out.dir.join("nope.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
}

#[test]
fn divergence_stops_and_names_the_last_checkpoint() {
    let b = CpuBackend::new();
    let mut cfg = base_cfg();
    cfg.hidden = 8;
    cfg.batch = 8;
    cfg.steps = 10;
    cfg.checkpoint_every = 2;
    let out = RunOutput {
        dir: tmp("diverge"),
        name: "d".into(),
        progress: false,
    };
    let mut t = Trainer::new(&b, set(), cfg.clone()).unwrap();
    t.run(&out).unwrap();
    // Pretend that anything above the current loss is divergence.
    let mut more = cfg;
    more.steps = 20;
    more.diverge_loss = 1e-3;
    let mut r = Trainer::resume(&b, set(), more, &out.checkpoint()).unwrap();
    match r.run(&out) {
        Err(TrainError::Diverged {
            step, checkpoint, ..
        }) => {
            assert_eq!(step, 10);
            assert!(checkpoint.ends_with("d.safetensors"), "{checkpoint}");
        }
        other => panic!("expected divergence, got {other:?}"),
    }
    let e = r.train_step("x").unwrap_err().to_string();
    assert!(e.contains("diverged") && e.contains("--lr"), "{e}");
}

#[test]
fn chunked_evaluation_matches_one_piece_and_long_delays_run() {
    let (model, _, _) = trained();
    let b = CpuBackend::new();
    let mut cfg = EvalConfig {
        delays: vec![5, 40, 130],
        trials: 40,
        batch: 20,
        chunk: 7,
        ..EvalConfig::default()
    };
    let a = evaluate(&b, model, set(), &Default::default(), &cfg, None).unwrap();
    cfg.chunk = 1000;
    let c = evaluate(&b, model, set(), &Default::default(), &cfg, None).unwrap();
    assert_eq!(a, c);
    assert_eq!(a.delays, vec![5, 40, 130]);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (model, _, _) = trained();
    let b = CpuBackend::new();
    let task = Default::default();
    for delays in [vec![], vec![0], vec![5, 2_000_000]] {
        let cfg = EvalConfig {
            delays,
            ..EvalConfig::default()
        };
        let e = evaluate(&b, model, set(), &task, &cfg, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("delay"), "{e}");
    }
    let v = trajectory_states(&b, model, set(), &task, 30, 10, 1).unwrap();
    assert_eq!((v.n, v.state_size), (30, 64));
    let e = SpeedPenalty::new(-0.1, v.clone()).unwrap_err().to_string();
    assert!(e.contains("λ") && e.contains("≥ 0"), "{e}");
    assert!(SpeedPenalty::new(f32::NAN, v.clone()).is_err());
    // States of the wrong size for the cell.
    let mut t = Trainer::from_model(&b, set(), base_cfg(), model.clone()).unwrap();
    let wrong = memrnn_train::SpeedSet::new(vec![0.0; 12], 6, "wrong").unwrap();
    let e = t
        .set_penalty(Some(SpeedPenalty {
            lambda: 1.0,
            set: wrong,
        }))
        .unwrap_err()
        .to_string();
    assert!(e.contains("size 6") && e.contains("64"), "{e}");
    let mut bad = base_cfg();
    bad.batch = 0;
    assert!(Trainer::new(&b, set(), bad).is_err());
}

#[test]
fn pipeline_writes_its_report() {
    let b = CpuBackend::new();
    let mut train = base_cfg();
    train.hidden = 16;
    train.batch = 16;
    train.steps = 20;
    let dir = tmp("pipeline");
    let cfg = PipelineConfig {
        train,
        finetune_steps: 5,
        finetune_lr: 1e-3,
        lambda: 0.01,
        v_source: VSource::SlowPoints {
            trials: 200,
            delay: 10,
            copies: 2,
        },
        finder: memrnn_slowpoints::FinderConfig {
            search: memrnn_core::backend::SlowPointConfig {
                max_iters: 300,
                ..Default::default()
            },
            ..Default::default()
        },
        finder_trajectory_candidates: 30,
        eval: EvalConfig {
            delays: vec![5, 30],
            trials: 40,
            batch: 40,
            ..EvalConfig::default()
        },
        out_dir: dir.clone(),
        progress: false,
    };
    let r = run_pipeline(&b, set(), &cfg).unwrap();
    assert_eq!(r.rows.len(), 3);
    assert_eq!(r.v_points, 20);
    for f in [
        "base.safetensors",
        "speed.safetensors",
        "control.safetensors",
        "extrapolation.svg",
        "summary.json",
        "summary.txt",
        "eval_control.json",
        "v_states.json",
        "slow_points_base.safetensors",
        "slow_points_base.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    // V is the per-class slow points, and every network reports one speed per digit.
    assert!(r.v_source.contains("slow points"), "{}", r.v_source);
    for row in &r.rows {
        assert_eq!(row.slow_point_speed_sq.len(), 10, "{}", row.name);
        assert!(row
            .slow_point_speed_sq
            .iter()
            .all(|s| s.is_finite() && *s >= 0.0));
    }
    assert!(r.slow_point_table().contains("digit 9"));
    // The one-run uncertainty line: the difference at the longest delay, as the table has it.
    let acc = |name: &str| {
        r.rows
            .iter()
            .find(|x| x.name == name)
            .unwrap()
            .accuracy
            .last()
            .unwrap()
            .1
    };
    let line = r.gain_line().unwrap();
    assert!(
        line.contains(&format!("{:+.3}", acc("speed") - acc("control"))) && line.contains("seed"),
        "{line}"
    );
    assert!(std::fs::read_to_string(dir.join("summary.txt"))
        .unwrap()
        .contains("speed − control"));
    assert!(r.table().contains("control"));
    let mut neg = cfg.clone();
    neg.lambda = -1.0;
    assert!(run_pipeline(&b, set(), &neg).is_err());
}

#[test]
fn curricula_advance_on_schedule_and_on_accuracy() {
    let b = CpuBackend::new();
    let mut cfg = base_cfg();
    cfg.hidden = 8;
    cfg.batch = 8;
    cfg.curriculum = memrnn_train::Curriculum::Delay;
    cfg.schedule = memrnn_train::StageSchedule::Every(2);
    let mut t = Trainer::new(&b, set(), cfg.clone()).unwrap();
    let mut seen = vec![];
    for _ in 0..20 {
        let s = t.train_step("none").unwrap();
        seen.push(s.t_max);
    }
    assert_eq!(&seen[..6], &[6, 6, 8, 8, 10, 10]);
    assert_eq!(*seen.last().unwrap(), 20);
    // VoCu with an accuracy threshold nobody reaches stays in its first stage; one that
    // everybody reaches (0) advances after the minimum steps.
    cfg.curriculum = memrnn_train::Curriculum::Vocab;
    for (threshold, want) in [(1.0, 2), (0.0, 4)] {
        cfg.schedule = memrnn_train::StageSchedule::Accuracy {
            threshold,
            min_steps: 3,
        };
        let mut t = Trainer::new(&b, set(), cfg.clone()).unwrap();
        let mut last = 0;
        for _ in 0..7 {
            last = t.train_step("none").unwrap().vocab;
        }
        assert_eq!(last, want, "threshold {threshold}");
    }
}
