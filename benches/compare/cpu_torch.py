#!/usr/bin/env python3
"""Side-by-side CPU timings: PyTorch's nn.GRU / nn.LSTM against memrnn's CPU backend.

Usage (from the repository root; needs only `torch`, e.g. `pip install torch`):

    python3 benches/compare/cpu_torch.py [--threads 2] [--reps 5] [--shapes paper,small-batch]

Times, on the same shapes and thread count, the median of `--reps` runs after one warm-up:
  * fwd:   a forward pass over the sequence (what evaluation does);
  * train: forward + backward with a loss on every step and no input gradient (the first
           layer of a network fed with data), i.e. weight gradients only;
  * sgemm: a 2048² single-precision matrix product (the machine's SGEMM ceiling).
memrnn's figures come from `cargo run --release -p memrnn-benches --bin cpu_table`, run by
this script. GFLOP/s use TARGETS.md's counting, so both columns count the same work.
Fresh random data (uniform inputs, PyTorch's default initialisation), no zeros.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

SHAPES = {
    "paper": dict(batch=128, input=785, hidden=200, steps=20),
    "small-batch": dict(batch=8, input=64, hidden=256, steps=500),
    "long": dict(batch=1024, input=785, hidden=200, steps=1000),
    "wide": dict(batch=64, input=256, hidden=1024, steps=100),
}
GATES = {"gru": 3, "lstm": 4, "rnn": 1}


def flops(cell, s, train):
    g, b, i, h, t = GATES[cell], s["batch"], s["input"], s["hidden"], s["steps"]
    fwd = 2 * b * g * h * (i + h) * t
    return fwd + (2 * b * g * h * i + 4 * b * g * h * h) * t if train else fwd


def median_time(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_rows(cells, shapes, reps):
    rows = []
    for name in shapes:
        s = SHAPES[name]
        for cell in cells:
            cls = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}[cell]
            torch.manual_seed(0)
            net = cls(s["input"], s["hidden"])
            x = torch.rand(s["steps"], s["batch"], s["input"])
            g = torch.rand(s["steps"], s["batch"], s["hidden"]) * 2e-3 - 1e-3

            def fwd():
                with torch.no_grad():
                    net(x)

            def train():
                net.zero_grad(set_to_none=True)
                out, _ = net(x)
                (out * g).sum().backward()

            for pass_, fn in (("fwd", fwd), ("train", train)):
                secs = median_time(fn, reps)
                rows.append(dict(impl="torch", cell=cell, shape=name, pass_=pass_, ms=secs * 1e3,
                                 gflops=flops(cell, s, pass_ == "train") / secs / 1e9))
    a = torch.rand(2048, 2048) - 0.5
    b = torch.rand(2048, 2048) - 0.5
    secs = median_time(lambda: torch.mm(a, b), reps)
    rows.append(dict(impl="torch", op="sgemm", ms=secs * 1e3, gflops=2 * 2048**3 / secs / 1e9))
    return rows


def memrnn_rows(cells, shapes, reps, threads):
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "memrnn-benches", "--bin", "cpu_table", "--",
           "--sgemm", "--reps", str(reps), "--threads", str(threads),
           "--cells", ",".join(cells), "--shapes", ",".join(shapes)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        r = json.loads(line)
        if "pass" in r:
            r["pass_"] = r.pop("pass")
        rows.append(r)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cells", default="gru,lstm")
    ap.add_argument("--shapes", default="paper,small-batch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cells, shapes = args.cells.split(","), args.shapes.split(",")
    for s in shapes:
        if s not in SHAPES:
            sys.exit(f"unknown shape {s}; known: {', '.join(SHAPES)}")
    mine = memrnn_rows(cells, shapes, args.reps, args.threads)
    theirs = torch_rows(cells, shapes, args.reps)
    key = lambda r: (r.get("cell", "-"), r.get("shape", "-"), r.get("pass_", r.get("op")))
    t = {key(r): r for r in theirs}
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}")
    print(f"| {'cell':4} | {'shape':11} | {'pass':5} | {'PyTorch ms (GF/s)':>18} | {'memrnn ms (GF/s)':>17} | {'speed-up':>8} |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in mine:
        o = t.get(key(r))
        if o is None:
            continue
        cell, shape, pass_ = key(r)
        print(f"| {cell:4} | {shape:11} | {pass_:5} | {o['ms']:9.1f} ({o['gflops']:5.1f}) |"
              f" {r['ms']:8.1f} ({r['gflops']:5.1f}) | {o['ms'] / r['ms']:7.2f}x |")


if __name__ == "__main__":
    main()
