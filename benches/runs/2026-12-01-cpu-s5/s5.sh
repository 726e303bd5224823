#!/usr/bin/env bash
# Quiet A/B runs of the fifth session; run from /work/main after `cargo build --release -p memrnn-benches`.
set -u
out=${1:-/work/quiet/s5-out}
mkdir -p "$out"
K=target/release/kernel
j() { grep '"pass"' | sed 's/.*"precision":"\([a-z0-9]*\)","pass":"\([a-z]*\)","ms":\([0-9.]*\).*/\1 \2 \3/' | tr '\n' ' '; }
for r in 1 2 3; do
  for cell in lstm gru; do
    for lv in avx2+fma avx512vl; do
      for split in batch units; do
        echo "split r$r $cell small-batch f32 $lv $split: $($K $cell --shape small-batch --reps 5 --threads 2 --simd $lv --fwd-split $split 2>&1 | j)"
      done
    done
    for panels in storage f32; do
      echo "panels r$r $cell small-batch bf16 avx512vl $panels: $($K $cell --shape small-batch --reps 5 --threads 2 --precision bf16 --panels $panels 2>&1 | j)"
      echo "panels r$r $cell wide bf16 avx512vl $panels: $($K $cell --shape wide --reps 3 --threads 2 --precision bf16 --panels $panels 2>&1 | j)"
    done
  done
done 2>&1 | tee "$out/ab.txt"
for r in 1 2; do
  python3 benches/compare/cpu_torch.py --threads 2 --reps 5 --shapes small-batch,paper --cells gru,lstm --precisions f32,bf16,f16 2>&1 | tee "$out/cpu_torch-$r.txt"
done
