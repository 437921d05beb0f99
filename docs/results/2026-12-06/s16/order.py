# The dynamic schedule's claim order (exp/item-order, PTXATTN_ITEM_ORDER at plan time): the plan's order
# (sections of (request, KV head)), head-major, reversed, shuffled. Same tensors, FA3 paged alongside,
# interleaved rounds, best of 3.
import sys, gc, os
sys.path.insert(0, "bench")
import torch
import compare

def ours(w, d, page, order):
    import ptxattn
    pool = d.pools[page]
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    if order == "plan": os.environ.pop("PTXATTN_ITEM_ORDER", None)
    else: os.environ["PTXATTN_ITEM_ORDER"] = order
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule="dynamic")
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    os.environ.pop("PTXATTN_ITEM_ORDER", None)
    o = torch.empty_like(d.q)
    fn = lambda: wrapper.run(d.q, pool.k, pool.v, out=o)
    fn.keep = (ws, o)
    return fn

fa3 = compare.import_fa3()
timer = compare.Timer(0.3, 5, 30)
shapes = [(1, 32768, 64, 16), (1, 16384, 32, 16), (4, 8192, 128, 16), (1, 4096, 256, 16)]
out = open(sys.argv[1], "w")
for qo, kv, B, page in shapes:
    w = compare.Workload(f"decode qo={qo} kv={kv} B={B} 32/8 page {page}", "decode", None, True,
                         [qo] * B, [kv] * B, 32, 8, (page,))
    d = compare.WorkloadData(w, 1, False)
    systems = [(o, ours(w, d, page, o)) for o in ["plan", "head_major", "reverse", "shuffle"]]
    systems.append(("fa3", compare.fa3_paged(fa3, w, d, page)))
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, fn in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(fn)[0] / 1e6)
    base = max(res["plan"])
    line = f"{w.name:36s} " + "  ".join(f"{n} {'/'.join(f'{x:.0f}' for x in v)} ({max(v) / base:.3f})" for n, v in res.items())
    print(line, flush=True); out.write(line + "\n"); out.flush()
    del systems, d
    gc.collect(); torch.cuda.empty_cache()
