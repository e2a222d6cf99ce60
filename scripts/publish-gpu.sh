#!/usr/bin/env bash
# Builds a self-contained linux-x64 matq for the GPU machine, without TorchSharp's CPU libtorch
# (the GPU machine's PyTorch provides libtorch via MATQ_TORCH_LIB), packed as .carry/matq.tar.xz.
# ONNX Runtime is left out too (only `export --verify` and the tests use it; the carry limit is 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.carry/publish
rm -rf "$out" && mkdir -p .carry
dotnet publish src/Matq.Cli -c Release -r linux-x64 --self-contained -p:MatqForceGlibcxxFix=true -o "$out" --nologo -v q
find "$out" \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' -o -name 'libshm*.so' -o -name 'libaoti*.so' \
  -o -name 'libonnxruntime*.so*' -o -name 'libbackend_with_compiler.so' -o -name 'libjitbackend_test.so' -o -name 'libnnapi_backend.so' -o -name 'libtorchbind_test.so' \) -delete
tar -C .carry -cJf .carry/matq.tar.xz publish
rm -rf "$out"
ls -la .carry/matq.tar.xz
