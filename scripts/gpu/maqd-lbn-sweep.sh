#!/usr/bin/env bash
# BN vs LBN at batch 8 on a held-out split (the last HOLDOUT training images; the test set is not looked at): float
# nets, one process per setting, all at once on the one GPU (~200 optimizer steps/s shared; 8 × 6,750 steps ≈ 280 s).
# Settings: learning rate (default 0.025 at B=8), LBN's frozen tail fraction. Writes $OUT/maqd-lbn-sweep.log.
# SET=batch2: instead, the test set at batch 2 (15,000 images = 7,500 steps, seeds 1234 and 7, BN and LBN) and LBN with
# --freeze-lbn 0.4 at batch 8 (all 60,000 images, both seeds): where BN's batch statistics run short.
# SET=b8long: the test set at batch 8 for EPOCHS (default 2) epochs of all 60,000 images: BN and LBN with seeds 1234
# and 7, and MaQD (15,15) + LBN (first conv and classifier at 255 states) for EPOCHS_MAQD (default EPOCHS) epochs.
# SET=b8table: the B=8 table at EPOCHS epochs (seed SEED, default 1234): float BN and LBN, MaQD + LBN (first/last
# 255) at the weight:activation state pairs of PAIRS (default "3:15 3:3 255:255").
# Measured on the H100, 5 processes at once: ~13–16 ms per step for a float net, ~22 ms for the MaQD net (2 epochs:
# 200–240 s and 330 s).
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
MODEL=${MODEL:-models/cnn}; HOLD=${HOLDOUT:-6000}; mkdir -p "$OUT"
runs=/tmp/maqd-sweep; rm -rf $runs; mkdir -p $runs
pids=()
EP=1; [ "${SET:-lr}" = b8long ] || [ "${SET:-lr}" = b8table ] && EP=${EPOCHS:-2}
launch() { local name=$1; shift   # float nets unless the options name weight states
  local float=(--float); [[ " $* " == *" --wstates "* ]] && float=()
  timeout ${GUARD_S:-520} $MATQ quantize-cnn --model $MODEL --method maqd "${float[@]}" --fold --device cuda --threads 1 --epochs ${EPX:-$EP} "$@" > $runs/$name.log 2>&1 &
  pids+=($!); }
if [ "${SET:-lr}" = b8long ]; then
  for s in 1234 7; do
    for n in bn lbn; do launch $n-b8-ep$EP-s$s --norm $n --batch 8 --seed $s; done
  done
  EPQ=${EPOCHS_MAQD:-$EP}
  EPX=$EPQ launch maqd-15-15-b8-ep$EPQ --norm lbn --batch 8 --wstates 15 --astates 15 --ends-wstates 255
  for p in "${pids[@]}"; do wait $p; done
  for f in $runs/*.log; do echo "$(basename $f .log): $(grep -aE "accuracy" $f | tail -1)"; done > "$OUT/maqd-lbn-b8-long.log"
  cat "$OUT/maqd-lbn-b8-long.log"; exit 0
fi
if [ "${SET:-lr}" = b8table ]; then
  sd=${SEED:-1234}
  for n in bn lbn; do launch $n-b8-ep$EP-s$sd --norm $n --batch 8 --seed $sd; done
  for p in ${PAIRS:-3:15 3:3 255:255}; do
    IFS=: read -r w a <<< "$p"
    launch maqd-$w-$a-b8-ep$EP-s$sd --norm lbn --batch 8 --wstates $w --astates $a --ends-wstates 255 --seed $sd
  done
  for p in "${pids[@]}"; do wait $p; done
  for f in $runs/*.log; do echo "$(basename $f .log): $(grep -aE "accuracy" $f | tail -1)"; done > "$OUT/maqd-b8-table.log"
  cat "$OUT/maqd-b8-table.log"; exit 0
fi
if [ "${SET:-lr}" = batch2 ]; then
  for s in 1234 7; do
    for n in bn lbn; do launch $n-b2-s$s --norm $n --batch 2 --limit-train 15000 --seed $s; done
    launch lbn-freeze0.4-b8-s$s --norm lbn --batch 8 --freeze-lbn 0.4 --seed $s
  done
  for p in "${pids[@]}"; do wait $p; done
  for f in $runs/*.log; do echo "$(basename $f .log): $(grep -aE "accuracy" $f | tail -1)"; done > "$OUT/maqd-lbn-batch2.log"
  cat "$OUT/maqd-lbn-batch2.log"; exit 0
fi
set -- --batch 8 --holdout $HOLD
launch bn-lr0.025 --norm bn "$@"
launch bn-lr0.05 --norm bn --lr 0.05 "$@"
launch lbn-lr0.025 --norm lbn "$@"
launch lbn-lr0.05 --norm lbn --lr 0.05 "$@"
launch lbn-lr0.0125 --norm lbn --lr 0.0125 "$@"
launch lbn-lr0.1 --norm lbn --lr 0.1 "$@"
launch lbn-freeze0 --norm lbn --freeze-lbn 0 "$@"
launch lbn-freeze0.4 --norm lbn --freeze-lbn 0.4 "$@"
for p in "${pids[@]}"; do wait $p; done
for f in $runs/*.log; do echo "$(basename $f .log): $(grep -aE "accuracy" $f | tail -1)"; done > "$OUT/maqd-lbn-sweep.log"
cat "$OUT/maqd-lbn-sweep.log"
