#!/usr/bin/env bash
# GPU machine, one call: `matq bench scale` runs for issue 19, each under its own time cap and all within DEADLINE
# seconds (default 570) of the start. STEPS picks them (default "8b-l4 8b-l4-exp 1b-rtn 1b-gptq 1b-athena"):
#   8b-l4       Llama-3.1-8B shape, first 4 blocks, GPTQ 4-bit g128, 128×512 calibration tokens: per-block phase times,
#               host RSS and GPU memory (the trace lines), default CUDA caching allocator
#   8b-l4-exp   the same with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (fragmentation of the caching allocator)
#   8b          all 32 blocks (as scripts/gpu/scale-8b.sh)
#   8b-q        all 32 blocks with --embedding-bits 4 --include-head (no float vocabulary table), and the eval stage
#   8b-qn       the same without the eval stage
#   8b-serve    after 8b-q/8b-qn in the same call: standalone `matq eval`, `generate` (r in SERVE_BITS, default 4 2) and `serve` (r = 4, one
#               completion) of that artifact on the CPU runtime, each under /usr/bin/time -v (serve: the server's VmHWM)
#   1b-M        Llama-3.2-1B shape, all 16 blocks, method M (rtn, gptq, athena, omniquant, matquant-omniquant, matquant-athena)
# Needs .carry/matq.tar.xz (scripts/publish-gpu.sh) in the tree; writes <step>.log and .md into $OUT/scale-session.tgz,
# re-packed after every step. Keep DEADLINE below the call's limit (the device budget left can make it shorter than asked).
set -uo pipefail
FINAL=${OUT:-/tmp/out}; OUT=/tmp/scale-res; rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL"
start=$(date +%s); DEADLINE=${DEADLINE:-570}
if [[ ! -x /tmp/matq/publish/Matq.Cli ]]; then mkdir -p /tmp/matq && tar -C /tmp/matq -xJf .carry/matq.tar.xz; fi
MATQ=/tmp/matq/publish/Matq.Cli
export MATQ_TORCH_LIB=${MATQ_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc >> "$OUT/gpu.txt"
step() {   # name cap command...
  local name=$1 cap=$2; shift 2
  local left=$(( DEADLINE - ($(date +%s) - start) - 5 ))
  (( left < 30 )) && { echo "$name: skipped, $left s left" | tee -a "$OUT/steps.txt"; return; }
  (( cap > left )) && cap=$left
  local t0=$(date +%s)
  /usr/bin/time -v timeout "$cap" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc $rc, $(( $(date +%s) - t0 )) s (cap $cap s)" | tee -a "$OUT/steps.txt"
  tar -C "$OUT" -czf "$FINAL/scale-session.tgz" .   # after every step: a call stopped by its time limit still returns the steps done
}
scale() {  # name cap shape method extra...
  local name=$1 cap=$2 shape=$3 method=$4; shift 4
  local m=(--method "$method")
  case $method in matquant-*) m=(--method matquant --option "base=${method#matquant-}" --bits 8,4,2) ;; *) m+=(--bits 4) ;; esac
  step "$name" "$cap" "$MATQ" bench scale --shape "$shape" "${m[@]}" --group 128 --device cuda --calib-n 128 \
    --work "/dev/shm/$shape" --out "$OUT/$name.md" "$@"
}
serve_memory() {  # the whole 8B-shape artifact, served on the CPU (host memory is what counts)
  local a; a=$(ls /dev/shm/llama-3.1-8b/*.matq 2>/dev/null | head -1)
  [[ -n $a ]] || { echo "8b-serve: no 8B artifact in /dev/shm/llama-3.1-8b (run 8b-qn first)" | tee -a "$OUT/steps.txt"; return; }
  ls -l "$a" > "$OUT/8b-serve-artifact.txt"
  for r in ${SERVE_BITS:-4 2}; do
    step "8b-eval-r$r" 120 "$MATQ" eval --model "$a" --tokenizer models/tiny --data README.md --max-tokens 256 --bits $r
    step "8b-generate-r$r" 120 "$MATQ" generate --model "$a" --tokenizer models/tiny --prompt "Fellow citizens" --max-tokens 16 --temperature 0 --bits $r
  done
  step 8b-serve-r4 150 python3 scripts/gpu/serve-hwm.py "$MATQ" "$a" 4
}
for s in ${STEPS:-8b-l4 8b-l4-exp 1b-rtn 1b-gptq 1b-athena}; do
  case $s in
    8b-l4) scale "$s" 150 llama-3.1-8b gptq --layers 4 --eval-tokens 0 ;;
    8b-l4-exp) PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True scale "$s" 150 llama-3.1-8b gptq --layers 4 --eval-tokens 0 ;;
    8b) scale "$s" 560 llama-3.1-8b gptq --eval-tokens 0 ;;
    8b-q) scale "$s" 560 llama-3.1-8b gptq --embedding-bits 4 --include-head --eval-tokens 256 ;;   # embedding and head quantized too
    8b-qn) scale "$s" 560 llama-3.1-8b gptq --embedding-bits 4 --include-head --eval-tokens 0 ;;
    8b-serve) serve_memory ;;
    1b-*) scale "$s" 590 llama-3.2-1b "${s#1b-}" --eval-tokens 512 ;;
  esac
done
rm -rf /dev/shm/llama-*
tar -C "$OUT" -czf "$FINAL/scale-session.tgz" .
cat "$OUT/steps.txt"; grep -h "s/block\|block 4/4\|calibrate" "$OUT"/*.log | tail -20
