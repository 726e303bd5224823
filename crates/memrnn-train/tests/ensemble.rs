//! A network trained as a member of an ensemble is the network trained alone (same seed,
//! same checkpoint, same metrics), on the CPU bit for bit (the members run the single
//! operations, side by side on a 2-thread pool, against alone on 1 thread) and on the
//! simulated CUDA device within f32 reordering (its ensemble recurrence may split a dot
//! product over other warp lanes than a lone network's launch does). Members at different curriculum stages
//! (so different sequence lengths in one step) and a member that diverges, which stops
//! only itself, are in every ensemble, and two of the three members carry a speed
//! penalty (each its own points and λ).

use memrnn_core::checkpoint::load_checkpoint;
use memrnn_core::{Backend, CellKind};
use memrnn_cpu::CpuBackend;
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::task::{Curriculum, DigitSet, StageSchedule, TaskConfig};
use memrnn_train::train::{RunOutput, TrainConfig, Trainer};
use memrnn_train::{EnsembleTrainer, SpeedPenalty, SpeedSet, TrainError};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-ens-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Three members: a plain one, one under the delay curriculum moving every 3 steps (its
/// sequences are shorter than the others' for most steps), and one whose divergence
/// limit stops it at its first step.
fn members(hidden: usize, batch: usize, steps: u64, t_max: usize) -> Vec<TrainConfig> {
    let base = TrainConfig {
        cell: CellKind::Gru,
        hidden,
        batch,
        steps,
        seed: 11,
        log_every: 2,
        checkpoint_every: 5,
        task: TaskConfig {
            t_max,
            ..TaskConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut curriculum = base.clone();
    curriculum.seed = 12;
    curriculum.curriculum = Curriculum::Delay;
    curriculum.schedule = StageSchedule::Every(3);
    let mut diverging = base.clone();
    diverging.seed = 13;
    diverging.diverge_loss = 1e-3;
    vec![base, curriculum, diverging]
}

fn out(dir: &Path, i: usize) -> RunOutput {
    RunOutput {
        dir: dir.to_path_buf(),
        name: format!("m{i}"),
        progress: false,
    }
}

/// A metrics file without its wall-clock field.
fn metrics(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("elapsed_s");
            v
        })
        .collect()
}

/// Trains `cfgs` one by one on `alone` and as one ensemble on `together`, and compares
/// every member's outcome, checkpoint and metrics; `tol` 0 asks for bit-identity.
/// The speed penalty of member `i` of [`members`]: members 0 and 2 (the latter diverges)
/// are penalised at their own random points with their own λ, member 1 is not, so the
/// step's `ensemble_step_speed_grad` serves a subset of the members.
fn penalty(i: usize, hidden: usize) -> Option<SpeedPenalty> {
    let n = [6usize, 0, 3][i % 3];
    if n == 0 {
        return None;
    }
    let mut r = memrnn_testkit::rng(900 + i as u64);
    let states: Vec<f32> = memrnn_testkit::uniform(&mut r, n * hidden, -0.5, 0.5);
    let set = SpeedSet::new(states, hidden, "test points").unwrap();
    Some(SpeedPenalty::new(0.05 * (i + 1) as f32, set).unwrap())
}

fn compare<B: Backend>(alone: &B, together: &B, cfgs: Vec<TrainConfig>, tag: &str, tol: f32) {
    let (da, de) = (tmp(&format!("{tag}-alone")), tmp(&format!("{tag}-ens")));
    let single: Vec<_> = cfgs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut t = Trainer::new(alone, set(), c.clone()).unwrap();
            t.set_penalty(penalty(i, c.hidden)).unwrap();
            (t.run(&out(&da, i)), t.model().unwrap())
        })
        .collect();
    let mut ens = EnsembleTrainer::new(together, set(), cfgs.clone()).unwrap();
    for (i, m) in ens.members.iter_mut().enumerate() {
        m.set_penalty(penalty(i, cfgs[i].hidden)).unwrap();
    }
    let outs: Vec<RunOutput> = (0..cfgs.len()).map(|i| out(&de, i)).collect();
    let results = ens.run(&outs).unwrap();
    assert_eq!(results.len(), cfgs.len());
    for (i, ((alone_r, alone_m), ens_r)) in single.iter().zip(&results).enumerate() {
        let what = format!("{tag} member {i}");
        match (alone_r, ens_r) {
            (Ok(a), Ok(e)) => {
                assert_eq!(a.steps, e.steps, "{what}: steps");
                assert_eq!(a.last.stage, e.last.stage, "{what}: curriculum stage");
            }
            (
                Err(TrainError::Diverged { step: sa, .. }),
                Err(TrainError::Diverged { step: se, .. }),
            ) => assert_eq!(sa, se, "{what}: diverged at another step"),
            (a, e) => panic!("{what}: alone {a:?}, in the ensemble {e:?}"),
        }
        let em = ens.members[i].model().unwrap();
        assert_eq!(
            ens.members[i].step,
            single_step(alone_r),
            "{what}: step count"
        );
        let close = |name: &str, a: &[f32], e: &[f32]| {
            assert_eq!(a.len(), e.len(), "{what}: {name} length");
            for (k, (x, y)) in a.iter().zip(e).enumerate() {
                let ok = if tol == 0.0 {
                    x.to_bits() == y.to_bits()
                } else {
                    (x - y).abs() <= tol * x.abs().max(1.0)
                };
                assert!(ok, "{what}: {name}[{k}] alone {x}, in the ensemble {y}");
            }
        };
        close("params", &alone_m.params, &em.params);
        let (ra, re) = (
            alone_m.readout.as_ref().unwrap(),
            em.readout.as_ref().unwrap(),
        );
        close("readout weight", &ra.weight, &re.weight);
        close("readout bias", &ra.bias, &re.bias);
        // The files: the checkpoint's step and weights, the metrics lines.
        let (ca, ce) = (out(&da, i).checkpoint(), out(&de, i).checkpoint());
        assert_eq!(
            ca.is_file(),
            ce.is_file(),
            "{what}: checkpoint written in one run only"
        );
        if ca.is_file() {
            let (ka, ke) = (load_checkpoint(&ca).unwrap(), load_checkpoint(&ce).unwrap());
            assert_eq!(
                ka.metadata.get("memrnn.train.step"),
                ke.metadata.get("memrnn.train.step"),
                "{what}: checkpoint step"
            );
            close("checkpoint params", &ka.model.params, &ke.model.params);
        }
        let (ma, me) = (
            metrics(&out(&da, i).metrics()),
            metrics(&out(&de, i).metrics()),
        );
        assert_eq!(ma.len(), me.len(), "{what}: metrics lines");
        if tol == 0.0 {
            assert_eq!(ma, me, "{what}: metrics");
        }
    }
    // The diverging member stopped at its first step; the others ran to the end.
    assert!(matches!(
        results[2],
        Err(TrainError::Diverged { step: 0, .. })
    ));
    assert!(results[0].is_ok() && results[1].is_ok());
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&de);
}

fn single_step(r: &memrnn_train::Result<memrnn_train::train::TrainSummary>) -> u64 {
    match r {
        Ok(s) => s.steps,
        Err(TrainError::Diverged { step, .. }) => *step,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn cpu_members_are_bit_identical_to_networks_trained_alone() {
    let one = CpuBackend::new().with_threads(1).unwrap();
    let two = CpuBackend::new().with_threads(2).unwrap();
    compare(&one, &two, members(9, 5, 13, 9), "cpu", 0.0);
}

#[test]
fn sim_members_match_networks_trained_alone() {
    use memrnn_cuda::{CudaBackend, SimProps};
    let alone = CudaBackend::simulated(SimProps::small()).unwrap();
    let together = CudaBackend::simulated(SimProps::small()).unwrap();
    together.set_poison_outputs(true);
    compare(&alone, &together, members(5, 3, 4, 7), "sim", 1e-5);
}

#[test]
fn an_empty_ensemble_and_mismatched_outputs_are_errors() {
    let b = CpuBackend::new();
    let e = EnsembleTrainer::new(&b, set(), vec![])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("at least one network"), "{e}");
    let mut ens = EnsembleTrainer::new(&b, set(), members(3, 2, 2, 7)).unwrap();
    let e = ens.run(&[]).unwrap_err().to_string();
    assert!(e.contains("outputs"), "{e}");
}

/// A member whose numbers the backend refuses (a readout so large that its logits
/// overflow: the loss and `∂L/∂h` are not finite, which the CPU backend's backward pass
/// refuses) stops with the error it gets trained alone; the others train on, bit for bit
/// as alone.
#[test]
fn a_member_the_backend_refuses_stops_alone() {
    use memrnn_core::{CellDims, Model, Readout};
    let b = CpuBackend::new();
    let cfgs = members(6, 3, 4, 7);
    let cell = CellDims::new(CellKind::Gru, set().input_size(), 6).unwrap();
    let models: Vec<Model> = cfgs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut m = Model::init(cell, c.seed);
            let mut r = Readout::init(11, 6, c.seed ^ 0xAB).unwrap();
            if i == 1 {
                r.weight.iter_mut().for_each(|w| *w = 3e38);
            }
            m.readout = Some(r);
            m
        })
        .collect();
    let mut cfgs = cfgs;
    cfgs[2].diverge_loss = 100.0;
    let dir = tmp("refused");
    let outs: Vec<RunOutput> = (0..3).map(|i| out(&dir, i)).collect();
    let mut ens = EnsembleTrainer::from_models(&b, set(), cfgs.clone(), models.clone()).unwrap();
    let results = ens.run(&outs).unwrap();
    let alone: Vec<_> = (0..3)
        .map(|i| {
            let mut t = Trainer::from_model(&b, set(), cfgs[i].clone(), models[i].clone()).unwrap();
            let r = t.run(&out(&tmp(&format!("refused-alone-{i}")), i));
            (r, t.model().unwrap())
        })
        .collect();
    match (&results[1], &alone[1].0) {
        (Err(e), Err(a)) => {
            // The backend's refusal (not the divergence guard): the path under test.
            assert!(e.to_string().contains("non-finite"), "{e}");
            assert_eq!(e.to_string(), a.to_string())
        }
        other => panic!("the overflowing member should fail as it does alone: {other:?}"),
    }
    for i in [0, 2] {
        assert!(results[i].is_ok(), "member {i}: {:?}", results[i]);
        assert!(
            ens.members[i].model().unwrap() == alone[i].1,
            "member {i} differs from alone"
        );
    }
    let e = EnsembleTrainer::from_models(&b, set(), cfgs, vec![])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("one model per configuration"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}
