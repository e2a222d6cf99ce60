#!/usr/bin/env bash
# Packed CPU runtime benchmarks on the GPU host's CPU (a CPU benchmark; the GPU is not used):
#   1. `matq bench kernels` with all threads: every SIMD integer path (--paths simd: AVX-512, AVX-VNNI, AVX2 where the CPU
#      has them) on 4096x4096, 16384x16384 and 32768x32768 (int4 = 576 MiB, larger than any LLC), fp32 and torch.mv
#      baselines, GB/s and % of the bandwidth measured in the same run; then 1 thread, auto paths, two shapes;
#   2. an RTN int8 artifact of models/small (or a shape-identical stand-in), then `matq bench generate` (prefill/decode
#      tok/s per r = 8, 4, 3, 2, int8 activations, head int8 and int4 in the same run) with all threads, 4 and 1 thread;
#      one all-thread run with fp32 activations and an fp32 head; one greedy `matq generate` per r = 4, 2.
# Needs: MATQ (the published Matq.Cli binary), OUT (results folder); MATQ_TORCH_LIB for the torch.mv baseline (skipped
# without it); MATQ_DATA for the stand-in model. QUICK=1: tiny shapes and token counts, for a local check (minutes on
# 2 cores). Writes under $OUT: kernels-all.log, kernels-1t.log, generate-all.log, generate-4t.log, generate-1t.log,
# generate-all-fp32.log, generate-sample.log, quantize.log, README.md (what ran, with the tables).
set -euo pipefail
: "${MATQ:?set MATQ to the published Matq.Cli binary}"
: "${OUT:?set OUT to the results folder}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$OUT"
start=$SECONDS
cores=$(nproc)

if [[ "${QUICK:-0}" == 1 ]]; then
  shapes="1024x1024,2048x4096"; shapes1="1024x1024"; seconds=0.2; prompt=32; decode=16; repeats=1
else
  shapes="4096x4096,16384x16384,32768x32768"; shapes1="4096x4096,16384x16384"; seconds=0.5; prompt=128; decode=64; repeats=5
fi
torch_flag=()
[[ -n "${MATQ_TORCH_LIB:-}" ]] || torch_flag=(--no-torch)

echo "== bench kernels, $cores threads, every SIMD path"
"$MATQ" bench kernels --threads "$cores" --shapes "$shapes" --seconds "$seconds" --paths simd ${torch_flag[@]+"${torch_flag[@]}"} 2>&1 | tee "$OUT/kernels-all.log"
echo "== bench kernels, 1 thread, auto paths"
"$MATQ" bench kernels --threads 1 --shapes "$shapes1" --seconds "$seconds" ${torch_flag[@]+"${torch_flag[@]}"} 2>&1 | tee "$OUT/kernels-1t.log"

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

gen() {  # threads, log name, extra args
  local t=$1 name=$2; shift 2
  echo "== bench generate, $t thread(s) $*"
  "$MATQ" bench generate --model "$art" --bits 8,4,3,2 --threads "$t" --prompt-tokens "$prompt" --decode-tokens "$decode" \
    --repeats "$repeats" "$@" 2>&1 | tee "$OUT/$name.log"
}
# optional runs are skipped (and say so) past 6 minutes, so the script stays under the 8-minute budget
budget() { if (( SECONDS - start > 360 )); then echo "skipped: $1 (past 6 minutes)" | tee -a "$OUT/$1.log"; return 1; fi; }
gen "$cores" generate-all --activations int8 --head 8,4
gen 1 generate-1t --activations int8 --head 8,4
if budget generate-4t; then gen 4 generate-4t --activations int8 --head 8,4; fi
if budget generate-all-fp32; then gen "$cores" generate-all-fp32 --activations fp32 --head fp32; fi

echo "== generate (packed engine, r = 4 and 2, greedy)"
: > "$OUT/generate-sample.log"
for r in 4 2; do
  budget generate-sample || break
  "$MATQ" generate --model "$art" --bits "$r" --prompt "Fellow citizens of the Senate and House of Representatives:" \
    --temperature 0 --max-tokens 48 --threads "$cores" 2>&1 | tee -a "$OUT/generate-sample.log"
done
rm -f "$art"; rm -rf "${art%.matq}.tokenizer"

{
  echo "# Packed CPU runtime on $(hostname) ($cores cores)"
  echo
  echo "Script: scripts/gpu/bench-runtime.sh (QUICK=${QUICK:-0}), $(( SECONDS - start )) s. CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "CPU flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_int8)$' | tr '\n' ' ')"
  for f in kernels-all kernels-1t generate-all generate-4t generate-1t generate-all-fp32 generate-sample; do
    echo; echo "## $f"; echo; echo '```'; cat "$OUT/$f.log"; echo '```'
  done
} > "$OUT/README.md"
echo "done in $(( SECONDS - start )) s; results in $OUT"
