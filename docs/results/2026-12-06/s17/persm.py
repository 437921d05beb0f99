# Per-SM streaming rate when the DRAM is not saturated: decode with fewer items than SMs (one per SM, no KV
# split: ptxattn kv_splits=1, FA3 num_splits=1), the package on PYTHONPATH.
# argv: page size, schedule (dynamic | persistent), and anything as a third argument adds B=64 and B=128.
import sys, gc
sys.path.insert(0, "bench")
import torch
import compare
import ptxattn

fa3 = compare.import_fa3()
timer = compare.Timer(0.3, 5, 30)
PAGE = int(sys.argv[1]) if len(sys.argv) > 1 else 16
SCHEDULE = sys.argv[2] if len(sys.argv) > 2 else "dynamic"
SHAPES = [(4, 65536), (8, 65536)] + ([(64, 32768), (128, 8192)] if len(sys.argv) > 3 else [])
for B, kv in SHAPES:
    w = compare.Workload(f"decode qo=1 kv={kv} B={B} 32/8 page {PAGE}", "decode", None, True, [1] * B, [kv] * B, 32, 8, (PAGE,))
    d = compare.WorkloadData(w, 1, False)
    pool = d.pools[PAGE]
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule=SCHEDULE)
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, 32, 8, 128, PAGE,
                 num_pages=pool.num_pages, causal=True, q_data_type="bfloat16", kv_splits=1)
    o = torch.empty_like(d.q)
    ours = lambda: wrapper.run(d.q, pool.k, pool.v, out=o)
    theirs = lambda: fa3.flash_attn_with_kvcache(d.q, pool.k, pool.v, cache_seqlens=d.kv_lens_dev,
                                                 page_table=pool.page_table, cu_seqlens_q=d.qo_indptr_dev,
                                                 max_seqlen_q=1, causal=True, num_splits=1)
    res = {"ptxattn": [], "fa3": []}
    for r in range(3):
        for n, f in ([("ptxattn", ours), ("fa3", theirs)] if r % 2 == 0 else [("fa3", theirs), ("ptxattn", ours)]):
            res[n].append(w.kv_bytes() / timer.median_ms(f)[0] / 1e6)
    items = B * 8
    print(f"{w.name:36s} items {items:4d}  " + "  ".join(
        f"{n} {max(v):.0f} GB/s ({max(v) / items:.1f} per SM)" for n, v in res.items()) +
        f"  ptxattn/fa3 {max(res['ptxattn']) / max(res['fa3']):.3f}", flush=True)
    del d, pool, wrapper, ws, o
    gc.collect(); torch.cuda.empty_cache()
