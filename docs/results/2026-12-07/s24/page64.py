# Pages of 64 (the TMA path) against pages of 16 on decode shapes and W2: ptxattn under kAuto's schedule (persistent
# on the TMA path), under the dynamic schedule and on the gather path, against FA3 paged on the same tensors; GB/s of
# K/V read, 3 interleaved rounds, median, each cell after the clock has settled. argv[1] labels the pack on PYTHONPATH.
import sys, gc
sys.path.insert(0, "bench")
import torch
import compare
import ptxattn

fa3 = compare.import_fa3()
label = sys.argv[1] if len(sys.argv) > 1 else "ptx"


def ours_fn(w, d, page, schedule, load_path="auto"):
    pool = d.pools[page]
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"), "NHD", schedule=schedule, load_path=load_path)
    wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
                 page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    o = torch.empty_like(d.q)
    return (lambda: wrapper.run(d.q, pool.k, pool.v, out=o)), f"{wrapper.chosen_kv_splits}/{wrapper.chosen_schedule}"


timer = compare.Timer(0.25, 5, 30, 5.0)
one_long = [131072] + [1024] * 63
shapes = [  # qo per request, kv per request, page
    ([1] * 64, [32768] * 64, 16),
    ([1] * 64, [32768] * 64, 64),
    ([4] * 128, [8192] * 128, 64),
    ([1] * 64, one_long, 64),
    ([2] * 96, [100000] * 2 + [6000] * 94, 64),
    (compare.W2_QO_LENS, compare.W2_KV_LENS, 64),
]
for qo, kv, page in shapes:
    kvdesc = f"kv={kv[0]}" if len(set(kv)) == 1 else f"kv=mixed({min(kv)}..{max(kv)})"
    name = f"qo={qo[0]} {kvdesc} B={len(qo)} page {page}" if len(set(qo)) == 1 else f"W2 page {page}"
    w = compare.Workload(name, "decode", None, True, qo, kv, 32, 8, (page,))
    d = compare.WorkloadData(w, 1, False)
    fns = {"fa3": (compare.fa3_paged(fa3, w, d, page), "")}
    for schedule, load_path in (("auto", "auto"), ("dynamic", "auto"), ("auto", "gather")):
        key = schedule if load_path == "auto" else load_path
        try:
            fns[key] = ours_fn(w, d, page, schedule, load_path)
        except Exception as e:  # a schedule the plan refuses (split batches under the dynamic schedule)
            print(f"{label} {name}: schedule {schedule} refused: {e}")
    res = {n: [] for n in fns}
    for r in range(3):
        for n in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(fns[n][0])[0] / 1e6)
    med = {n: sorted(v)[1] for n, v in res.items()}
    cols = "  ".join(f"{n}[{fns[n][1]}] {med[n]:.0f} ({med[n] / med['fa3']:.3f})" for n in fns if n != "fa3")
    print(f"{label:4s} {name:42s} fa3 {med['fa3']:.0f}  {cols}", flush=True)
    del fns, d
    gc.collect(); torch.cuda.empty_cache()
