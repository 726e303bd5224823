#!/usr/bin/env bash
# Checks that no SIMD intrinsic in the CPU fast path is compiled as a function call.
#
# Why: the fast path's kernels are generic functions monomorphised inside
# `#[target_feature(enable = "avx2,fma")]` entry points (memrnn-cpu/src/fast/simd.rs).
# Any piece of them that LLVM leaves out of line (a closure, a non-inlined helper) is
# compiled WITHOUT those features, and then every `_mm256_*` inside it becomes a call
# to an out-of-line copy of the intrinsic: the code still computes the right numbers,
# so no test notices, but it runs 1.04–16× slower (both have happened: benches/RESULTS.md).
# The release library's object code shows it directly: a call whose target is a
# `core::arch` intrinsic.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p memrnn-cpu --lib --quiet
rlib=target/release/libmemrnn_cpu.rlib
test -f "$rlib" || { echo "check-simd-inlining: $rlib not built" >&2; exit 2; }
calls=$(objdump -dr --no-show-raw-insn "$rlib" 2>/dev/null \
  | awk '/^[0-9a-f]+ <.*>:$/ {fn=$2}
         /(call|R_X86_64_PLT32|R_X86_64_PC32).*core_arch/ && /_mm(256|512)?_/ {print fn}' \
  | sort | uniq -c | sort -rn)
if [ -n "$calls" ]; then
  echo "check-simd-inlining: SIMD intrinsics called out of line (count, calling function):" >&2
  echo "$calls" | head -20 >&2
  echo "Write the SIMD loop inside the #[target_feature] function's inlined callees (no closures" >&2
  echo "handed to helpers that LLVM may outline); see fast/team.rs, PhaseTeam::phase." >&2
  exit 1
fi
echo "check-simd-inlining: no out-of-line SIMD intrinsic in memrnn-cpu (release)"
