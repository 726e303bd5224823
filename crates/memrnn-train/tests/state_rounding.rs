//! `evaluate_storage` against `evaluate`: the f32 mode scores exactly what `evaluate`
//! scores on an f32 backend, the `W_hh`-only modes exactly what it scores with the
//! backend in bf16 / f16 (memrnn's `--precision`); and the modes that round the carried
//! state really carry a state every value of which is representable in their format,
//! while the f32 modes do not (so that check can fail).

#[path = "common/eval_fixture.rs"]
mod eval_fixture;
use eval_fixture::{eval_cfg, model, set};
use memrnn_core::{CellKind, Model, Precision};
use memrnn_cpu::CpuBackend;
use memrnn_testkit::Counting;
use memrnn_train::evaluate;
use memrnn_train::state_rounding::{evaluate_storage, StorageMode, StorageResult};
use memrnn_train::task::TaskConfig;

fn backends(threads: usize) -> Vec<CpuBackend> {
    Precision::ALL
        .iter()
        .map(|&p| {
            CpuBackend::new()
                .with_threads(threads)
                .unwrap()
                .with_precision(p)
        })
        .collect()
}

fn run(cell: CellKind, hidden: usize, steps: u64, threads: usize) -> (Model, Vec<StorageResult>) {
    let m = model(cell, hidden, steps, 21);
    let bs = backends(threads);
    let refs: Vec<&CpuBackend> = bs.iter().collect();
    let modes = StorageMode::standard(cell);
    let task = TaskConfig::default();
    let r = evaluate_storage(&refs, &m, set(), &task, &eval_cfg(), &modes, None).unwrap();
    assert_eq!(r.len(), modes.len());
    (m, r)
}

#[test]
fn weight_only_modes_are_evaluate_exactly() {
    let task = TaskConfig::default();
    for (cell, hidden, steps) in [
        (CellKind::Gru, 16, 40),
        (CellKind::Lstm, 9, 30),
        (CellKind::Rnn, 5, 0),
    ] {
        let (m, got) = run(cell, hidden, steps, 2);
        for p in Precision::ALL {
            let b = CpuBackend::new().with_precision(p);
            let want = evaluate(&b, &m, set(), &task, &eval_cfg(), None).unwrap();
            let r = got
                .iter()
                .find(|r| r.mode == StorageMode::weights_only(p))
                .unwrap();
            assert_eq!(r.eval, want, "{cell:?} H={hidden}, {}", r.name);
            assert!(
                want.accuracy.iter().sum::<f64>() > 0.0,
                "{cell:?}: nothing scored, a weak comparison"
            );
        }
        // The rounding modes score the same trials (same counts); their frozen counts
        // and steps are fractions of the same delay period.
        for r in &got {
            assert_eq!(r.eval.counts, got[0].eval.counts, "{}", r.name);
            assert_eq!(r.eval.delays, vec![1, 4, 9, 23]);
            assert_eq!(r.delay_steps, got[0].delay_steps, "{}", r.name);
            for f in [r.frozen_state, r.frozen_h, r.frozen_elements] {
                assert!((0.0..=1.0).contains(&f), "{}: {f}", r.name);
            }
            assert!(r.median_step_inf.is_finite() && r.median_step_inf >= r.median_step_h_inf);
            assert!(r.median_step_h_inf.is_finite() && r.median_step_h_inf > 0.0);
        }
        assert!(got[0].delay_steps > 0);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (_, one) = run(CellKind::Lstm, 9, 10, 1);
    let (_, two) = run(CellKind::Lstm, 9, 10, 2);
    assert_eq!(one, two);
}

/// Every value of every state a mode carries into a step: representable in the mode's
/// state format where it rounds (`h`, and `c` with `round_cell`), and in the f32 modes
/// not all bf16 values (else the check could not fail).
#[test]
fn rounding_modes_carry_only_representable_states() {
    let task = TaskConfig::default();
    let (cell, hidden) = (CellKind::Lstm, 9);
    let m = model(cell, hidden, 30, 21);
    let mut cfg = eval_cfg();
    cfg.trials = 20;
    let fits = |p: Precision, v: f32| p.round(v) == v;
    for mode in StorageMode::standard(cell) {
        let b = Counting::new(CpuBackend::new().with_precision(mode.weights)).recording_states();
        evaluate_storage(&[&b], &m, set(), &task, &cfg, &[mode], None).unwrap();
        let states: Vec<Vec<f32>> = b.take_states().into_iter().flatten().collect();
        assert!(
            states.len() > 20,
            "{}: {} states",
            mode.name(),
            states.len()
        );
        let (mut h_all, mut c_all) = (true, true);
        for s in &states {
            for row in s.chunks_exact(2 * hidden) {
                h_all &= row[..hidden].iter().all(|&v| fits(Precision::Bf16, v));
                c_all &= row[hidden..].iter().all(|&v| fits(Precision::Bf16, v));
                if mode.rounds_state() {
                    assert!(
                        row[..hidden].iter().all(|&v| fits(mode.state, v)),
                        "{}: h {row:?}",
                        mode.name()
                    );
                    if mode.round_cell {
                        assert!(
                            row[hidden..].iter().all(|&v| fits(mode.state, v)),
                            "{}: c {row:?}",
                            mode.name()
                        );
                    }
                }
            }
        }
        if !mode.rounds_state() {
            assert!(!h_all && !c_all, "{}: f32 states all bf16", mode.name());
        } else if !mode.round_cell {
            assert!(!c_all, "{}: c rounded without round_cell", mode.name());
        }
    }
}

#[test]
fn a_mode_without_its_backend_or_cell_is_refused() {
    let task = TaskConfig::default();
    let m = model(CellKind::Gru, 5, 0, 21);
    let b = CpuBackend::new();
    let err = evaluate_storage(
        &[&b],
        &m,
        set(),
        &task,
        &eval_cfg(),
        &[StorageMode::carried(Precision::Bf16, false)],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("with_precision(bf16)"), "{err}");
    let bf = CpuBackend::new().with_precision(Precision::Bf16);
    let err = evaluate_storage(
        &[&bf],
        &m,
        set(),
        &task,
        &eval_cfg(),
        &[StorageMode::carried(Precision::Bf16, true)],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cell state"), "{err}");
    let none: [&CpuBackend; 0] = [];
    assert!(evaluate_storage(&none, &m, set(), &task, &eval_cfg(), &[], None).is_err());
}
