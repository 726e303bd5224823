# run from the repository root; noise0.txt: the delay-period input held constant (noise std 0)
N=/work/runs/study24/nets
nice -n 10 cargo run --release -p memrnn-benches --bin state_rounding -- \
  --checkpoint $N/gru-none-s1.safetensors --checkpoint $N/gru-none-s2.safetensors \
  --checkpoint $N/lstm-none-s1.safetensors --checkpoint $N/lstm-none-s2.safetensors \
  --delays 19,100,200,500,1000 --trials 1000 --batch 500 --noise-std 0 \
  --out benches/runs/2026-12-01-cpu-s5/state_rounding
