#!/usr/bin/env bash
# Packs matq into artifacts/packages:
#   Matq.Kernels, Matq.Formats, Matq.Runtime  the TorchSharp-free library an app references (Matq.Runtime.slnf)
#   matq + matq.linux-x64                     the `matq` dotnet tool: a small package that points `dotnet tool install`
#                                             at the RID-specific one, which carries libtorch (TorchSharp on the CPU)
# Usage: scripts/pack.sh [--library-only] [--version V] [--rids 'linux-x64;osx-arm64;win-x64'] [--verify]
#   --verify: then install the tool from artifacts/packages into a temporary tool path and run `matq --help` (which
#   must name itself matq) and `matq device` (which loads libtorch), and remove it again
# Then:  dotnet tool install --global --add-source ./artifacts/packages matq     (add --version V for a pre-release V)
set -euo pipefail
cd "$(dirname "$0")/.."
out=artifacts/packages
library_only=0 version="" rids="" verify=0
while [ $# -gt 0 ]; do
  case "$1" in
    --library-only) library_only=1; shift ;;
    --version) version="$2"; shift 2 ;;
    --rids) rids="$2"; shift 2 ;;
    --verify) verify=1; shift ;;
    *) echo "scripts/pack.sh: unknown argument $1 (give --library-only, --version V, --rids 'RID;RID' or --verify)" >&2; exit 2 ;;
  esac
done
props=()
[ -n "$version" ] && props+=("-p:PackageVersion=$version")
mkdir -p "$out"

start=$SECONDS
dotnet pack Matq.Runtime.slnf -c Release --nologo -v q -o "$out" "${props[@]}"
echo "library packed in $((SECONDS - start)) s"

if [ "$library_only" = 0 ]; then
  start=$SECONDS
  # MatqForceGlibcxxFix: the tool runs on other hosts, so libLibTorchSharp's GLIBCXX_3.4.32 need is marked weak in the
  # published copy whatever this host's libstdc++ has (build/TorchSharpGlibcxxFix.targets)
  tool_props=("-p:MatqForceGlibcxxFix=true")
  [ -n "$rids" ] && tool_props+=("-p:ToolPackageRuntimeIdentifiers=$rids")
  dotnet pack src/Matq.Cli -c Release --nologo -v q -o "$out" "${props[@]}" "${tool_props[@]}"
  echo "tool packed in $((SECONDS - start)) s"
fi
ls -l "$out"/*.nupkg

if [ "$verify" = 1 ] && [ "$library_only" = 0 ]; then
  tools=$(mktemp -d)
  trap 'rm -rf "$tools"' EXIT
  start=$SECONDS
  dotnet tool install --tool-path "$tools" --add-source "$out" matq ${version:+--version "$version"}
  echo "tool installed in $((SECONDS - start)) s ($(du -sh "$tools" | cut -f1))"
  help=$("$tools/matq" --help)
  grep -q '^  matq \[command\] \[options\]' <<<"$help" || { echo "matq --help does not name itself matq:" >&2; echo "$help" >&2; exit 1; }
  echo "matq --help: Usage: matq [command] [options]"
  "$tools/matq" device
fi
