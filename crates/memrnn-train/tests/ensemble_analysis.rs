//! Analysis over an ensemble: evaluation (`evaluate_ensemble`), the class slow points
//! (`class_slow_points_ensemble`) and the full finder (`find_slow_points_ensemble`)
//! against the same analysis of each network alone. On the CPU (1 and 2 threads) every
//! network's result is identical, bit for bit; on the simulated CUDA device the ensemble
//! is identical to each network alone on that device, and within the documented tolerance
//! of the CPU. The ensembles mix cells (they are grouped by shape), include a network that
//! is refused (its error is its own; the others go on), and the evaluations end in a
//! partial batch.

#[path = "common/eval_fixture.rs"]
mod eval_fixture;
use eval_fixture::{eval_cfg, model, set};
use memrnn_core::{Backend, CellKind, Model};
use memrnn_cpu::CpuBackend;
use memrnn_cuda::{CudaBackend, SimProps};
use memrnn_slowpoints::{
    find_slow_points, find_slow_points_ensemble, EnsembleMember, FinderConfig, SearchMethod,
};
use memrnn_train::slow::{class_slow_points_ensemble, class_slow_points_with, constant_input};
use memrnn_train::task::TaskConfig;
use memrnn_train::{evaluate, evaluate_ensemble, vset, EvalConfig, SpeedSet};
use std::sync::OnceLock;

/// Two GRUs of one shape (seeds apart), an RNN of another shape, and a GRU without a
/// readout (refused by evaluation) in between.
fn models() -> &'static [Model] {
    static M: OnceLock<Vec<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let a = model(CellKind::Gru, 8, 30, 21);
        let mut bare = model(CellKind::Gru, 8, 0, 5);
        bare.readout = None;
        vec![
            a,
            bare,
            model(CellKind::Rnn, 5, 0, 9),
            model(CellKind::Gru, 8, 20, 33),
        ]
    })
}

#[test]
fn cpu_ensemble_evaluation_is_each_network_alone_bit_for_bit() {
    let task = TaskConfig::default();
    let ms: Vec<&Model> = models().iter().collect();
    for threads in [1, 2] {
        let b = CpuBackend::new().with_threads(threads).unwrap();
        let got = evaluate_ensemble(&b, &ms, set(), &task, &eval_cfg(), None).unwrap();
        assert_eq!(got.len(), ms.len());
        for (i, (g, m)) in got.iter().zip(&ms).enumerate() {
            let alone = evaluate(&b, m, set(), &task, &eval_cfg(), None);
            match (g, alone) {
                (Ok(g), Ok(a)) => {
                    assert_eq!(g, &a, "network {i}, {threads} threads");
                    assert!(g.accuracy.iter().sum::<f64>() > 0.0, "network {i}: {g:?}");
                }
                (Err(g), Err(a)) => assert_eq!(g.to_string(), a.to_string(), "network {i}"),
                (g, a) => panic!("network {i}, {threads} threads: {g:?} vs alone {a:?}"),
            }
        }
        assert!(got[1]
            .as_ref()
            .is_err_and(|e| e.to_string().contains("readout")));
    }
}

#[test]
fn simulated_device_ensemble_evaluation_is_each_network_alone() {
    let task = TaskConfig::default();
    let cfg = EvalConfig {
        delays: vec![1, 4, 9],
        trials: 13,
        batch: 8,
        chunk: 4,
        read_span: 3,
        seed: 77,
    };
    let ms: Vec<&Model> = [0, 2, 3].iter().map(|&i| &models()[i]).collect();
    let sim = CudaBackend::simulated(SimProps::small()).unwrap();
    sim.set_poison_outputs(true);
    let got = evaluate_ensemble(&sim, &ms, set(), &task, &cfg, None).unwrap();
    for (i, (g, m)) in got.into_iter().zip(&ms).enumerate() {
        let g = g.unwrap();
        let alone = evaluate(&sim, m, set(), &task, &cfg, None).unwrap();
        // Today the simulated device runs the members' forward passes one by one (the
        // trait's default), so each is its own evaluation exactly; a fused launch may
        // reorder f32 sums, and then the CPU tolerance below is the rule.
        assert_eq!(g, alone, "network {i}");
        let cpu = evaluate(&CpuBackend::new(), m, set(), &task, &cfg, None).unwrap();
        for (a, w) in g.accuracy.iter().zip(&cpu.accuracy) {
            assert!(
                (a - w).abs() <= 1.0 / 13.0 + 1e-12,
                "network {i}: {a} vs {w}"
            );
        }
    }
}

/// Each network's class means (the trials of `vset::class_mean_states`).
fn class_means<B: Backend>(b: &B, ms: &[&Model]) -> Vec<SpeedSet> {
    let task = TaskConfig::default();
    ms.iter()
        .enumerate()
        .map(|(i, m)| vset::class_mean_states(b, m, set(), &task, 200, 6, 100 + i as u64).unwrap())
        .collect()
}

fn finder(method: SearchMethod) -> FinderConfig {
    let mut f = FinderConfig {
        method,
        ..FinderConfig::default()
    };
    f.search.max_iters = 400;
    f.lm.max_iters = 60;
    f
}

fn check_class_slow_points<B: Backend>(b: &B, what: &str) {
    let task = TaskConfig::default();
    let ms: Vec<&Model> = models().iter().collect();
    let means = class_means(&CpuBackend::new(), &ms);
    // A set of means of the wrong width for network 2: refused, the others go on.
    let mut wrong = means.clone();
    wrong[2] = means[0].clone();
    let refs: Vec<&SpeedSet> = wrong.iter().collect();
    for method in [SearchMethod::Lm, SearchMethod::Adam] {
        let cfg = finder(method);
        let got = class_slow_points_ensemble(b, &ms, &task, &refs, &cfg).unwrap();
        for (i, g) in got.iter().enumerate() {
            let alone = class_slow_points_with(b, ms[i], &task, refs[i], &cfg);
            match (g, alone) {
                (Ok(g), Ok(a)) => {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&g.states.states),
                        bits(&a.states.states),
                        "{what} {method} {i}"
                    );
                    assert_eq!(bits(&g.speed_sq), bits(&a.speed_sq), "{what} {method} {i}");
                    assert_eq!(g.iters, a.iters, "{what} {method} network {i}");
                    assert!(
                        g.iters.iter().any(|&n| n > 0),
                        "{what} {method} {i}: no steps"
                    );
                }
                (Err(g), Err(a)) => assert_eq!(g.to_string(), a.to_string()),
                (g, a) => panic!("{what} {method} network {i}: {g:?} vs alone {a:?}"),
            }
        }
        assert!(got[2].is_err(), "{what}: the wrong means were accepted");
    }
}

#[test]
fn cpu_ensemble_class_slow_points_are_each_network_alone_bit_for_bit() {
    for threads in [1, 2] {
        let b = CpuBackend::new().with_threads(threads).unwrap();
        check_class_slow_points(&b, &format!("cpu, {threads} threads"));
    }
}

#[test]
fn simulated_device_ensemble_class_slow_points_are_each_network_alone() {
    for props in [SimProps::small(), SimProps::h100_like()] {
        let sim = CudaBackend::simulated(props).unwrap();
        sim.set_poison_outputs(true);
        check_class_slow_points(&sim, "simulated device");
    }
}

fn check_finder<B: Backend>(b: &B, what: &str) {
    let task = TaskConfig::default();
    let ms: Vec<&Model> = models().iter().collect();
    let means = class_means(&CpuBackend::new(), &ms);
    let inputs: Vec<Vec<f32>> = ms
        .iter()
        .map(|m| constant_input(&task, m.cell.input))
        .collect();
    let nan = vec![f32::NAN; means[1].states.len()];
    let members: Vec<EnsembleMember<'_>> = (0..ms.len())
        .map(|i| EnsembleMember {
            model: ms[i],
            x_bar: &inputs[i],
            // Network 1's candidates are NaN: refused, the others go on.
            candidates: if i == 1 { &nan } else { &means[i].states },
        })
        .collect();
    for method in [SearchMethod::Lm, SearchMethod::Adam] {
        let cfg = finder(method);
        let got = find_slow_points_ensemble(b, &members, &cfg).unwrap();
        for (i, (g, m)) in got.iter().zip(&members).enumerate() {
            let alone = find_slow_points(b, m.model, m.x_bar, m.candidates, &cfg);
            match (g, alone) {
                (Ok(g), Ok(a)) => assert_eq!(g, &a, "{what} {method} network {i}"),
                (Err(g), Err(a)) => assert_eq!(g.to_string(), a.to_string()),
                (g, a) => panic!("{what} {method} network {i}: {g:?} vs alone {a:?}"),
            }
        }
        assert!(got[1].is_err(), "{what}: NaN candidates were accepted");
        assert!(got[0].as_ref().is_ok_and(|r| r.counts.candidates == 10));
    }
}

#[test]
fn cpu_ensemble_finder_is_each_network_alone() {
    for threads in [1, 2] {
        let b = CpuBackend::new().with_threads(threads).unwrap();
        check_finder(&b, &format!("cpu, {threads} threads"));
    }
}

#[test]
fn simulated_device_ensemble_finder_is_each_network_alone() {
    let sim = CudaBackend::simulated(SimProps::small()).unwrap();
    sim.set_poison_outputs(true);
    check_finder(&sim, "simulated device");
}

#[test]
fn an_ensemble_with_nothing_to_evaluate_draws_nothing() {
    let task = TaskConfig::default();
    let b = memrnn_testkit::Counting::new(CpuBackend::new());
    assert!(evaluate_ensemble(&b, &[], set(), &task, &eval_cfg(), None)
        .unwrap()
        .is_empty());
    let bare = &models()[1];
    let got = evaluate_ensemble(&b, &[bare], set(), &task, &eval_cfg(), None).unwrap();
    assert!(got.len() == 1 && got[0].is_err(), "{got:?}");
    // Nothing went up: no network, no digits, no long runs.
    let (ups, _) = b.transfers();
    assert_eq!(ups, 0, "uploads for nothing to evaluate");
}
