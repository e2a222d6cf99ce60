#!/usr/bin/env bash
# MaQD table with longer training in one GPU call: every row is its own process, all running at once on the one GPU
# (each small-CNN run is launch-bound, so a dozen share an H100 well; 16 host cores drive them). Columns: batch 128 on
# all 60,000 images × EPOCHS_128 epochs, batch 8 on the first IMAGES_8 images × EPOCHS_8 epochs. Float rows come from
# `train cnn --norm bn|lbn`, MaQD rows from `quantize --method maqd` (LBN, folded before evaluation); same SGD recipe
# (lr 0.1·min(1, B/128)), seed and data. Writes $OUT/maqd-parallel.log (one result line per run) and the per-run logs
# tarred as $OUT/maqd-runs.tgz. QUICK=1: a CPU smoke test on a few hundred images.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
MODEL=${MODEL:-models/cnn}
E128=${EPOCHS_128:-8}; N8=${IMAGES_8:-20000}; E8=${EPOCHS_8:-1}
dev=cuda; extra=(); lim128=(); [ "${QUICK:-0}" = 1 ] && { dev=cpu; E128=1; N8=64; extra=(--limit-test 200 --threads 1); lim128=(--limit-train 256); }
runs=/tmp/maqd-runs; rm -rf $runs; mkdir -p $runs
pids=()
for b in 128 8; do
  if [ $b = 128 ]; then ep=$E128; lim=("${lim128[@]}"); lr=0.1; else ep=$E8; lim=(--limit-train $N8); lr=0.00625; fi
  for norm in bn lbn; do
    $MATQ train cnn --norm $norm --batch $b --epochs $ep --lr $lr "${lim[@]}" --device $dev --out $runs/float-$norm-b$b > $runs/float-$norm-b$b.log 2>&1 &
    pids+=($!)
  done
  for p in 3:15 15:15 3:3 255:255; do
    w=${p%:*}; a=${p#*:}
    $MATQ quantize --model $MODEL --method maqd --wstates $w --astates $a --norm lbn --fold --batch $b --epochs $ep "${lim[@]}" \
      --device $dev "${extra[@]}" > $runs/maqd-$w-$a-b$b.log 2>&1 &
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
