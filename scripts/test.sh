#!/usr/bin/env bash
# Runs every matq test (CPU only). Installs missing prerequisites first (scripts/prereqs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
log=$(mktemp)
set +e
dotnet test Matq.sln -c Release --nologo 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# one closing line over all test assemblies
awk '/(Passed|Failed)! +- +Failed: /{ gsub(/,/,""); for(i=1;i<=NF;i++){ if($i=="Failed:") f+=$(i+1); if($i=="Passed:") p+=$(i+1); if($i=="Skipped:") s+=$(i+1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit $rc
