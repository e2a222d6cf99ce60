# The paper-shaped summary tables of docs/results/matquant.md from the per-seed CSVs that `matq bench matquant --seeds`
# wrote under docs/results/matquant-study/ (run from the repo root): per base × setting, each MatQuant row as
# Δ vs independent at the same served bits (mean ± sd of the per-seed differences; ✓/✗ beyond 2 sd, · within).
# The same rule as Matq.Evaluation.MatQuantSeedStats (the bench's own tables are the reference; this only gathers them).
import csv, glob, math, os, sys
from collections import defaultdict

def load(path):
    cells = defaultdict(dict)   # (run, bits) -> seed -> (sotu, moby)
    with open(path) as f:
        r = csv.reader(f); next(r)
        for base, run, bits, seed, s, m in r:
            cells[(run, int(bits))][int(seed)] = (float(s), float(m))
    return base, cells

def delta(cells, run, bits, t):
    ind, mq = cells.get((f"independent int{bits}", bits)), cells.get((run, bits))
    if not ind or not mq: return None
    d = [mq[s][t] - ind[s][t] for s in sorted(mq) if s in ind]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else 0.0
    mark = "✓" if -mean > 2 * sd else "✗" if mean > 2 * sd else "·"
    return f"{mean:+.3f} ± {sd:.3f} {mark}"

def table(files, runs_filter, title):
    print(f"#### {title}\n")
    print("| base | setting | row | " + " | ".join(f"Δ int{b} (SOTU / Moby)" for b in (8, 6, 4, 3, 2)) + " |")
    print("|---|---|---|" + "---|" * 5)
    for path in files:
        base, cells = load(path)
        setting = os.path.basename(path).split("-")[2]
        runs = sorted({r for r, _ in cells if not r.startswith("independent") and runs_filter(r)}, key=lambda r: (len(r), r))
        for run in runs:
            cols = []
            for b in (8, 6, 4, 3, 2):
                s, m = delta(cells, run, b, 0), delta(cells, run, b, 1)
                cols.append("–" if s is None else f"{s} / {m}")
            print(f"| {base} | {setting} | {run} | " + " | ".join(cols) + " |")
    print()

rows = sorted(glob.glob("docs/results/matquant-study/rows-*-seeds.csv"))
lam = sorted(glob.glob("docs/results/matquant-study/lambda-*-seeds.csv"))
table(rows, lambda r: True, "Every MatQuant row, Δ vs independent (3 seeds)")
if lam: table(lam, lambda r: "λ" in r or r.startswith("single"), "λ sweep in the chosen setting, Δ vs independent (3 seeds)")

def ms(vals):
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"

print("#### Absolute SOTU-test perplexity at 8 and 2 bits (mean ± sd over seeds; float 4.637 at 2,000 tokens)\n")
print("| base | setting | independent int8 | independent int2 | room int2 − int8 | MatQuant {8,4,2} @8 | MatQuant @2 | best MatQuant-family @2 |")
print("|---|---|---|---|---|---|---|---|")
for path in rows:
    base, cells = load(path)
    setting = os.path.basename(path).split("-")[2]
    v = lambda run, b: [x[0] for x in cells[(run, b)].values()]
    i8, i2 = v("independent int8", 8), v("independent int2", 2)
    room = [cells[("independent int2", 2)][s][0] - cells[("independent int8", 8)][s][0] for s in cells[("independent int2", 2)]]
    at2 = {r: sum(v(r, 2)) / len(v(r, 2)) for r, b in cells if b == 2 and not r.startswith("independent")}
    best = min(at2, key=at2.get)
    print(f"| {base} | {setting} | {ms(i8)} | {ms(i2)} | {ms(room)} | {ms(v('MatQuant {8,4,2}', 8))} | {ms(v('MatQuant {8,4,2}', 2))} | {best}: {ms(v(best, 2))} |")
print()
