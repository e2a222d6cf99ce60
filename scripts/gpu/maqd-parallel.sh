#!/usr/bin/env bash
# MaQD table with longer training in one GPU call: every row is its own process, all running at once on the one GPU
# (each small-CNN run is launch-bound, so a dozen share an H100 well; 16 host cores drive them). Columns: batch 128 on
# all 60,000 images × EPOCHS_128 epochs, batch 8 on the first IMAGES_8 images × EPOCHS_8 epochs. Every row is
# `quantize --method maqd` (float rows with --float; MaQD rows on LBN with the first conv and classifier at 255 states,
# plus (3,15) with every layer ternary at batch 128), folded before evaluation; same recipe, seed and data. Writes $OUT/maqd-parallel.log (one result line per run) and the per-run logs
# tarred as $OUT/maqd-runs.tgz. QUICK=1: a CPU smoke test on a few hundred images.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
MODEL=${MODEL:-models/cnn}
E128=${EPOCHS_128:-6}; N8=${IMAGES_8:-16000}; E8=${EPOCHS_8:-1}
dev=cuda; extra=(--threads 1); lim128=(); [ "${QUICK:-0}" = 1 ] && { dev=cpu; E128=1; N8=64; extra=(--limit-test 200 --threads 1); lim128=(--limit-train 256); }
runs=/tmp/maqd-runs; rm -rf $runs; mkdir -p $runs
pids=()
for b in ${BATCHES:-128 8}; do
  if [ $b = 128 ]; then ep=$E128; lim=("${lim128[@]}"); lr=0.1; else ep=$E8; lim=(--limit-train $N8); lr=0.00625; fi
  for norm in bn lbn; do
    timeout ${GUARD_S:-500} $MATQ quantize --model $MODEL --method maqd --float --norm $norm --fold --batch $b --epochs $ep "${lim[@]}" \
      --device $dev "${extra[@]}" > $runs/float-$norm-b$b.log 2>&1 &
    pids+=($!)
  done
  pairs="3:15:255 15:15:255 3:3:255 255:255:255"; [ $b = 128 ] && pairs="$pairs 3:15:3"
  for p in $pairs; do
    IFS=: read -r w a e <<< "$p"
    timeout ${GUARD_S:-500} $MATQ quantize --model $MODEL --method maqd --wstates $w --astates $a --ends-wstates $e --norm lbn --fold --batch $b --epochs $ep "${lim[@]}" \
      --device $dev "${extra[@]}" > $runs/maqd-$w-$a-ends$e-b$b.log 2>&1 &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait $p; done
{
  echo "MaQD parallel table: batch 128 × $E128 epochs on 60,000 images; batch 8 × $E8 epoch(s) on $N8 images; device $dev"
  for f in $runs/*.log; do echo "== $(basename $f .log)"; grep -aE "test accuracy|folded|accuracy" $f | tail -3; done
} > "$OUT/maqd-parallel.log"
tar -C /tmp -czf "$OUT/maqd-runs.tgz" maqd-runs
cat "$OUT/maqd-parallel.log"
