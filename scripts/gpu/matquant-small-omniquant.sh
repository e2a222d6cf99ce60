#!/usr/bin/env bash
# MatQuant with the OmniQuant base on the small recipe (one H100 + 16 cores, about 5-7 minutes): re-trains the small
# model in the call (matq train lm --preset small --seed 1234, ~1 min, as for matquant-small.md), then
#   matq bench matquant --bases omniquant: independent OmniQuant at 8,6,4,3,2 bits vs MatQuant {8,4,2} (base
#   omniquant) sliced to 8/6/4/3/2, + co-distill 8->2, single-precision {2}, extra precision, Mix'n'Match.
# Writes $OUT/matquant-small-omniquant-tables.md, $OUT/matquant-small-omniquant-omniquant-mixnmatch.png, logs.
# Needs $MATQ (published Matq.Cli), $OUT, MATQ_DATA (sotu + moby-dick cached) and MATQ_TORCH_LIB (CUDA PyTorch lib).
# Budget overrides: EPOCHS (5), LWC_LR (0.05), LWC_BATCH (4 windows per Adam step), CALIB_N (128 windows of 256 tokens).
# QUICK=1: the same commands on models/tiny on the CPU with tiny settings (a smoke test, about 20 s).
set -euo pipefail
: "${MATQ:?set MATQ to the published matq binary, e.g. /tmp/m/publish/Matq.Cli}"
: "${OUT:?set OUT to the results folder}"
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
EPOCHS=${EPOCHS:-5}; LWC_LR=${LWC_LR:-0.05}; LWC_BATCH=${LWC_BATCH:-4}; CALIB_N=${CALIB_N:-128}
if [[ "${QUICK:-0}" == 1 ]]; then
  model=models/tiny
  run=(--device cpu --threads 1 --independent 2 --epochs 1 --calib-n 8 --max-tokens 2000 --budgets 3)
else
  model="$work/small"
  start=$(date +%s)
  "$MATQ" train lm --preset small --device cuda --seed 1234 --out "$model" > "$OUT/train-small.log" 2>&1
  echo "trained $model in $(( $(date +%s) - start )) s"; tail -n 3 "$OUT/train-small.log"
  run=(--device cuda --epochs "$EPOCHS" --calib-n "$CALIB_N" --max-tokens 0)
fi
start=$(date +%s)
"$MATQ" bench matquant --model "$model" --bases omniquant --codistill '8->2' --lwc-lr "$LWC_LR" --lwc-batch "$LWC_BATCH" "${run[@]}" \
  --out "$OUT/matquant-small-omniquant.md" --work "$work/artifacts" 2>&1 | tee "$OUT/bench-omniquant.log"
echo "bench: $(( $(date +%s) - start )) s" | tee -a "$OUT/bench-omniquant.log"
