# Decode rows under forced schedules and KV split counts, FA3 paged16 alongside, interleaved rounds, same tensors.
# argv[1]: comma list of schedule:max_ctas:kv_splits. Question: do finer items (splits) under a schedule that
# balances at run time (one item per CTA, dynamic) even out the fast and slow SMs the item trace shows?
import sys
sys.path.insert(0, "bench")
import torch
import compare

class Ptx(compare.Ptxattn):
    def __init__(self, schedule, max_ctas, kv_splits):
        super().__init__(kv_splits, "auto", schedule)
        self.max_ctas = max_ctas
    def prepare(self, w, d, page_size):
        pool = d.pools[page_size]
        wrapper = self.package.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD", schedule=self.schedule,
                                                                   max_ctas=self.max_ctas)
        wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads,
                     w.head_dim, page_size, num_pages=pool.num_pages, causal=w.causal, q_data_type="bfloat16",
                     kv_splits=self.kv_splits)
        out = torch.empty_like(d.q)
        return lambda: wrapper.run(d.q, pool.k, pool.v, out=out)

timer = compare.Timer(0.4, 5, 40)
fa3 = compare.import_fa3()
configs = [c.split(":") for c in sys.argv[1].split(",")]
names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["decode qo=1 kv=32768 B=64", "decode qo=4 kv=8192 B=128"]
for w in compare.make_workloads([], ["decode"]):
    if w.name not in names:
        continue
    d = compare.WorkloadData(w, 1, False)
    systems = [("fa3", compare.fa3_paged(fa3, w, d, 16))]
    for s, c, k in configs:
        systems.append((f"{s}:{c}:{k}", Ptx(s, int(c), int(k)).prepare(w, d, 16)))
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, fn in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(fn)[0] / 1e6)
    print(w.name, flush=True)
    for n, v in res.items():
        print(f"  {n:26s} GB/s " + " / ".join(f"{x:.0f}" for x in v), flush=True)
