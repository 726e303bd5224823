#!/usr/bin/env bash
# Builds and runs the SIMT simulator's self-test twice: optimised (g++ -O2), then under
# AddressSanitizer (including kernels that read out of bounds, whose ASan report is
# expected); then compiles every kernels/*.cu through cuda_sim.h with -fsyntax-only.
# Usage: crates/memrnn-cuda/sim/selftest.sh   (from anywhere; builds in $TMPDIR)
set -euo pipefail
SIM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SIM/../../.." && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/mr_sim_selftest.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
CXX="${CXX:-g++}"
# The flags the Rust build script uses for kernels/*.cu (keep in sync with README.md).
KFLAGS=(-x c++ -std=c++17 -O2 -ffp-contract=off -fno-fast-math -Wno-unknown-pragmas -include "$SIM/cuda_sim.h"
        -I "$SIM/include" -I "$ROOT/kernels")
RFLAGS=(-std=c++17 -O2 -I "$SIM")
SITE_A=$(grep -n 'SITE_A' "$SIM/selftest/kernels.cu" | head -1 | cut -d: -f1)
SITE_B=$(grep -n 'SITE_B' "$SIM/selftest/kernels.cu" | head -1 | cut -d: -f1)

build() {  # $1 = output dir, rest = extra flags
    local d="$1"; shift
    mkdir -p "$d"
    "$CXX" "${KFLAGS[@]}" "$@" -c "$SIM/selftest/kernels.cu" -o "$d/kernels.o" &
    "$CXX" "${RFLAGS[@]}" "$@" -c "$SIM/runtime.cpp" -o "$d/runtime.o"
    wait $!
    "$CXX" -std=c++17 -O2 "$@" -DSITE_A="\"$SITE_A\"" -DSITE_B="\"$SITE_B\"" \
        -c "$SIM/selftest/driver.cpp" -o "$d/driver.o"
    "$CXX" "$@" "$d/driver.o" "$d/kernels.o" "$d/runtime.o" -pthread -o "$d/selftest"
    # Real kernels (kernels/rnn.cu, slowpoints.cu, small.cu) against plain references.
    "$CXX" "${KFLAGS[@]}" "$@" -c "$ROOT/kernels/rnn.cu" -o "$d/rnn.o" &
    "$CXX" "${KFLAGS[@]}" "$@" -c "$ROOT/kernels/slowpoints.cu" -o "$d/slowpoints.o"
    wait $!
    "$CXX" "${KFLAGS[@]}" "$@" -c "$ROOT/kernels/small.cu" -o "$d/small.o" &
    "$CXX" -std=c++17 -O2 "$@" -I "$ROOT/kernels" -c "$SIM/selftest/real_kernels.cpp" -o "$d/real_kernels.o"
    wait $!
    "$CXX" "$@" "$d/real_kernels.o" "$d/rnn.o" "$d/slowpoints.o" "$d/small.o" "$d/runtime.o" \
        -o "$d/real_kernels"
}

echo "== selftest (g++ -O2)"
build "$OUT/o2"
"$OUT/o2/selftest"
"$OUT/o2/real_kernels"

echo "== selftest (-fsanitize=address)"
ASANF=(-fsanitize=address -fno-omit-frame-pointer -g)
build "$OUT/asan" "${ASANF[@]}"
# Leak checking on: a failed launch must not leak (its abandoned fibers never unwind).
# Where LeakSanitizer cannot run (some ptrace-restricted sandboxes), set
# ASAN_OPTIONS=detect_leaks=0.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
"$OUT/asan/selftest"
"$OUT/asan/real_kernels" --small
for k in oob-shared oob-global; do
    if "$OUT/asan/selftest" "$k" >"$OUT/$k.log" 2>&1; then
        echo "FAIL: $k: no AddressSanitizer report"; cat "$OUT/$k.log"; exit 1
    fi
    grep -q "AddressSanitizer" "$OUT/$k.log" || { echo "FAIL: $k"; cat "$OUT/$k.log"; exit 1; }
    echo "$k: expected report: $(grep -m1 'ERROR: AddressSanitizer' "$OUT/$k.log")"
done

echo "== kernels/*.cu through cuda_sim.h (-fsyntax-only)"
status=0
for f in "$ROOT"/kernels/*.cu; do
    if "$CXX" "${KFLAGS[@]}" -fsyntax-only "$f" 2>"$OUT/syntax.log"; then
        echo "ok  $(basename "$f")"
    else
        echo "ERR $(basename "$f")"; cat "$OUT/syntax.log"; status=1
    fi
done
[ $status -eq 0 ] && echo "selftest.sh: all passed"
exit $status
