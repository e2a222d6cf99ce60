#!/usr/bin/env bash
# Writes docs/results/families.md: for every HF family fixture (tests/fixtures/families/*, tiny-llama, tiny-qwen2) and
# both config forms, matq's logits against transformers' (`matq logits --compare expected.safetensors`), the packed
# runtime against the torch engine on the same 8-bit artifact, the ONNX export in ONNX Runtime (`export --verify`) and
# whether the GGUF export is written. Log: docs/results/logs/families.log. A few minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
dotnet build src/Matq.Cli -c Release --nologo -v q >/dev/null || exit 1
M="$PWD/src/Matq.Cli/bin/Release/net10.0/Matq.Cli"
W=$(mktemp -d /tmp/matq-families-XXXXXX)
log=docs/results/logs/families.log
mkdir -p docs/results/logs
: > "$log"
run() { echo "\$ matq $*" >> "$log"; "$M" "$@" >> "$log" 2>&1; }
maxdiff() { grep -o 'max |Δlogit| [0-9.E+-]*' "$log" | tail -1 | awk '{print $3}'; }
lasterr() { grep '^error:' "$log" | tail -1 | sed 's/^error: //; s/|/\\|/g' | cut -c1-110; }
onnxdiff() { grep -E '│' "$log" | tail -1 | awk -F'│' '{gsub(/ /,"",$6); print $6}'; }

rows=()
for f in tests/fixtures/families/*/ tests/fixtures/tiny-llama tests/fixtures/tiny-qwen2; do
  f=${f%/}; [ -f "$f/config.json" ] || continue
  name=$(basename "$f"); arch=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['model_type'])" "$f/config.json")
  hub="$W/$name-hub"; mkdir -p "$hub"; cp "$f"/* "$hub"/
  [ -f "$f/config.hub.json" ] && cp "$f/config.hub.json" "$hub/config.json"
  run logits --model "$f" --compare "$f/expected.safetensors" && t5=$(maxdiff) || t5="error: $(lasterr)"
  if [ -f "$f/config.hub.json" ]; then run logits --model "$hub" --compare "$f/expected.safetensors" && t4=$(maxdiff) || t4="error: $(lasterr)"; else t4="(no 4.x form)"; fi
  a="$W/$name.matq"
  run quantize --model "$f" --method rtn --bits 8 --group 32 --out "$a" || run quantize --model "$f" --method rtn --bits 8 --group 0 --out "$a"
  run logits --model "$a" --compare "$f/expected.safetensors" --out "$W/$name-torch.safetensors" && q8=$(maxdiff) || q8="error: $(lasterr)"
  run logits --model "$a" --engine packed --compare "$W/$name-torch.safetensors" && pk=$(maxdiff) || pk="refused: $(lasterr)"
  run export --format onnx --model "$f" --out "$W/$name.onnx" --verify && ox=$(onnxdiff) || ox="refused: $(lasterr)"
  run export --format onnx --model "$a" --bits 8 --out "$W/$name-8.onnx" --verify && o8=$(onnxdiff) || o8="refused: $(lasterr)"
  run export --format gguf --type f32 --model "$a" --out "$W/$name.gguf" && gg="written" || gg="refused: $(lasterr)"
  rows+=("| $name | $arch | $t5 | $t4 | $q8 | $pk | $ox | $o8 | $gg |")
done

{
  echo "# Model families: parity with transformers, per backend"
  echo
  echo "Command: \`bash scripts/families-report.sh\` (commit $(git rev-parse --short HEAD)); log: [logs/families.log](logs/families.log)."
  echo "Fixtures: tiny random models written by HF transformers 5.17 (\`../shared/fixtures/families/make_fixtures.py\`, copied to"
  echo "tests/fixtures), \`expected.safetensors\` = transformers' fp32 logits for input_ids 3×64 (longer than the sliding windows of 16)."
  echo "Every figure is max |Δlogit| over all 3×64×vocab logits."
  echo
  echo "- **torch, 5.x / 4.x config**: matq's TorchSharp model from the folder with \`config.json\` in the transformers 5.x form / the"
  echo "  4.x form Hub checkpoints carry (\`config.hub.json\`), against transformers."
  echo "- **8-bit artifact**: RTN int8 (group 32) served at 8 bits by the torch engine, against transformers (quantization error, for scale)."
  echo "- **packed vs torch**: the packed CPU runtime (fp32 activations and head) against the torch engine on that same artifact."
  echo "- **ONNX float / 8-bit**: \`matq export --format onnx --verify\`: ONNX Runtime against matq's forward (seeded ids 2×16)."
  echo "- **GGUF**: whether \`export --format gguf\` writes the family (llama.cpp parity is in [gguf-llama.cpp.md](gguf-llama.cpp.md))."
  echo
  echo "| fixture | model_type | torch, 5.x config | torch, 4.x config | 8-bit artifact (torch) | packed vs torch | ONNX float | ONNX 8-bit | GGUF |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
} > docs/results/families.md
rm -rf "$W"
cat docs/results/families.md
