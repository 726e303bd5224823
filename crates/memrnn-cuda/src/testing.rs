//! Helpers for GPU tests: find the GPU or skip loudly.

use crate::CudaBackend;

/// `MEMRNN_REQUIRE_GPU=1` (or `true`) turns a missing GPU into a test failure.
pub fn gpu_required() -> bool {
    matches!(
        std::env::var("MEMRNN_REQUIRE_GPU").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// The CUDA backend on device 0, or `None` after a loud message when there is none (a
/// panic instead when `MEMRNN_REQUIRE_GPU=1`). Call at the top of every GPU test:
/// `let Some(gpu) = gpu_or_skip("my_test") else { return };`
pub fn gpu_or_skip(test: &str) -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) => {
            if gpu_required() {
                panic!("{test}: MEMRNN_REQUIRE_GPU is set but no usable GPU: {e}");
            }
            // Straight to the stderr handle, not `eprintln!`: the test harness captures the
            // print macros of passing tests, and a skip must show in CI's log.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: no usable CUDA GPU ({e}). Set MEMRNN_REQUIRE_GPU=1 to make this a failure. ***\n"
            );
            None
        }
    }
}
