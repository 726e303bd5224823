#!/usr/bin/env python3
"""Slow-point search: a FixedPointFinder-style PyTorch autograd loop against memrnn's fused
CPU iterations, on the very same problem.

Usage (from the repository root; needs `torch` and `safetensors`):

    python3 benches/compare/slowpoints_torch.py [--iters 500] [--threads 2] [--reps 3]
        [--hidden 200] [--input 785] [--candidates 4096] [--device cpu]

The problem: a GRU (PyTorch's default initialisation, seed 0) at the delay-period input x̄
(pixels at the noise mean 0.1307, trigger 0), K candidates uniform in [-0.5, 0.5]. memrnn's
binary `bench_finder` (memrnn-benches) makes it and saves it (model + candidates) so both sides start
from identical weights and states; it then times its own search.

The PyTorch side is the FixedPointFinder recipe (Golub & Sussillo 2018) in autograd: the
candidates are one trainable tensor, every Python iteration runs the cell on all of them
(`nn.GRUCell(x̄ expanded to [K, I], h)`), the loss is Σ_k ‖F(h_k) − h_k‖², one backward,
one `torch.optim.Adam` step (lr 1e-2, PyTorch's betas/eps: Adam is elementwise, so this is
exactly K independent Adam searches with a shared step count). Neither side stops early
(memrnn runs with tol 0 and no stall rule), so both do the same iterations; the table
reports ms per iteration (median over blocks of 10 iterations after 5 warm-up iterations,
median of --reps runs for memrnn) and the final median speed √S, which must agree.

Time to solution (issue 14): `--time-to-solution` runs, on the same problem, memrnn's
Levenberg–Marquardt search to its end with each solver, dense and matrix-free (Krylov)
(the larger of their final median S, at least 1e-10, is the target, or `--target`), then
memrnn's Adam and the PyTorch loop until the median S over the candidates is at most that
target (checked every `--check-every` iterations, inside the timed region), and prints the
four wall times side by side:

    python3 benches/compare/slowpoints_torch.py --time-to-solution [--threads 2]
        [--hidden 200] [--candidates 4096] [--target S] [--max-iters 20000]
        [--model CHECKPOINT --warmup 10]

(a) the random-init benchmark problem: the defaults (GRU I785 H200, 4096 candidates);
(b) a trained network: `--model` takes a GRU checkpoint written by `memrnn train` (e.g.
`memrnn train --steps 600 --out runs --name gru64`, hidden 64; `--hidden 200` for the
paper's size) and `--warmup 10` moves the candidates 10 steps along F(., x̄) first, onto
the delay-period trajectories where its slow points lie. On trained networks the LM
candidates end mostly at minima of S above 0, so Adam and PyTorch may not reach the
target within `--max-iters`: the table says so, and the ratio is then a lower bound.
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
    cell, cands, xb = load_problem(d, device)
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


def load_problem(d, device):
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
    return cell, cands, xb


def torch_time_to_target(d, target, max_iters, check_every, device):
    """The FixedPointFinder loop until the median S is at most `target`: (seconds,
    iterations, final median S)."""
    cell, cands, xb = load_problem(d, device)
    h = torch.nn.Parameter(cands.clone())
    opt = torch.optim.Adam([h], lr=1e-2)
    med = float("inf")
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    it = 0
    while it < max_iters:
        opt.zero_grad(set_to_none=True)
        f = cell(xb, h)
        s = ((f - h) ** 2).sum(dim=1)
        if it % check_every == 0:
            med = s.detach().median().item()
            if med <= target:
                break
        s.sum().backward()
        opt.step()
        it += 1
    if med > target:
        with torch.no_grad():
            med = ((cell(xb, h) - h) ** 2).sum(dim=1).median().item()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, it, med


def time_to_solution(args):
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            "cargo", "run", "--release", "-q", "-p", "memrnn-benches", "--bin", "bench_finder", "--",
            "--hidden", str(args.hidden), "--input", str(args.input),
            "--candidates", str(args.candidates), "--threads", str(args.threads),
            "--check-every", str(args.check_every), "--adam-max-iters", str(args.max_iters),
            "--save", d, "--json", "--tts",
        ]
        if args.model is not None:
            cmd += ["--model", os.path.abspath(args.model)]
        if args.warmup:
            cmd += ["--warmup", str(args.warmup)]
        if args.target is not None:
            cmd += ["--target", repr(args.target)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        target = ours["target_median_s"]
        t_s, t_it, t_med = torch_time_to_target(d, target, args.max_iters, args.check_every, args.device)
    where = f"trained checkpoint {args.model}" if args.model else "PyTorch default init, seed 0"
    print(f"slow-point search, time to median S <= {target:.3e}: GRU I{ours['input']} H{ours['hidden']} "
          f"({where}; candidate warm-up {args.warmup} steps), {args.candidates} candidates, {args.threads} threads, "
          f"torch {torch.__version__} ({args.device}), memrnn {ours['backend']}")
    print(f"{'':34} {'seconds':>9} {'iterations':>11} {'median S':>10} {'reached':>8}")
    for solver in ("dense", "krylov"):
        k = f"lm_{solver}"
        print(f"{'memrnn Levenberg-Marquardt ' + solver:34} {ours[k + '_s']:9.2f} {ours[k + '_median_iters']:11.0f} "
              f"{ours[k + '_median_s']:10.3e} {str(ours[k + '_median_s'] <= target):>8}")
    print(f"{'memrnn Adam':34} {ours['adam_s']:9.2f} {ours['adam_iters']:11d} "
          f"{ours['adam_median_s']:10.3e} {str(ours['adam_reached']):>8}")
    print(f"{'PyTorch autograd Adam (FPF)':34} {t_s:9.2f} {t_it:11d} {t_med:10.3e} {str(t_med <= target):>8}")
    for solver in ("dense", "krylov"):
        k = f"lm_{solver}"
        print(f"LM {solver} candidates: {ours[k + '_converged']} converged, {ours[k + '_minima']} at a minimum of S, "
              f"{ours[k + '_stalled']} stalled, {ours[k + '_max_iters']} at the iteration cap")
    for solver in ("dense", "krylov"):
        lm = ours[f"lm_{solver}_s"]
        print(f"PyTorch / memrnn LM {solver}: {t_s / lm:.1f}x; memrnn Adam / memrnn LM {solver}: "
              f"{ours['adam_s'] / lm:.1f}x")
    print("(a ratio is a lower bound where the slower finder did not reach the target)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--input", type=int, default=785)
    ap.add_argument("--candidates", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--time-to-solution", action="store_true",
                    help="time each finder to the same median S (see the module docs)")
    ap.add_argument("--target", type=float, default=None,
                    help="target median S (default: where memrnn's LM search ends)")
    ap.add_argument("--max-iters", type=int, default=20000,
                    help="Adam iteration budget for --time-to-solution")
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--model", default=None,
                    help="--time-to-solution on this trained GRU checkpoint instead of the random init")
    ap.add_argument("--warmup", type=int, default=0,
                    help="move the candidates this many steps along F(., x_bar) first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.time_to_solution:
        return time_to_solution(args)
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            "cargo", "run", "--release", "-q", "-p", "memrnn-benches", "--bin", "bench_finder", "--",
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
