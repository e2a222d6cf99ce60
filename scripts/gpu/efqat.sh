#!/usr/bin/env bash
# EfQAT figures on the GPU machine. Timing first, alone on the machine: backward/step time of EfQAT vs full QAT on
# the CNN (two widths) and on a small-recipe LM (random init: timing needs the shapes, not trained weights), on CUDA
# and on the CPU (16 threads); GPU memory polled. Then the Fashion-MNIST accuracy sweep (PTQ, EfQAT modes × fractions,
# full QAT at W4A8 and W2A8) on CUDA. Needs $MATQ, MATQ_DATA (with fashion-mnist), MATQ_TORCH_LIB, $OUT, models/cnn.
# QUICK=1: a few CPU steps for a local check. EPOCHS (default 2) = QAT epochs of the sweep.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
if [ "${QUICK:-0}" = 1 ]; then
  $MATQ bench efqat --device cpu --batch 16 --iters 2 --fractions 1,0.25 2>&1 | tee "$OUT/bench-efqat-quick.log"
  exit 0
fi
poll() { while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; sleep 1; done; }
poll > /tmp/gpu-mem.log & POLL=$!
$MATQ train lm --preset small --steps 1 --device cuda --out /tmp/small-init > /tmp/init.log 2>&1
{
  $MATQ bench efqat --device cuda --batch 256 --iters 20 --widths 16,32,64 --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cuda --batch 256 --iters 20 --widths 64,128,256 --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cuda --model /tmp/small-init --batch 16 --context 256 --iters 20 --fractions 1,0.25,0.05,0
  echo "GPU memory used, peak MiB: $(sort -n /tmp/gpu-mem.log | tail -1)"
} > "$OUT/bench-efqat-cuda.log" 2>&1
kill $POLL
{
  $MATQ bench efqat --device cpu --batch 64 --iters 8 --widths 16,32,64 --fractions 1,0.25,0
  $MATQ bench efqat --device cpu --model /tmp/small-init --batch 4 --context 128 --iters 8 --fractions 1,0.25,0
} > "$OUT/bench-efqat-cpu16.log" 2>&1
$MATQ quantize-cnn --model models/cnn --sweep "$OUT/vision-efqat-sweep.md" --epochs "${EPOCHS:-2}" --device cuda > "$OUT/sweep.log" 2>&1
