#!/usr/bin/env bash
# Writes docs/results/gguf-llama.cpp.md: matq's GGUF exports run in llama.cpp (LLamaSharp 0.30.0's CPU build) against
# matq's own forward of the same weights (tests/Matq.Tests/Export/GgufLlamaCppTests.cs, GgufLlamaCppFamilyTests.cs). Log: docs/results/logs/gguf-llama.cpp.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/results/logs
log=docs/results/logs/gguf-llama.cpp.log
dotnet build tests/Matq.Tests -c Release --nologo -v q 2>&1 | tail -1
dotnet test tests/Matq.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~GgufLlamaCpp" \
  --logger "console;verbosity=detailed" > "$log" 2>&1 || { tail -30 "$log"; exit 1; }
{
  echo "# GGUF exports in llama.cpp"
  echo
  echo "Command: \`bash scripts/gguf-llamacpp-report.sh\` (commit $(git rev-parse --short HEAD)); log: [logs/gguf-llama.cpp.log](logs/gguf-llama.cpp.log)."
  echo "The same rows are asserted by \`tests/Matq.Tests/Export/GgufLlamaCppTests.cs\` and \`GgufLlamaCppFamilyTests.cs\` in CI."
  echo
  echo "Each GGUF file is loaded by llama.cpp (the CPU build LLamaSharp 0.30.0 ships, f32 KV cache, flash attention off)"
  echo "and decodes the same token ids as matq's TorchSharp forward of the artifact served at the given bits. *max |Δlogit|*"
  echo "is over every position and vocabulary entry; *NLL ratio* is llama.cpp's mean next-token NLL over matq's."
  echo "q8_0/q4_0/q4_1 use the lossless path (matq's codes, fp16 block scales) with an f32 embedding, so the gap there is"
  echo "ggml quantizing the activations to q8 blocks inside its dot products."
  echo
  echo "Family fixtures (tests/fixtures/families, tiny-qwen2) run under their own llama.cpp architecture (in parentheses):"
  echo "an 8-bit RTN artifact (group 32) as f32 against matq's served 8-bit model, the HF folder as f32 against HF"
  echo "transformers' reference logits, and symmetric 8-bit codes as lossless q8_0 (f32 embedding). Gemma's f32 gap (~1e-3)"
  echo "is ggml's CPU GELU, which rounds its input to fp16 for a table lookup (GGML_GELU_FP16). tiny-mistral-sw is refused:"
  echo "llama.cpp's llama architecture has no sliding window (a file without it would attend past the 16-token window)."
  echo
  echo "| model | GGUF type | served bits | lossless linears | max abs diff logit | NLL ratio |"
  echo "|---|---|---:|---:|---:|---:|"
  grep -E '^\s*\| ' "$log" | sed 's/^ *//' | sort -u
} > docs/results/gguf-llama.cpp.md
cat docs/results/gguf-llama.cpp.md
