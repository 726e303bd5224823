#!/usr/bin/env bash
set -u
K=target/release/kernel
j() { grep '"pass"' | sed 's/.*"pass":"\([a-z]*\)","ms":\([0-9.]*\).*/\1 \2/' | tr '\n' ' '; }
for r in 1 2 3 4 5 6 7 8; do
  for cell in lstm gru; do
    for cfg in "avx512vl batch" "avx512vl units" "avx2+fma batch"; do
      set -- $cfg
      echo "ab r$r $cell $1 $2: $($K $cell --shape small-batch --reps 5 --threads 2 --simd $1 --fwd-split $2 2>&1 | j)"
    done
  done
done
