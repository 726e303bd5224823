#!/usr/bin/env python3
"""Side-by-side GPU timings: PyTorch nn.GRU / nn.LSTM on cuDNN against memrnn's CUDA backend.

Run on the GPU machine, from a bundle made by `benches/gpu/bundle.sh` (which carries the
`gpu_table` binary):

    python3 benches/compare/gpu_torch.py --memrnn ./gpu_table [--reps 20] [--shapes paper,long,small-batch,wide]
        [--precisions f32,bf16,f16]

cuDNN is timed with CUDA events around each call (median of --reps after warm-up, fresh
random data, no zeros); memrnn's figures come from the `gpu_table` binary (median of
synchronised runs). fwd = forward over the sequence; train = forward + backward with a
loss on every step and no input gradient (weight gradients only). The `long` shape is
forward only (evaluation at long delays). GFLOP/s by TARGETS.md's counting.

Precisions: cuDNN's side of bf16 / f16 is the module and its input converted with
`.to(dtype)` (cuDNN's half-precision RNN: weights and activations in that format). memrnn's
side is `gpu_table --precisions` (W_hh stored in that format, read by the `_bf16` / `_f16`
recurrence kernels; activations, gates and accumulation in f32), so every row sets the two
in the same precision; the `memrnn` column names what memrnn stored. A precision this cuDNN
cannot run falls back to f32, labelled.
"""
import argparse
import json
import statistics
import subprocess

import torch

SHAPES = {
    "paper": dict(batch=128, input=785, hidden=200, steps=20),
    "small-batch": dict(batch=8, input=64, hidden=256, steps=500),
    "long": dict(batch=1024, input=785, hidden=200, steps=1000),
    "wide": dict(batch=64, input=256, hidden=1024, steps=100),
    "tiny": dict(batch=3, input=5, hidden=7, steps=4),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
GATES = {"gru": 3, "lstm": 4}


def flops(cell, s, train):
    g, b, i, h, t = GATES[cell], s["batch"], s["input"], s["hidden"], s["steps"]
    fwd = 2 * b * g * h * (i + h) * t
    return fwd + (2 * b * g * h * i + 4 * b * g * h * h) * t if train else fwd


def cuda_time(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def torch_case(cell, s, dtype, dev):
    """The module, input and upstream gradient of one case in `dtype` on `dev`, and its
    two passes."""
    torch.manual_seed(0)
    net = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](s["input"], s["hidden"]).to(dev, dtype)
    x = torch.rand(s["steps"], s["batch"], s["input"], device=dev).to(dtype)
    g = (torch.rand(s["steps"], s["batch"], s["hidden"], device=dev) * 2e-3 - 1e-3).to(dtype)

    def fwd():
        with torch.no_grad():
            net(x)

    def train():
        net.zero_grad(set_to_none=True)
        out, _ = net(x)
        (out * g).sum().backward()

    return fwd, train


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memrnn", required=True, help="path to the gpu_table binary")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cells", default="gru,lstm")
    ap.add_argument("--shapes", default="paper,long,small-batch,wide")
    ap.add_argument("--precisions", default="f32",
                    help="precisions to time cuDNN in, comma-separated: f32, bf16, f16")
    args = ap.parse_args()
    out = subprocess.run([args.memrnn, "--reps", str(args.reps), "--cells", args.cells, "--shapes", args.shapes,
                          "--precisions", args.precisions],
                         check=True, capture_output=True, text=True).stdout
    mine = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | cuDNN {torch.backends.cudnn.version()}")
    print("| cell | shape | pass | cuDNN in | cuDNN ms (GF/s) | memrnn | memrnn ms (GF/s), path | speed-up |")
    print("| --- | --- | --- | --- | ---: | --- | ---: | ---: |")
    for name in args.shapes.split(","):
        s = SHAPES[name]
        for cell in args.cells.split(","):
            for prec in args.precisions.split(","):
                label = prec
                try:
                    fwd, train = torch_case(cell, s, DTYPES[prec], dev)
                    fwd()
                    train()
                except Exception as e:  # this cuDNN cannot run it: time f32, say so
                    label = f"f32 ({prec} not offered: {str(e).splitlines()[0][:60]})"
                    fwd, train = torch_case(cell, s, torch.float32, dev)
                # memrnn's rows in the same precision (its W_hh storage; f32 arithmetic).
                mine_in = f"W_hh {prec}"
                passes = [("fwd", fwd)] + ([] if name == "long" else [("train", train)])
                for pass_, fn in passes:
                    secs = cuda_time(fn, args.reps)
                    gf = flops(cell, s, pass_ == "train") / secs / 1e9
                    for r in mine:
                        key = (r["cell"], r["shape"], r["pass"], r.get("precision", "f32"))
                        if key == (cell, name, pass_, prec):
                            print(f"| {cell} | {name} | {pass_} | {label} | {secs*1e3:.3f} ({gf:.0f}) | "
                                  f"{mine_in} | {r['ms']:.3f} ({r['gflops']:.0f}), {r['path']} |"
                                  f" {secs*1e3/r['ms']:.2f}x |")


if __name__ == "__main__":
    main()
