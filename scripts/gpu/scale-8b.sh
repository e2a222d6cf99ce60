#!/usr/bin/env bash
# GPU machine, one call: `matq bench scale` on a Llama-3.1-8B-shaped checkpoint (its real config.json in the 4.x Hub form,
# rope type llama3; random bf16 weights written in 5 GB shards to /dev/shm), GPTQ 4-bit g128 on CUDA, block-streamed:
# wall time, peak host RSS and peak GPU memory per stage and the artifact size, to $OUT/scale-8b-gptq.md and its log.
# Needs the published matq unpacked at $MATQ (default /tmp/matq/publish/Matq.Cli) and MATQ_TORCH_LIB.
set -uo pipefail
MATQ=${MATQ:-/tmp/matq/publish/Matq.Cli}
OUT=${OUT:-/tmp}
export MATQ_TORCH_LIB=${MATQ_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/scale-8b.log"
"$MATQ" bench scale --shape llama-3.1-8b --method "${METHOD:-gptq}" --bits 4 --group 128 --device cuda --work /dev/shm/scale-8b \
  --calib-n "${CALIB_N:-128}" --out "$OUT/scale-8b-${METHOD:-gptq}.md" 2>&1 | tee -a "$OUT/scale-8b.log"
ls -la /dev/shm/scale-8b | tee -a "$OUT/scale-8b.log"
