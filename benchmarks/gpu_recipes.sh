#!/usr/bin/env bash
# Issue #18's GPU share, as one prepared script for a lent CUDA machine: the runs the CPU
# cannot finish in a session (docs/recipes.md, "Not measured yet").
#   phase 1: improved-r1, seeds 0-2, to 50 epochs (scored at 20 and 50); the conditional example
#            (improved), seeds 0-2, 30 epochs: the class-accuracy target over 3 seeds
#   phase 2: each improved-r1 run continued from 50 to 100 epochs as it is (scored at 70 and 100: the
#            3-seed mean for FD <= 10), and again from the same 50-epoch checkpoint with the learning
#            rates decayed linearly to 0; both with two longer EMAs (half-life 300k and 1M images),
#            the lever the CPU found on seed 0 (docs/recipes.md)
# Each phase starts its runs at once (one process each: the MLP steps are launch-bound, so one
# GPU serves several) and stops them at its time limit; rows are written as they are scored.
# From the repo root, with MNIST copied to .mnist/MNIST/raw (carried, git-ignored), results in $OUT:
#   OUT=/tmp/out PHASES="1 2" bash benchmarks/gpu_recipes.sh
set -u
OUT=${OUT:-/tmp/gpu_recipes}
PHASES=${PHASES:-1 2}
LIMIT=${LIMIT:-360}  # seconds per phase
DEVICE=${DEVICE:-cuda}
if [ "${SMOKE:-0}" = 1 ]; then  # a check of the script itself, e.g. DEVICE=cpu SMOKE=1: 256 images, 200 scored
  small=(--subset 256 --n 200); csmall=(--subset 256 --eval-n 200)
else
  small=(); csmall=()
fi
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHGAN_LITE_DATA=${TORCHGAN_LITE_DATA:-$PWD/.mnist} TORCHGAN_LITE_CACHE=/tmp/tgl_cache \
       MPLBACKEND=Agg
log="$OUT/log.txt"
runs=${RUNS:-/tmp/recipes_runs}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 | tee -a "$log"
ablation() {  # ablation SEED OUTNAME ARGS...: one recipes_ablation run in the background
  local seed=$1 name=$2
  shift 2
  timeout "$LIMIT" python3 benchmarks/recipes_ablation.py --device "$DEVICE" --seed "$seed" --run-dir "$runs" \
    --machine "one of several runs at once on this GPU" --out "$OUT/$name.jsonl" "${small[@]}" "$@" \
    > "$OUT/$name.txt" 2>&1 &
}

for phase in $PHASES; do
  echo "== phase $phase, $(date -u +%H:%M:%S)" | tee -a "$log"
  for s in 0 1 2; do
    if [ "$phase" = 1 ]; then
      ablation "$s" "improved-r1_s$s" --configs improved-r1 --epochs 50 --eval-at 20
      timeout "$LIMIT" python3 examples/mnist_conditional.py --device "$DEVICE" --recipe improved --epochs 30 \
        --eval-every 10 --eval-n 10000 "${csmall[@]}" --seed "$s" --no-progress --out "$runs/cond_improved_seed$s" \
        > "$OUT/cond_improved_s$s.txt" 2>&1 &
    else
      ablation "$s" "improved-r1_s$s" --configs improved-r1 --epochs 100 --eval-at 70 --extra-ema 300000,1000000
      ablation "$s" "improved-r1-decay50_s$s" --configs improved-r1 --epochs 100 --eval-at 70 \
        --init-from "$runs/improved-r1_seed${s}_e50.pt" --lr-decay-from 50 --extra-ema 300000,1000000 \
        --variant=-decay50
    fi
  done
  wait
  if [ "$phase" = 1 ]; then  # the decay variant starts from the same 50-epoch weights
    for s in 0 1 2; do
      cp "$runs/improved-r1_seed$s/checkpoint.pt" "$runs/improved-r1_seed${s}_e50.pt" 2>/dev/null
    done
  fi
  for f in "$runs"/cond_improved_seed*/history.csv; do
    [ -f "$f" ] && cp "$f" "$OUT/$(basename "$(dirname "$f")")_history.csv"
  done
  grep -h '"fd"' "$OUT"/*.txt 2>/dev/null | tail -30 | tee -a "$log"
done
echo "== end $(date -u +%H:%M:%S)" | tee -a "$log"
