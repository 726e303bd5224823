//! Checkpoints that cannot disagree, and options that cannot silently do nothing: weights,
//! optimiser state and step in one file; `resume` refuses what does not match and says
//! what to do; a failed save leaves the previous checkpoint and the metrics as they were;
//! commands refuse checkpoints that do not fit them and sizes that cannot fit in memory.

use memrnn_core::checkpoint::{load_checkpoint, read_tensors, save_checkpoint};
use memrnn_core::{CellDims, CellKind, Model, Readout};
use memrnn_cpu::CpuBackend;
use memrnn_train::eval::{evaluate, EvalConfig};
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::pipeline::{PipelineConfig, VSource};
use memrnn_train::task::DigitSet;
use memrnn_train::train::{
    check_task_model, RunOutput, TrainConfig, Trainer, META_ADAM_STEP, META_STEP, STATE_PARAMS_M,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-train-ck-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tiny() -> TrainConfig {
    let mut c = TrainConfig {
        hidden: 4,
        batch: 4,
        steps: 6,
        log_every: 1,
        checkpoint_every: 2,
        ..TrainConfig::default()
    };
    c.task.t_max = 6;
    c
}

fn out(dir: &Path) -> RunOutput {
    RunOutput {
        dir: dir.to_path_buf(),
        name: "m".into(),
        progress: false,
    }
}

fn metric_steps(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn one_file_holds_weights_optimiser_and_step_and_models_load_from_it() {
    let b = CpuBackend::new();
    let dir = tmp("one");
    let o = out(&dir);
    let mut t = Trainer::new(&b, set(), tiny()).unwrap();
    t.run(&o).unwrap();
    assert_eq!(files(&dir), ["m.metrics.jsonl", "m.safetensors"]);
    let (tensors, meta) = read_tensors(&o.checkpoint()).unwrap();
    assert!(tensors.contains_key(STATE_PARAMS_M));
    assert_eq!(meta[META_STEP], "6");
    assert_eq!(meta[META_ADAM_STEP], "6");
    // The model loader ignores the optimiser's tensors.
    assert_eq!(
        load_checkpoint(&o.checkpoint()).unwrap().model,
        t.model().unwrap()
    );
    assert_eq!(metric_steps(&o.metrics()), [1, 2, 3, 4, 5, 6]);
    // A second fresh run under the same name starts the metrics afresh.
    Trainer::new(&b, set(), tiny()).unwrap().run(&o).unwrap();
    assert_eq!(metric_steps(&o.metrics()), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn resume_refuses_what_does_not_match_and_says_what_to_do() {
    let b = CpuBackend::new();
    let dir = tmp("refuse");
    let o = out(&dir);
    Trainer::new(&b, set(), tiny()).unwrap().run(&o).unwrap();
    let mut more = tiny();
    more.steps = 10;
    let err = |cfg: TrainConfig, p: &Path| {
        Trainer::resume(&b, set(), cfg, p)
            .err()
            .expect("refused")
            .to_string()
    };
    // Weights without optimiser state (a plain model file, or an older memrnn's).
    let plain = dir.join("plain.safetensors");
    let ck = load_checkpoint(&o.checkpoint()).unwrap();
    save_checkpoint(&plain, &ck.model, &ck.metadata).unwrap();
    let e = err(more.clone(), &plain);
    assert!(
        e.contains("no optimiser state") && e.contains("--init"),
        "{e}"
    );
    let bare = dir.join("bare.safetensors");
    save_checkpoint(&bare, &ck.model, &BTreeMap::new()).unwrap();
    let e = err(more.clone(), &bare);
    assert!(
        e.contains("no training configuration") && e.contains("--init"),
        "{e}"
    );
    // Optimiser state of another step than the weights.
    let lie = dir.join("lie.safetensors");
    let (tensors, mut meta) = read_tensors(&o.checkpoint()).unwrap();
    meta.insert(META_ADAM_STEP.into(), "7".into());
    let owned: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.to_f32()))
        .collect();
    let views: Vec<(&str, Vec<usize>, &[f32])> = owned
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.clone(), d.as_slice()))
        .collect();
    memrnn_core::checkpoint::write_tensors(&lie, &views, &meta).unwrap();
    let e = err(more.clone(), &lie);
    assert!(e.contains("step 7") && e.contains("step 6"), "{e}");
    // Optimiser state of the wrong size.
    let short = dir.join("short.safetensors");
    let views: Vec<(&str, Vec<usize>, &[f32])> = owned
        .iter()
        .map(|(n, s, d)| {
            if n == STATE_PARAMS_M {
                (n.as_str(), vec![3], &d[..3])
            } else {
                (n.as_str(), s.clone(), d.as_slice())
            }
        })
        .collect();
    let (_, meta) = read_tensors(&o.checkpoint()).unwrap();
    memrnn_core::checkpoint::write_tensors(&short, &views, &meta).unwrap();
    let e = err(more.clone(), &short);
    assert!(e.contains(STATE_PARAMS_M) && e.contains("holds 3"), "{e}");
    // Settings that change the batches.
    let mut other = more.clone();
    other.batch = 5;
    let e = err(other, &o.checkpoint());
    assert!(
        e.contains("--batch") && e.contains('4') && e.contains('5'),
        "{e}"
    );
    // Nothing left to do.
    let e = err(tiny(), &o.checkpoint());
    assert!(
        e.contains("already at step 6") && e.contains("--steps"),
        "{e}"
    );
    // The learning rate may change (the divergence message suggests it).
    let mut lower = more.clone();
    lower.adam.lr = 1e-4;
    let mut r = Trainer::resume(&b, set(), lower, &o.checkpoint()).unwrap();
    r.run(&o).unwrap();
    assert_eq!(metric_steps(&o.metrics()), (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_failed_save_keeps_the_previous_checkpoint_and_logs_no_unsaved_steps() {
    let b = CpuBackend::new();
    let dir = tmp("failsave");
    let o = out(&dir);
    let mut cfg = tiny();
    cfg.steps = 2;
    Trainer::new(&b, set(), cfg).unwrap().run(&o).unwrap();
    let before = std::fs::read(o.checkpoint()).unwrap();
    let metrics_before = std::fs::read(o.metrics()).unwrap();
    // The save at step 4 cannot write its temporary file (a folder is in the way).
    let blocker = o.checkpoint().with_extension("safetensors.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let mut more = tiny();
    more.steps = 6;
    let mut r = Trainer::resume(&b, set(), more.clone(), &o.checkpoint()).unwrap();
    let e = r.run(&o).unwrap_err().to_string();
    assert!(
        e.contains("safetensors.tmp")
            && e.contains("still holds step 2, unchanged")
            && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(std::fs::read(o.checkpoint()).unwrap(), before);
    assert_eq!(std::fs::read(o.metrics()).unwrap(), metrics_before);
    assert_eq!(
        files(&dir),
        ["m.metrics.jsonl", "m.safetensors", "m.safetensors.tmp"]
    );
    // Once the way is clear, the run resumes from step 2 and logs every step once.
    std::fs::remove_dir(&blocker).unwrap();
    let mut r = Trainer::resume(&b, set(), more, &o.checkpoint()).unwrap();
    assert_eq!(r.step, 2);
    r.run(&o).unwrap();
    assert_eq!(metric_steps(&o.metrics()), [1, 2, 3, 4, 5, 6]);
    assert_eq!(files(&dir), ["m.metrics.jsonl", "m.safetensors"]);
}

#[test]
fn metrics_of_steps_no_checkpoint_covers_are_dropped_and_carried_ones_restored() {
    let b = CpuBackend::new();
    let dir = tmp("metrics");
    let o = out(&dir);
    let mut cfg = tiny();
    cfg.steps = 4;
    let mut t = Trainer::new(&b, set(), cfg).unwrap();
    t.run(&o).unwrap();
    // As a kill would leave it: lines after the checkpoint's step, one cut short.
    let mut text = std::fs::read_to_string(o.metrics()).unwrap();
    text.push_str("{\"step\":5,\"loss\":1.0}\n{\"step\":6,\"lo");
    std::fs::write(o.metrics(), &text).unwrap();
    let mut more = tiny();
    more.steps = 6;
    let mut r = Trainer::resume(&b, set(), more.clone(), &o.checkpoint()).unwrap();
    r.run(&o).unwrap();
    assert_eq!(metric_steps(&o.metrics()), [1, 2, 3, 4, 5, 6]);
    // As a kill between the checkpoint's rename and the metrics' append leaves it: the
    // lines the checkpoint covers are restored from it.
    Trainer::new(&b, set(), {
        let mut c = tiny();
        c.steps = 4;
        c
    })
    .unwrap()
    .run(&o)
    .unwrap();
    let text = std::fs::read_to_string(o.metrics()).unwrap();
    let last_two: Vec<&str> = text.lines().skip(2).collect();
    let keep: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(o.metrics(), &keep).unwrap();
    let mut r = Trainer::resume(&b, set(), more, &o.checkpoint()).unwrap();
    r.run(&o).unwrap();
    let lines = std::fs::read_to_string(o.metrics()).unwrap();
    assert_eq!(metric_steps(&o.metrics()), [1, 2, 3, 4, 5, 6]);
    for l in last_two {
        assert!(lines.contains(l), "restored line {l} missing");
    }
    // Killed between the final save and its metrics: a resume that has nothing left to
    // do still completes the metrics from the checkpoint, then refuses.
    let lines: Vec<&str> = lines.lines().collect();
    let keep: String = lines[..4].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(o.metrics(), keep).unwrap();
    let mut done = tiny();
    done.steps = 6;
    let e = Trainer::resume(&b, set(), done, &o.checkpoint())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already at step 6"), "{e}");
    assert_eq!(metric_steps(&o.metrics()), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn options_that_would_do_nothing_or_something_else_are_refused() {
    let b = CpuBackend::new();
    let mut c = tiny();
    c.steps = 0;
    let e = Trainer::new(&b, set(), c).err().unwrap().to_string();
    assert!(e.contains("0 training steps"), "{e}");
    for clip in [f32::NAN, -1.0, f32::INFINITY, 0.0] {
        let mut c = tiny();
        c.clip = Some(clip);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("gradient clip"), "{e}");
    }
    for name in ["../x", "a/b", "", ".", "..", ".hidden", "-x"] {
        let o = RunOutput {
            dir: tmp("names"),
            name: name.into(),
            progress: false,
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("run name") && e.contains("--out"), "{name}: {e}");
        let mut t = Trainer::new(&b, set(), tiny()).unwrap();
        assert!(t.run(&o).is_err());
    }
    assert!(!tmp("names").join("..").join("x.safetensors").exists());
    // The pipeline: λ = 0 is the control itself; no fine-tuning steps fine-tune nothing.
    let p = PipelineConfig {
        train: tiny(),
        finder: Default::default(),
        finder_trajectory_candidates: 10,
        finetune_steps: 5,
        finetune_lr: 1e-3,
        lambda: 0.01,
        v_source: VSource::Trajectory { n: 10, delay: 5 },
        eval: EvalConfig::default(),
        out_dir: tmp("pipe"),
        progress: false,
    };
    p.validate().unwrap();
    let e = PipelineConfig {
        lambda: 0.0,
        ..p.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("λ = 0") && e.contains("control"), "{e}");
    let e = PipelineConfig {
        finetune_steps: 0,
        ..p.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("0 fine-tuning steps"), "{e}");
    let e = PipelineConfig {
        finetune_lr: f32::NAN,
        ..p
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("lr"), "{e}");
}

#[test]
fn checkpoints_that_do_not_fit_a_command_are_refused() {
    let b = CpuBackend::new();
    let cell = CellDims::new(CellKind::Gru, 785, 4).unwrap();
    let mut m = Model::init(cell, 1);
    m.readout = Some(Readout::init(2, 4, 1).unwrap());
    // Evaluation of a 2-class readout would score nothing; it is refused, like --init.
    let e = evaluate(
        &b,
        &m,
        set(),
        &Default::default(),
        &EvalConfig::default(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 classes") && e.contains("11"), "{e}");
    let e = Trainer::from_model(&b, set(), tiny(), m.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("2 classes"), "{e}");
    assert!(check_task_model(&m, set(), false).is_err());
    m.readout = None;
    assert!(check_task_model(&m, set(), false).is_ok());
    let e = check_task_model(&m, set(), true).unwrap_err().to_string();
    assert!(e.contains("no readout"), "{e}");
    let small = Model::init(CellDims::new(CellKind::Gru, 10, 4).unwrap(), 1);
    let e = check_task_model(&small, set(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("size 10") && e.contains("785"), "{e}");
}

#[test]
fn sizes_that_cannot_fit_in_memory_are_refused_before_allocating() {
    let cell = CellDims::new(CellKind::Gru, 785, 64).unwrap();
    let e = EvalConfig {
        batch: 10_000_000,
        trials: 10_000_000,
        ..EvalConfig::default()
    };
    let msg = e.validate_for(&cell, 10_000).unwrap_err().to_string();
    assert!(
        msg.contains("would need about")
            && msg.contains("available")
            && msg.contains("--eval-batch"),
        "{msg}"
    );
    let e = EvalConfig {
        trials: 100_000_000_000,
        ..EvalConfig::default()
    };
    assert!(e
        .validate()
        .unwrap_err()
        .to_string()
        .contains("at most 10000000"));
    let mut c = tiny();
    c.batch = 1 << 20;
    c.hidden = 1 << 16;
    c.task.t_max = 1 << 19;
    let msg = c.validate_for(785, 10_000, 0).unwrap_err().to_string();
    assert!(
        msg.contains("would need about") && msg.contains("--batch"),
        "{msg}"
    );
    // A fresh trainer refuses before allocating its parameters (52 GB here).
    let mut c = tiny();
    c.hidden = 1 << 16;
    let msg = Trainer::new(&CpuBackend::new(), set(), c)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("would need about"), "{msg}");
    let s = memrnn_train::options::SlowPointOptions {
        candidates: 999_999,
        delay: 1_000_000,
        mean_trials: 1000,
        finder: Default::default(),
        seed: 0,
    };
    let msg = s.validate_for(&cell, 10_000).unwrap_err().to_string();
    assert!(
        msg.contains("would need about") && msg.contains("--candidates"),
        "{msg}"
    );
    let d = memrnn_train::options::DiagnoseOptions {
        trials: 1_000_000,
        steps: 60,
        config: Default::default(),
        seed: 0,
    };
    let msg = d.validate_for(&cell).unwrap_err().to_string();
    assert!(
        msg.contains("would need about") && msg.contains("--trials"),
        "{msg}"
    );
}

#[test]
fn a_penalised_fine_tune_is_not_resumed_without_its_penalty() {
    let b = CpuBackend::new();
    let dir = tmp("penalty");
    let base = Trainer::new(&b, set(), tiny()).unwrap().model().unwrap();
    let mut t = Trainer::from_model(&b, set(), tiny(), base).unwrap();
    let v = memrnn_train::SpeedSet::new(vec![0.1; 3 * 4], 4, "test points").unwrap();
    t.set_penalty(Some(memrnn_train::SpeedPenalty::new(0.01, v).unwrap()))
        .unwrap();
    let o = RunOutput {
        name: "speed".into(),
        ..out(&dir)
    };
    t.run(&o).unwrap();
    let mut more = tiny();
    more.steps = 8;
    let e = Trainer::resume(&b, set(), more, &o.checkpoint())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("λ = 0.01 on test points")
            && e.contains("--init")
            && e.contains("--lambda 0.01"),
        "{e}"
    );
}

#[test]
fn a_stored_training_config_with_unknown_keys_is_refused_by_name() {
    let mut meta = BTreeMap::new();
    let mut v = serde_json::to_value(tiny()).unwrap();
    v["task"]["t_maxx"] = 30.into();
    meta.insert(memrnn_train::train::META_CONFIG.to_string(), v.to_string());
    let e = memrnn_train::train::train_config_from_metadata(&meta).unwrap_err();
    assert!(
        e.contains("task.t_maxx") && e.contains("unknown key"),
        "{e}"
    );
    meta.clear();
    assert_eq!(
        memrnn_train::train::train_config_from_metadata(&meta),
        Ok(None)
    );
}

/// The digit table (the images as f32, on the host while it is built and again on the
/// backend) counts in the memory checks of training and evaluation: a budget that holds
/// the step or the evaluation but not the table is refused, naming the table.
#[test]
fn the_digit_table_counts_in_the_memory_checks() {
    use memrnn_train::limits::{digit_table_bytes, eval_bytes, train_bytes, MemoryBudget};
    let (images, pixels) = (10_000, 784);
    let table = digit_table_bytes(images, pixels);
    assert_eq!(table, 8 * 10_000 * 784);
    let c = tiny();
    let cell = CellDims::new(c.cell, pixels + 1, c.hidden).unwrap();
    let step = train_bytes(&cell, c.task.t_max, c.batch, 0);
    let fixed = |b: u128| MemoryBudget::fixed(b as u64);
    c.validate_within(pixels + 1, images, 0, &fixed(step + table))
        .unwrap();
    c.validate_within(pixels + 1, 0, 0, &fixed(step)).unwrap();
    let msg = c
        .validate_within(pixels + 1, images, 0, &fixed(step + table - 1))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("10000 digit images")
            && msg.contains("f32 table alone 59.8 MiB")
            && msg.contains("fewer images"),
        "{msg}"
    );
    let e = EvalConfig {
        batch: 8,
        trials: 8,
        chunk: 4,
        ..EvalConfig::default()
    };
    let need = eval_bytes(&cell, e.batch, e.trials, e.chunk);
    e.validate_within(&cell, images, &fixed(need + table))
        .unwrap();
    let msg = e
        .validate_within(&cell, images, &fixed(need + table - 1))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("10000 digit images")
            && msg.contains("f32 table alone")
            && msg.contains("--eval-batch"),
        "{msg}"
    );
}
