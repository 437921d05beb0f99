# Item trace of decode qo=1 kv=32768 B=64 (pages of 16) with the trace pack (exp/item-trace):
# persistent and one item per CTA, each run 3 times (the last traced), CSVs to argv[1];
# prints per-schedule: kernel span, item duration spread, per-SM busy time spread, end-time spread.
import os, sys, statistics
sys.path.insert(0, "bench")
import torch
import compare
out = sys.argv[1]
w = [w for w in compare.make_workloads([], ["decode"]) if w.name == "decode qo=1 kv=32768 B=64"][0]
d = compare.WorkloadData(w, 1, False)
for schedule in ["persistent", "one_item_per_cta", "persistent", "one_item_per_cta"]:
    fn = compare.Ptxattn(0, "auto", schedule).prepare(w, d, 16)
    os.environ.pop("PTXATTN_TRACE_FILE", None)
    fn(); fn(); torch.cuda.synchronize()
    path = os.path.join(out, f"trace_{schedule}.csv")
    os.environ["PTXATTN_TRACE_FILE"] = path
    fn(); torch.cuda.synchronize()
    os.environ.pop("PTXATTN_TRACE_FILE")
    rows = [list(map(int, l.split(","))) for l in open(path).read().splitlines()[1:]]
    t0 = min(r[3] for r in rows); t1 = max(r[4] for r in rows)
    dur = [(r[4] - r[3]) / 1e3 for r in rows]
    busy, last = {}, {}
    for r in rows:
        busy[r[0]] = busy.get(r[0], 0) + (r[4] - r[3]) / 1e3
        last[r[0]] = max(last.get(r[0], 0), (r[4] - t0) / 1e3)
    ends = sorted(last.values())
    print(f"{schedule:18s} items {len(rows)} span {(t1 - t0) / 1e3:.1f} us; item us min/median/max "
          f"{min(dur):.1f}/{statistics.median(dur):.1f}/{max(dur):.1f}; SMs {len(busy)}, busy us min/median/max "
          f"{min(busy.values()):.1f}/{statistics.median(busy.values()):.1f}/{max(busy.values()):.1f}; "
          f"SM last end us p10/p50/p90/max {ends[len(ends) // 10]:.0f}/{ends[len(ends) // 2]:.0f}/{ends[9 * len(ends) // 10]:.0f}/{ends[-1]:.0f}",
          flush=True)
# (appended) per schedule: median item duration by its place in the CTA's (persistent) or SM's (one item per CTA)
# sequence, from the last traced run of each.
for schedule in ["persistent", "one_item_per_cta"]:
    rows = [list(map(int, l.split(","))) for l in open(os.path.join(out, f"trace_{schedule}.csv")).read().splitlines()[1:]]
    by_sm = {}
    for r in rows:
        by_sm.setdefault(r[0], []).append(r)
    places = {}
    for seq in by_sm.values():
        for k, r in enumerate(sorted(seq, key=lambda r: r[3])):
            places.setdefault(k, []).append((r[4] - r[3]) / 1e3)
    gaps = []
    for seq in by_sm.values():
        seq = sorted(seq, key=lambda r: r[3])
        gaps += [(b[3] - a[4]) / 1e3 for a, b in zip(seq, seq[1:])]
    print(schedule, "item us by place on its SM:",
          ", ".join(f"{k}: {statistics.median(v):.1f} (n {len(v)})" for k, v in sorted(places.items())),
          f"; gap between an SM's items us median {statistics.median(gaps) if gaps else 0:.2f}", flush=True)
