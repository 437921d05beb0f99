# Decode and short-query shapes beyond compare.py's three: ptxattn persistent against one item per CTA,
# FA3 paged alongside where it takes the page size; interleaved rounds, same tensors. argv[1]: output file.
# Question: is one item per CTA faster on memory-bound tiles (few query rows) in general, and where not?
import sys, gc
sys.path.insert(0, "bench")
import torch
import compare

def ours(w, d, page, schedule):
    import ptxattn
    pool = d.pools[page]
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")  # a workspace per plan: a shared one is overwritten
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule=schedule)
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    o = torch.empty_like(d.q)
    fn = lambda: wrapper.run(d.q, pool.k, pool.v, out=o)
    fn.keep = ws
    return fn

fa3 = compare.import_fa3()
timer = compare.Timer(0.3, 5, 30)
shapes = [  # qo, kv, B, qo_heads, kv_heads, page
    (1, 32768, 64, 32, 8, 16), (1, 16384, 32, 32, 8, 16), (1, 8192, 64, 32, 8, 16), (1, 4096, 128, 32, 8, 16),
    (1, 4096, 256, 32, 8, 16), (1, 2048, 512, 32, 8, 16), (1, 1024, 512, 32, 8, 16), (1, 8192, 64, 64, 8, 16),
    (1, 8192, 128, 32, 32, 16), (4, 8192, 128, 32, 8, 16), (4, 2048, 256, 32, 8, 16), (8, 4096, 128, 32, 8, 16),
    (16, 4096, 64, 32, 8, 16), (1, 8192, 64, 32, 8, 1), (1, 8192, 64, 32, 8, 64), (4, 8192, 64, 32, 8, 64),
]
out = open(sys.argv[1], "w")
EXTRA = sys.argv[2].split(",") if len(sys.argv) > 2 else []
for qo, kv, B, hq, hk, page in shapes:
    w = compare.Workload(f"decode qo={qo} kv={kv} B={B} heads {hq}/{hk} page {page}", "decode", None, True,
                         [qo] * B, [kv] * B, hq, hk, (page,))
    d = compare.WorkloadData(w, 1, False)
    systems = [("persistent", ours(w, d, page, "persistent")), ("one_item", ours(w, d, page, "one_item_per_cta"))]
    systems += [(s, ours(w, d, page, s)) for s in EXTRA]
    try:
        f = compare.fa3_paged(fa3, w, d, page)
        f(); torch.cuda.synchronize()
        systems.append(("fa3", f))
    except Exception as e:
        print("fa3 unavailable:", str(e)[:80], flush=True)
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, fn in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(fn)[0] / 1e6)
    best = {n: max(v) for n, v in res.items()}
    line = f"{w.name:44s} " + "  ".join(f"{n} {'/'.join(f'{x:.0f}' for x in v)}" for n, v in res.items())
    line += f"  one_item/persistent {best['one_item'] / best['persistent']:.3f}"
    for e in EXTRA:
        line += f"  {e}/persistent {best[e] / best['persistent']:.3f}" + (f" {e}/fa3 {best[e] / best['fa3']:.3f}" if "fa3" in best else "")
    if "fa3" in best:
        line += f"  persistent/fa3 {best['persistent'] / best['fa3']:.3f} one_item/fa3 {best['one_item'] / best['fa3']:.3f}"
    print(line, flush=True); out.write(line + "\n"); out.flush()
    del systems, d
    gc.collect(); torch.cuda.empty_cache()
