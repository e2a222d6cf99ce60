#!/usr/bin/env bash
# The 3-seed MatQuant study on models/tiny, CPU (docs/results/matquant.md), after the one-seed setting search
# (scripts/matquant-study-search.sh). Per base, two settings: "today" (all linears, g64, learned QAT grid) and the
# chosen one (CHOSEN_<BASE>="LAYERS GROUP GRID", the search's most int2 headroom); rows in both, λ sweep in the chosen.
# Two processes at a time, one torch thread each.
set -uo pipefail
MATQ=${MATQ:-matq}
SEEDS=${SEEDS:-1,2,3}
LOGS=docs/results/logs/matquant-study
OUT=docs/results/matquant-study
mkdir -p "$LOGS" "$OUT" out/study
# chosen from the search logs (docs/results/matquant.md, "Setting search")
CHOSEN_athena=${CHOSEN_athena:-"ffn 128 learned"}
CHOSEN_omniquant=${CHOSEN_omniquant:-"all 0 learned"}
CHOSEN_qat=${CHOSEN_qat:-"all 0 learned"}
budget() {   # the per-base budgets (same in every setting)
  case $1 in
    athena) echo "--calib-n 16" ;;
    omniquant) echo "--epochs 1 --calib-n 16 --lwc-batch 4 --lwc-lr 0.05" ;;
    qat) echo "--steps 30 --batch 4 --context 128" ;;
  esac
}
one() {   # name base layers group grid extra...
  local name=$1 b=$2 layers=$3 group=$4 grid=$5; shift 5
  $MATQ bench matquant --model models/tiny --device cpu --threads 1 --seeds "$SEEDS" --max-tokens 2000 \
    --bases "$b" $(budget "$b") --layers "$layers" --group "$group" --grid "$grid" "$@" \
    --work "out/study/$name" --out "$OUT/$name.md" > "$LOGS/$name.log" 2>&1 || echo "FAILED $name"
}
run() { while (( $(jobs -rp | wc -l) >= 2 )); do wait -n; done; one "$@" & }
for b in ${BASES:-omniquant athena qat}; do
  chosen=CHOSEN_$b
  [[ -f out/study/chosen-$b ]] && printf -v "$chosen" '%s' "$(cat out/study/chosen-$b)"   # a late pick (search still running at launch)
  read -r layers group grid <<< "${!chosen}"
  run "rows-$b-today" "$b" all 64 learned --budgets 2.5,3,4 --codistill "8->2;8->4,4->2"
  run "rows-$b-chosen" "$b" "$layers" "$group" "$grid" --budgets 2.5,3,4 --codistill "8->2;8->4,4->2"
done
for b in ${BASES:-omniquant athena qat}; do
  chosen=CHOSEN_$b
  [[ -f out/study/chosen-$b ]] && printf -v "$chosen" '%s' "$(cat out/study/chosen-$b)"   # a late pick (search still running at launch)
  read -r layers group grid <<< "${!chosen}"
  run "lambda-$b-chosen" "$b" "$layers" "$group" "$grid" --independent 8,4,2 --budgets none --codistill none --lambdas "1,1,2;0.1,0.1,1"
done
wait
