# Decode and speculative-verification shapes beyond the #12 rows (sweep21.py's, and 4 of long among short): ptxattn (the pack on PYTHONPATH, kAuto
# everything; argv[1] labels it) against FA3 paged on the same tensors, GB/s of K/V read, 3 interleaved rounds
# each, with the plan's chosen split count and schedule.
# Also checks each ptxattn output against FA3's (max |diff|), so a fast wrong answer cannot pass unseen.
import sys, gc, random
sys.path.insert(0, "bench")
import torch
import compare

fa3 = compare.import_fa3()
import ptxattn
label = sys.argv[1] if len(sys.argv) > 1 else "ptx"
workspace = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")


def ours_fn(w, d, page):
    pool = d.pools[page]
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    o = torch.empty_like(d.q)
    return (lambda: wrapper.run(d.q, pool.k, pool.v, out=o)), f"splits {wrapper.chosen_kv_splits} {wrapper.chosen_schedule}"

timer = compare.Timer(0.25, 5, 30)
rng = random.Random(20)
mixed32 = [rng.choice([512, 1024, 3000, 8192, 20000, 65536]) for _ in range(32)]
mixed8 = [rng.randint(1000, 100000) for _ in range(8)]
rng2 = random.Random(7)
mixed128 = [rng2.choice([256, 1024, 4096, 16384, 65536]) for _ in range(128)]
one_long = [131072] + [1024] * 63
shapes = [  # qo per request, kv per request, qo_heads, kv_heads, page
    ([1] * 64, [32768] * 64, 32, 8, 16),
    ([1] * 64, [32768] * 64, 32, 8, 64),
    ([1] * 1, [131072] * 1, 32, 8, 16),
    ([1] * 2, [65536] * 2, 32, 8, 16),
    ([1] * 8, [16384] * 8, 32, 8, 16),
    ([1] * 32, [2048] * 32, 32, 8, 16),
    ([1] * 256, [4096] * 256, 32, 8, 16),
    ([1] * 64, [8192] * 64, 32, 32, 16),
    ([1] * 64, [8192] * 64, 64, 8, 16),
    ([1] * 64, [8192] * 64, 8, 8, 16),
    ([1] * 64, [8192] * 64, 32, 8, 1),
    ([1] * 32, mixed32, 32, 8, 16),
    ([1] * 8, mixed8, 32, 8, 16),
    ([2] * 64, [8192] * 64, 32, 8, 16),
    ([4] * 128, [8192] * 128, 32, 8, 16),
    ([8] * 128, [4096] * 128, 32, 8, 16),
    ([16] * 64, [2048] * 64, 32, 8, 16),
    ([16] * 4, [32768] * 4, 32, 8, 16),
    ([5] * 32, mixed32, 32, 8, 64),
    ([1] * 128, mixed128, 32, 8, 16),
    ([1] * 64, one_long, 32, 8, 16),
    ([1] * 64, one_long, 32, 8, 64),
    ([4] * 64, one_long, 32, 8, 16),
    ([1] * 1, [262144], 32, 32, 16),
    ([1] * 16, [200000] + [2000] * 15, 32, 32, 16),
    ([4] * 32, [65536] + [4096] * 31, 32, 8, 16),
    ([1] * 256, [65536] * 4 + [2048] * 252, 32, 8, 16),
    ([1] * 64, one_long, 32, 32, 16),
    ([2] * 96, [100000] * 2 + [6000] * 94, 32, 8, 64),
]
for qo, kv, hq, hk, page in shapes:
    kvdesc = f"kv={kv[0]}" if len(set(kv)) == 1 else f"kv=mixed({min(kv)}..{max(kv)}, sum {sum(kv)})"
    name = f"qo={qo[0]} {kvdesc} B={len(qo)} {hq}/{hk} page {page}"
    w = compare.Workload(name, "decode", None, True, qo, kv, hq, hk, (page,))
    d = compare.WorkloadData(w, 1, False)
    ours, chosen = ours_fn(w, d, page)
    theirs = compare.fa3_paged(fa3, w, d, page)
    diff = (ours().float() - theirs().float()).abs().max().item()
    res = {"ptxattn": [], "fa3": []}
    for r in range(3):
        for n, f in ([("ptxattn", ours), ("fa3", theirs)] if r % 2 == 0 else [("fa3", theirs), ("ptxattn", ours)]):
            res[n].append(w.kv_bytes() / timer.median_ms(f)[0] / 1e6)
    med = {n: sorted(v)[1] for n, v in res.items()}
    print(f"{label:4s} {name:58s} {chosen:28s} ptxattn {'/'.join(f'{x:.0f}' for x in res['ptxattn'])}  fa3 {'/'.join(f'{x:.0f}' for x in res['fa3'])}"
          f"  ratio {med['ptxattn'] / med['fa3']:.3f}  max|diff| {diff:.1e}", flush=True)
    del ours, theirs, d
    gc.collect(); torch.cuda.empty_cache()
