# run from the repository root (./data: the bundled 10000-digit MNIST subset); task_noise.txt
N=/work/runs/study24/nets
nice -n 10 cargo run --release -p memrnn-benches --bin state_rounding -- \
  --checkpoint $N/gru-none-s1.safetensors --checkpoint $N/gru-none-s2.safetensors \
  --checkpoint $N/lstm-none-s1.safetensors --checkpoint $N/lstm-none-s2.safetensors \
  --checkpoint $N/gru-delay-s1.safetensors --checkpoint $N/lstm-delay-s1.safetensors \
  --delays 19,100,200,500,1000 --trials 1000 --batch 500 \
  --out benches/runs/2026-12-01-cpu-s5/state_rounding
# task_noise_more.txt: the same with gru-none-s3 gru-none-s4 gru-delay-s2 gru-delay-s3 gru-delay-s4
#   lstm-none-s3 lstm-none-s4 lstm-delay-s2 lstm-delay-s3 lstm-delay-s4
