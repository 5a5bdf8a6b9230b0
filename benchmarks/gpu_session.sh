#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, as one prepared script for a lent
# CUDA machine (the run is short; each phase has its own time limit).
# From the repo root, with MNIST copied to .mnist/MNIST/raw and results in $OUT:
#   OUT=/tmp/out bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHGAN_LITE_DATA=$PWD/.mnist TORCHGAN_LITE_CACHE=/tmp/tgl_cache \
       MPLBACKEND=Agg
log="$OUT/log.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 | tee -a "$log"

echo "== 1. CUDA-graph equivalence and trainer tests on the GPU machine" | tee -a "$log"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py tests/test_trainer.py 2>&1 \
  | tail -15 | tee -a "$log"

echo "== 2. GPU benchmarks (step and end to end)" | tee -a "$log"
TORCHGAN_LITE_BENCH_SCALE=0.4 timeout 220 python3 -m pytest benchmarks -q -p no:cacheprovider \
  -k "cuda and not fused_d and not nn_layers" --benchmark-json="$OUT/gpu.json" 2>&1 | tail -6 | tee -a "$log"
python3 benchmarks/report.py "$OUT/gpu.json" 2>&1 | tee -a "$log"

echo "== 3. a full 200-epoch reference run, fastest fp32 mode (whole step as a CUDA graph)" | tee -a "$log"
timeout 110 python3 -m benchmarks.full_run --device cuda --capture cuda_graph --json "$OUT/full_run.json" 2>&1 \
  | tail -3 | tee -a "$log"

echo "== 4. reference vs improved recipe, 20 epochs each, evaluated every 5" | tee -a "$log"
for r in reference improved; do
  timeout 75 python3 examples/mnist_mlp.py --device cuda --recipe "$r" --epochs 20 --eval-every 5 \
    --sample-every 20 --checkpoint-every 20 --out "/tmp/run_$r" 2>&1 | grep -E "^epoch|^done|rror" | tee -a "$log"
  cp "/tmp/run_$r/history.csv" "$OUT/${r}_history.csv" 2>/dev/null
  cp "/tmp/run_$r/samples_final.png" "$OUT/${r}_final.png" 2>/dev/null
done
echo "== end" | tee -a "$log"
