#!/usr/bin/env python3
"""Side-by-side CPU timings: PyTorch's nn.GRU / nn.LSTM against memrnn's CPU backend.

Usage (from the repository root; needs only `torch`, e.g. `pip install torch`):

    python3 benches/compare/cpu_torch.py [--threads 2] [--reps 5] [--shapes paper,small-batch]
        [--precisions f32,bf16,f16]

Times, on the same shapes and thread count, the median of `--reps` runs after one warm-up:
  * fwd:   a forward pass over the sequence (what evaluation does);
  * train: forward + backward with a loss on every step and no input gradient (the first
           layer of a network fed with data), i.e. weight gradients only;
  * sgemm: a 2048² single-precision matrix product (the machine's SGEMM ceiling).
memrnn's figures come from `cargo run --release -p memrnn-benches --bin cpu_table`, run by
this script. GFLOP/s use TARGETS.md's counting, so both columns count the same work.
Fresh random data (uniform inputs, PyTorch's default initialisation), no zeros.

Precisions: memrnn stores W_hh in f32, bf16 or f16 and computes in f32 (`cpu_table
--precisions`). PyTorch's side of a half precision is the module and its input converted
with `.to(dtype)` (weights, activations and, in oneDNN, arithmetic in that format: what a
PyTorch user gets from a half module on the CPU; CPU autocast leaves nn.GRU in f32 and
fails for an f16 LSTM, so it is not used). Where PyTorch cannot run a precision on this
machine, its row is PyTorch f32, labelled so in the `torch` column. `--shapes tiny`
checks that everything runs (its timings mean nothing).
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
    "tiny": dict(batch=3, input=5, hidden=7, steps=4),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
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


def torch_case(cls, s, dtype):
    """The module, input and upstream gradient of one case in `dtype`, and its two passes."""
    torch.manual_seed(0)
    net = cls(s["input"], s["hidden"]).to(dtype)
    x = torch.rand(s["steps"], s["batch"], s["input"]).to(dtype)
    g = (torch.rand(s["steps"], s["batch"], s["hidden"]) * 2e-3 - 1e-3).to(dtype)

    def fwd():
        with torch.no_grad():
            net(x)

    def train():
        net.zero_grad(set_to_none=True)
        out, _ = net(x)
        (out * g).sum().backward()

    return fwd, train


def torch_rows(cells, shapes, reps, precisions):
    rows = []
    for name in shapes:
        s = SHAPES[name]
        for cell in cells:
            cls = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}[cell]
            for prec in precisions:
                label = prec
                try:
                    fwd, train = torch_case(cls, s, DTYPES[prec])
                    fwd()
                    train()
                except Exception as e:  # this PyTorch build cannot run it: time f32, say so
                    label = f"f32 ({prec} not offered: {str(e).splitlines()[0][:60]})"
                    fwd, train = torch_case(cls, s, torch.float32)
                for pass_, fn in (("fwd", fwd), ("train", train)):
                    secs = median_time(fn, reps)
                    rows.append(dict(impl="torch", cell=cell, shape=name, precision=prec,
                                     torch_precision=label, pass_=pass_, ms=secs * 1e3,
                                     gflops=flops(cell, s, pass_ == "train") / secs / 1e9))
    a = torch.rand(2048, 2048) - 0.5
    b = torch.rand(2048, 2048) - 0.5
    secs = median_time(lambda: torch.mm(a, b), reps)
    rows.append(dict(impl="torch", op="sgemm", ms=secs * 1e3, gflops=2 * 2048**3 / secs / 1e9))
    return rows


def memrnn_rows(cells, shapes, reps, threads, precisions, simd=None):
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "memrnn-benches", "--bin", "cpu_table", "--",
           "--sgemm", "--reps", str(reps), "--threads", str(threads),
           "--cells", ",".join(cells), "--shapes", ",".join(shapes),
           "--precisions", ",".join(precisions)]
    if simd:
        cmd += ["--simd", simd]
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
    ap.add_argument("--precisions", default="f32",
                    help="storage precisions of W_hh to time, comma-separated: f32, bf16, f16")
    ap.add_argument("--simd", default=None,
                    help="memrnn's SIMD level (portable, avx2+fma, avx512vl; default: the best this CPU has)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cells, shapes = args.cells.split(","), args.shapes.split(",")
    precisions = args.precisions.split(",")
    for s in shapes:
        if s not in SHAPES:
            sys.exit(f"unknown shape {s}; known: {', '.join(SHAPES)}")
    for p in precisions:
        if p not in DTYPES:
            sys.exit(f"unknown precision {p}; known: {', '.join(DTYPES)}")
    mine = memrnn_rows(cells, shapes, args.reps, args.threads, precisions, args.simd)
    theirs = torch_rows(cells, shapes, args.reps, precisions)
    key = lambda r: (r.get("cell", "-"), r.get("shape", "-"), r.get("precision", "f32"),
                     r.get("pass_", r.get("op")))
    t = {key(r): r for r in theirs}
    # PyTorch f32 beside every precision too: the target compares memrnn bf16
    # with PyTorch f32.
    t32 = {(k[0], k[1], k[3]): r for k, r in t.items() if k[2] == "f32"}
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}; memrnn SIMD level: {args.simd or 'detected best'}")
    print(f"| {'cell':4} | {'shape':11} | {'prec':4} | {'pass':5} | {'PyTorch':8} | {'PyTorch ms (GF/s)':>18} |"
          f" {'memrnn ms (GF/s)':>17} | {'speed-up':>8} | {'vs PyTorch f32':>14} |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    sgemm = [(r, t.get(key(r))) for r in mine if r.get("op") == "sgemm"]
    for r in mine:
        o = t.get(key(r))
        if o is None or "op" in r:
            continue
        cell, shape, prec, pass_ = key(r)
        o32 = t32.get((cell, shape, pass_))
        vs32 = f"{o32['ms'] / r['ms']:13.2f}x" if o32 else f"{'-':>14}"
        print(f"| {cell:4} | {shape:11} | {prec:4} | {pass_:5} | {o['torch_precision']:8} |"
              f" {o['ms']:9.1f} ({o['gflops']:5.1f}) | {r['ms']:8.1f} ({r['gflops']:5.1f}) |"
              f" {o['ms'] / r['ms']:7.2f}x | {vs32} |")
    for r, o in sgemm:
        theirs = f", PyTorch {o['gflops']:.1f}" if o else ""
        print(f"SGEMM 2048² ceiling (GFLOP/s): memrnn {r['gflops']:.1f}{theirs}")


if __name__ == "__main__":
    main()
