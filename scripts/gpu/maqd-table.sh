#!/usr/bin/env bash
# MaQD accuracy table on Fashion-MNIST (issue 7): float+BN, float+LBN, MaQD+LBN at (weight states, activation states)
# ∈ {(3,15), (15,15), (3,3), (255,255)} with the first conv and the classifier at 255 states (8-bit), and (3,15),
# (15,15) again with every layer quantized; each trained from scratch (same recipe for every row), folded for inference.
# Sequential (one process): scripts/gpu/maqd-parallel.sh trains every row as its own process at once and so affords
# ~3× longer training in one call; this script stays for a one-process sweep with its markdown written as it goes.
# One call per batch size (BATCH=128 or BATCH=8), each < 8 min on one H100:
#
#   BATCH=128 MATQ=/tmp/m/publish/Matq.Cli MATQ_DATA=... MATQ_TORCH_LIB=... OUT=/tmp/out bash scripts/gpu/maqd-table.sh
#   BATCH=8   MATQ=/tmp/m/publish/Matq.Cli MATQ_DATA=... MATQ_TORCH_LIB=... OUT=/tmp/out bash scripts/gpu/maqd-table.sh
#   QUICK=1 MATQ=src/Matq.Cli/bin/Release/net10.0/Matq.Cli OUT=/tmp/out bash scripts/gpu/maqd-table.sh   # CPU smoke test
#
# Budget: 8 trainings per call. Per-step costs measured on the H100 before this version (the step is kernel-launch
# bound, so nearly the same at B=8 and B=128): float+BN 12 ms, float+LBN 28 ms, MaQD 31-37 ms (B=128); 9, 24, 32 ms
# (B=8). This version adds a gradient clip (one native call) and drops LBN's per-step running-statistics updates.
#   BATCH=128: all 60,000 images × EPOCHS_128 = 3 epochs = 1,407 steps/run ≈ 17 + 39 + 6 × 47 ≈ 340 s of training.
#   BATCH=8:   the first IMAGES_8 = 12,000 images × 1 epoch = 1,500 steps/run ≈ 13 + 36 + 6 × 49 ≈ 345 s.
# Plus ~3 s per run for recalibration, the unfolded and the folded test pass, and the start-up: ~400 s per call.
# The guard (GUARD_S, default 450 s) stops the sweep cleanly; the markdown is rewritten after every run, so a cut
# run still leaves the rows it finished. Rows within a column share data, steps and seed; the two columns are not
# comparable with each other. Override with EPOCHS_128, IMAGES_8, EPOCHS_8, SURROGATE, WIDTH, GUARD_S.
set -euo pipefail
: "${MATQ:?set MATQ to the matq binary (e.g. /tmp/m/publish/Matq.Cli)}"
: "${OUT:?set OUT to the results folder}"
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"

MODEL=${MODEL:-models/cnn}            # architecture only (resnet 16/32/64, 2 blocks per stage); weights unused
SURROGATE=${SURROGATE:-ste}
WIDTH=${WIDTH:-1}
BATCH=${BATCH:-128}
if [[ "${QUICK:-0}" == 1 ]]; then
  DEVICE=cpu; EXTRA=(--limit-test 200 --threads 1); GUARD_S=${GUARD_S:-1200}
  case "$BATCH" in 128) SETTINGS="128:256:1" ;; 8) SETTINGS="8:64:1" ;; *) echo "BATCH must be 128 or 8" >&2; exit 2 ;; esac
else
  DEVICE=cuda; EXTRA=(); GUARD_S=${GUARD_S:-450}
  case "$BATCH" in
    128) SETTINGS="128:60000:${EPOCHS_128:-3}" ;;
    8) SETTINGS="8:${IMAGES_8:-12000}:${EPOCHS_8:-1}" ;;
    *) echo "BATCH must be 128 or 8" >&2; exit 2 ;;
  esac
fi
MD="$OUT/maqd-fashion-mnist-b$BATCH.md"
LOG="$OUT/maqd-sweep-b$BATCH.log"

"$MATQ" device 2>&1 | tee "$OUT/device.txt" || true
start=$(date +%s)
set +e
timeout "$GUARD_S" "$MATQ" quantize-cnn --model "$MODEL" --method maqd --sweep "$MD" \
  --sweep-settings "$SETTINGS" --surrogate "$SURROGATE" --width "$WIDTH" --device "$DEVICE" "${EXTRA[@]}" \
  > "$LOG" 2>&1
rc=$?
set -e
end=$(date +%s)
echo "sweep exit code $rc after $((end - start)) s (guard ${GUARD_S} s; 124 = cut by the guard, table holds the finished rows)" | tee -a "$LOG"
grep -v "step [0-9]" "$LOG" | tail -n 40
[[ -f "$MD" ]] && cat "$MD"
exit $rc
