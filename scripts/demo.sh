#!/usr/bin/env bash
# Runs `matq demo` on built-in defaults (CPU). Installs missing prerequisites first (scripts/prereqs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
exec dotnet run -c Release --project src/Matq.Cli -- demo "$@"
