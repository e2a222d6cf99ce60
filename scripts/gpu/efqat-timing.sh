#!/usr/bin/env bash
# EfQAT backward/step timing only (alone on the machine): the CNN at two widths and a small-recipe LM (random init,
# 1 training step: timing needs the shapes), CUDA, then the LM on the CPU (16 threads). MATQ_DATA must hold sotu and
# gpt2-tokenizer. Writes $OUT/bench-efqat-timing.log.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
dev=cuda; [ "${QUICK:-0}" = 1 ] && dev=cpu
{
  $MATQ train lm --preset small --steps 1 --device $dev --out /tmp/small-init > /tmp/init.log 2>&1 || tail -3 /tmp/init.log
  $MATQ bench efqat --device $dev --batch 256 --iters 20 --widths 16,32,64 --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device $dev --batch 256 --iters 20 --widths 64,128,256 --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device $dev --model /tmp/small-init --batch 16 --context 256 --iters 20 --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cpu --model /tmp/small-init --batch 4 --context 128 --iters 6 --fractions 1,0.25,0
} > "$OUT/bench-efqat-timing.log" 2>&1
