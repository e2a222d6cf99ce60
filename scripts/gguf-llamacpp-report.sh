#!/usr/bin/env bash
# Writes docs/results/gguf-llama.cpp.md: matq's GGUF exports run in llama.cpp (LLamaSharp 0.30.0's CPU build) against
# matq's own forward of the same weights (tests/Matq.Tests/Export/GgufLlamaCppTests.cs, GgufLlamaCppFamilyTests.cs,
# GgufKQuantLlamaCppTests.cs, GgufKQuantTests.cs). Log: docs/results/logs/gguf-llama.cpp.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/results/logs
log=docs/results/logs/gguf-llama.cpp.log
dotnet build tests/Matq.Tests -c Release --nologo -v q 2>&1 | tail -1
dotnet test tests/Matq.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~GgufLlamaCpp|FullyQualifiedName~GgufKQuant" \
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
  echo
  echo "## k-quants (q2_K, q3_K, q4_K, q5_K, q6_K)"
  echo
  echo "Rows asserted by \`tests/Matq.Tests/Export/GgufKQuantLlamaCppTests.cs\`; the block code by \`GgufKQuantTests.cs\`, which checks"
  echo "matq's decoder bit for bit against ggml's own \`dequantize_row_*\` (libggml-base of LLamaSharp.Backend.Cpu 0.30.0, noavx build)"
  echo "on blocks ggml quantized and on blocks matq quantized, for q2_K..q6_K and the q5_0/q5_1 fallbacks."
  echo
  echo "Each k-quant is written from the artifact's r-bit slice, r = the type's code bits (2, 3, 4, 5, 6). *Exact*: codes"
  echo "copied and each super-block's sub-block scales (and mins) integer multiples of one fp16 d (dmin) — a per-channel"
  echo "symmetric grid is, and so is one asymmetric group of 256 under a type with mins (q2_K/q4_K/q5_K; q3_K/q6_K have no"
  echo "mins, so an asymmetric grid is re-quantized there); *re-quantized*: from ŵ_r, the artifact's group grid tried as a"
  echo "candidate (group-32 RTN scales share no fp16 unit per super-block); *fallback*: rows not a multiple"
  echo "of 256 take llama.cpp's fallback type (q2_K/q3_K → q4_0, q4_K → q5_0, q5_K → q5_1, q6_K → q8_0), from ŵ_r. The"
  echo "embedding and head take q6_K by default (llama.cpp's head type), falling back the same way (models/tiny's 128-wide"
  echo "rows → q8_0); the wide model writes them in the type itself (\`--embed-type\`). *max |Δw|*: over the re-quantized"
  echo "linears vs ŵ_r; *RMS Δw*: over all k-quant linears. *max |Δlogit|* (/ max |logit|) and the first NLL ratio compare"
  echo "llama.cpp with matq's forward of the *same* weights (the HF model with every 2-D weight replaced by the GGUF tensor"
  echo "decoded by matq): tolerance max |Δlogit| ≤ 0.4 and NLL ratio within 5e-3 of 1, the activation-quantization gap"
  echo "of ggml's dot products (q8_K/q8_0 activations). The last column is llama.cpp's NLL over matq's served r-bit model's"
  echo "(float embedding/head, unquantized fallbacks): what the k-quant grid costs against MatQuant at r bits. bits/weight"
  echo "is over all 2-D tensors of the file. Family fixtures are narrower than 256, so all their linears fall back; the"
  echo "random 256-wide models (weights scaled ×4, embedding ×20, per-channel symmetric RTN) put every linear and the"
  echo "embedding/head in the k-quant under llama, phi3 (fused attn_qkv/ffn_up), qwen2 (biases), qwen3, gemma2 and gemma3."
  echo
  echo "| model | GGUF type | file bytes | bits/weight | exact | re-quantized | fallback | max abs Δw (re-quantized) | RMS Δw | max abs Δlogit / max abs logit | NLL ratio vs matq same weights | NLL ratio vs matq served r-bit |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  grep -E 'K\| ' "$log" | sed 's/^.*K| /| /' | sort -u
  echo
  grep -E 'models/tiny HF folder as q4_K|control: llama.cpp q3_K' "$log" | sed 's/^ *//' | sort -u
} > docs/results/gguf-llama.cpp.md
cat docs/results/gguf-llama.cpp.md
