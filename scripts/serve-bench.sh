#!/usr/bin/env bash
# Latency and tokens/s of `matq serve` per requested bits, measured over real HTTP (curl) against one server:
# for each bits value the first request (the precision is sliced and packed on it, except the master bits, built at
# start) and REQUESTS more (warm; median). Prints a markdown table (also written to $OUT/serve-bench.md when OUT is set).
# Env: MATQ (the matq binary; default: the Release build, built if missing), MODEL (a .matq; default: models/tiny
# quantized RTN int8, group 32), BITS ("8 4 3 2"), REQUESTS (5), PROMPT, MAX_TOKENS (64), THREADS (1). Needs curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
MATQ=${MATQ:-src/Matq.Cli/bin/Release/net10.0/Matq.Cli}
BITS=${BITS:-"8 4 3 2"}
REQUESTS=${REQUESTS:-5}
MAX_TOKENS=${MAX_TOKENS:-64}
THREADS=${THREADS:-1}
PROMPT=${PROMPT:-"Fellow citizens of the Senate and of the House of Representatives: the state of the Union"}
for tool in curl jq; do command -v $tool >/dev/null || { echo "serve-bench needs $tool (apt-get install $tool)"; exit 1; }; done
[ -x "$MATQ" ] || dotnet build src/Matq.Cli -c Release --nologo -v q
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -z "${MODEL:-}" ]; then
  MODEL=$work/tiny8.matq
  "$MATQ" quantize --model models/tiny --method rtn --bits 8 --group 32 --device cpu --out "$MODEL" >/dev/null
fi
"$MATQ" serve --model "$MODEL" --port 0 --threads "$THREADS" --max-precisions 8 >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
port=$(grep -o '127\.0\.0\.1:[0-9]*' "$work/server.log" | head -1 | cut -d: -f2)
[ -n "$port" ] || { cat "$work/server.log"; exit 1; }

# one request: prints "seconds completion_tokens decode_tok_s prefill_tok_s weight_bytes"
request() {
  local body out
  body=$(jq -cn --arg p "$PROMPT" --argjson m "$MAX_TOKENS" --argjson b "$1" '{prompt: $p, max_tokens: $m, temperature: 0, bits: $b}')
  out=$(curl -s -w '\n%{time_total}' "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' -d "$body")
  echo "$(tail -1 <<<"$out") $(head -1 <<<"$out" | jq -r '"\(.usage.completion_tokens) \(.matq.decode_tokens_per_second) \(.matq.prefill_tokens_per_second) \(.matq.weight_bytes)"')"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

curl -s "http://127.0.0.1:$port/v1/completions" -d "$(jq -cn --arg p "$PROMPT" '{prompt: $p, max_tokens: 16}')" >/dev/null   # JIT warm-up at the default bits, not counted
prompt_tokens=$(curl -s "http://127.0.0.1:$port/v1/completions" -d "$(jq -cn --arg p "$PROMPT" '{prompt: $p, max_tokens: 0}')" | jq .usage.prompt_tokens)
table="| bits | weights held | first request (ms) | warm latency, median (ms) | end-to-end tok/s | decode tok/s (server) | prefill tok/s (server) |
|---|---|---|---|---|---|---|"
for b in $BITS; do
  # the default precision (master bits) is built at start; any other is built by its first request
  read -r cold _ _ _ bytes < <(request "$b")
  : >"$work/warm"
  for _ in $(seq "$REQUESTS"); do request "$b" >>"$work/warm"; done
  lat=$(awk '{ print $1 }' "$work/warm" | median)
  tps=$(awk '{ print $2 / $1 }' "$work/warm" | median)
  dec=$(awk '{ print $3 }' "$work/warm" | median)
  pre=$(awk '{ print $4 }' "$work/warm" | median)
  row=$(awk -v b="$b" -v by="$bytes" -v c="$cold" -v l="$lat" -v t="$tps" -v d="$dec" -v p="$pre" \
    'BEGIN { printf "| %s | %.0f KiB | %.1f | %.1f | %.0f | %.0f | %.0f |", b, by / 1024, c * 1000, l * 1000, t, d, p }')
  table+=$'\n'"$row"
done
kill -TERM $server; wait $server || true
header="matq serve, $(basename "$MODEL"), prompt $prompt_tokens tokens, max_tokens $MAX_TOKENS greedy, --threads $THREADS, $REQUESTS warm requests per bits (median), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n\n%s\n' "$header" "$table"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; printf '%s\n\n%s\n' "$header" "$table" >"$OUT/serve-bench.md"; fi
grep -q "stopped" "$work/server.log" || { echo "server did not stop cleanly:"; cat "$work/server.log"; exit 1; }
