# Item traces of decode qo=1 kv=32768 B=64 (pages of 16), dynamic schedule, claimed 2 blocks ahead, with and
# without tail chunks (exp/claim-ahead + the item trace, pack cla5); untraced GB/s alongside. CSVs to argv[1].
import os, sys, statistics
sys.path.insert(0, "bench")
import torch
import compare

def ours(w, d, page, splits, tail):
    import ptxattn
    pool = d.pools[page]
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    if tail is None: os.environ.pop("PTXATTN_TAIL_REQUESTS", None)
    else: os.environ["PTXATTN_TAIL_REQUESTS"] = str(tail)
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule="dynamic")
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16", kv_splits=splits)
    os.environ.pop("PTXATTN_TAIL_REQUESTS", None)
    o = torch.empty_like(d.q)
    fn = lambda: wrapper.run(d.q, pool.k, pool.v, out=o)
    fn.keep = (ws, o)
    return fn

os.environ["PTXATTN_CLAIM_AHEAD"] = "2"
out = sys.argv[1]
timer = compare.Timer(0.3, 5, 30)
w = compare.Workload("decode qo=1 kv=32768 B=64", "decode", None, True, [1] * 64, [32768] * 64, 32, 8, (16,))
d = compare.WorkloadData(w, 1, False)
for splits, tail in [(1, None), (2, 8), (2, 16), (4, 8), (2, None)]:
    fn = ours(w, d, 16, splits, tail)
    gbs = w.kv_bytes() / timer.median_ms(fn)[0] / 1e6
    fn(); torch.cuda.synchronize()
    path = os.path.join(out, f"trace_s{splits}_t{tail}.csv")
    os.environ["PTXATTN_TRACE_FILE"] = path
    fn(); torch.cuda.synchronize()
    os.environ.pop("PTXATTN_TRACE_FILE")
    rows = [list(map(int, l.split(","))) for l in open(path).read().splitlines()[1:]]
    t0 = min(r[3] for r in rows); t1 = max(r[4] for r in rows)
    last, count = {}, {}
    for r in rows:
        last[r[0]] = max(last.get(r[0], 0), (r[4] - t0) / 1e3); count[r[0]] = count.get(r[0], 0) + 1
    ends = sorted(last.values())
    print(f"S{splits} tail {tail}: {gbs:.0f} GB/s untraced; items {len(rows)} span {(t1 - t0) / 1e3:.1f} us; "
          f"SM last end us min/p10/p25/p50/p75/p90/max {ends[0]:.0f}/{ends[13]:.0f}/{ends[33]:.0f}/{ends[66]:.0f}/"
          f"{ends[99]:.0f}/{ends[118]:.0f}/{ends[-1]:.0f}; mean end {statistics.mean(ends):.0f}; items per SM "
          f"{sorted(set(count.values()))}", flush=True)
    tail_rows = sorted(rows, key=lambda r: r[4])[-8:]
    print("  last items (sm, item, start us, duration us): " + "; ".join(
        f"{r[0]},{r[2]},{(r[3] - t0) / 1e3:.0f},{(r[4] - r[3]) / 1e3:.0f}" for r in tail_rows), flush=True)
