#!/usr/bin/env bash
# Proves that the conformance suite bites: compiles deliberately broken copies of
# kernels/ into the simulated device (MEMRNN_SIM_KERNELS_DIR, see memrnn-cuda/build.rs)
# and runs the simulated-device conformance suite against each; every mutant must make it
# fail. The tree itself is never modified. Exit 0 when every mutant was caught.
#
#   bash scripts/mutation-check.sh            # all mutants
#   bash scripts/mutation-check.sh grid-sync  # one, by name
#
# Each mutant costs one rebuild of the simulated kernels and one run of the suite's
# matching tests (a few minutes on 2 cores). The next ordinary build recompiles the
# simulated kernels from kernels/ (build.rs reruns when MEMRNN_SIM_KERNELS_DIR changes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name | file | exact original text | replacement | test filter (cargo test name filter)
mutants=(
  "grid-sync|common.cuh|        if (t + 1 < a.T) grid.sync();|        (void)grid;  // MUTANT: the forward step's grid sync skipped|seq_gru_small"
  "wrong-gate|gru.cuh|    g.z = sigmoid(az + uz);|    g.z = sigmoid(az - uz);  // MUTANT|seq_gru_small"
  "staging-row|common.cuh|                    const int b = tl.b0 + r;|                    const int b = tl.b0 + r + 1;  // MUTANT: staged row off by one|seq_rnn_small"
  "adam-bias|small.cu|        const float denom = sqrtf(vi) / bc2_sqrt + eps;|        const float denom = sqrtf(vi) + eps;  // MUTANT|adam_matches_host"
  "argmax-nan|readout.cu|    if (isnan(y)) y = -INFINITY;  // a NaN logit never wins|    (void)0;  // MUTANT: a NaN logit may win|readout_argmax"
  "chunk-t0|task.cu|(unsigned)P.t0 + t, b, img, P.t_read, P.t_report);|(unsigned)t, b, img, P.t_read, P.t_report);  // MUTANT: the chunk's first step ignored|task_chunk"
  "sp-member|slowpoints.cu|    const float* __restrict__ wf = mb.wf;|    const float* __restrict__ wf = members[0].wf;  // MUTANT: every tile reads member 0's weights|slowpoints_ensemble_gru"
  "half-widen|common.cuh|__device__ __forceinline__ float widen(__nv_bfloat16 w) { return __bfloat162float(w); }|__device__ __forceinline__ float widen(__nv_bfloat16 w) { return __bfloat162float(w) * 1.001f; }  // MUTANT: bf16 weights widened wrong|precision_rounded_rnn"
  "half-transpose|small.cu|            out_t[c * R + r] = q;|            out_t[i] = q;  // MUTANT: the backward's half W_hh not transposed|precision_rounded_gru"
  "ens-member|common.cuh|const mr::FwdArgs a = mr::load_args(p.a + blockIdx.x / bpm);|const mr::FwdArgs a = mr::load_args(p.a); /* MUTANT: every block runs member 0 */|ensemble_gru_training_ops"
  "sp-compact|slowpoints.cu|    if (tid == 0) *count = running_total;|    if (tid == 0) *count = running_total > 0 ? running_total - 1 : 0;  // MUTANT: last active candidate dropped|slowpoints_search_rnn"
)

want=${1:-}
failed=0
ran=0
for m in "${mutants[@]}"; do
  IFS='|' read -r name file orig repl filter <<<"$m"
  [[ -n "$want" && "$want" != "$name" ]] && continue
  ran=$((ran + 1))
  dir="$work/$name"
  rm -rf "$dir" && cp -r "$root/kernels" "$dir"
  python3 - "$dir/$file" "$orig" "$repl" <<'PY'
import sys
path, orig, repl = sys.argv[1], sys.argv[2], sys.argv[3].replace("\\&", "&")
src = open(path).read()
n = src.count(orig)
if n < 1:
    sys.exit(f"mutation-check: the text to mutate is no longer in {path}: {orig!r} (update scripts/mutation-check.sh)")
open(path, "w").write(src.replace(orig, repl, 1))
PY
  echo "== mutant $name ($file): running conformance_sim tests matching '$filter'"
  log="$work/$name.log"
  if MEMRNN_SIM_KERNELS_DIR="$dir" \
     cargo test -q -p memrnn-tests --test conformance_sim -- "$filter" >"$log" 2>&1; then
    echo "   NOT CAUGHT: the suite passed with mutant $name"
    tail -5 "$log"
    failed=1
  else
    caught=$(grep -E "^test .* FAILED$|^    [a-z_:]+$" "$log" | head -3 | tr '\n' ' ')
    echo "   caught: ${caught:-$(grep -m1 -E 'panicked|error' "$log")}"
  fi
done
if [[ $ran -eq 0 ]]; then
  echo "mutation-check: no mutant named '$want'" >&2
  exit 2
fi
if [[ $failed -ne 0 ]]; then
  echo "mutation-check: FAILED (a mutant survived)"
  exit 1
fi
echo "mutation-check: all $ran mutants caught"
