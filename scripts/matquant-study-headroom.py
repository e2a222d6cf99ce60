# The setting-search table of docs/results/matquant.md from the logs of scripts/matquant-study-search.sh (run from the repo root):
# per base and setting, independent int8/int2 and MatQuant {8,4,2} at 2 (SOTU-test / Moby-Dick), int2 headroom and room.
import re,glob,sys
print("| base | layers | group | QAT grid | indep int8 | indep int2 | MatQuant {8,4,2} @2 | headroom int2 − MatQuant@2 (SOTU / Moby) | room int2 − int8 (SOTU / Moby) |")
print("|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob('docs/results/logs/matquant-study/search-*.log')):
    t=open(f).read()
    def g(lbl,b):
        m=re.search(re.escape(lbl)+r' @ '+str(b)+r' bits: SOTU ([\d.]+), Moby ([\d.]+)',t)
        return (float(m.group(1)),float(m.group(2))) if m else None
    _,b,layers,group,grid=f.split('/')[-1][:-4].split('-')
    i8,i2,m2=g('independent int8',8),g('independent int2',2),g('MatQuant {8,4,2}',2)
    if not (i8 and i2 and m2): continue
    grp='per-channel' if group=='g0' else group
    print(f"| {b} | {layers} | {grp} | {grid if b=='qat' else '–'} | {i8[0]:.3f} / {i8[1]:.3f} | {i2[0]:.3f} / {i2[1]:.3f} | {m2[0]:.3f} / {m2[1]:.3f} | {i2[0]-m2[0]:+.3f} / {i2[1]-m2[1]:+.3f} | {i2[0]-i8[0]:+.3f} / {i2[1]-i8[1]:+.3f} |")
