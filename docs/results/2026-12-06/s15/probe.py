# Two probes of decode B=64 (pages of 16).
# "span": with the trace pack, CUDA-event time of a run against the span of its items (first start to last
#   end, %globaltimer): what a run spends outside its items, per schedule.
# "layout": ours with the cache in NHD (heads of a page interleaved, as FA3 reads it) and in HND (each head's
#   rows of a page contiguous), per schedule, FA3 alongside: does DRAM locality across heads matter?
import os, sys, statistics
sys.path.insert(0, "bench")
import torch
import compare
probe, out = sys.argv[1], sys.argv[2]
w = [w for w in compare.make_workloads([], ["decode"]) if w.name == "decode qo=1 kv=32768 B=64"][0]
d = compare.WorkloadData(w, 1, False)
pool = d.pools[16]

def ours(schedule, layout):
    import ptxattn
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, layout, schedule=schedule)
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim, 16,
                 num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    k, v = (pool.k, pool.v) if layout == "NHD" else (pool.k.transpose(1, 2).contiguous(), pool.v.transpose(1, 2).contiguous())
    o = torch.empty_like(d.q)
    fn = lambda: wrapper.run(d.q, k, v, out=o)
    fn.keep = (ws, k, v)
    return fn

def event_ms(fn):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(1000000)
    a.record(); fn(); b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b)

if probe == "span":
    for schedule in ["persistent", "one_item_per_cta"] * 2:
        fn = ours(schedule, "NHD")
        fn(); fn(); torch.cuda.synchronize()
        plain = [event_ms(fn) for _ in range(5)]
        path = os.path.join(out, f"span_{schedule}.csv")
        spans, traced = [], []
        for r in range(3):
            os.environ["PTXATTN_TRACE_FILE"] = path
            traced.append(event_ms(fn))
            os.environ.pop("PTXATTN_TRACE_FILE")
            rows = [list(map(int, l.split(","))) for l in open(path).read().splitlines()[1:]]
            spans.append((max(r[4] for r in rows) - min(r[3] for r in rows)) / 1e6)
        print(f"{schedule:18s} untraced event ms {statistics.median(plain):.4f}; traced event ms "
              + " ".join(f"{x:.4f}" for x in traced) + "; item span ms " + " ".join(f"{x:.4f}" for x in spans)
              + "; event - span us " + " ".join(f"{(x - y) * 1e3:.1f}" for x, y in zip(traced, spans)), flush=True)
else:
    timer = compare.Timer(0.4, 5, 40)
    systems = [("fa3 NHD", compare.fa3_paged(compare.import_fa3(), w, d, 16))]
    for s in ["persistent", "one_item_per_cta"]:
        for layout in ["NHD", "HND"]:
            systems.append((f"{s} {layout}", ours(s, layout)))
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, fn in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(fn)[0] / 1e6)
    for n, v in res.items():
        print(f"  {n:24s} GB/s " + " / ".join(f"{x:.0f}" for x in v), flush=True)
