#!/usr/bin/env bash
# The QAT rows of the tiny-LM MatQuant study on a second float model (issue 22: "for QAT rows a second float retrain"):
# retrains models/tiny's recipe with --seed 2 (FLOAT_SEED) into out/study/tiny-f2, then runs scripts/matquant-study.sh's
# QAT rows (today and chosen settings, quantization seeds 1,2,3) on it. Logs and tables are named *-f2.
set -uo pipefail
MATQ=${MATQ:-matq}
FLOAT_SEED=${FLOAT_SEED:-2}
LOGS=docs/results/logs/matquant-study
OUT=docs/results/matquant-study
MODEL=out/study/tiny-f$FLOAT_SEED
mkdir -p "$LOGS" "$OUT" out/study
if [[ ! -f $MODEL/model.safetensors ]]; then
  $MATQ train lm --preset tiny --seed "$FLOAT_SEED" --device cpu --out "$MODEL" > "$LOGS/retrain-tiny-f$FLOAT_SEED.log" 2>&1 || { echo "FAILED retrain"; exit 1; }
fi
one() {   # name layers group grid extra...
  local name=$1 layers=$2 group=$3 grid=$4; shift 4
  $MATQ bench matquant --model "$MODEL" --device cpu --threads 1 --seeds "${SEEDS:-1,2,3}" --max-tokens 2000 \
    --bases qat --steps 30 --batch 4 --context 128 --layers "$layers" --group "$group" --grid "$grid" "$@" \
    --work "out/study/$name" --out "$OUT/$name.md" > "$LOGS/$name.log" 2>&1 || echo "FAILED $name"
}
one "rows-qat-today-f$FLOAT_SEED" all 64 learned --budgets 2.5,3,4 --codistill "8->2;8->4,4->2" &
one "rows-qat-chosen-f$FLOAT_SEED" all 0 learned --budgets 2.5,3,4 --codistill "8->2;8->4,4->2" &
wait
