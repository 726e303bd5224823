#!/usr/bin/env bash
# Builds everything a GPU check needs on this (GPU-less) machine and puts it in
# gpu-bundle/ (git-ignored) for the device tool to carry (name it in `carry`): the CUDA
# test binaries, the gpu_table, bench_slowpoints and train_step timing binaries, the memrnn
# CLI (for `memrnn train` at the paper shape, timed from its metrics by pipeline_rate.py),
# the PyTorch comparison scripts (train_loop_torch.py with the bundled digits), the ensemble
# throughput binary, and run.sh.
# PTX is embedded in the binaries. On the GPU machine: `bash gpu-bundle/run.sh`
# (writes its logs to $OUT when set, else to gpu-bundle/out/).
# Binaries are stripped (a device call carries 64 MiB in all); the script fails loudly when
# the bundle exceeds 40 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf gpu-bundle && mkdir -p gpu-bundle
# The GPU test binaries (cargo prints their paths as JSON; pick them by target name): the
# shared conformance suite instantiated for the real GPU.
for t in conformance_gpu; do
  bin=$(cargo test --release -p memrnn-tests --test "$t" --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$t")
  cp "$bin" "gpu-bundle/$t"
done
cargo build --release -p memrnn-benches --bin bench_slowpoints
cp target/release/bench_slowpoints gpu-bundle/
cp benches/compare/slowpoints_torch_gpu.py gpu-bundle/
cargo build --release -p memrnn-benches --bin gpu_table
cp target/release/gpu_table gpu-bundle/
cp benches/compare/gpu_torch.py gpu-bundle/
# The training pipeline: memrnn's step (old host path and backend path) and the PyTorch loop.
bin=$(cargo bench -p memrnn-benches --bench train_step --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "train_step":
        print(m["executable"])')
cp "$bin" gpu-bundle/train_step
cp benches/compare/train_loop_torch.py gpu-bundle/
# The whole `memrnn train` at the paper shape (the CLI always carries the CUDA backend) and
# the script that reads its rate from the metrics file.
cargo build --release -p memrnn-cli --bin memrnn
cp target/release/memrnn gpu-bundle/
cp benches/compare/pipeline_rate.py gpu-bundle/
# Ensembles: E networks trained as one job (memrnn) against E sequential PyTorch loops.
cargo build --release -p memrnn-benches --bin ensemble_throughput
cp target/release/ensemble_throughput gpu-bundle/
mkdir -p gpu-bundle/mnist
cp crates/memrnn-train/data/train-*-idx*-ubyte.gz gpu-bundle/mnist/
cat > gpu-bundle/run.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU machine. cuBLAS comes from PyTorch's pip wheels there.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}; mkdir -p "$out"
lib=$(python3 -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="${lib}:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/device.txt"
for t in conformance_gpu; do
  echo "== $t (MEMRNN_REQUIRE_GPU=1)"
  MEMRNN_REQUIRE_GPU=1 "$here/$t" --test-threads=1 2>&1 | tee "$out/$t.log"
  echo "== compute-sanitizer memcheck / racecheck on $t"
  for tool in memcheck racecheck; do
    MEMRNN_REQUIRE_GPU=1 compute-sanitizer --tool $tool --error-exitcode 9 "$here/$t" --test-threads=1 \
      > "$out/sanitizer-$t-$tool.log" 2>&1; echo "$t $tool exit $?" | tee -a "$out/sanitizer.txt"
  done
done
echo "== slow-point search vs PyTorch autograd (GRU H 200, 4096 candidates, 10,000 iterations)"
"$here/bench_slowpoints" --dump "$out/sp" | tee "$out/slowpoints_memrnn.txt"
PYTHONUNBUFFERED=1 python3 "$here/slowpoints_torch_gpu.py" --data "$out/sp" --memrnn-output "$out/slowpoints_memrnn.txt" 2>&1 | tee "$out/slowpoints_compare.txt"
rm -rf "$out/sp"
echo "== timings vs cuDNN, each precision on both sides (f32; bf16 and f16: cuDNN's half RNN vs memrnn's W_hh stored in bf16/f16 with f32 arithmetic)"
PYTHONUNBUFFERED=1 python3 "$here/gpu_torch.py" --memrnn "$here/gpu_table" --precisions f32,bf16,f16 2>&1 | tee "$out/compare.md"
echo "== training pipeline (GRU H 200, batch 128, T 20, 785 inputs; and memrnn run's H 64, batch 64): memrnn old host path vs backend path, then the PyTorch/cuDNN loop"
"$here/train_step" --backend cuda --shapes paper,run --reps 7 --steps 200 2>&1 | tee "$out/train_step.txt"
PYTHONUNBUFFERED=1 python3 "$here/train_loop_torch.py" --hidden 200 --batch 128 --iters 2000 --reps 7 --mnist-dir "$here/mnist" 2>&1 | tee "$out/train_loop_torch.txt"
PYTHONUNBUFFERED=1 python3 "$here/train_loop_torch.py" --hidden 64 --batch 64 --iters 2000 --reps 7 --mnist-dir "$here/mnist" 2>&1 | tee -a "$out/train_loop_torch.txt"
echo "== memrnn train on the GPU at the paper shape (GRU H 200, batch 128, T 20, 785 inputs), 3000 steps: ms/step and the 140,000-step projection, beside the PyTorch loop"
"$here/memrnn" --backend cuda --quiet train --mnist-dir "$here/mnist" --cell gru --hidden 200 \
  --batch 128 --t-max 20 --steps 3000 --log-every 100 --checkpoint-every 100000 \
  --out "$out/pipeline" --name paper 2>&1 | tee "$out/pipeline_train.txt"
grep -m1 "GRU H 200, batch 128," "$out/train_loop_torch.txt" > "$out/train_loop_torch_paper.txt"
python3 "$here/pipeline_rate.py" "$out/pipeline/paper.metrics.jsonl" --skip 500 \
  --torch "$out/train_loop_torch_paper.txt" 2>&1 | tee -a "$out/pipeline_train.txt"
rm -f "$out/pipeline/paper.safetensors"
echo "== ensembles at the paper shape (GRU H 200, batch 128, T 20, 785 inputs): memrnn E = 1, 8, 32, 64 in networks·steps/s, then E sequential PyTorch/cuDNN loops"
"$here/ensemble_throughput" --backend cuda --shape paper --ensembles 1,8,32,64 --steps 20 --reps 5 2>&1 | tee "$out/ensemble_memrnn.txt"
for e in 1 8 32 64; do
  PYTHONUNBUFFERED=1 python3 "$here/train_loop_torch.py" --hidden 200 --batch 128 --iters $((400 / e > 10 ? 400 / e : 10)) --reps 3 --ensemble $e --mnist-dir "$here/mnist" 2>&1 | tee -a "$out/ensemble_torch.txt"
done
RUN
chmod +x gpu-bundle/run.sh
# Debug info is most of each binary's size and is not needed to run it.
for f in gpu-bundle/*; do
  if [ -f "$f" ] && head -c 4 "$f" | grep -q ELF; then
    strip --strip-debug "$f"
  fi
done
bytes=$(du -sb gpu-bundle | cut -f1)
limit=$((40 * 1000 * 1000))
if (( bytes > limit )); then
  echo "bundle.sh: gpu-bundle/ is $bytes bytes, above the 40 MB limit (a device call carries 64 MiB in all): strip or drop something" >&2
  du -sb gpu-bundle/* >&2
  exit 1
fi
echo "bundle ready: $(du -sh gpu-bundle | cut -f1) in gpu-bundle/"
