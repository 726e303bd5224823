#!/usr/bin/env bash
# Runs the simulated-device conformance suite with the simulator and every kernel built
# under AddressSanitizer (memrnn-cuda/build.rs, MEMRNN_SIM_ASAN=1; the runtime annotates
# its fiber switches), so an out-of-bounds access in a kernel is a reported error, as
# compute-sanitizer's memcheck would report it on a GPU. Exit status non-zero on any
# report or test failure.
#
#   bash scripts/sim-asan.sh [extra cargo-test filter args]
#
# It builds into its own target directory (target/asan, so the ordinary build is not
# invalidated), then runs the test binary with the ASan runtime preloaded (the Rust side
# is not instrumented; the C++ simulator and kernels are, and ASan's malloc covers the
# simulated device's buffers, which Rust allocates through malloc).
set -euo pipefail
cd "$(dirname "$0")/.."
export MEMRNN_SIM_ASAN=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target/asan}
bins=$(cargo test -p memrnn-tests --test conformance_sim -p memrnn-cuda --features memrnn-cuda/sim \
  --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
[[ -n "$bins" ]] || { echo "sim-asan: build failed; rerun without 2>/dev/null to see why" >&2; exit 1; }
libasan=$(g++ -print-file-name=libasan.so)
status=0
for b in $bins; do
  echo "== $(basename "$b") under AddressSanitizer"
  # detect_leaks=0: the test harness and the simulator's stack pool live until exit.
  LD_PRELOAD="$libasan" ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1" \
    "$b" "$@" || status=$?
done
exit $status
