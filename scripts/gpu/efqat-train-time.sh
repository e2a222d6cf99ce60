#!/usr/bin/env bash
# Whole-run wall time of QAT on the wide CNN (256/512/1024) on the GPU: full QAT vs EfQAT CWPL, CWPN and LWPN at 25 %
# (`matq quantize-cnn`, W2A8, one QAT epoch at batch 128 on Fashion-MNIST), each with cuDNN autotuning off and on, and
# their test accuracy. The float start is trained first (`matq train cnn --widths`, 2 epochs). Writes
# $OUT/efqat-train-time.log. Needs $MATQ, MATQ_DATA (with fashion-mnist), MATQ_TORCH_LIB. BM="off on" by default.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
log="$OUT/efqat-train-time.log"
{
  nvidia-smi --query-gpu=name --format=csv,noheader
  [ -f /tmp/cnn-wide2/model.safetensors ] || $MATQ train cnn --device cuda --widths 256,512,1024 --epochs 2 --out /tmp/cnn-wide2 | grep -E "accuracy|seconds"
  for bm in ${BM:-off on}; do
    echo "== cudnn.benchmark $bm"
    $MATQ quantize-cnn --model /tmp/cnn-wide2 --method qat --wbits 2 --device cuda --cudnn-benchmark $bm | grep -E "^│ (full|EfQAT)"
    for mode in cwpl cwpn lwpn; do
      $MATQ quantize-cnn --model /tmp/cnn-wide2 --method efqat --mode $mode --fraction 0.25 --wbits 2 --device cuda --cudnn-benchmark $bm | grep -E "^│ (full|EfQAT)"
    done
  done
} > "$log" 2>&1
