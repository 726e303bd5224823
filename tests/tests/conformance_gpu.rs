//! The conformance suite (`memrnn_testkit::conformance`) on the real GPU, every output
//! NaN-poisoned before the kernels write it, with the recurrence forced to each of its
//! two paths (the persistent cooperative kernels and the per-step launches); plus what
//! only a GPU can afford: the paper's shape on the automatic path, the full slow-point
//! search grid, and a forced persistent path that cannot hold its weights. The tests that
//! compute with `W_hh` run in bf16 and f16 as well (the half-width recurrence kernels).
//!
//! Without a GPU every test prints a loud SKIPPED line and passes; `MEMRNN_REQUIRE_GPU=1`
//! makes a missing GPU a failure.

use memrnn_core::{Backend, CellDims, CellKind, Precision, SeqShape};
use memrnn_cuda::testing::gpu_or_skip;
use memrnn_cuda::{CudaBackend, RecurrencePath};
use memrnn_testkit::conformance::sequence::{check_case, Variant};
use memrnn_testkit::conformance::slowpoints::{full_search_grid, search_grid};
use memrnn_testkit::conformance::{run, Subject};
use memrnn_testkit::Case;

/// The GPU with poisoned outputs, or `None` after `gpu_or_skip`'s loud message.
fn gpu(test: &str) -> Option<CudaBackend> {
    let g = gpu_or_skip(test)?;
    g.set_poison_outputs(true);
    Some(g)
}

/// The tests whose results depend on `W_hh`'s storage: they also run with `W_hh` in
/// bf16 and f16 (the half-width recurrence kernels) on both paths.
fn reads_w_hh(test: &str) -> bool {
    [
        "seq_",
        "speed_",
        "jacobian_",
        "jvp_",
        "slowpoints_",
        "precision_",
        "ensemble_",
    ]
    .iter()
    .any(|p| test.starts_with(p))
}

fn make_subjects(test: &str) -> Option<Vec<Subject<CudaBackend>>> {
    let mut subjects = Vec::new();
    let precisions: &[Precision] = if reads_w_hh(test) {
        &Precision::ALL
    } else {
        &[Precision::F32]
    };
    for &precision in precisions {
        for (path, label) in [
            (RecurrencePath::Persistent, "persistent"),
            (RecurrencePath::Step, "per-step"),
        ] {
            let g = gpu(test)?.with_precision(precision);
            g.set_recurrence_path(path);
            let label = match precision {
                Precision::F32 => label.to_string(),
                p => format!("{label}, W_hh in {p}"),
            };
            subjects.push(Subject::new(label, g));
        }
    }
    Some(subjects)
}

memrnn_testkit::backend_conformance!(make_subjects);

fn auto(test: &str) -> Option<Vec<Subject<CudaBackend>>> {
    Some(vec![Subject::new("auto", gpu(test)?)])
}

/// The paper's shape (GRU, I 785, H 200, B 128, T 20) on the automatic path (persistent
/// on an H100): the shape the benchmarks time.
#[test]
fn gpu_gru_paper_shape_auto() {
    run("gpu_gru_paper_shape_auto", auto, |cx| {
        let case = Case {
            cell: CellDims::new(CellKind::Gru, 785, 200).expect("dims"),
            shape: SeqShape::new(20, 128).expect("shape"),
        };
        let v = |dh, dx| Variant {
            s0: true,
            dh,
            ds_final: true,
            dx,
        };
        check_case(
            cx,
            case,
            cx.seed(7),
            true,
            &[v(true, true), v(false, false)],
        );
    });
}

/// The slow-point search on the grid the suite trims for the simulator.
#[test]
fn gpu_slowpoints_search_full_grid_rnn() {
    run("gpu_slowpoints_search_full_grid_rnn", auto, |cx| {
        search_grid(cx, CellKind::Rnn, &full_search_grid())
    });
}

#[test]
fn gpu_slowpoints_search_full_grid_gru() {
    run("gpu_slowpoints_search_full_grid_gru", auto, |cx| {
        search_grid(cx, CellKind::Gru, &full_search_grid())
    });
}

#[test]
fn gpu_slowpoints_search_full_grid_lstm() {
    run("gpu_slowpoints_search_full_grid_lstm", auto, |cx| {
        search_grid(cx, CellKind::Lstm, &full_search_grid())
    });
}

/// A forced persistent path whose weights cannot stay on chip is an error, not a launch.
#[test]
fn gpu_forced_persistent_path_too_large_is_an_error() {
    let Some(g) = gpu("gpu_forced_persistent_path_too_large_is_an_error") else {
        return;
    };
    g.set_recurrence_path(RecurrencePath::Persistent);
    let big = CellDims::new(CellKind::Lstm, 1, 8192).expect("dims");
    let p = g.zeros(big.layout().len()).expect("zeros");
    let x = g.zeros(2).expect("zeros");
    let r = g.seq_forward(&big, &p, SeqShape::new(1, 2).expect("shape"), &x, None);
    assert!(r.is_err(), "an LSTM with H 8192 cannot keep W_hh on chip");
}
