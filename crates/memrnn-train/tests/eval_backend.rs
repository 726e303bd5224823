//! Evaluation at long delays on the backend against the host path it replaced (a copy of
//! it, kept here only for this comparison): on the CPU the result is identical, bit for
//! bit (the inputs are the same numbers, the argmax the same arithmetic); on the simulated
//! CUDA device it agrees within f32 rounding (an argmax may flip on a near tie). And the
//! transfers: the network, the readout and the digits go up once; per batch and delay one
//! class id a row comes back. Likewise the delay-period sources (class means, trajectory
//! states, the long-lag memory probe), whose inputs are now drawn on the backend too.

#[path = "common/old_host_delay.rs"]
mod old_host_delay;
#[path = "common/old_host_eval.rs"]
mod old_host_eval;

#[path = "common/eval_fixture.rs"]
mod eval_fixture;
use eval_fixture::{eval_cfg, model, set};
use memrnn_core::CellKind;
use memrnn_cpu::CpuBackend;
use memrnn_testkit::Counting;
use memrnn_train::task::TaskConfig;
use memrnn_train::{evaluate, memprobe, vset, EvalConfig};
use old_host_delay::{old_class_means, old_long_memory, old_trajectory_states};
use old_host_eval::old_evaluate;

#[test]
fn cpu_eval_is_the_old_host_path_bit_for_bit() {
    let task = TaskConfig::default();
    for (cell, hidden, steps) in [
        (CellKind::Gru, 16, 40),
        (CellKind::Lstm, 9, 0),
        (CellKind::Rnn, 5, 0),
    ] {
        let m = model(cell, hidden, steps, 21);
        for threads in [1, 2] {
            let b = CpuBackend::new().with_threads(threads).unwrap();
            let got = evaluate(&b, &m, set(), &task, &eval_cfg(), None).unwrap();
            let want = old_evaluate(&b, &m, set(), &task, &eval_cfg());
            assert_eq!(got, want, "{cell:?} H={hidden}, {threads} threads");
            assert!(
                got.accuracy.iter().sum::<f64>() > 0.0,
                "{cell:?}: nothing scored, a weak comparison: {:?}",
                got.accuracy
            );
        }
    }
}

#[test]
fn simulated_device_eval_matches_the_cpu() {
    use memrnn_cuda::{CudaBackend, SimProps};
    let task = TaskConfig::default();
    let m = model(CellKind::Gru, 8, 30, 21);
    let cfg = EvalConfig {
        delays: vec![1, 4, 9],
        trials: 13,
        batch: 8,
        chunk: 4,
        read_span: 3,
        seed: 77,
    };
    let sim = CudaBackend::simulated(SimProps::small()).unwrap();
    sim.set_poison_outputs(true);
    let got = evaluate(&sim, &m, set(), &task, &cfg, None).unwrap();
    let want = evaluate(&CpuBackend::new(), &m, set(), &task, &cfg, None).unwrap();
    assert!(want.accuracy.iter().sum::<f64>() > 0.0, "{want:?}");
    assert_eq!(
        (&got.delays, got.counts, got.trials),
        (&want.delays, want.counts, want.trials)
    );
    // One trial of 13 flipping on a near tie is f32 rounding; more is a bug.
    for (i, (a, w)) in got.accuracy.iter().zip(&want.accuracy).enumerate() {
        assert!(
            (a - w).abs() <= 1.0 / 13.0 + 1e-12,
            "delay {}: accuracy {a} on the simulated device, {w} on the CPU",
            got.delays[i]
        );
    }
}

#[test]
fn eval_transfers_one_class_id_a_row_per_delay() {
    let task = TaskConfig::default();
    let m = model(CellKind::Gru, 16, 0, 21);
    let cfg = eval_cfg();
    let b = Counting::new(CpuBackend::new());
    let r = evaluate(&b, &m, set(), &task, &cfg, None).unwrap();
    let (ups, downs) = b.transfers();
    let (up_bytes, down_bytes) = b.bytes();
    let f = std::mem::size_of::<f32>();
    let ro = m.readout.as_ref().unwrap();
    let n_images: usize = set().counts().iter().map(|&c| c as usize).sum();
    // Up: the parameters, the readout, the digit table (images and offsets), once.
    assert_eq!(ups, 4, "uploads");
    assert_eq!(
        up_bytes,
        f * (m.params.len() + ro.weight.len() + ro.bias.len() + n_images * set().pixels + 11),
        "uploaded bytes"
    );
    // Down: per batch and delay, one class id a row.
    let batches = cfg.trials.div_ceil(cfg.batch);
    assert_eq!(downs, batches * r.delays.len(), "downloads");
    assert_eq!(
        down_bytes,
        f * cfg.trials * r.delays.len(),
        "downloaded bytes"
    );
    assert_eq!(r.trials, cfg.trials);
}

#[test]
fn delay_sources_are_the_old_host_path_bit_for_bit() {
    let task = TaskConfig::default();
    for (cell, hidden) in [(CellKind::Gru, 12), (CellKind::Lstm, 7)] {
        let m = model(cell, hidden, 20, 21);
        let b = Counting::new(CpuBackend::new());
        // Class means over two batches (the second of 88 rows).
        let got = vset::class_mean_states(&b, &m, set(), &task, 600, 6, 13).unwrap();
        let want = old_class_means(&b.inner, &m, set(), &task, 600, 6, 13);
        assert!(got.states == want, "{cell:?}: class means differ");
        let got = vset::trajectory_states(&b, &m, set(), &task, 40, 9, 5).unwrap();
        let want = old_trajectory_states(&b.inner, &m, set(), &task, 40, 9, 5);
        assert!(got.states == want, "{cell:?}: trajectory states differ");
        let got = memprobe::long_memory(&b, &m, set(), &task, 40, 70, 3).unwrap();
        let want = old_long_memory(&b.inner, &m, set(), &task, 40, 70, 3);
        assert_eq!(got, want, "{cell:?}: long memory");
    }
}

#[test]
fn class_means_upload_the_digits_once_and_read_back_final_states() {
    let task = TaskConfig::default();
    let m = model(CellKind::Gru, 12, 1, 21);
    let b = Counting::new(CpuBackend::new());
    vset::class_mean_states(&b, &m, set(), &task, 600, 30, 13).unwrap();
    let n_images: usize = set().counts().iter().map(|&c| c as usize).sum();
    let f = std::mem::size_of::<f32>();
    // Up: the parameters and the digit table, however long the delay.
    assert_eq!(b.transfers(), (3, 2));
    assert_eq!(
        b.bytes(),
        (
            f * (m.params.len() + n_images * set().pixels + 11),
            f * 600 * m.cell.state_size()
        )
    );
}
