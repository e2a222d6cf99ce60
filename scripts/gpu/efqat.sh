#!/usr/bin/env bash
# EfQAT figures on the GPU machine: backward/step timing (CUDA, then CPU with 16 threads) with GPU memory polled,
# then the small LM re-trained in place and the LM EfQAT perplexity table at W4 and W3 (two processes side by side).
# Needs: $MATQ (binary), MATQ_DATA, MATQ_TORCH_LIB, $OUT. QUICK=1: tiny CPU settings for a local check.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
dev=cuda; [ "${QUICK:-0}" = 1 ] && dev=cpu
poll() { while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; sleep 1; done; }
if [ "$dev" = cuda ]; then poll > "$OUT/gpu-mem.log" & POLL=$!; fi
if [ "${QUICK:-0}" = 1 ]; then
  $MATQ bench efqat --device cpu --batch 16 --iters 2 --fractions 1,0.25 2>&1 | tee "$OUT/bench-efqat-quick.log"
  exit 0
fi
$MATQ bench efqat --device cuda --batch 256 --iters 20 --widths 16,32,64 2>&1 | tee "$OUT/bench-efqat-cuda-16-32-64.log"
$MATQ bench efqat --device cuda --batch 256 --iters 20 --widths 64,128,256 2>&1 | tee "$OUT/bench-efqat-cuda-64-128-256.log"
[ -n "${POLL:-}" ] && kill $POLL
sort -n "$OUT/gpu-mem.log" | tail -1 > "$OUT/gpu-mem-peak.txt"
$MATQ bench efqat --device cpu --batch 64 --iters 10 --widths 16,32,64 2>&1 | tee "$OUT/bench-efqat-cpu16.log"
$MATQ train lm --preset small --device cuda --out /tmp/small 2>&1 | tail -3 > "$OUT/train-small.log"
for b in 4 3; do
  $MATQ bench efqat-lm --model /tmp/small --device cuda --bits $b --steps 200 --batch 8 --context 128 --max-tokens 50000 \
    --out "$OUT/efqat-lm-small-w$b.md" --work /tmp/ef$b > "$OUT/efqat-lm-w$b.log" 2>&1 &
done
wait
