#!/usr/bin/env python3
"""Markdown tables of the state_rounding JSONs in this folder: per network, accuracy at
500 / 1000 steps under each storage mode, the delay-period fraction of state elements
that did not move (frozen el) and of rows whose whole state did not move (frozen s) in
the mode that rounds the whole carried state (GRU: W+h; LSTM: W+h+c), and
the mean change against f32 over the networks. Usage: summarize.py [noise0]"""
import glob, json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
noise0 = len(sys.argv) > 1 and sys.argv[1] == "noise0"
pat = "*.noise0.state_rounding.json" if noise0 else "*.state_rounding.json"
files = sorted(f for f in glob.glob(os.path.join(here, pat)) if noise0 or ".noise" not in f)
modes = ["w:f32 h:f32", "w:bf16 h:f32", "w:bf16 h:bf16", "w:bf16 h,c:bf16",
         "w:f16 h:f32", "w:f16 h:f16", "w:f16 h,c:f16"]
short = ["f32", "W bf16", "W+h bf16", "W+h+c bf16", "W f16", "W+h f16", "W+h+c f16"]
print("| net | " + " | ".join(short) + " | frozen el / s, bf16 | frozen el / s, f16 |")
print("|---" * (len(short) + 3) + "|")
diffs = {}
for f in files:
    net = os.path.basename(f).split(".")[0]
    r = {x["name"]: x for x in json.load(open(f))}
    def acc(m, d):
        e = r[m]["eval"]
        return e["accuracy"][e["delays"].index(d)]
    cells = []
    for m in modes:
        if m in r:
            cells.append(f"{acc(m, 500):.3f} / {acc(m, 1000):.3f}")
            diffs.setdefault((net.split("-")[0], m), []).append((acc(m, 500) - acc(modes[0], 500), acc(m, 1000) - acc(modes[0], 1000)))
        else:
            cells.append("–")
    # The mode that rounds the whole carried state (the LSTM's h and c).
    def fz(p):
        m = f"w:{p} h,c:{p}" if f"w:{p} h,c:{p}" in r else f"w:{p} h:{p}"
        return f"{r[m]['frozen_elements']:.2f} / {r[m]['frozen_state']:.2f}"
    print(f"| {net} | " + " | ".join(cells) + f" | {fz('bf16')} | {fz('f16')} |")
for cell in ["gru", "lstm"]:
    cells = []
    for m in modes:
        v = diffs.get((cell, m), [])
        if v:
            a = sum(x for x, _ in v) / len(v)
            b = sum(y for _, y in v) / len(v)
            cells.append(f"{a:+.3f} / {b:+.3f}")
        else:
            cells.append("–")
    n = len(diffs.get((cell, modes[0]), []))
    if n:
        print(f"| mean Δ vs f32, {cell} (n={n}) | " + " | ".join(cells) + " | | |")
