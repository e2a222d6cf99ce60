#!/usr/bin/env bash
# Runs `matq demo` on built-in defaults (CPU). Installs missing prerequisites first (scripts/prereqs.sh).
# Its MatQuant section is OmniQuant-based, per-channel, all linears (the setting of docs/results/matquant.md with the
# clearest int2 gain), 1 epoch per block on 16 windows, next to independent OmniQuant int2 on the same budget.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
exec dotnet run -c Release --project src/Matq.Cli -- demo "$@"
