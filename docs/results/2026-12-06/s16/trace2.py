# Item trace of decode qo=1 kv=32768 B=64 (pages of 16) on main's kernels (exp/item-trace-dynamic, pack trd):
# the dynamic and persistent schedules, each traced once after two untraced runs; CSVs to argv[1].
import os, sys, statistics
sys.path.insert(0, "bench")
import torch
import compare
out = sys.argv[1]
w = [w for w in compare.make_workloads([], ["decode"]) if w.name == "decode qo=1 kv=32768 B=64"][0]
d = compare.WorkloadData(w, 1, False)
for i, schedule in enumerate(["dynamic", "persistent", "dynamic"]):
    fn = compare.Ptxattn(0, "auto", schedule).prepare(w, d, 16)
    os.environ.pop("PTXATTN_TRACE_FILE", None)
    fn(); fn(); torch.cuda.synchronize()
    path = os.path.join(out, f"trace_{schedule}_{i}.csv")
    os.environ["PTXATTN_TRACE_FILE"] = path
    fn(); torch.cuda.synchronize()
    os.environ.pop("PTXATTN_TRACE_FILE")
    rows = [list(map(int, l.split(","))) for l in open(path).read().splitlines()[1:]]
    t0 = min(r[3] for r in rows); t1 = max(r[4] for r in rows)
    last, count = {}, {}
    for r in rows:
        last[r[0]] = max(last.get(r[0], 0), (r[4] - t0) / 1e3); count[r[0]] = count.get(r[0], 0) + 1
    ends = sorted(last.values())
    print(f"{schedule:11s} items {len(rows)} span {(t1 - t0) / 1e3:.1f} us; SM last end us min/p10/p50/p90/max "
          f"{ends[0]:.0f}/{ends[len(ends) // 10]:.0f}/{ends[len(ends) // 2]:.0f}/{ends[9 * len(ends) // 10]:.0f}/{ends[-1]:.0f}; "
          f"items per SM {sorted(set(count.values()))}", flush=True)
    # The last 40 items to end: their SM, start, duration
    tail = sorted(rows, key=lambda r: r[4])[-12:]
    print("  last items (sm, item, start us, duration us): " + "; ".join(
        f"{r[0]},{r[2]},{(r[3] - t0) / 1e3:.0f},{(r[4] - r[3]) / 1e3:.0f}" for r in tail), flush=True)
