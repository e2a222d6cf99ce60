#!/usr/bin/env bash
# The MatQuant study of docs/results/matquant.md on the small recipe (one H100 + 16 cores). Every call re-trains the small
# model (matq train lm --preset small --seed 1234, ~1 min; RETRAIN_SEED overrides the float seed), then runs one STAGE,
# each sized to stay under 10 minutes:
#   STAGE=search [SEARCH_BASES="qat athena omniquant"] one seed, per base: FFN-only vs all linears × per-channel vs g128 (× frozen vs learned QAT grid),
#                             independent int8/int2 vs MatQuant {8,4,2}: the int2 headroom (independent − MatQuant at 2)
#   STAGE=rows BASE=b SETTING="LAYERS GROUP GRID"   seeds 1,2,3: independent 8/6/4/3/2, MatQuant {8,4,2} at 8/6/4/3/2,
#                             co-distill 8->2 and 8->4->2, single-precision {2}, extra precision, Mix'n'Match (mean ± sd)
#   STAGE=lambda BASE=b SETTING="..."               seeds 1,2,3: λ = (1,1,2) and (0.1,0.1,1) for MatQuant {8,4,2}
# Today's setting is SETTING="all 64 learned"; the chosen one is the search's largest headroom per base.
# PARALLEL=1 (search: every setting as its own process; rows, lambda): every seed as its own process, all at once on the one GPU (the small model leaves most of an
#   H100 idle), each writing <name>-s<seed>-run.json; `matq bench matquant-merge` then writes <name>.md as one run would.
#   SETTINGS="all 64 learned;all 0 learned" runs several settings side by side on the same float model.
#   LIMIT (seconds, default 0 = none) stops every bench process that is still running when it is reached.
#   THREADS sets each process's torch CPU threads (default: torch's choice).
# SMALL_MODEL=DIR: train into DIR once and reuse it (e.g. two stages side by side on one float model).
# Writes $OUT/<stage>-*.md (+ -tables.md, -seeds.csv, -curves.csv, plots) and logs. Needs $MATQ (published Matq.Cli), $OUT,
# MATQ_DATA (the folder that holds sotu/, moby-dick/ and gpt2-tokenizer/: e.g. .carry/data.tar.xz unpacked to /tmp/data → MATQ_DATA=/tmp/data) and MATQ_TORCH_LIB (CUDA PyTorch lib). Budgets: STEPS (200), BATCH (16), CONTEXT (256)
# for QAT; CALIB_N (64) for Athena/OmniQuant; EPOCHS (2) for OmniQuant; MAX_TOKENS (0 = the whole texts).
# QUICK=1: the same commands on models/tiny on the CPU with tiny settings (a smoke test).
set -euo pipefail
: "${MATQ:?set MATQ to the published matq binary, e.g. /tmp/m/publish/Matq.Cli}"
: "${OUT:?set OUT to the results folder}"
STAGE=${STAGE:?set STAGE to search, rows or lambda}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
STEPS=${STEPS:-200}; BATCH=${BATCH:-16}; CONTEXT=${CONTEXT:-256}; CALIB_N=${CALIB_N:-64}; EPOCHS=${EPOCHS:-2}; MAX_TOKENS=${MAX_TOKENS:-0}
if [[ "${QUICK:-0}" == 1 ]]; then
  model=models/tiny; dev=(--device cpu --threads 1); STEPS=2; BATCH=1; CONTEXT=16; CALIB_N=4; EPOCHS=1; MAX_TOKENS=1000
else
  model="${SMALL_MODEL:-$work/small}"   # SMALL_MODEL: a small model trained before (several stages on one float model)
  if [[ -f "$model/config.json" ]]; then echo "float model: $model (trained before)"
  else
    start=$(date +%s)
    "$MATQ" train lm --preset small --device cuda --seed "${RETRAIN_SEED:-1234}" --out "$model" > "$OUT/train-small.log" 2>&1
    echo "trained $model in $(( $(date +%s) - start )) s"; tail -n 3 "$OUT/train-small.log"
  fi
  dev=(--device cuda)
  [[ -n "${THREADS:-}" ]] && dev+=(--threads "$THREADS")
fi
LIMIT=${LIMIT:-0}; t0=$(date +%s)
budget() {
  case $1 in
    athena) echo "--calib-n $CALIB_N" ;;
    omniquant) echo "--epochs $EPOCHS --calib-n $CALIB_N --lwc-batch 4 --lwc-lr 0.05" ;;
    qat) echo "--steps $STEPS --batch $BATCH --context $CONTEXT" ;;
  esac
}
bench() {   # name base layers group grid extra...
  local name=$1 b=$2 layers=$3 group=$4 grid=$5; shift 5
  local start=$(date +%s) cap=()
  (( LIMIT > 0 )) && cap=(timeout $(( LIMIT - (start - t0) )))
  "${cap[@]}" "$MATQ" bench matquant --model "$model" "${dev[@]}" --max-tokens "$MAX_TOKENS" --bases "$b" $(budget "$b") \
    --layers "$layers" --group "$group" --grid "$grid" "$@" --work "$work/$name" --out "$OUT/$name.md" > "$OUT/$name.log" 2>&1
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$OUT/$name.log"
}
case $STAGE in
  search)
    for b in ${SEARCH_BASES:-qat athena omniquant}; do for layers in ffn all; do for group in 0 128; do
      grids=(learned); [[ $b == qat ]] && grids=(learned minmax)
      for grid in "${grids[@]}"; do
        if [[ "${PARALLEL:-0}" == 1 ]]; then
          bench "search-$b-$layers-g$group-$grid" "$b" "$layers" "$group" "$grid" --seed 1 --independent 8,2 --budgets none --codistill '' &
        else bench "search-$b-$layers-g$group-$grid" "$b" "$layers" "$group" "$grid" --seed 1 --independent 8,2 --budgets none --codistill ''; fi
      done
    done; done; done
    wait ;;
  rows|lambda) if [[ "${PARALLEL:-0}" == 1 ]]; then
    : "${BASE:?set BASE}"
    IFS=';' read -ra settings <<< "${SETTINGS:-${SETTING:-all 64 learned}}"
    for setting in "${settings[@]}"; do
      read -r layers group grid <<< "$setting"
      name="$STAGE-$BASE-$layers-g$group-$grid"
      if [[ $STAGE == rows ]]; then args=(--budgets 2.5,3,4,5 --codistill '8->2;8->4,4->2')
      else args=(--independent 8,4,2 --budgets none --codistill '' --lambdas '1,1,2;0.1,0.1,1'); fi
      for seed in 1 2 3; do bench "$name-s$seed" "$BASE" "$layers" "$group" "$grid" --seeds "$seed" "${args[@]}" & done
    done
    wait
    for setting in "${settings[@]}"; do
      read -r layers group grid <<< "$setting"
      name="$STAGE-$BASE-$layers-g$group-$grid"
      # a process stopped by LIMIT leaves its finished rows in its run file (none if stopped in its first run)
      files=$(ls "$OUT/$name"-s[123]-run.json 2>/dev/null | paste -sd, -)
      "$MATQ" bench matquant-merge --runs "$files" --out "$OUT/$name.md" > "$OUT/$name-merge.log" 2>&1 \
        && echo "merged $name ($files)" || { echo "merge of $name failed:"; tail -n 2 "$OUT/$name-merge.log"; }
    done
    exit 0
  fi ;;&
  rows)
    : "${BASE:?set BASE}"; read -r layers group grid <<< "${SETTING:-all 64 learned}"
    bench "rows-$BASE-$layers-g$group-$grid" "$BASE" "$layers" "$group" "$grid" --seeds 1,2,3 --budgets 2.5,3,4,5 --codistill '8->2;8->4,4->2' ;;
  lambda)
    : "${BASE:?set BASE}"; read -r layers group grid <<< "${SETTING:-all 64 learned}"
    bench "lambda-$BASE-$layers-g$group-$grid" "$BASE" "$layers" "$group" "$grid" --seeds 1,2,3 --independent 8,4,2 --budgets none --codistill '' \
      --lambdas '1,1,2;0.1,0.1,1' ;;
  *) echo "STAGE '$STAGE' is not search, rows or lambda" >&2; exit 2 ;;
esac
