//! What the evaluation tests share: the bundled digits, a briefly trained network whose
//! every answer is a digit, and an evaluation configuration of odd sizes.

use memrnn_core::{CellKind, Model};
use memrnn_cpu::CpuBackend;
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::task::DigitSet;
use memrnn_train::train::{TrainConfig, Trainer};
use memrnn_train::EvalConfig;
use std::sync::OnceLock;

pub fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

/// A network of `cell` trained for `steps` steps (at least one) from `seed`, with its
/// readout's "nothing" class silenced (bias −100) so that every answer is a digit and the
/// scores are not all zero (a short training teaches the network to answer "nothing"
/// first).
pub fn model(cell: CellKind, hidden: usize, steps: u64, seed: u64) -> Model {
    let b = CpuBackend::new();
    let cfg = TrainConfig {
        cell,
        hidden,
        batch: 16,
        steps: steps.max(1),
        seed,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&b, set(), cfg).unwrap();
    t.train_steps(steps, "none").unwrap();
    let mut m = t.model().unwrap();
    m.readout.as_mut().unwrap().bias[0] = -100.0;
    m
}

/// Odd sizes: a last batch of 5 rows, chunks (7 steps) that end mid-way between delays,
/// a delay of 1, delays given out of order and twice.
pub fn eval_cfg() -> EvalConfig {
    EvalConfig {
        delays: vec![9, 1, 4, 23, 4],
        trials: 37,
        batch: 16,
        chunk: 7,
        read_span: 5,
        seed: 0xE7A1,
    }
}
