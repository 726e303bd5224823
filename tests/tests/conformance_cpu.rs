//! The conformance suite (`memrnn_testkit::conformance`) on the CPU fast path, with its
//! scratch NaN-poisoned before every kernel: on one thread and on a pool of two (the fast
//! path splits batch rows, or hidden units for small batches, across threads).

use memrnn_cpu::CpuBackend;
use memrnn_testkit::conformance::Subject;

fn make_subjects(_test: &str) -> Option<Vec<Subject<CpuBackend>>> {
    let subject = |threads: usize| {
        let b = CpuBackend::new()
            .with_threads(threads)
            .expect("a CPU thread pool")
            .with_poisoned_scratch(true);
        Subject::new(format!("{threads} thread(s), poisoned scratch"), b)
    };
    Some(vec![subject(1), subject(2)])
}

memrnn_testkit::backend_conformance!(make_subjects);
