# Per-call GPU timeline of decode calls (ptxattn: memset + kernel [+ merge]; FA3: its kernels), from
# torch.profiler's CUDA activities: each call alone (flush, sleep, call, as compare.py times it), the
# activities' offsets from the first one's start and their durations, us; median over calls.
# argv: none. Needs PYTHONPATH with ptxattn's package and FA3's.
import sys, gc, statistics
sys.path.insert(0, "bench")
import torch
import compare
import ptxattn
from torch.profiler import profile, ProfilerActivity

fa3 = compare.import_fa3()
ptx = compare.Ptxattn()
CALLS = 8
shapes = [("qo=1 kv=32768 B=64", [1] * 64, [32768] * 64), ("qo=1 kv=4096 B=16", [1] * 16, [4096] * 16),
          ("qo=1 kv=1024 B=32", [1] * 32, [1024] * 32), ("qo=1 kv=131072 B=1", [1], [131072]),
          ("qo=4 kv=8192 B=128", [4] * 128, [8192] * 128), ("qo=1 kv=512 B=256", [1] * 256, [512] * 256),
          ("qo=16 kv=2048 B=32", [16] * 32, [2048] * 32)]
only = sys.argv[1].split(",") if len(sys.argv) > 1 else None  # systems to time (default both)
flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")

def timeline(fn):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(CALLS):
            flush.zero_()
            torch.cuda._sleep(1_000_000)
            fn()  # enqueued during the sleep, as compare.py times it
        torch.cuda.synchronize()
    ev = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    ev = [e for e in ev if "elementwise" not in e.name and "spin_kernel" not in e.name and "FillFunctor" not in e.name]
    ev.sort(key=lambda e: e.time_range.start)
    calls, cur = [], []
    for e in ev:
        if cur and e.time_range.start - cur[-1].time_range.end > 200: calls.append(cur); cur = []
        cur.append(e)
    if cur: calls.append(cur)
    rows = {}
    for c in calls:
        t0 = c[0].time_range.start
        for i, e in enumerate(c):
            rows.setdefault((i, e.name[:60]), []).append((e.time_range.start - t0, e.time_range.end - e.time_range.start))
        rows.setdefault((99, "span"), []).append((0, c[-1].time_range.end - t0))
    for (i, name), v in sorted(rows.items()):
        print(f"    {name:60s} start {statistics.median(x for x, _ in v):8.1f}  dur {statistics.median(y for _, y in v):9.1f}  (n={len(v)})")

for name, qo, kv in shapes:
    w = compare.Workload("decode " + name, "decode", None, True, qo, kv, 32, 8, (16,))
    d = compare.WorkloadData(w, 1, False)
    print(f"== {name}: {w.kv_bytes() / 1e6:.0f} MB of K/V", flush=True)
    for sysname, fn in (("ptxattn", ptx.prepare(w, d, 16)), ("FA3", compare.fa3_paged(fa3, w, d, 16))):
        if only and sysname not in only: continue
        print(f"  {sysname}", flush=True)
        timeline(fn)
    del d; gc.collect(); torch.cuda.empty_cache()
