#!/usr/bin/env bash
# MaQD table with longer training in one GPU call: every row is its own process, all running at once on the one GPU
# (each small-CNN run is launch-bound, so a dozen share an H100 well; 16 host cores drive them). Columns: batch 128 on
# all 60,000 images × EPOCHS_128 epochs, batch 8 on the first IMAGES_8 images × EPOCHS_8 epochs. Every row is
# `quantize-cnn --method maqd` (float rows with --float; MaQD rows on LBN with the first conv and classifier at 255 states,
# plus (3,15) and (15,15) with every layer quantized), folded before evaluation; same recipe and data; seed 1234, and
# the float rows at B=8 also with SEEDS_8 (BN vs LBN at small batch differ by less than one seed's spread).
# Writes $OUT/maqd-fashion-mnist.md (the table, rebuilt from the run logs), $OUT/maqd-parallel.log (one result line
# per run) and the per-run logs tarred as $OUT/maqd-runs.tgz. QUICK=1: a CPU smoke test on a few hundred images.
#
# Budget, measured on the H100 with the previous version of this script: the processes share ~200-220 optimizer
# steps/s in all, at either batch size (13 processes: 7 × 2,814 steps at B=128 + 6 × 2,000 at B=8 in ~159 s;
# 6 processes: 6 × 7,500 steps at B=8 in ~205 s; a lone run is ~33 ms/step). The defaults run 16 processes
# (8 per batch size, the float rows at B=8 with seeds 1234 and 7): EPOCHS_128=8 = 3,752 steps and IMAGES_8=32000 =
# 4,000 steps each, 62,000 steps ≈ 300 s (+ start-up and evaluation). GUARD_S (default 420 s) cuts a single run that
# goes past it (a cut run leaves "…" in the table). Size other settings as Σ steps / 200 s and keep the call < 8 min,
# e.g. BATCHES=8 IMAGES_8=60000 (8 processes × 7,500 steps ≈ 300 s).
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
MODEL=${MODEL:-models/cnn}
E128=${EPOCHS_128:-8}; N8=${IMAGES_8:-32000}; E8=${EPOCHS_8:-1}; SEEDS8=${SEEDS_8:-7}
dev=cuda; extra=(--threads 1); lim128=(); N128=60,000
[ "${QUICK:-0}" = 1 ] && { dev=cpu; E128=1; N8=64; N128=256; extra=(--limit-test 200 --threads 1); lim128=(--limit-train 256); }
runs=/tmp/maqd-runs; rm -rf $runs; mkdir -p $runs "$OUT"
pids=()
launch() {   # name, then quantize options
  local name=$1; shift
  timeout ${GUARD_S:-420} $MATQ quantize-cnn --model $MODEL --method maqd --fold --device $dev "${extra[@]}" "$@" > $runs/$name.log 2>&1 &
  pids+=($!)
}
for b in ${BATCHES:-128 8}; do
  if [ $b = 128 ]; then ep=$E128; lim=("${lim128[@]}"); seeds="1234"; else ep=$E8; lim=(--limit-train $N8); seeds="1234 $SEEDS8"; fi
  for s in $seeds; do
    for norm in bn lbn; do launch float-$norm-b$b-s$s --float --norm $norm --batch $b --epochs $ep "${lim[@]}" --seed $s; done
  done
  pairs="3:15:255 15:15:255 3:3:255 255:255:255"; [ $b = 128 ] && pairs="$pairs 3:15:3 15:15:15"
  for p in $pairs; do
    IFS=: read -r w a e <<< "$p"
    launch maqd-$w-$a-ends$e-b$b --wstates $w --astates $a --ends-wstates $e --norm lbn --batch $b --epochs $ep "${lim[@]}"
  done
done
for p in "${pids[@]}"; do wait $p; done
{
  echo "MaQD parallel table: batch 128 × $E128 epochs on $N128 images; batch 8 × $E8 epoch(s) on $N8 images; device $dev"
  for f in $runs/*.log; do echo "== $(basename $f .log)"; grep -aE "test accuracy" $f | tail -1; done
} > "$OUT/maqd-parallel.log"

# The table: one row per configuration, one column per batch size (folded test accuracy; float rows at B=8 as the
# mean of their seeds with the seeds listed), Δ against float+BN of the same column.
acc() { grep -aoE "folded [0-9.]+ %" "$runs/$1.log" 2>/dev/null | tail -1 | grep -oE "[0-9.]+"; }
row() {   # label, run-name prefix (…-b$b-s<seed> for float rows, …-b$b for MaQD rows)
  local label=$1 base=$2 line="| $1 |"
  for b in ${BATCHES:-128 8}; do
    local vals=() f
    for f in $runs/$base-b$b.log $runs/$base-b$b-s*.log; do [ -f "$f" ] && v=$(acc "$(basename "$f" .log)") && [ -n "$v" ] && vals+=("$v"); done
    if [ ${#vals[@]} = 0 ]; then line="$line … | … |"; continue; fi
    local mean; mean=$(printf '%s\n' "${vals[@]}" | awk '{s+=$1} END {printf "%.2f", s/NR}')
    local cell="$mean %"; [ ${#vals[@]} -gt 1 ] && cell="$mean % ($(IFS=/; echo "${vals[*]}"))"
    local ref; ref=$(for f in $runs/float-bn-b$b-s*.log; do acc "$(basename "$f" .log)"; done | awk '{s+=$1} END {if (NR) printf "%.2f", s/NR}')
    local d="-"; [ "$base" != float-bn ] && [ -n "$ref" ] && d=$(awk -v a=$mean -v r=$ref 'BEGIN {printf "%+.2f", a-r}')
    line="$line $cell | $d |"
  done
  echo "$line"
}
{
  echo "# MaQD on Fashion-MNIST: float vs fully quantized, BN vs LBN"
  echo
  echo "Device $dev, one process per run (scripts/gpu/maqd-parallel.sh). Architecture of \`$MODEL\`, trained from scratch per row;"
  echo "same recipe for every row (SGD nesterov, lr 0.1·min(1, sqrt(B/128)), warm-up min(100, 10 %), cosine, weight decay 5e-4, gradient norm"
  echo "clipped at 2·sqrt(128/B), augmentation shift ±2 px + flip, LBN frozen at recomputed estimates for the last 20 % of steps). Accuracy ="
  echo "folded eval-mode net on the test images; seed 1234, float rows at B=8 averaged over seeds 1234 $SEEDS8 (each listed)."
  echo "MaQD (N, M): N weight states, M activation states; \"first/last 255\" keeps the first conv and the classifier at 255 states."
  echo
  h="| run |"; sep="|---|"
  for b in ${BATCHES:-128 8}; do
    if [ $b = 128 ]; then h="$h B=128 ($E128 ep × $N128 images) |"; else h="$h B=8 ($E8 ep × $N8 images) |"; fi
    h="$h Δ vs float+BN |"; sep="$sep---:|---:|"
  done
  echo "$h"; echo "$sep"
  row "float + BN" float-bn
  row "float + LBN" float-lbn
  row "MaQD (3, 15) + LBN, first/last 255" maqd-3-15-ends255
  row "MaQD (15, 15) + LBN, first/last 255" maqd-15-15-ends255
  row "MaQD (3, 3) + LBN, first/last 255" maqd-3-3-ends255
  row "MaQD (255, 255) + LBN" maqd-255-255-ends255
  row "MaQD (3, 15) + LBN, all layers" maqd-3-15-ends3
  row "MaQD (15, 15) + LBN, all layers" maqd-15-15-ends15
  echo
  echo "Training seconds per run (processes shared the GPU):"
  echo
  for f in $runs/*.log; do echo "- $(basename $f .log): $(grep -aoE '\(([0-9.]+) s\)' $f | tail -1)"; done
} > "$OUT/maqd-fashion-mnist.md"
tar -C /tmp -czf "$OUT/maqd-runs.tgz" maqd-runs
cat "$OUT/maqd-parallel.log" "$OUT/maqd-fashion-mnist.md"
