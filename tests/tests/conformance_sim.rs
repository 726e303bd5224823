//! The conformance suite (`memrnn_testkit::conformance`) on the simulated CUDA device
//! (`kernels/` compiled for the host, every CUDA thread a fiber): an H100-like device
//! with the recurrence forced to each path, and a small one (2 SMs, 48 KiB of shared
//! memory) on the automatic path, where the plans fall back to per-step launches,
//! multi-pass tiles and the default slow-point loop. Outputs are NaN-poisoned.

use memrnn_core::{Backend, CellDims, CellKind, SeqShape};
use memrnn_cuda::{CudaBackend, RecurrencePath, SimProps};
use memrnn_testkit::conformance::Subject;

fn sim(props: SimProps, path: RecurrencePath, label: &str) -> Subject<CudaBackend> {
    let b = CudaBackend::simulated(props).expect("the simulated device");
    b.set_poison_outputs(true);
    b.set_recurrence_path(path);
    Subject::new(label, b)
}

fn make_subjects(_test: &str) -> Option<Vec<Subject<CudaBackend>>> {
    Some(vec![
        sim(
            SimProps::h100_like(),
            RecurrencePath::Persistent,
            "h100-like, persistent",
        ),
        sim(
            SimProps::h100_like(),
            RecurrencePath::Step,
            "h100-like, per-step",
        ),
        sim(SimProps::small(), RecurrencePath::Auto, "small, auto"),
    ])
}

memrnn_testkit::backend_conformance!(make_subjects);

/// A forced persistent path whose weights cannot stay on the small device's chip is an
/// error, not a launch.
#[test]
fn sim_forced_persistent_path_too_large_is_an_error() {
    let Subject { backend: g, .. } = sim(SimProps::small(), RecurrencePath::Persistent, "small");
    let big = CellDims::new(CellKind::Gru, 1, 1024).expect("dims");
    let p = g.zeros(big.layout().len()).expect("zeros");
    let x = g.zeros(2).expect("zeros");
    let r = g.seq_forward(&big, &p, SeqShape::new(1, 2).expect("shape"), &x, None);
    assert!(
        r.is_err(),
        "a GRU with H 1024 cannot keep W_hh on a 2-SM, 48 KiB chip"
    );
}
