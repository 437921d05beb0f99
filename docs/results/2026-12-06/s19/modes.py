# B=64 decode (qo=1 kv=32768, 32/8 heads, page 16) timed two ways, ptxattn and FA3 alternating:
# compare.py's Timer (events around each call, median of up to 20 in 0.2 s) and CUPTI (torch.profiler) spans of
# the same calls. Prints one line per (round, system, mode) with a wall-clock stamp to match nvidia-smi samples.
import sys, gc, statistics, time
sys.path.insert(0, "bench")
import torch
import compare
from torch.profiler import profile, ProfilerActivity

fa3 = compare.import_fa3()
ptx = compare.Ptxattn()
name = sys.argv[1] if len(sys.argv) > 1 else "B64"
shapes = {"B64": ([1] * 64, [32768] * 64), "B32k1": ([1] * 32, [1024] * 32)}
qo, kv = shapes[name]
w = compare.Workload("decode " + name, "decode", None, True, qo, kv, 32, 8, (16,))
d = compare.WorkloadData(w, 1, False)
systems = (("ptxattn", ptx.prepare(w, d, 16)), ("FA3", compare.fa3_paged(fa3, w, d, 16)))
timer = compare.Timer(0.2, 5, 20)

def cupti_span(fn, calls=20):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            timer.flush.zero_()
            torch.cuda._sleep(compare.SLEEP_CYCLES)
            fn()
        torch.cuda.synchronize()
    ev = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                 and "elementwise" not in e.name and "spin_kernel" not in e.name and "FillFunctor" not in e.name),
                key=lambda e: e.time_range.start)
    spans, first, last = [], None, None
    for e in ev:
        if first is not None and e.time_range.start - last > 200: spans.append(last - first); first = None
        if first is None: first = e.time_range.start
        last = max(last or 0, e.time_range.end)
    spans.append(last - first)
    return statistics.median(spans)

t0 = time.time()
for r in range(3):
    for sysname, fn in systems:
        ms, reps = timer.median_ms(fn)
        print(f"{time.time() - t0:7.2f} s  round {r} {sysname:8s} events {ms * 1e3:8.1f} us ({reps} reps) "
              f"{w.kv_bytes() / ms / 1e6:6.0f} GB/s", flush=True)
        us = cupti_span(fn)
        print(f"{time.time() - t0:7.2f} s  round {r} {sysname:8s} cupti  {us:8.1f} us           "
              f"{w.kv_bytes() / us / 1e3:6.0f} GB/s", flush=True)
