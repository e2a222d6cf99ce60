#!/usr/bin/env bash
# Packed CPU runtime benchmarks on the GPU host's CPU (a CPU benchmark; the GPU is not used):
#   1. `matq bench kernels` (packed GEMV GB/s vs measured memory bandwidth and fp32/torch.mv) with 16 threads and 1 thread,
#   2. an RTN int8 artifact of models/small, then `matq bench generate` (prefill/decode tok/s, resident bytes, RSS per r)
#      with 16 threads and 1 thread, int8 head; plus one 16-thread run with an fp32 head and one greedy `matq generate`.
# Needs: MATQ (the published Matq.Cli binary), OUT (results folder); MATQ_TORCH_LIB for the torch.mv baseline (skipped
# without it). QUICK=1: tiny shapes and token counts, for a local check of the script (minutes on 2 cores).
# Writes under $OUT: kernels-16t.log, kernels-1t.log, generate-16t.log, generate-1t.log, generate-16t-headfp32.log,
# generate-sample.log, quantize.log, README.md (what ran, with the tables).
set -euo pipefail
: "${MATQ:?set MATQ to the published Matq.Cli binary}"
: "${OUT:?set OUT to the results folder}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$OUT"
start=$SECONDS

if [[ "${QUICK:-0}" == 1 ]]; then
  shapes="1024x1024,2048x2048"; seconds=0.2; prompt=32; decode=16; repeats=1
else
  shapes="4096x4096,4096x11008,16384x16384"; seconds=1; prompt=128; decode=64; repeats=5
fi
torch_flag=()
[[ -n "${MATQ_TORCH_LIB:-}" ]] || torch_flag=(--no-torch)

for t in 16 1; do
  echo "== bench kernels, $t thread(s)"
  "$MATQ" bench kernels --threads "$t" --shapes "$shapes" --seconds "$seconds" ${torch_flag[@]+"${torch_flag[@]}"} 2>&1 | tee "$OUT/kernels-${t}t.log"
done

art=/tmp/small8.matq
small="$repo/models/small"
if [[ ! -f "$small/config.json" ]]; then
  # models/small cannot travel with the binary (transfer limit): a shape-identical small model (1 training step on
  # SOTU) stands in; speed depends on the shapes only. Needs MATQ_DATA with sotu and gpt2-tokenizer.
  small=/tmp/small-shape
  echo "== models/small not here: training a shape-identical stand-in (1 step)"
  "$MATQ" train lm --preset small --steps 1 --device cpu --out "$small" > "$OUT/train-stand-in.log" 2>&1
fi
echo "== quantize $small (RTN int8, group 128)"
"$MATQ" quantize --model "$small" --method rtn --bits 8 --group 128 --device cpu --out "$art" 2>&1 | tail -3 | tee "$OUT/quantize.log"

for t in 16 1; do
  echo "== bench generate, $t thread(s)"
  "$MATQ" bench generate --model "$art" --bits 8,4,3,2 --threads "$t" --prompt-tokens "$prompt" --decode-tokens "$decode" \
    --repeats "$repeats" 2>&1 | tee "$OUT/generate-${t}t.log"
done
echo "== bench generate, 16 threads, fp32 head"
"$MATQ" bench generate --model "$art" --bits 8,4,3,2 --threads 16 --head fp32 --prompt-tokens "$prompt" --decode-tokens "$decode" \
  --repeats "$repeats" 2>&1 | tee "$OUT/generate-16t-headfp32.log"

echo "== generate (packed engine, r = 4 and 2, greedy)"
for r in 4 2; do
  "$MATQ" generate --model "$art" --bits "$r" --prompt "Fellow citizens of the Senate and House of Representatives:" \
    --temperature 0 --max-tokens 48 --threads 16 2>&1 | tee -a "$OUT/generate-sample.log"
done
rm -f "$art"; rm -rf "$OUT/small8.tokenizer"

{
  echo "# Packed CPU runtime on $(hostname) ($(nproc) cores)"
  echo
  echo "Script: scripts/gpu/bench-runtime.sh (QUICK=${QUICK:-0}), $(( SECONDS - start )) s. CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  for f in kernels-16t kernels-1t generate-16t generate-1t generate-16t-headfp32 generate-sample; do
    echo; echo "## $f"; echo; echo '```'; cat "$OUT/$f.log"; echo '```'
  done
} > "$OUT/README.md"
echo "done in $(( SECONDS - start )) s; results in $OUT"
