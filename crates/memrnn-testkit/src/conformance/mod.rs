//! One conformance suite for every backend (burn's `backend-tests` are the model): the
//! test bodies are written once, generic over [`Backend`], and
//! [`backend_conformance!`](crate::backend_conformance) instantiates all of them as
//! `#[test]` functions for one backend. Every body compares the backend against the f64
//! CPU reference (`memrnn_cpu::reference`) or, for the slow-point search, against the CPU
//! backend, on fresh seeded random inputs (the seed is in every failure message;
//! `MEMRNN_TEST_SEED` forces one), with relative errors in norm.
//!
//! The modules, one per family of operations:
//!
//! - [`sequence`]: `seq_forward` / `seq_backward` with and without `s0`, `dh_seq`,
//!   `ds_final` and `dx`, at ones, odd sizes and sizes off every tile;
//! - [`speed`]: `step_speed`, `step_speed_grad` with and without `dparams`;
//! - [`jacobian`]: `step_jacobian`, `step_jvp` (the backend's and the trait's default);
//! - [`adam`]: `adam_update` against [`memrnn_core::adam_update_host`] over several steps;
//!   `clip_adam_update` (global-norm clipping + Adam over several tensors) against its host
//!   definition; `axpy`, `sum`;
//! - [`readout`]: `readout_ce` against the f64 reference, zero rows, bad targets;
//!   `readout_argmax` against the f64 logits, ties, NaN and infinite logits, zero rows;
//! - [`task`]: `task_batch`, `task_chunk` and `delay_inputs` bit for bit against the host
//!   definition;
//! - [`slowpoints`]: `slow_point_iterations` against the CPU backend's search and the
//!   trait's default loop, and its edge cases;
//! - [`precision`]: the storage precision of `W_hh` ([`Backend::precision`]): one step on
//!   unrounded weights within an error bound derived from the format, and whole sequences
//!   on raw weights against the reference on the rounded ones. (Every other numerical
//!   test runs a half-precision subject on weights its format holds exactly,
//!   [`Cx::storable_params`], at the f32 tolerance.)
//! - [`ensemble`]: the `ensemble_*` operations against the single operations member by
//!   member (E = 1 and 3, odd sizes, a NaN member that must reach no other);
//! - [`bad_args`]: bad lengths, zero sizes, empty point batches, mismatched forward
//!   passes, bad configs: every backend must answer them with the same [`Error`] variant
//!   naming the same argument (the rules are [`memrnn_core::checks`]').
//!
//! **Sizes.** The suite also runs on the simulated CUDA device (every CUDA thread a fiber
//! on one CPU thread: about a thousand times slower than a GPU), in CI on a 2-core
//! machine, so each test's work is kept small: a sequence case does at most
//! `T·B·H² ≈ 2–4·10⁶` multiply-adds per gate and pass, and the shapes are chosen to hit
//! edges (ones, odd sizes, one past a tile) rather than to be large. The GPU kernels tile
//! 32 units × 8 rows with K chunks of 32 and more, so `H` 33, 70, 129, 300 and `B` 9, 19,
//! 130 cross tile edges in every direction.
//!
//! ```ignore
//! // tests/tests/conformance_cpu.rs
//! use memrnn_testkit::conformance::Subject;
//! fn make_subjects(_test: &str) -> Option<Vec<Subject<memrnn_cpu::CpuBackend>>> {
//!     Some(vec![Subject::new("1 thread", memrnn_cpu::CpuBackend::new())])
//! }
//! memrnn_testkit::backend_conformance!(make_subjects);
//! ```

pub mod adam;
pub mod bad_args;
pub mod ensemble;
pub mod jacobian;
pub mod precision;
pub mod readout;
pub mod sequence;
pub mod slowpoints;
pub mod speed;
pub mod task;

use crate::test_seed;
pub use memrnn_core::lm::LmSolver;
pub use memrnn_core::CellKind;
use memrnn_core::{Backend, Error};
use std::fmt::Display;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// f32 backends against the f64 reference: relative error in norm.
pub const TOL: f64 = 1e-4;

/// One configuration of a backend under test (the CUDA backend forced to one recurrence
/// path, the CPU backend with 2 threads, ...). The label shows in every failure.
pub struct Subject<B> {
    pub label: String,
    pub backend: B,
}

impl<B> Subject<B> {
    pub fn new(label: impl Into<String>, backend: B) -> Self {
        Subject {
            label: label.into(),
            backend,
        }
    }
}

/// What a test body gets: the test's name (its seeds derive from it), the subject's label
/// and its backend.
pub struct Cx<'a, B> {
    pub test: &'a str,
    pub label: &'a str,
    pub b: &'a B,
}

impl<B: Backend> Cx<'_, B> {
    /// The test's seed (the same for every subject and every backend, so that a failure
    /// on one can be replayed on another).
    pub fn seed(&self, default: u64) -> u64 {
        test_seed(self.test, default)
    }

    /// `what`, prefixed with the test and the subject, for failure messages.
    pub fn what(&self, what: impl Display) -> String {
        format!("{} [{}]: {what}", self.test, self.label)
    }

    /// `params` with `W_hh` rounded to the subject's storage precision
    /// ([`Backend::precision`]): weights that precision stores exactly, so the subject
    /// must match the f64 reference on them as closely as an f32 backend does (any
    /// difference beyond [`TOL`] is an error of the half-width path itself, not of
    /// rounding). Unchanged for f32 subjects.
    pub fn storable_params(&self, cell: &memrnn_core::CellDims, params: Vec<f32>) -> Vec<f32> {
        match self.b.precision().round_recurrent(cell, &params) {
            Ok(std::borrow::Cow::Owned(rounded)) => rounded,
            Ok(std::borrow::Cow::Borrowed(_)) => params,
            Err(e) => panic!("{}", self.what(format!("rounding the test's W_hh: {e}"))),
        }
    }

    pub fn up(&self, host: &[f32]) -> B::Tensor {
        self.b
            .upload(host)
            .unwrap_or_else(|e| panic!("{}", self.what(format!("upload: {e}"))))
    }

    pub fn down(&self, t: &B::Tensor) -> Vec<f32> {
        self.b
            .download(t)
            .unwrap_or_else(|e| panic!("{}", self.what(format!("download: {e}"))))
    }

    pub fn zeros(&self, len: usize) -> B::Tensor {
        self.b
            .zeros(len)
            .unwrap_or_else(|e| panic!("{}", self.what(format!("zeros({len}): {e}"))))
    }

    /// Unwraps an operation's result, panicking with the context and the error.
    #[track_caller]
    pub fn ok<T>(&self, what: impl Display, r: memrnn_core::Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{}: unexpected error: {e}", self.what(what)))
    }

    /// Panics unless the relative error in norm of `got` against `want` is below `tol`
    /// (and the lengths agree).
    #[track_caller]
    pub fn close(&self, what: impl Display, got: &[f32], want: &[f64], tol: f64, seed: u64) {
        let what = self.what(what);
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: {} values, expected {} (seed {seed})",
            got.len(),
            want.len()
        );
        crate::assert_close(&what, got, want, tol, seed);
    }
}

/// Runs `body` on every subject `make(test)` returns; `None` skips the test (the maker
/// says why, loudly). A failure names the subject.
pub fn run<B: Backend>(
    test: &str,
    make: impl FnOnce(&str) -> Option<Vec<Subject<B>>>,
    body: impl Fn(&Cx<'_, B>),
) {
    let Some(subjects) = make(test) else { return };
    assert!(
        !subjects.is_empty(),
        "{test}: the subject maker returned no backend to test (return None to skip)"
    );
    for s in &subjects {
        let name = s.backend.name();
        eprintln!("{test} [{}]: {name}", s.label);
        let cx = Cx {
            test,
            label: &s.label,
            b: &s.backend,
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(&cx))) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "*** {test} FAILED on subject [{}] ({name})",
                s.label
            );
            resume_unwind(panic);
        }
    }
}

/// `f32` → `f64`.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A short name for an error's variant, for messages.
pub fn variant(e: &Error) -> &'static str {
    match e {
        Error::Shape { .. } => "Shape",
        Error::Dimension(_) => "Dimension",
        Error::NonFinite { .. } => "NonFinite",
        Error::Checkpoint { .. } => "Checkpoint",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::Backend { .. } => "Backend",
        Error::Io { .. } => "Io",
    }
}

/// Instantiates the whole conformance suite as `#[test]` functions for one backend:
/// `memrnn_testkit::backend_conformance!(make_subjects);` with
/// `fn make_subjects(test: &str) -> Option<Vec<memrnn_testkit::conformance::Subject<B>>>`
/// (`None` skips the test; the maker prints why).
#[macro_export]
macro_rules! backend_conformance {
    ($make:path) => {
        $crate::__conformance_tests! { $make;
            seq_rnn_small => |cx| $crate::conformance::sequence::small(cx, $crate::conformance::CellKind::Rnn),
            seq_gru_small => |cx| $crate::conformance::sequence::small(cx, $crate::conformance::CellKind::Gru),
            seq_lstm_small => |cx| $crate::conformance::sequence::small(cx, $crate::conformance::CellKind::Lstm),
            seq_rnn_tiles => |cx| $crate::conformance::sequence::tiles(cx, $crate::conformance::CellKind::Rnn),
            seq_gru_tiles => |cx| $crate::conformance::sequence::tiles(cx, $crate::conformance::CellKind::Gru),
            seq_lstm_tiles => |cx| $crate::conformance::sequence::tiles(cx, $crate::conformance::CellKind::Lstm),
            seq_rnn_upstream_combinations => |cx| $crate::conformance::sequence::upstream_combinations(cx, $crate::conformance::CellKind::Rnn),
            seq_gru_upstream_combinations => |cx| $crate::conformance::sequence::upstream_combinations(cx, $crate::conformance::CellKind::Gru),
            seq_lstm_upstream_combinations => |cx| $crate::conformance::sequence::upstream_combinations(cx, $crate::conformance::CellKind::Lstm),
            speed_rnn => |cx| $crate::conformance::speed::speed_and_grad(cx, $crate::conformance::CellKind::Rnn),
            speed_gru => |cx| $crate::conformance::speed::speed_and_grad(cx, $crate::conformance::CellKind::Gru),
            speed_lstm => |cx| $crate::conformance::speed::speed_and_grad(cx, $crate::conformance::CellKind::Lstm),
            jacobian_rnn => |cx| $crate::conformance::jacobian::jacobian(cx, $crate::conformance::CellKind::Rnn),
            jacobian_gru => |cx| $crate::conformance::jacobian::jacobian(cx, $crate::conformance::CellKind::Gru),
            jacobian_lstm => |cx| $crate::conformance::jacobian::jacobian(cx, $crate::conformance::CellKind::Lstm),
            jvp_rnn => |cx| $crate::conformance::jacobian::jvp(cx, $crate::conformance::CellKind::Rnn),
            jvp_gru => |cx| $crate::conformance::jacobian::jvp(cx, $crate::conformance::CellKind::Gru),
            jvp_lstm => |cx| $crate::conformance::jacobian::jvp(cx, $crate::conformance::CellKind::Lstm),
            precision_bound_rnn => |cx| $crate::conformance::precision::storage_bound(cx, $crate::conformance::CellKind::Rnn),
            precision_bound_gru => |cx| $crate::conformance::precision::storage_bound(cx, $crate::conformance::CellKind::Gru),
            precision_bound_lstm => |cx| $crate::conformance::precision::storage_bound(cx, $crate::conformance::CellKind::Lstm),
            precision_rounded_rnn => |cx| $crate::conformance::precision::matches_reference_on_rounded(cx, $crate::conformance::CellKind::Rnn),
            precision_rounded_gru => |cx| $crate::conformance::precision::matches_reference_on_rounded(cx, $crate::conformance::CellKind::Gru),
            precision_rounded_lstm => |cx| $crate::conformance::precision::matches_reference_on_rounded(cx, $crate::conformance::CellKind::Lstm),
            adam_matches_host => $crate::conformance::adam::matches_host,
            adam_clip_matches_host => $crate::conformance::adam::clip_matches_host,
            adam_axpy_and_sum => $crate::conformance::adam::axpy_and_sum,
            adam_clip_guard => $crate::conformance::adam::clip_guard,
            copy_into => $crate::conformance::adam::copy_into,
            readout_ce_matches_reference => $crate::conformance::readout::matches_reference,
            readout_ce_edge_cases => $crate::conformance::readout::edge_cases,
            task_batch_matches_host => $crate::conformance::task::batch_matches_host,
            task_delay_inputs_match_host => $crate::conformance::task::delay_inputs_match_host,
            task_chunk_matches_host => $crate::conformance::task::chunk_matches_host,
            readout_argmax_matches_reference => $crate::conformance::readout::argmax_matches_reference,
            readout_argmax_edge_cases => $crate::conformance::readout::argmax_edge_cases,
            bad_readout_ce => $crate::conformance::bad_args::readout_ce,
            bad_clip_adam => $crate::conformance::bad_args::clip_adam,
            slowpoints_one_step_rnn => |cx| $crate::conformance::slowpoints::one_step(cx, $crate::conformance::CellKind::Rnn),
            slowpoints_one_step_gru => |cx| $crate::conformance::slowpoints::one_step(cx, $crate::conformance::CellKind::Gru),
            slowpoints_one_step_lstm => |cx| $crate::conformance::slowpoints::one_step(cx, $crate::conformance::CellKind::Lstm),
            slowpoints_search_rnn => |cx| $crate::conformance::slowpoints::search(cx, $crate::conformance::CellKind::Rnn),
            slowpoints_search_gru => |cx| $crate::conformance::slowpoints::search(cx, $crate::conformance::CellKind::Gru),
            slowpoints_search_lstm => |cx| $crate::conformance::slowpoints::search(cx, $crate::conformance::CellKind::Lstm),
            slowpoints_ensemble_rnn => |cx| $crate::conformance::slowpoints::ensemble_search(cx, $crate::conformance::CellKind::Rnn),
            slowpoints_ensemble_gru => |cx| $crate::conformance::slowpoints::ensemble_search(cx, $crate::conformance::CellKind::Gru),
            slowpoints_ensemble_lstm => |cx| $crate::conformance::slowpoints::ensemble_search(cx, $crate::conformance::CellKind::Lstm),
            slowpoints_default_loop => $crate::conformance::slowpoints::default_loop,
            slowpoints_edge_cases => $crate::conformance::slowpoints::edge_cases,
            slowpoints_lm_search => |cx| $crate::conformance::slowpoints::lm_search(cx, $crate::conformance::LmSolver::Dense),
            slowpoints_lm_krylov_search => |cx| $crate::conformance::slowpoints::lm_search(cx, $crate::conformance::LmSolver::Krylov),
            bad_seq_forward => $crate::conformance::bad_args::seq_forward,
            bad_seq_backward => $crate::conformance::bad_args::seq_backward,
            bad_point_args => $crate::conformance::bad_args::point_ops,
            empty_point_batches => $crate::conformance::bad_args::empty_points,
            bad_adam => $crate::conformance::bad_args::adam,
            bad_slow_point_args => $crate::conformance::bad_args::slow_points,
            ensemble_rnn_training_ops => |cx| $crate::conformance::ensemble::training_ops(cx, $crate::conformance::CellKind::Rnn),
            ensemble_gru_training_ops => |cx| $crate::conformance::ensemble::training_ops(cx, $crate::conformance::CellKind::Gru),
            ensemble_lstm_training_ops => |cx| $crate::conformance::ensemble::training_ops(cx, $crate::conformance::CellKind::Lstm),
            ensemble_task_batches => $crate::conformance::ensemble::task_batches,
            ensemble_clip_adam_many => $crate::conformance::ensemble::clip_adam_many,
            ensemble_bad_member => $crate::conformance::ensemble::bad_member,
            ensemble_speed_grads => $crate::conformance::ensemble::speed_grads,
        }
    };
}

/// The expansion of [`backend_conformance!`]: one `#[test]` per entry.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:path; $($name:ident => $body:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(stringify!($name), $make, $body);
            }
        )*
    };
}
