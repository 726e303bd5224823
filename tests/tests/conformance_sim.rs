//! The conformance suite (`memrnn_testkit::conformance`) on the simulated CUDA device
//! (`kernels/` compiled for the host, every CUDA thread a fiber): an H100-like device
//! with the recurrence forced to each path, and a small one (2 SMs, 48 KiB of shared
//! memory) on the automatic path, where the plans fall back to per-step launches,
//! multi-pass tiles and the default slow-point loop. Outputs are NaN-poisoned. The tests
//! that compute with `W_hh` (sequences, speeds, Jacobians, slow points, the precision
//! bounds, the ensemble operations) also run with `W_hh` stored in bf16 and f16 (the `_bf16` / `_f16` recurrence
//! kernels): bf16 on the persistent path and the small device, f16 on the per-step path
//! (the precision tests: every path in both).

use memrnn_core::{Backend, CellDims, CellKind, Precision, SeqShape};
use memrnn_cuda::{CudaBackend, RecurrencePath, SimProps};
use memrnn_testkit::conformance::Subject;

fn sim(props: SimProps, path: RecurrencePath, label: &str) -> Subject<CudaBackend> {
    sim_in(props, path, label, Precision::F32)
}

fn sim_in(
    props: SimProps,
    path: RecurrencePath,
    label: &str,
    precision: Precision,
) -> Subject<CudaBackend> {
    let b = CudaBackend::simulated(props)
        .expect("the simulated device")
        .with_precision(precision);
    b.set_poison_outputs(true);
    b.set_recurrence_path(path);
    match precision {
        Precision::F32 => Subject::new(label, b),
        p => Subject::new(format!("{label}, W_hh in {p}"), b),
    }
}

/// The tests whose results depend on `W_hh`'s storage.
fn reads_w_hh(test: &str) -> bool {
    [
        "seq_",
        "speed_",
        "jacobian_",
        "jvp_",
        "slowpoints_",
        "precision_",
        // The ensemble's one-launch kernels are f32 only; in half precision its members
        // must still get exactly what each gets alone.
        "ensemble_",
    ]
    .iter()
    .any(|p| test.starts_with(p))
}

fn make_subjects(test: &str) -> Option<Vec<Subject<CudaBackend>>> {
    let (h100, small) = (SimProps::h100_like(), SimProps::small());
    let (persistent, step, auto) = (
        RecurrencePath::Persistent,
        RecurrencePath::Step,
        RecurrencePath::Auto,
    );
    let mut subjects = vec![
        sim(h100, persistent, "h100-like, persistent"),
        sim(h100, step, "h100-like, per-step"),
        sim(small, auto, "small, auto"),
    ];
    if test.starts_with("precision_") {
        for p in [Precision::Bf16, Precision::F16] {
            subjects.push(sim_in(h100, persistent, "h100-like, persistent", p));
            subjects.push(sim_in(h100, step, "h100-like, per-step", p));
            subjects.push(sim_in(small, auto, "small, auto", p));
        }
    } else if reads_w_hh(test) {
        let bf16 = Precision::Bf16;
        subjects.push(sim_in(h100, persistent, "h100-like, persistent", bf16));
        subjects.push(sim_in(h100, step, "h100-like, per-step", Precision::F16));
        subjects.push(sim_in(small, auto, "small, auto", bf16));
    }
    Some(subjects)
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
