#!/usr/bin/env bash
# EfQAT backward/step timing where the weight work is not swamped by element-wise work (alone on the machine),
# `matq bench efqat`, configurations interleaved in each run:
#  - the MLP (784 → hidden × 3 → 10, W4A8 LSQ) on CUDA at batch 1024 and 4096 and on the CPU (all cores);
#  - the wide CNN (256/512/1024, batch 128) on CUDA with TF32 off and default, and 64/128/256 on the CPU;
#  - with LM=1 also the small-recipe LM (random init; MATQ_DATA must hold sotu and gpt2-tokenizer) on CUDA and CPU.
# PART=cnn: the CNNs only — CUDA with cudnn.benchmark off and on (TF32 default and off; batch 128 and 256; the
# inject, regrad and conv methods), the CPU CNN at 16 and 8 threads and batch 64 and 128.
# PART=modes: the three selection modes (CWPL, CWPN, LWPN) on nets trained one epoch first (`matq train cnn --widths`,
# on CUDA), so the per-network modes select what they would in training: the wide CNN and MLP on CUDA, the 64/128/256
# CNN and the MLP on the CPU, plus the wide CNN from a random init for comparison. Needs MATQ_DATA with Fashion-MNIST.
# PART=cuda|cpu|cnn|modes|all (default all). Tables report the median step. Writes $OUT/bench-efqat-wide-$PART.log. QUICK=1: a CPU smoke test.
set -uo pipefail
: "${MATQ:?}" "${OUT:?}"
PART=${PART:-all}; mkdir -p "$OUT"; log="$OUT/bench-efqat-wide-$PART.log"
if [ "${QUICK:-0}" = 1 ]; then
  { $MATQ bench efqat --device cpu --arch mlp --batch 16 --iters 2 --widths 64,64,64 --methods inject,unfold --fractions 1,0.25,0
    $MATQ bench efqat --device cpu --batch 8 --iters 2 --widths 8,16,32 --methods inject --fractions 1,0.25; } > "$log" 2>&1
  exit 0
fi
{
  nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"
  if [ $PART = cnn ]; then
    for bm in off on; do
      $MATQ bench efqat --device cuda --cudnn-benchmark $bm --batch 128 --iters 20 --widths 256,512,1024 --methods inject,regrad,conv --fractions 1,0.25,0
    done
    $MATQ bench efqat --device cuda --cudnn-benchmark on --tf32 off --batch 128 --iters 15 --widths 256,512,1024 --methods inject --fractions 1,0.25,0.05,0
    $MATQ bench efqat --device cuda --cudnn-benchmark on --batch 256 --iters 15 --widths 256,512,1024 --methods inject --fractions 1,0.25,0.05,0
    $MATQ bench efqat --device cpu --batch 64 --iters 12 --widths 64,128,256 --methods inject,conv --fractions 1,0.25,0
    $MATQ bench efqat --device cpu --batch 128 --iters 8 --widths 64,128,256 --methods inject --fractions 1,0.25,0
    OMP_NUM_THREADS=8 $MATQ bench efqat --device cpu --batch 64 --iters 12 --widths 64,128,256 --methods inject --fractions 1,0.25,0
  fi
  if [ $PART = modes ]; then
    train() { $MATQ train cnn --device cuda --epochs 1 "$@" > /tmp/train.log 2>&1 || tail -5 /tmp/train.log; grep -E "test accuracy|steps / seconds" /tmp/train.log; }
    train --widths 256,512,1024 --out /tmp/cnn-wide
    train --widths 64,128,256 --out /tmp/cnn-mid
    train --arch mlp --widths 2048,2048,2048 --optimizer adamw --lr 1e-3 --out /tmp/mlp-wide
    train --arch mlp --widths 4096,4096,4096 --optimizer adamw --lr 1e-3 --out /tmp/mlp-4096
    modes="--methods inject --modes cwpl,cwpn,lwpn"
    $MATQ bench efqat --device cuda --cudnn-benchmark on --init /tmp/cnn-wide --batch 128 --iters 15 $modes --fractions 1,0.25,0.05,0
    $MATQ bench efqat --device cuda --cudnn-benchmark on --init /tmp/cnn-wide --batch 256 --iters 15 $modes --fractions 1,0.25,0
    $MATQ bench efqat --device cuda --init /tmp/mlp-4096 --batch 4096 --iters 20 $modes --fractions 1,0.25,0
    OMP_NUM_THREADS=8 $MATQ bench efqat --device cpu --init /tmp/cnn-mid --batch 64 --iters 10 $modes --fractions 1,0.25,0
    $MATQ bench efqat --device cuda --cudnn-benchmark on --widths 256,512,1024 --batch 128 --iters 15 $modes --fractions 1,0.25,0
    $MATQ bench efqat --device cuda --init /tmp/mlp-wide --batch 1024 --iters 20 $modes --fractions 1,0.25,0.05,0
    $MATQ bench efqat --device cpu --init /tmp/cnn-mid --batch 64 --iters 10 $modes --fractions 1,0.25,0
    $MATQ bench efqat --device cpu --init /tmp/mlp-wide --batch 256 --iters 12 $modes --fractions 1,0.25,0
  fi
  if [ $PART = cuda ] || [ $PART = all ]; then
  $MATQ bench efqat --device cuda --arch mlp --batch 1024 --iters 30 --widths 4096,4096,4096 --methods inject,unfold,split --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cuda --arch mlp --batch 4096 --iters 20 --widths 4096,4096,4096 --methods inject,unfold --fractions 1,0.25,0
  $MATQ bench efqat --device cuda --arch mlp --batch 2048 --iters 20 --widths 4096,4096,4096 --methods inject --fractions 1,0.25,0
  for tf in off default; do
    $MATQ bench efqat --device cuda --tf32 $tf --batch 128 --iters 15 --widths 256,512,1024 --methods inject --fractions 1,0.25,0.05,0
  done
  fi
  if [ $PART = cpu ] || [ $PART = all ]; then
  $MATQ bench efqat --device cpu --arch mlp --batch 256 --iters 20 --widths 2048,2048,2048 --methods inject,unfold --fractions 1,0.25,0.05,0
  $MATQ bench efqat --device cpu --arch mlp --batch 1024 --iters 12 --widths 2048,2048,2048 --methods inject --fractions 1,0.25,0
  $MATQ bench efqat --device cpu --batch 64 --iters 12 --widths 64,128,256 --methods inject --fractions 1,0.25,0.05,0
  OMP_NUM_THREADS=8 $MATQ bench efqat --device cpu --arch mlp --batch 1024 --iters 12 --widths 2048,2048,2048 --methods inject --fractions 1,0.25,0
  fi
  if [ "${LM:-0}" = 1 ]; then
    $MATQ train lm --preset small --steps 1 --device cpu --out /tmp/small-init > /tmp/init.log 2>&1 || tail -3 /tmp/init.log
    [ $PART != cpu ] && $MATQ bench efqat --device cuda --model /tmp/small-init --batch 32 --context 512 --iters 10 --methods inject --fractions 1,0.25,0
    [ $PART != cuda ] && $MATQ bench efqat --device cpu --model /tmp/small-init --batch 8 --context 256 --iters 5 --methods inject --fractions 1,0.25,0
  fi
} > "$log" 2>&1
