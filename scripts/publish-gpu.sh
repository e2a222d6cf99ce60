#!/usr/bin/env bash
# Builds a self-contained linux-x64 matq for the GPU machine, without TorchSharp's CPU libtorch
# (the GPU machine's PyTorch provides libtorch via MATQ_TORCH_LIB), packed as .carry/matq.tar.xz.
# ONNX Runtime is left out too (only `export --verify` and the tests use it; the carry limit is 64 MiB), and so is the
# ASP.NET Core shared framework that only `matq serve` uses (about 8 MB of the archive) unless SERVE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.carry/publish
rm -rf "$out" && mkdir -p .carry
dotnet publish src/Matq.Cli -c Release -r linux-x64 --self-contained -p:MatqForceGlibcxxFix=true -o "$out" --nologo -v q
find "$out" \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' -o -name 'libshm*.so' -o -name 'libaoti*.so' \
  -o -name 'libonnxruntime*.so*' -o -name 'libbackend_with_compiler.so' -o -name 'libjitbackend_test.so' -o -name 'libnnapi_backend.so' -o -name 'libtorchbind_test.so' \) -delete
if [ "${SERVE:-0}" != 1 ]; then
  aspnet=$(ls -d "${NUGET_PACKAGES:-$HOME/.nuget/packages}"/microsoft.aspnetcore.app.runtime.linux-x64/*/runtimes/linux-x64/lib/net*/ | tail -1)
  for f in "$aspnet"*.dll; do rm -f "$out/$(basename "$f")"; done
fi
tar -C .carry -cJf .carry/matq.tar.xz publish
rm -rf "$out"
ls -la .carry/matq.tar.xz
