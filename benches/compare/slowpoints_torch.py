#!/usr/bin/env python3
"""Slow-point search: a FixedPointFinder-style PyTorch autograd loop against memrnn's fused
CPU iterations, on the very same problem.

Usage (from the repository root; needs `torch` and `safetensors`):

    python3 benches/compare/slowpoints_torch.py [--iters 500] [--threads 2] [--reps 3]
        [--hidden 200] [--input 785] [--candidates 4096] [--device cpu]

The problem: a GRU (PyTorch's default initialisation, seed 0) at the delay-period input x̄
(pixels at the noise mean 0.1307, trigger 0), K candidates uniform in [-0.5, 0.5]. memrnn's
example `bench_finder` makes it and saves it (model + candidates) so both sides start
from identical weights and states; it then times its own search.

The PyTorch side is the FixedPointFinder recipe (Golub & Sussillo 2018) in autograd: the
candidates are one trainable tensor, every Python iteration runs the cell on all of them
(`nn.GRUCell(x̄ expanded to [K, I], h)`), the loss is Σ_k ‖F(h_k) − h_k‖², one backward,
one `torch.optim.Adam` step (lr 1e-2, PyTorch's betas/eps: Adam is elementwise, so this is
exactly K independent Adam searches with a shared step count). Neither side stops early
(memrnn runs with tol 0 and no stall rule), so both do the same iterations; the table
reports ms per iteration (median over blocks of 10 iterations after 5 warm-up iterations,
median of --reps runs for memrnn) and the final median speed √S, which must agree.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file


def torch_search(d, iters, device):
    m = load_file(os.path.join(d, "model.safetensors"))
    p = load_file(os.path.join(d, "problem.safetensors"))
    hidden = m["weight_hh_l0"].shape[1]
    inp = m["weight_ih_l0"].shape[1]
    cell = torch.nn.GRUCell(inp, hidden).to(device)
    with torch.no_grad():
        cell.weight_ih.copy_(m["weight_ih_l0"])
        cell.weight_hh.copy_(m["weight_hh_l0"])
        cell.bias_ih.copy_(m["bias_ih_l0"])
        cell.bias_hh.copy_(m["bias_hh_l0"])
    cell.requires_grad_(False)
    cands = p["candidates"].to(device)
    xb = p["x_bar"].to(device).expand(cands.shape[0], inp)
    h = torch.nn.Parameter(cands.clone())
    opt = torch.optim.Adam([h], lr=1e-2)

    def step():
        opt.zero_grad(set_to_none=True)
        f = cell(xb, h)
        q = ((f - h) ** 2).sum()
        q.backward()
        opt.step()

    warm = min(5, iters)
    for _ in range(warm):
        step()
    block, per_iter = 10, []
    done = warm
    while done < iters:
        n = min(block, iters - done)
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        if device != "cpu":
            torch.cuda.synchronize()
        per_iter.append((time.perf_counter() - t0) / n)
        done += n
    with torch.no_grad():
        speed = ((cell(xb, h) - h) ** 2).sum(dim=1).sqrt()
    return 1e3 * statistics.median(per_iter), speed.median().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--input", type=int, default=785)
    ap.add_argument("--candidates", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            "cargo", "run", "--release", "-q", "-p", "memrnn-slowpoints", "--example", "bench_finder", "--",
            "--hidden", str(args.hidden), "--input", str(args.input),
            "--candidates", str(args.candidates), "--iters", str(args.iters),
            "--threads", str(args.threads), "--reps", str(args.reps), "--save", d, "--json",
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        t_ms, t_speed = torch_search(d, args.iters, args.device)
    print(f"slow-point search, GRU I{args.input} H{args.hidden}, {args.candidates} candidates, "
          f"{args.iters} Adam iterations, {args.threads} threads, torch {torch.__version__} ({args.device})")
    print(f"{'':24} {'ms/iteration':>12} {'median √S':>12}")
    print(f"{'PyTorch autograd (FPF)':24} {t_ms:12.2f} {t_speed:12.4e}")
    print(f"{'memrnn ' + ours['backend'].split(' ')[0]:24} {ours['ms_per_iter']:12.2f} {ours['median_speed']:12.4e}")
    print(f"ratio (PyTorch / memrnn): {t_ms / ours['ms_per_iter']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
