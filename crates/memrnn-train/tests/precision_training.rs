//! Mixed precision in training: a small version of the default run (a GRU, H 48,
//! batch 48, 300 steps on the bundled data) trained with `W_hh` stored in bf16
//! reaches the same accuracy band as in f32, from the same seed: the master weights and
//! Adam's state stay f32, and the bf16 copy is packed from them at every call, so the
//! only difference is the rounding of `W_hh` inside the recurrent products.

use memrnn_core::{CellKind, Precision};
use memrnn_cpu::CpuBackend;
use memrnn_train::eval::{evaluate, EvalConfig};
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::task::DigitSet;
use memrnn_train::train::{RunOutput, TrainConfig, Trainer};

/// Held-out report accuracy at the training delays after training, the last window's
/// training report accuracy, and the trained parameters.
fn train(set: &DigitSet, precision: Precision) -> (Vec<f64>, f64, Vec<f32>) {
    let b = CpuBackend::new().with_precision(precision);
    let mut cfg = TrainConfig {
        cell: CellKind::Gru,
        hidden: 48,
        batch: 48,
        steps: 300,
        seed: 7,
        log_every: 25,
        checkpoint_every: 300,
        ..TrainConfig::default()
    };
    cfg.adam.lr = 2e-3;
    let dir = std::env::temp_dir().join(format!(
        "memrnn-train-precision-{}-{precision}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let out = RunOutput {
        dir: dir.clone(),
        name: "run".into(),
        progress: false,
    };
    let mut t = Trainer::new(&b, set, cfg).unwrap();
    let s = t.run(&out).unwrap();
    let eval = EvalConfig {
        delays: vec![6, 12, 16],
        trials: 300,
        batch: 150,
        ..EvalConfig::default()
    };
    // Evaluated in the precision it trained in.
    let model = t.model().unwrap();
    let r = evaluate(&b, &model, set, &Default::default(), &eval, None).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (r.accuracy, s.report_acc, model.params)
}

#[test]
fn bf16_training_reaches_the_f32_accuracy_band() {
    let set = DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap();
    let (acc32, train32, p32) = train(&set, Precision::F32);
    let (acc16, train16, p16) = train(&set, Precision::Bf16);
    // The runs really differ (bf16 rounding changed the trajectory) ...
    assert_ne!(
        p32, p16,
        "bf16 training followed f32's bit for bit: was W_hh rounded?"
    );
    eprintln!("f32: held-out {acc32:?}, training window {train32:.3}");
    eprintln!("bf16: held-out {acc16:?}, training window {train16:.3}");
    // ... and end in the same band: both learn the task (chance is 0.1, `training.rs` asks > 0.4 of f32),
    // and bf16's mean held-out accuracy is within 0.1 of f32's (300 trials per delay:
    // one standard error of an accuracy near 0.7 is about 0.026 per delay).
    let mean = |a: &[f64]| a.iter().sum::<f64>() / a.len() as f64;
    assert!(acc32.iter().all(|&a| a > 0.4), "f32 {acc32:?}");
    assert!(acc16.iter().all(|&a| a > 0.4), "bf16 {acc16:?}");
    assert!(
        (mean(&acc16) - mean(&acc32)).abs() < 0.1,
        "bf16 mean held-out accuracy {:.3} vs f32 {:.3}",
        mean(&acc16),
        mean(&acc32)
    );
}
