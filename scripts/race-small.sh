#!/usr/bin/env bash
# matq's packed runtime vs llama.cpp (LLamaSharp 0.30.0 CPU) on models/small: one symmetric RTN int8 artifact, raced at
# 8 bits (q8_0) and 4 bits (q4_0), threads 1 and 2, twice: llama.cpp's OpenMP default (spin) and OMP_WAIT_POLICY=passive.
# Writes docs/results/race-small-{spin,passive}.md (the verb's own tables); docs/results/runtime-vs-llama.cpp.md quotes them.
# Usage: scripts/race-small.sh [threads list, default 1,2] [extra bench race options...]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1,2}"; shift || true
dotnet build src/Matq.Cli -c Release >/dev/null
matq() { dotnet src/Matq.Cli/bin/Release/net10.0/Matq.Cli.dll "$@"; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
matq quantize --model models/small --method rtn --bits 8 --group 32 --symmetric --device cpu --out "$work/small8sym.matq" >/dev/null
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|L3)'
(unset OMP_WAIT_POLICY; matq bench race --model "$work/small8sym.matq" --threads "$threads" \
    --prompt-tokens 128 --decode-tokens 64 --repeats 7 --out docs/results/race-small-spin.md "$@")
OMP_WAIT_POLICY=passive matq bench race --model "$work/small8sym.matq" --threads "$threads" \
    --prompt-tokens 128 --decode-tokens 64 --repeats 7 --out docs/results/race-small-passive.md "$@"
