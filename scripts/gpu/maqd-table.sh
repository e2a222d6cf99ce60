#!/usr/bin/env bash
# MaQD accuracy table on Fashion-MNIST (issue 7): float+BN, float+LBN and MaQD+LBN at (weight states, activation
# states) ∈ {(3,15), (15,15), (3,3), (255,255)}, each trained from scratch at batch 128 and batch 8, folded for inference.
#
#   MATQ=/tmp/m/publish/Matq.Cli MATQ_DATA=... MATQ_TORCH_LIB=... OUT=/tmp/out bash scripts/gpu/maqd-table.sh
#   QUICK=1 MATQ=src/Matq.Cli/bin/Release/net10.0/Matq.Cli OUT=/tmp/out bash scripts/gpu/maqd-table.sh   # CPU smoke test
#
# Budget (< 8 min on one H100): 12 trainings. Batch 128: all 60,000 images × EPOCHS_128 epochs (469 steps/epoch);
# batch 8: the first IMAGES_8 training images × 1 epoch (IMAGES_8/8 steps; a full 60k epoch at batch 8 is 7,500 steps
# per run, too slow for the budget). Columns are therefore not comparable with each other; rows within a column are
# (same data, steps and seed). The sweep rewrites the markdown after every run, so a run cut by the time guard still
# leaves the rows it finished. Override with EPOCHS_128, IMAGES_8, EPOCHS_8, SURROGATE, WIDTH, GUARD_S.
set -euo pipefail
: "${MATQ:?set MATQ to the matq binary (e.g. /tmp/m/publish/Matq.Cli)}"
: "${OUT:?set OUT to the results folder}"
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"

MODEL=${MODEL:-models/cnn}            # architecture only (resnet 16/32/64, 2 blocks per stage); weights unused
SURROGATE=${SURROGATE:-ste}
WIDTH=${WIDTH:-1}
if [[ "${QUICK:-0}" == 1 ]]; then
  DEVICE=cpu; SETTINGS="128:256:1,8:64:1"; EXTRA=(--limit-test 200 --threads 1); GUARD_S=${GUARD_S:-1200}
else
  DEVICE=cuda
  SETTINGS="128:60000:${EPOCHS_128:-3},8:${IMAGES_8:-12000}:${EPOCHS_8:-1}"
  EXTRA=(); GUARD_S=${GUARD_S:-450}
fi

"$MATQ" device 2>&1 | tee "$OUT/device.txt" || true
start=$(date +%s)
set +e
timeout "$GUARD_S" "$MATQ" quantize --model "$MODEL" --method maqd --sweep "$OUT/maqd-fashion-mnist.md" \
  --sweep-settings "$SETTINGS" --surrogate "$SURROGATE" --width "$WIDTH" --device "$DEVICE" "${EXTRA[@]}" \
  > "$OUT/maqd-sweep.log" 2>&1
rc=$?
set -e
end=$(date +%s)
echo "sweep exit code $rc after $((end - start)) s (guard ${GUARD_S} s; 124 = cut by the guard, table holds the finished rows)" | tee -a "$OUT/maqd-sweep.log"
grep -v "step [0-9]" "$OUT/maqd-sweep.log" | tail -n 40
[[ -f "$OUT/maqd-fashion-mnist.md" ]] && cat "$OUT/maqd-fashion-mnist.md"
exit $rc
