#!/usr/bin/env bash
# Issue 23's measurements on a machine with several GPUs (nvidia-h100-x2/x4 or h200-x2/x4), one call: for N in GPUS
# (default "1 2", or "1 2 4"), the same commands with --gpus N, so every ratio is measured on one machine in one call:
#   1. NCCL: `matq device --device cuda` (one rank) on the first GPU;
#   2. data-parallel QAT step: `matq train lm --preset small --steps STEPS` (ms/step and tokens/s of the global batch,
#      validation loss at the end: the loss curve against N = 1);
#   3. data-parallel MatQuant-QAT: `quantize --method matquant --base qat --bits 8,4,2` of that small model (seconds);
#   4. layer-parallel GPTQ: `bench scale --shape llama-3.2-1b --method gptq` is single-GPU by design, so the 1B-shape
#      checkpoint it writes is quantized again with `quantize --method gptq --bits 4 --group 128 --gpus N` (seconds; the
#      artifacts' tensors compared byte for byte against N = 1).
# Needs .carry/matq.tar.xz (scripts/publish-gpu.sh) and .carry/data.tar.xz in the tree; writes $OUT/multi-gpu.tgz.
set -uo pipefail
FINAL=${OUT:-/tmp/out}; OUT=/tmp/mg-res; rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL"
mkdir -p /tmp/matq /tmp/data && { [[ -x /tmp/matq/publish/Matq.Cli ]] || tar -C /tmp/matq -xJf .carry/matq.tar.xz; }
[[ -d /tmp/data/sotu ]] || tar -C /tmp/data -xJf .carry/data.tar.xz
export MATQ_DATA=/tmp/data MATQ_TORCH_LIB=${MATQ_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
MATQ=/tmp/matq/publish/Matq.Cli; STEPS=${STEPS:-300}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
pack() { tar -C "$OUT" -czf "$FINAL/multi-gpu.tgz" .; }
run() { local name=$1; shift; local t0=$(date +%s); "$@" > "$OUT/$name.log" 2>&1; echo "$name: rc $?, $(( $(date +%s) - t0 )) s" | tee -a "$OUT/steps.txt"; pack; }
run device "$MATQ" device --device cuda
for n in ${GPUS:-1 2}; do
  run "train-small-g$n" "$MATQ" train lm --preset small --device cuda --steps "$STEPS" --eval-every 50 --gpus "$n" --force --out "/tmp/small-g$n"
done
for n in ${GPUS:-1 2}; do
  run "mq-qat-g$n" "$MATQ" quantize --model /tmp/small-g1 --method matquant --base qat --bits 8,4,2 --device cuda --calib-n 128 --calib-len 256 \
    --option steps=200 --option batch=16 --gpus "$n" --out "/tmp/mq-qat-g$n.matq"
done
run scale-1b "$MATQ" bench scale --shape llama-3.2-1b --method rtn --bits 4 --device cuda --work /dev/shm/mg --out "$OUT/scale-1b.md" --eval-tokens 0
ckpt=/dev/shm/mg/checkpoint   # bench scale writes its synthetic checkpoint there
for n in ${GPUS:-1 2}; do
  run "gptq-1b-g$n" "$MATQ" quantize --model "$ckpt" --tokenizer models/tiny --method gptq --bits 4 --group 128 --device cuda --calib-n 128 --gpus "$n" --out "/dev/shm/mg/gptq-g$n.matq"
done
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, struct, sys, glob, re, os
out = sys.argv[1]
for f in sorted(glob.glob(f"{out}/*.log")):
    text = open(f, errors="replace").read()
    for pat in (r"throughput: [^\n]*", r"validation loss / ppl / bits per byte[^\n]*", r"\d+ layers, mean weight MSE[^\n]*"):
        for m in re.findall(pat, text)[-1:]: print(os.path.basename(f), "|", m.strip())
def tensors(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
arts = sorted(glob.glob("/dev/shm/mg/gptq-g*.matq"))
if len(arts) > 1:
    a = tensors(arts[0])
    for p in arts[1:]:
        b = tensors(p); print(os.path.basename(p), "tensors identical to", os.path.basename(arts[0]), ":", a.keys() == b.keys() and all(a[k] == b[k] for k in a))
PY
pack
