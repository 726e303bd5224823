#!/usr/bin/env bash
# Builds everything a GPU check needs on this (GPU-less) machine and puts it in
# gpu-bundle/ (git-ignored) for the device tool to carry: the CUDA conformance test
# binary, the gpu_table timing binary, the cuDNN comparison script and run.sh.
# PTX is embedded in the binaries. On the GPU machine: `bash gpu-bundle/run.sh`
# (writes its logs to $OUT when set, else to gpu-bundle/out/).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf gpu-bundle && mkdir -p gpu-bundle
test_bin=$(cargo test --release -p memrnn-tests --test cuda_conformance --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_conformance":
        print(m["executable"])')
cp "$test_bin" gpu-bundle/cuda_conformance
cargo build --release -p memrnn-benches --bin gpu_table
cp target/release/gpu_table gpu-bundle/
cp benches/compare/gpu_torch.py gpu-bundle/
cat > gpu-bundle/run.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU machine. cuBLAS comes from PyTorch's pip wheels there.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}; mkdir -p "$out"
lib=$(python3 -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="${lib}:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/device.txt"
echo "== conformance (MEMRNN_REQUIRE_GPU=1)"
MEMRNN_REQUIRE_GPU=1 "$here/cuda_conformance" --test-threads=1 2>&1 | tee "$out/conformance.log"
echo "== compute-sanitizer memcheck / racecheck"
for tool in memcheck racecheck; do
  MEMRNN_REQUIRE_GPU=1 compute-sanitizer --tool $tool --error-exitcode 9 "$here/cuda_conformance" --test-threads=1 \
    > "$out/sanitizer-$tool.log" 2>&1; echo "$tool exit $?" | tee -a "$out/sanitizer.txt"
done
echo "== timings vs cuDNN"
PYTHONUNBUFFERED=1 python3 "$here/gpu_torch.py" --memrnn "$here/gpu_table" 2>&1 | tee "$out/compare.md"
RUN
chmod +x gpu-bundle/run.sh
echo "bundle ready: $(du -sh gpu-bundle | cut -f1) in gpu-bundle/"
