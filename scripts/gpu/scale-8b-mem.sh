#!/usr/bin/env bash
# Device machine, one call: the 8B shape's first 2 blocks through `matq bench scale` on the CPU (host memory is what is
# measured), RTN then GPTQ, each under /usr/bin/time -v with VmRSS sampled every 0.2 s, logs to $OUT. Needs the
# published matq (.carry/matq.tar.xz from scripts/publish-gpu.sh) and a PyTorch whose lib/ provides libtorch.
set -uo pipefail
OUT=${OUT:-/tmp}
mkdir -p /tmp/m && tar -C /tmp/m -xJf .carry/matq.tar.xz
export MATQ_TORCH_LIB=${MATQ_TORCH_LIB:-$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")' 2>/dev/null)}
M=/tmp/m/publish/Matq.Cli
nproc; free -g | head -2
sample() {   # sample OUTFILE CMD...: runs CMD, VmRSS/RssAnon every 0.2 s
  local out=$1; shift
  "$@" & local pid=$!
  while kill -0 $pid 2>/dev/null; do
    grep -E "VmRSS|RssAnon" /proc/$pid/status 2>/dev/null | awk -v t="$(date +%s.%N)" '{printf "%s %s %d ", t, $1, $2/1024} END {print ""}' >> "$out"
    sleep 0.2
  done
  wait $pid
}
for method in ${METHODS:-rtn gptq}; do
  threads=1; [ "$method" = gptq ] && threads=${GPTQ_THREADS:-8}
  /usr/bin/time -v bash -c "$(declare -f sample); sample $OUT/trace-$method.txt $M bench scale --shape llama-3.1-8b --layers 2 --method $method --bits 4 --group 128 --device cpu --threads $threads --eval-tokens 0 --work /dev/shm/s8 --out $OUT/scale-8b-2layers-$method-cpu.md" > "$OUT/scale-8b-2layers-$method-cpu.log" 2>&1
  echo "$method rc=$?"; grep -E "peak host RSS|Maximum resident|block " "$OUT/scale-8b-2layers-$method-cpu.log"
  sort -k3 -n "$OUT/trace-$method.txt" | tail -1
done
