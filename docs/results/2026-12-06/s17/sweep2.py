# Decode shapes, the dynamic schedule of one pack (PYTHONPATH), FA3 paged alongside (argv[2] == "fa3");
# one process per pack, run alternately. argv[1]: label.
import sys, gc
sys.path.insert(0, "bench")
import torch
import compare
import ptxattn

def ours(w, d, page):
    pool = d.pools[page]
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule="auto")
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    o = torch.empty_like(d.q)
    fn = lambda: wrapper.run(d.q, pool.k, pool.v, out=o)
    fn.keep = ws
    return fn, wrapper.chosen_schedule

with_fa3 = len(sys.argv) > 2 and sys.argv[2] == "fa3"
fa3 = compare.import_fa3() if with_fa3 else None
timer = compare.Timer(0.3, 5, 30)
shapes = [  # qo, kv, B, qo_heads, kv_heads, page
    (1, 32768, 64, 32, 8, 16), (1, 16384, 32, 32, 8, 16), (1, 8192, 64, 32, 8, 16), (1, 4096, 256, 32, 8, 16),
    (1, 2048, 512, 32, 8, 16), (1, 8192, 64, 64, 8, 16), (1, 8192, 128, 32, 32, 16), (4, 8192, 128, 32, 8, 16),
    (8, 4096, 128, 32, 8, 16), (16, 4096, 64, 32, 8, 16), (1, 8192, 64, 32, 8, 1), (4, 4096, 64, 32, 8, 1),
]
for qo, kv, B, hq, hk, page in shapes:
    w = compare.Workload(f"decode qo={qo} kv={kv} B={B} {hq}/{hk} page {page}", "decode", None, True,
                         [qo] * B, [kv] * B, hq, hk, (page,))
    d = compare.WorkloadData(w, 1, False)
    fn, sched = ours(w, d, page)
    systems = [("ptxattn", fn)]
    if fa3 is not None: systems.append(("fa3", compare.fa3_paged(fa3, w, d, page)))
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, f in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(f)[0] / 1e6)
    print(f"{sys.argv[1]:5s} {w.name:40s} {str(sched):28s} " + "  ".join(f"{n} {'/'.join(f'{x:.0f}' for x in v)}" for n, v in res.items()), flush=True)
    del systems, d, fn
    gc.collect(); torch.cuda.empty_cache()
