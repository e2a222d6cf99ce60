#!/usr/bin/env bash
# The one-seed setting search of the MatQuant study (docs/results/matquant.md) on models/tiny, CPU:
# per base, FFN-only vs all linears × per-channel vs g128 (× frozen vs learned grid for QAT); int2 headroom is read
# from independent int2/int8 vs MatQuant {8,4,2} served at 2. Two processes at a time, one torch thread each.
set -uo pipefail
MATQ=${MATQ:-matq}
LOGS=docs/results/logs/matquant-study
mkdir -p "$LOGS" out/study
one() {   # base layers group grid extra...
  local b=$1 layers=$2 group=$3 grid=$4; shift 4
  local name=search-$b-$layers-g$group-$grid
  $MATQ bench matquant --model models/tiny --device cpu --threads 1 --independent 8,2 --budgets none --codistill "" \
    --max-tokens 4000 --seed 1 --bases "$b" --layers "$layers" --group "$group" "$@" \
    --work "out/study/$name" --out "out/study/$name.md" > "$LOGS/$name.log" 2>&1 || echo "FAILED $name"
}
run() { while (( $(jobs -rp | wc -l) >= 2 )); do wait -n; done; one "$@" & }
for layers in ffn all; do for group in 0 128; do
  run athena "$layers" "$group" learned --calib-n 32
  run omniquant "$layers" "$group" learned --epochs 2 --calib-n 16 --lwc-batch 4 --lwc-lr 0.05
  for grid in learned minmax; do run qat "$layers" "$group" "$grid" --steps 40 --batch 4 --context 128 --grid "$grid"; done
done; done
wait
