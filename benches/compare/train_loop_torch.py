#!/usr/bin/env python3
"""A PyTorch training loop of memrnn's network and task, for the pipeline timing beside
`memrnn`'s (benches/gpu/bundle.sh carries both; run.sh runs them).

The network: nn.GRU(785 -> H) (cuDNN on a GPU) and nn.Linear(H -> 11); the loss: the
per-step mean of the weighted softmax cross-entropy (the report step weighted T - 1,
every other step 1; MATH.md §5); Adam (lr 1e-3) after global-norm clipping at 1.0 over
all parameters. The task (MATH.md §6): per trial a digit image at a read time, noise
N(0.1307, 0.3081) elsewhere, a trigger at the report time >= read + 4; drawn on the
device every step with torch's own generator (the same distribution as memrnn's Philox
stream, not the same numbers: the timing does not depend on them). The digits are
random uint8 images unless --mnist-dir gives the IDX files (the timing does not depend on
the pixels either).

    python3 train_loop_torch.py [--hidden 200] [--batch 128] [--steps 20] [--iters 2000]
        [--reps 7] [--device cuda] [--mnist-dir DIR] [--ensemble E]

With --ensemble E, E independent networks (each its own GRU, readout, Adam and batches)
train side by side the way PyTorch offers: one training step of each in turn per
iteration (E sequential cuDNN loops); it prints their throughput in networks·steps per
second beside memrnn's `ensemble_throughput`.

Prints ms per training step (median over --reps runs of --iters steps, each timed with
CUDA events around the whole run after a warm-up) and the projected time of the paper's
140,000 steps. The loss is read back once per run, as memrnn reads its record at its
logging interval.
"""
import argparse
import gzip
import os
import statistics
import sys
import time

import torch

CLASSES = 11
DELTA_MIN = 4


def load_digits(mnist_dir, device, pixels=784, count=6000):
    if mnist_dir:
        def read(name):
            path = os.path.join(mnist_dir, name)
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                return f.read()
        names = sorted(os.listdir(mnist_dir))
        img = read(next(n for n in names if "images" in n))
        lab = read(next(n for n in names if "labels" in n))
        n = int.from_bytes(lab[4:8], "big")
        images = torch.frombuffer(bytearray(img[16:16 + n * pixels]), dtype=torch.uint8).view(n, pixels)
        labels = torch.frombuffer(bytearray(lab[8:8 + n]), dtype=torch.uint8).long()
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (count, pixels), dtype=torch.uint8, generator=g)
        labels = torch.arange(count) % 10
    return images.to(device).float() / 255.0, labels.to(device)


def make_batch(images, labels, t_max, batch, device):
    """x [T, B, P + 1], targets [T, B], weights [T, B], all on the device."""
    n, pixels = images.shape
    idx = torch.randint(0, n, (batch,), device=device)
    digit = labels[idx]
    span = t_max - DELTA_MIN
    t_read = torch.randint(0, span, (batch,), device=device)
    # t_report ~ U[t_read + Δ_min, T_max)
    u = torch.rand(batch, device=device)
    t_report = t_read + DELTA_MIN + (u * (span - t_read).float()).long()
    x = torch.empty(t_max, batch, pixels + 1, device=device)
    x[:, :, :pixels].normal_(0.1307, 0.3081)
    steps = torch.arange(t_max, device=device).view(t_max, 1)
    read = steps == t_read.view(1, batch)
    x[:, :, :pixels] = torch.where(read.unsqueeze(-1), images[idx].unsqueeze(0), x[:, :, :pixels])
    report = steps == t_report.view(1, batch)
    x[:, :, pixels] = report.float()
    targets = torch.where(report, (digit + 1).view(1, batch), torch.zeros_like(report, dtype=torch.long))
    weights = torch.where(report, torch.full_like(x[:, :, 0], float(t_max - 1)), torch.ones_like(x[:, :, 0]))
    return x, targets, weights


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="T_max, the sequence length")
    ap.add_argument("--iters", type=int, default=2000, help="training steps per timed run")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--mnist-dir", default=None)
    ap.add_argument("--ensemble", type=int, default=1, help="independent networks trained in turn")
    args = ap.parse_args()
    if args.ensemble < 1:
        ap.error("--ensemble must be at least 1")
    dev = torch.device(args.device)
    torch.manual_seed(1)
    images, labels = load_digits(args.mnist_dir, dev)
    rows = args.steps * args.batch

    def member():
        gru = torch.nn.GRU(images.shape[1] + 1, args.hidden).to(dev)
        readout = torch.nn.Linear(args.hidden, CLASSES).to(dev)
        params = list(gru.parameters()) + list(readout.parameters())
        return gru, readout, params, torch.optim.Adam(params, lr=1e-3)

    members = [member() for _ in range(args.ensemble)]

    def member_step(gru, readout, params, opt):
        x, targets, weights = make_batch(images, labels, args.steps, args.batch, dev)
        h, _ = gru(x)
        logits = readout(h).view(rows, CLASSES)
        ce = torch.nn.functional.cross_entropy(logits, targets.view(rows), reduction="none")
        loss = (ce * weights.view(rows)).sum() / rows
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.detach()

    def step():
        loss = None
        for m in members:
            loss = member_step(*m)
        return loss

    def run(n):
        loss = None
        for _ in range(n):
            loss = step()
        return float(loss)

    cuda = dev.type == "cuda"
    run(min(50, args.iters))  # warm-up (cuDNN plans, allocator)
    times = []
    for _ in range(args.reps):
        if cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            last = run(args.iters)
            end.record()
            end.synchronize()
            secs = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            last = run(args.iters)
            secs = time.perf_counter() - t0
        times.append(secs * 1e3 / args.iters)
    ms = statistics.median(times)
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    each = f" of each of {args.ensemble} networks in turn" if args.ensemble > 1 else ""
    print(f"pytorch training loop on {name}: GRU H {args.hidden}, batch {args.batch}, T {args.steps}, "
          f"I {images.shape[1] + 1}: {ms:.3f} ms/step{each} (median of {args.reps} runs of {args.iters} steps; "
          f"last loss {last:.3f})")
    print(f"projected 140,000 steps: {ms * 140_000 / 60_000:.1f} min")
    if "--ensemble" in sys.argv:
        rate = args.ensemble * 1e3 / ms
        print(f"pytorch ensemble of {args.ensemble} (sequential loops): {ms / args.ensemble:.3f} ms per "
              f"network-step, {rate:.1f} networks·steps/s")


if __name__ == "__main__":
    main()
