#!/usr/bin/env bash
# EfQAT backward/step timing (alone on the machine), `matq bench efqat`, configurations interleaved in each run:
#  - the CNN at three widths on CUDA (the narrow ones are launch-bound, the wide ones compute-bound), with libtorch's
#    default TF32 setting and with TF32 off (full fp32 convolutions);
#  - a small-recipe LM (random init, 1 training step: timing needs only the shapes) on CUDA at two token counts;
#  - the CNN and the LM on the CPU (all cores).
# MATQ_DATA must hold sotu and gpt2-tokenizer. Writes $OUT/bench-efqat-timing.log. QUICK=1: a CPU smoke test.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
log="$OUT/bench-efqat-timing.log"
if [ "${QUICK:-0}" = 1 ]; then
  { $MATQ train lm --preset small --steps 1 --device cpu --out /tmp/small-init > /tmp/init.log 2>&1 || tail -3 /tmp/init.log
    $MATQ bench efqat --device cpu --batch 8 --iters 2 --widths 8,16,32 --methods inject,split --fractions 1,0.25
    $MATQ bench efqat --device cpu --model /tmp/small-init --batch 1 --context 32 --iters 2 --fractions 1,0.25; } > "$log" 2>&1
  exit 0
fi
{
  nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"
  $MATQ train lm --preset small --steps 1 --device cuda --out /tmp/small-init > /tmp/init.log 2>&1 || tail -3 /tmp/init.log
  for tf in default off; do
    $MATQ bench efqat --device cuda --tf32 $tf --batch 256 --iters 20 --widths 16,32,64 --methods inject,split --fractions 1,0.25,0
    $MATQ bench efqat --device cuda --tf32 $tf --batch 256 --iters 20 --widths 64,128,256 --methods inject,split,regrad --fractions 1,0.25,0.05,0
    $MATQ bench efqat --device cuda --tf32 $tf --batch 128 --iters 15 --widths 256,512,1024 --methods inject,split --fractions 1,0.25,0
  done
  $MATQ bench efqat --device cuda --model /tmp/small-init --batch 16 --context 256 --iters 20 --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cuda --model /tmp/small-init --batch 32 --context 512 --iters 10 --fractions 1,0.25,0
  $MATQ bench efqat --device cpu --batch 64 --iters 8 --widths 64,128,256 --methods inject,split,regrad --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cpu --batch 32 --iters 6 --widths 16,32,64 --methods inject,split --fractions 1,0.25,0
  $MATQ bench efqat --device cpu --model /tmp/small-init --batch 8 --context 256 --iters 5 --fractions 1,0.25,0
} > "$log" 2>&1
