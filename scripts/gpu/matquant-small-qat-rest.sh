#!/usr/bin/env bash
# The QAT-base rows of docs/results/matquant-small.md that the first run did not reach: MatQuant {8,4,2} (re-run, for
# its Mix'n'Match curves), single-precision MatQuant {2}, extra precision at 4/3/2, and the Mix'n'Match curves — same
# budget as that run (400 steps × 16 × 256 tokens). Re-trains the small model in the call (seed 1234).
# Needs $MATQ, $OUT, MATQ_DATA (sotu, moby-dick, gpt2-tokenizer), MATQ_TORCH_LIB. QUICK=1: models/tiny on the CPU.
set -euo pipefail
: "${MATQ:?}" "${OUT:?}"
cd "$(dirname "$0")/../.."
if [[ "${QUICK:-0}" == 1 ]]; then
  model=models/tiny; run=(--device cpu --steps 20 --batch 2 --context 32 --max-tokens 2000 --budgets 3)
else
  model=/tmp/small
  "$MATQ" train lm --preset small --device cuda --seed 1234 --out "$model" > "$OUT/train-small.log" 2>&1
  run=(--device cuda --steps 400 --batch 16 --context 256 --max-tokens 0)
fi
"$MATQ" bench matquant --model "$model" --bases qat --independent none --codistill '' "${run[@]}" \
  --out "$OUT/matquant-small-qat-rest.md" --work /tmp/mq-qat 2>&1 | tee "$OUT/bench-qat-rest.log" | grep -v "^\s*at " | tail -40
