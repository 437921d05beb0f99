# Dynamic schedule: when producer thread 0 claims the next item (PTXATTN_CLAIM_AHEAD = KV blocks of the current
# item still to issue; 0 = after the last, main's behaviour; 1000 = at the item's start). Same tensors, FA3 paged
# alongside, interleaved rounds. argv[1]: output file, argv[2]: comma list of ahead values.
import sys, gc, os
sys.path.insert(0, "bench")
import torch
import compare

def ours(w, d, page, schedule, splits):
    import ptxattn
    pool = d.pools[page]
    ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")  # a workspace per plan
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule=schedule)
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16", kv_splits=splits)
    o = torch.empty_like(d.q)
    fn = lambda: wrapper.run(d.q, pool.k, pool.v, out=o)
    fn.keep = ws
    return fn

fa3 = compare.import_fa3()
timer = compare.Timer(0.3, 5, 30)
aheads = sys.argv[2].split(",")
shapes = [  # qo, kv, B, qo_heads, kv_heads, page, splits (0 = the plan's rule)
    (1, 32768, 64, 32, 8, 16, 1), (1, 32768, 64, 32, 8, 16, 2), (1, 32768, 64, 32, 8, 16, 4),
    (4, 8192, 128, 32, 8, 16, 0), (1, 4096, 256, 32, 8, 16, 0), (1, 2048, 512, 32, 8, 16, 0),
    (1, 131072, 1, 32, 8, 16, 0), (16, 4096, 64, 32, 8, 16, 0), (1, 8192, 64, 32, 8, 1, 0),
]
out = open(sys.argv[1], "w")
for qo, kv, B, hq, hk, page, splits in shapes:
    w = compare.Workload(f"decode qo={qo} kv={kv} B={B} {hq}/{hk} page {page} splits {splits}", "decode", None, True,
                         [qo] * B, [kv] * B, hq, hk, (page,))
    d = compare.WorkloadData(w, 1, False)
    systems = [("persistent", "0", ours(w, d, page, "persistent", splits))]
    dyn = ours(w, d, page, "dynamic", splits)
    systems += [(f"dyn{a}", a, dyn) for a in aheads]
    try:
        f = compare.fa3_paged(fa3, w, d, page)
        f(); torch.cuda.synchronize()
        systems.append(("fa3", "0", f))
    except Exception as e:
        print("fa3 unavailable:", str(e)[:80], flush=True)
    res = {n: [] for n, _, _ in systems}
    for r in range(3):
        for n, a, fn in (systems if r % 2 == 0 else systems[::-1]):
            os.environ["PTXATTN_CLAIM_AHEAD"] = a
            res[n].append(w.kv_bytes() / timer.median_ms(fn)[0] / 1e6)
    base = max(res["dyn0"])
    line = f"{w.name:48s} " + "  ".join(f"{n} {'/'.join(f'{x:.0f}' for x in v)} ({max(v) / base:.3f})" for n, v in res.items())
    print(line, flush=True); out.write(line + "\n"); out.flush()
    del systems, d, dyn
    gc.collect(); torch.cuda.empty_cache()
