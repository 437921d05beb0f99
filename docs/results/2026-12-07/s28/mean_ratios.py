import json,glob,collections,sys,math
d=collections.defaultdict(list)
for f in sorted(glob.glob('*/compare.json')):
    tag=f.split('.')[0]
    for w,row in json.load(open(f))['results'].items():
        for s,r in row.items():
            if r.get('tflops'): d[(w,s,tag)].append(r['tflops'])
ws=list(json.load(open('fix.1/compare.json'))['results'])
m=lambda x: sum(x)/len(x)
print(f"{'workload':20s} {'system':16s} {'pre':>7s} {'main':>7s} {'fix':>7s} {'fix/pre':>8s} {'main/pre':>8s}  fix runs")
g=collections.defaultdict(list)
for w in ws:
  if w.startswith('decode'): continue
  for s in ['ptxattn ragged','ptxattn paged16','ptxattn paged64','FA3 dense','FA3 paged16','FA3 paged64']:
    a,b,c=d.get((w,s,'pre')),d.get((w,s,'main')),d.get((w,s,'fix'))
    if not (a and c): continue
    r=m(c)/m(a); g[s].append(r)
    print(f"{w:20s} {s:16s} {m(a):7.1f} {m(b):7.1f} {m(c):7.1f} {r:8.3f} {m(b)/m(a):8.3f}  pre {' '.join(f'{x:.0f}' for x in a)} | fix {' '.join(f'{x:.0f}' for x in c)}")
for s,v in g.items(): print(s, "geomean fix/pre", round(math.exp(sum(map(math.log,v))/len(v)),4), "min", round(min(v),3))
