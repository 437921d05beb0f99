# Tail chunks (exp/claim-ahead, pack cla3): under the dynamic schedule with split-KV, only the last N requests'
# tiles are split (PTXATTN_TAIL_REQUESTS=N at plan time); the others' tiles run whole in chunk 0 and their empty
# chunks are listed last. Claimed 2 blocks ahead. Same tensors, FA3 paged alongside, interleaved rounds.
import sys, gc, os
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
    return fn, o

os.environ["PTXATTN_CLAIM_AHEAD"] = "2"
fa3 = compare.import_fa3()
timer = compare.Timer(0.3, 5, 30)
shapes = [  # qo, kv, B, page, [(splits, tail)]
    (1, 32768, 64, 16, [(1, None), (2, None), (2, 8), (2, 16), (4, 8), (4, 16), (4, 24), (8, 8), (8, 16)]),
    (1, 16384, 32, 16, [(1, None), (2, 8), (2, 16), (4, 8), (4, 16)]),
    (4, 8192, 128, 16, [(1, None), (2, 16), (2, 32), (4, 16), (4, 32)]),
    (1, 8192, 64, 16, [(1, None), (2, 8), (4, 8), (4, 16)]),
]
out = open(sys.argv[1], "w")
for qo, kv, B, page, configs in shapes:
    w = compare.Workload(f"decode qo={qo} kv={kv} B={B} 32/8 page {page}", "decode", None, True,
                         [qo] * B, [kv] * B, 32, 8, (page,))
    d = compare.WorkloadData(w, 1, False)
    systems, outs = [], {}
    for s, t in configs:
        fn, o = ours(w, d, page, s, t)
        systems.append((f"S{s}t{t if t is not None else 'all'}", fn)); outs[systems[-1][0]] = o
    f = compare.fa3_paged(fa3, w, d, page)
    systems.append(("fa3", f))
    for n, fn in systems: fn()
    torch.cuda.synchronize()
    ref = outs["S1tall"].float()
    diffs = {n: (o.float() - ref).abs().max().item() for n, o in outs.items()}
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, fn in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(fn)[0] / 1e6)
    base = max(res["S1tall"])
    line = f"{w.name:36s} " + "  ".join(f"{n} {'/'.join(f'{x:.0f}' for x in v)} ({max(v) / base:.3f})" for n, v in res.items())
    line += "  max|diff| vs S1: " + " ".join(f"{n} {v:.1e}" for n, v in diffs.items())
    print(line, flush=True); out.write(line + "\n"); out.flush()
    del systems, d, outs
    gc.collect(); torch.cuda.empty_cache()
