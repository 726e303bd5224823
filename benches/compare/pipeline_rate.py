#!/usr/bin/env python3
"""The pipeline timing of `memrnn train`, read from its metrics file (benches/gpu/bundle.sh
carries this beside the memrnn binary; run.sh runs it after `memrnn train`).

Each metrics line of a training run carries `step` and `elapsed_s` (seconds since the
training loop started, taken when that step's numbers were read back at the logging
interval). The rate is taken between the first logged step at or after --skip (the
warm-up: module loading, cuBLAS handles, first allocations) and the last one, so neither
start-up nor the final checkpoint counts; give --checkpoint-every above --steps to keep
intermediate checkpoints out of the interval too.

    python3 pipeline_rate.py RUN.metrics.jsonl [--skip 500] [--torch train_loop_torch.txt]

Prints ms per step, steps per second and the projected time of the paper's 140,000 steps;
with --torch (the output of train_loop_torch.py at the same shape) also the ratio of
steps per second against the PyTorch loop and the issue's targets (>= 2x PyTorch's
steps/s; 140,000 steps in under 5 minutes).
"""
import argparse
import json
import re
import sys

PAPER_STEPS = 140_000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("--skip", type=int, default=500, help="warm-up steps left out of the rate")
    ap.add_argument("--torch", default=None, help="train_loop_torch.py's output at the same shape")
    args = ap.parse_args()
    rows = []
    with open(args.metrics) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and "elapsed_s" in r and "step" in r:
                rows.append(r)
    if len(rows) < 2:
        sys.exit(f"pipeline_rate: {args.metrics} has fewer than two timed metrics lines; "
                 "train for more steps than --log-every")
    first = next((r for r in rows if r["step"] >= args.skip), rows[0])
    if first is rows[-1]:
        first = rows[0]
    last = rows[-1]
    steps = last["step"] - first["step"]
    if steps <= 0:
        sys.exit("pipeline_rate: no steps between the first and last timed lines")
    ms = 1e3 * (last["elapsed_s"] - first["elapsed_s"]) / steps
    print(f"memrnn train: {ms:.3f} ms/step ({1e3 / ms:.1f} steps/s) over steps "
          f"{first['step']}..{last['step']} (after {first['step']} warm-up steps)")
    minutes = ms * PAPER_STEPS / 60_000
    print(f"projected 140,000 steps: {minutes:.1f} min (target: under 5 min: "
          f"{'met' if minutes < 5 else 'NOT met'})")
    if args.torch:
        text = open(args.torch).read()
        m = re.search(r"([0-9.]+) ms/step", text)
        if not m:
            sys.exit(f"pipeline_rate: no 'ms/step' figure in {args.torch}")
        torch_ms = float(m.group(1))
        ratio = torch_ms / ms
        print(f"pytorch loop: {torch_ms:.3f} ms/step; memrnn runs {ratio:.2f}x its steps/s "
              f"(target: at least 2x: {'met' if ratio >= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
