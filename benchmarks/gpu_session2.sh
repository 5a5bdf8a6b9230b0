#!/usr/bin/env bash
# Second GPU session: the conditional example's class accuracy, the reference recipe's
# 20 epochs for docs/recipes.md, and torch.compile with and without the CUDA graph.
set -u
OUT=${OUT:-/tmp/gpu_out2}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHGAN_LITE_DATA=$PWD/.mnist TORCHGAN_LITE_CACHE=/tmp/tgl_cache \
       MPLBACKEND=Agg
log="$OUT/log.txt"
nvidia-smi --query-gpu=name --format=csv,noheader 2>&1 | tee "$log"
echo "== compile (2 epochs each, compile warm-up included in the wall time; steps/s of epoch 2 in the json)" | tee -a "$log"
for mode in "--capture none --compile" "--capture cuda_graph --compile"; do
  name=$(echo "$mode" | tr -d ' -')
  timeout 80 python3 -m benchmarks.full_run --device cuda $mode --epochs 2 --eval-n 0 --json "$OUT/$name.json" 2>&1 \
    | tail -2 | tee -a "$log"
done
echo "== conditional MLP, improved recipe, 15 epochs" | tee -a "$log"
timeout 75 python3 examples/mnist_conditional.py --device cuda --recipe improved --epochs 15 --eval-every 15 \
  --sample-every 15 --checkpoint-every 15 --no-progress --out /tmp/cond 2>&1 | grep -vE "^\s*$" | tail -4 | tee -a "$log"
cp /tmp/cond/history.csv "$OUT/conditional_history.csv" 2>/dev/null
echo "== reference recipe, 20 epochs" | tee -a "$log"
timeout 90 python3 examples/mnist_mlp.py --device cuda --recipe reference --epochs 20 --eval-every 5 \
  --sample-every 20 --checkpoint-every 20 --out /tmp/run_reference 2>&1 | grep -E "^done|rror" | tee -a "$log"
cp /tmp/run_reference/history.csv "$OUT/reference_history.csv" 2>/dev/null
cp /tmp/run_reference/samples_final.png "$OUT/reference_final.png" 2>/dev/null
echo "== end" | tee -a "$log"
