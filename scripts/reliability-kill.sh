#!/usr/bin/env bash
# kill -9 at six moments of each writing verb, then check what a user finds: the previous output intact or the new
# one complete (never half-written, never a visible ".old"), and after one more (uninterrupted) run of the same
# command no temporaries left beside the target. Prints one markdown table row per (verb, moment).
# Usage: bash scripts/reliability-kill.sh [WORKDIR]   (builds matq in Release first; about 5 minutes on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
dotnet build src/Matq.Cli -c Release --nologo -v q >/dev/null || exit 1
W="${1:-$(mktemp -d /tmp/matq-kill-XXXXXX)}"
mkdir -p "$W"
rm -rf "$W/bin"; cp -r src/Matq.Cli/bin/Release/net10.0 "$W/bin"   # a private copy: a rebuild meanwhile cannot disturb the runs
M="$W/bin/Matq.Cli"
cat docs/results/*.md README.md ARCHITECTURE.md > "$W/calib.txt"
TINY="$PWD/models/tiny"
SMALL="$PWD/models/small"   # 28.7M parameters: its writes take long enough for a kill to land inside one

# name | command writing $W/out/<target> | the target | how to check it is a whole, readable output
scenarios=(
  "quantize gptq|quantize --model $TINY --method gptq --bits 4 --group 32 --calib-data $W/calib.txt --calib-n 8 --calib-len 64 --device cpu --out $W/out/q.matq|q.matq|inspect"
  "quantize rtn|quantize --model $TINY --method rtn --bits 8 --group 32 --device cpu --out $W/out/r.matq|r.matq|inspect"
  "export gguf|export --format gguf --type f16 --model $W/base.matq --out $W/out/g.gguf|g.gguf|inspect"
  "export onnx|export --format onnx --bits 4 --model $W/base.matq --out $W/out/o.onnx|o.onnx|onnx"
  "export hf|export --format hf --bits 4 --force --model $W/base.matq --out $W/out/hf|hf|hf"
  "plan|plan --model $W/base.matq --strategy pyramid --avg-bits 5 --out $W/out/p.json|p.json|json"
  "quantize rtn (small)|quantize --model $SMALL --method rtn --bits 8 --group 32 --device cpu --out $W/out/s.matq|s.matq|inspect"
  "export hf (small)|export --format hf --bits 4 --force --model $W/small.matq --out $W/out/shf|shf|hf"
)
"$M" quantize --model "$TINY" --method rtn --bits 8 --group 32 --device cpu --out "$W/base.matq" >/dev/null || exit 1
"$M" quantize --model "$SMALL" --method rtn --bits 8 --group 32 --device cpu --out "$W/small.matq" >/dev/null || exit 1

whole() {  # $1 kind, $2 path: 0 when the output at path is complete and readable
  case "$1" in
    inspect) "$M" inspect "$2" >/dev/null 2>&1 ;;
    onnx) [ "$(head -c 1 "$2" | od -An -tx1 | tr -d ' ')" = "08" ] && [ "$(stat -c %s "$2")" -gt 1000 ] ;;
    hf) [ -f "$2/config.json" ] && "$M" inspect "$2" >/dev/null 2>&1 ;;
    json) python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$2" 2>/dev/null ;;
  esac
}
digest() { if [ -d "$1" ]; then (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum); else sha256sum < "$1"; fi; }

echo "| verb | killed at | after the kill | leftovers (hidden temps) | after a rerun |"
echo "|---|---|---|---|---|"
for s in "${scenarios[@]}"; do
  IFS='|' read -r name cmd target kind <<<"$s"
  rm -rf "$W/out"; mkdir -p "$W/out"
  "$M" $cmd >/dev/null 2>&1 || { echo "| $name | baseline run failed | | | |"; continue; }
  start=$(date +%s.%N)   # the baseline is the second (warm) run
  "$M" $cmd >/dev/null 2>&1 || { echo "| $name | baseline run failed | | | |"; continue; }
  base=$(echo "$(date +%s.%N) - $start" | bc)
  for pct in 10 30 50 70 90 99; do
    before=$(digest "$W/out/$target")
    delay=$(echo "scale=3; $base * $pct / 100" | bc)
    "$M" $cmd >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    if [ ! -e "$W/out/$target" ]; then state="absent (HALF-WRITTEN: the previous output is gone)"
    elif ! whole "$kind" "$W/out/$target"; then state="HALF-WRITTEN"
    elif [ "$(digest "$W/out/$target")" = "$before" ]; then state="previous output intact"
    else state="new output complete"; fi
    visible_old=$(ls "$W/out" | grep -E '\.old|\.tmp' || true)
    [ -n "$visible_old" ] && state="$state; VISIBLE: $visible_old"
    left=$(ls -A "$W/out" | grep '^\.' | tr '\n' ' ' || true); left=${left:-none}
    "$M" $cmd >/dev/null 2>&1; rc=$?
    after=$(ls -A "$W/out" | grep -c '^\.' || true)
    whole "$kind" "$W/out/$target" && ok=whole || ok=BROKEN
    echo "| $name | ${pct}% of $(printf "%.1f" "$base") s ($(printf "%.2f" "$delay") s) | $state | $left | exit $rc, $ok, $after hidden temps |"
  done
done
