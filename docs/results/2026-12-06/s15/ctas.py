# Decode B=64 (and qo=4 B=128) under the persistent schedule with fewer CTAs than SMs (max_ctas), one item
# per CTA and FA3 paged16, interleaved rounds, same tensors. Question: does a CTA count that keeps the 8 KV
# heads of a request in step (a multiple of 8: 128) read the shared 32 KiB pages faster than 132 CTAs?
import sys
sys.path.insert(0, "bench")
import torch
import compare

class Ptx(compare.Ptxattn):
    def __init__(self, schedule, max_ctas):
        super().__init__(0, "auto", schedule)
        self.max_ctas = max_ctas
    def prepare(self, w, d, page_size):
        pool = d.pools[page_size]
        wrapper = self.package.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD", schedule=self.schedule,
                                                                   max_ctas=self.max_ctas)
        wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads,
                     w.head_dim, page_size, num_pages=pool.num_pages, causal=w.causal, q_data_type="bfloat16")
        out = torch.empty_like(d.q)
        return lambda: wrapper.run(d.q, pool.k, pool.v, out=out)

timer = compare.Timer(0.4, 5, 40)
try:
    fa3 = compare.import_fa3()
except ImportError:
    fa3 = None
names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["decode qo=1 kv=32768 B=64", "decode qo=4 kv=8192 B=128"]
for w in compare.make_workloads([], ["decode"]):
    if w.name not in names:
        continue
    d = compare.WorkloadData(w, 1, False)
    systems = [("fa3", compare.fa3_paged(fa3, w, d, 16))] if fa3 else []
    for schedule, ctas in [("persistent", 0), ("persistent", 128), ("persistent", 124), ("persistent", 120),
                           ("persistent", 112), ("persistent", 96), ("persistent", 64), ("one_item_per_cta", 0)]:
        systems.append((f"{schedule}:{ctas}", Ptx(schedule, ctas).prepare(w, d, 16)))
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, fn in (systems if r % 2 == 0 else systems[::-1]):
            ms = timer.median_ms(fn)[0]
            res[n].append(w.kv_bytes() / ms / 1e6)
    print(w.name, flush=True)
    for n, v in res.items():
        print(f"  {n:22s} GB/s " + " / ".join(f"{x:.0f}" for x in v), flush=True)
