#!/usr/bin/env python3
"""The slow-point search target (TARGETS.md): GRU H 200, 4096 candidates, 10,000 Adam
iterations, written with PyTorch autograd the way FixedPointFinder does it (one Adam step
per Python iteration on all candidates at once, torch.optim.Adam on the states), on CUDA,
beside memrnn's fused search.

On the GPU machine:

    bench_slowpoints --dump /tmp/sp > memrnn.txt       # memrnn-benches' binary (same problem)
    python3 benches/compare/slowpoints_torch_gpu.py --data /tmp/sp --memrnn-output memrnn.txt

Without --data it draws its own problem of the same shape. The timing is the whole search
(CUDA-synchronised wall clock after a short warm-up), as memrnn's example times its whole
call. memrnn's "full" run (no stopping rule: every candidate takes every iteration) is the
like-for-like figure; its "default" run stops candidates as they converge or stall. The
ratio printed is PyTorch ms / memrnn ms for each, with the median final speed of both.
"""
import argparse
import json
import os
import time

import numpy as np
import torch


def load(path, n):
    a = np.fromfile(path, dtype="<f4")
    assert a.size == n, f"{path}: {a.size} values, expected {n}"
    return torch.from_numpy(a)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="directory written by `bench_slowpoints --dump`")
    ap.add_argument("--memrnn-output", help="bench_slowpoints' stdout, saved to a file")
    ap.add_argument("--candidates", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--input", type=int, default=785)
    ap.add_argument("--iters", type=int, default=10_000)
    ap.add_argument("--lr", type=float, default=1e-2)
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # f32 like memrnn
    K, H, I = args.candidates, args.hidden, args.input
    cell = torch.nn.GRUCell(I, H).to(dev)
    if args.data:
        n = 3 * H * I + 3 * H * H + 6 * H
        p = load(os.path.join(args.data, "params.f32"), n)
        o = 0
        with torch.no_grad():
            for t, size in ((cell.weight_ih, 3 * H * I), (cell.weight_hh, 3 * H * H), (cell.bias_ih, 3 * H), (cell.bias_hh, 3 * H)):
                t.copy_(p[o:o + size].view_as(t))
                o += size
        x = load(os.path.join(args.data, "x.f32"), I).to(dev)
        cands = load(os.path.join(args.data, "candidates.f32"), K * H).view(K, H).to(dev)
    else:
        torch.manual_seed(0)
        x = torch.full((I,), 0.1307, device=dev)
        x[-1] = 0.0
        cands = torch.rand(K, H, device=dev) * 1.8 - 0.9
    for p in cell.parameters():
        p.requires_grad_(False)
    xs = x.expand(K, I)

    def search(iters):
        h = cands.clone().requires_grad_(True)
        opt = torch.optim.Adam([h], lr=args.lr)
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            q = (cell(xs, h) - h).pow(2).sum(dim=1)  # per-candidate speed S
            q.sum().backward()
            opt.step()
        with torch.no_grad():
            q = (cell(xs, h) - h).pow(2).sum(dim=1)
        return q

    search(20)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    q = search(args.iters)
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) * 1e3
    med = q.clamp(min=0).sqrt().median().item()
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | GRU I {I} H {H} | K {K} | {args.iters} iterations")
    print(f"pytorch autograd (FixedPointFinder style): {ms:.1f} ms, median final speed {med:.3e}")
    if args.memrnn_output:
        with open(args.memrnn_output) as f:
            runs = [json.loads(l) for l in f if l.startswith("{")]
        print("| run | memrnn ms | memrnn median speed | PyTorch ms | PyTorch median speed | speed-up |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in runs:
            if r.get("bench") != "slowpoints":
                continue
            print(f"| {r['run']} | {r['ms']:.1f} | {r['median_speed']:.3e} | {ms:.1f} | {med:.3e} | {ms / r['ms']:.1f}x |")


if __name__ == "__main__":
    main()
