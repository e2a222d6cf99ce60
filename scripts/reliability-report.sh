#!/usr/bin/env bash
# Writes docs/results/reliability.md: the CLI misuse table over every verb (tests/Matq.Cli.Tests ReliabilityTests,
# each case classified), the fuzz tier per format (tests/*/Fuzz), and kill -9 at six moments of each writing verb
# (scripts/reliability-kill.sh). Log: docs/results/logs/reliability.log. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/results/logs
log=docs/results/logs/reliability.log
tmp=$(mktemp -d)
: > "$log"
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores" | tee -a "$log"
dotnet build Matq.sln -c Release --nologo -v q 2>&1 | tail -2 | tee -a "$log"
export MATQ_RELIABILITY_REPORT="$tmp/verbs.tsv" MATQ_FUZZ_REPORT="$tmp/fuzz.txt"
dotnet test tests/Matq.Cli.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~ReliabilityTests" 2>&1 | tee -a "$log" | tail -1
dotnet test tests/Matq.Formats.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~Fuzz" 2>&1 | tee -a "$log" | tail -1
dotnet test tests/Matq.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~Fuzz" 2>&1 | tee -a "$log" | tail -1
cat "$tmp/fuzz.txt" | tee -a "$log"
bash scripts/reliability-kill.sh "$tmp/kill" > "$tmp/kill.md"
cat "$tmp/kill.md" >> "$log"

python3 - "$tmp" "$(git rev-parse --short HEAD)" > docs/results/reliability.md <<'EOF'
import collections, re, sys
tmp, rev = sys.argv[1], sys.argv[2]
outcomes = ["clear error", "crash", "hang", "wrong exit", "half-written", "unclear error"]
verbs = collections.OrderedDict()
for line in open(f"{tmp}/verbs.tsv"):
    kind, name, outcome = line.rstrip("\n").split("\t")
    verbs.setdefault(name, collections.Counter())[outcome] += 1
print("# Reliability: misuse, corrupt files and kill -9\n")
print(f"Command: `bash scripts/reliability-report.sh` (commit {rev}); log: [logs/reliability.log](logs/reliability.log). "
      "Every number below is counted by the tests and scripts named, in one run; CPU, 2 cores.\n")
print("## Misuse of every verb\n")
print("`tests/Matq.Cli.Tests/Verbs/ReliabilityTests.cs`: a hand-written table (wrong values, --out that is or lies in the input, "
      "unwritable --out, existing folders, --device cuda without CUDA, GGUF/ONNX where safetensors is read) plus rows generated "
      "from the command tree (an unknown option, missing required options, every numeric option given `abc`). A case is a "
      "*clear error* when it prints exactly one `error:` line holding the expected words, no stack trace and no control "
      "character, exits with the expected code (2 usage, 1 failure), and leaves every file under the sandbox byte-identical.\n")
print("| verb | tried | " + " | ".join(outcomes) + " |")
print("|---|---:|" + "---:|" * len(outcomes))
total = collections.Counter()
for name, c in verbs.items():
    total.update(c)
    print(f"| {name} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in outcomes) + " |")
print(f"| **all** | **{sum(total.values())}** | " + " | ".join(f"**{total[o]}**" for o in outcomes) + " |\n")
print("## Corrupt files through every reading path\n")
print("`tests/*/Fuzz`: seeded corruptions (bit flips, truncation, byte runs, header lengths at extremes, JSON and metadata "
      "edits: huge/negative shapes, wrong dtypes, NaN, missing keys, absurd config values) of valid files, each pushed through "
      "the in-process paths a command takes (inspect; eval/generate loading; export gguf; the GGUF reader; ONNX Runtime's "
      "load for exported ONNX). *accepted* means the mutated file still read as a valid model; *crash* is any exception other "
      "than a one-line MatqException; a case that does not finish in its time limit fails the tier (hang).\n")
print("| format | tried | clear error | accepted | crash | hang | seconds |")
print("|---|---:|---:|---:|---:|---:|---:|")
for line in open(f"{tmp}/fuzz.txt"):
    m = re.match(r"fuzz (\S+): tried (\d+), clear error (\d+), accepted (\d+), other exception (\d+) \(([\d.]+) s\)", line.strip())
    if m:
        f, tried, clear, acc, other, secs = m.groups()
        print(f"| {f} | {tried} | {clear} | {acc} | {other} | 0 | {secs} |")
print("\n## kill -9 while writing\n")
print("`scripts/reliability-kill.sh`: each writing verb runs once to completion (its time is the baseline), then six times "
      "killed with SIGKILL at 10–99 % of that time, each followed by one uninterrupted run. *previous output intact* / *new "
      "output complete*: the file or folder at --out was whole and readable after the kill (never half-written, never a "
      "visible .old or .tmp); leftovers are the hidden entries the kill left: temps, which the rerun must clean, and, for the "
      "block-walking methods, the resume checkpoint `.NAME.resume` that `--resume` continues from (kept on purpose, replaced "
      "by a run without --resume, deleted when an artifact is written).\n")
print(open(f"{tmp}/kill.md").read())
EOF
echo "wrote docs/results/reliability.md" | tee -a "$log"
rm -rf "$tmp"
