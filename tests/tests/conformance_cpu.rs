//! The conformance suite (`memrnn_testkit::conformance`) on the CPU fast path, with its
//! scratch NaN-poisoned before every kernel: on one thread and on a pool of two (the fast
//! path splits batch rows, or hidden units for small batches, across threads), and, for
//! the tests that compute with `W_hh` (sequences, speeds, Jacobians, slow points, the
//! precision bounds), with `W_hh` stored in bf16 and f16 as well.

use memrnn_core::Precision;
use memrnn_cpu::{CpuBackend, PanelFormat};
use memrnn_testkit::conformance::Subject;

/// The tests whose results depend on `W_hh`'s storage.
fn reads_w_hh(test: &str) -> bool {
    [
        "seq_",
        "speed_",
        "jacobian_",
        "jvp_",
        "slowpoints_",
        "precision_",
    ]
    .iter()
    .any(|p| test.starts_with(p))
}

fn make_subjects(test: &str) -> Option<Vec<Subject<CpuBackend>>> {
    let subject = |threads: usize, precision: Precision| {
        let b = CpuBackend::new()
            .with_threads(threads)
            .expect("a CPU thread pool")
            .with_poisoned_scratch(true)
            .with_precision(precision)
            // The half-width panels, not f32 panels of the rounded values (which the
            // default picks at these sizes): the widening code is what is on trial.
            .with_panel_format(PanelFormat::Storage);
        Subject::new(
            format!("{threads} thread(s), poisoned scratch, W_hh in {precision}"),
            b,
        )
    };
    let mut subjects = vec![subject(1, Precision::F32), subject(2, Precision::F32)];
    if reads_w_hh(test) {
        subjects.push(subject(2, Precision::Bf16));
        subjects.push(subject(1, Precision::F16));
    }
    Some(subjects)
}

memrnn_testkit::backend_conformance!(make_subjects);
