# B=1 decode (qo 1, kv 131072, 32/8 heads, page 16) once per system after warm-up, for ncu.
import sys
sys.path.insert(0, "bench")
import torch, compare, ptxattn
fa3 = compare.import_fa3()
w = compare.Workload("b1", "decode", None, True, [1], [131072], 32, 8, (16,))
d = compare.WorkloadData(w, 1, False)
pool = d.pools[16]
wr = ptxattn.BatchPrefillWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"), "NHD")
wr.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, 32, 8, 128, 16, num_pages=pool.num_pages,
        causal=True, q_data_type="bfloat16")
print("splits", wr.chosen_kv_splits, wr.chosen_schedule, flush=True)
o = torch.empty_like(d.q)
ours = lambda: wr.run(d.q, pool.k, pool.v, out=o)
theirs = compare.fa3_paged(fa3, w, d, 16)
for f in (ours, theirs, ours, theirs): f()
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
for f in (ours, theirs, ours, theirs): f(); torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
