# Per-SM streaming rate at head_dim 64 and 256 (decode qo=1 kv=65536, 32/8 heads, one item per SM, no split,
# dynamic schedule), ptxattn only (the FA3 build carried has head_dim 128 alone). argv: page sizes.
import sys, gc
sys.path.insert(0, "bench")
import torch
import compare
import ptxattn

timer = compare.Timer(0.3, 5, 30)
for PAGE in [int(x) for x in sys.argv[1:]] or [16]:
    for D in (64, 256):
        for B in (4, 8):
            w = compare.Workload(f"decode qo=1 kv=65536 B={B} 32/8 D {D} page {PAGE}", "decode", None, True, [1] * B,
                                 [65536] * B, 32, 8, (PAGE,))
            w.head_dim = D
            d = compare.WorkloadData(w, 1, False)
            pool = d.pools[PAGE]
            ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
            wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule="dynamic")
            wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, 32, 8, D, PAGE,
                         num_pages=pool.num_pages, causal=True, q_data_type="bfloat16", kv_splits=1)
            o = torch.empty_like(d.q)
            best = max(w.kv_bytes() / timer.median_ms(lambda: wrapper.run(d.q, pool.k, pool.v, out=o))[0] / 1e6
                       for _ in range(3))
            print(f"{w.name:40s} items {B * 8:4d}  ptxattn {best:.0f} GB/s ({best / (B * 8):.1f} per SM)", flush=True)
            del d, pool, wrapper, ws, o
            gc.collect(); torch.cuda.empty_cache()
