# Runs one ptxattn decode (qo=1, 32/8 heads, D 128) twice for ncu: argv page, schedule, B, kv, [kv_splits].
import sys
sys.path.insert(0, "bench")
import torch
import compare
import ptxattn
PAGE, SCHEDULE, B, KV = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
SPLITS = int(sys.argv[5]) if len(sys.argv) > 5 else 1
w = compare.Workload(f"decode qo=1 kv={KV} B={B} 32/8 page {PAGE}", "decode", None, True, [1] * B, [KV] * B, 32, 8, (PAGE,))
d = compare.WorkloadData(w, 1, False)
pool = d.pools[PAGE]
ws = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD", schedule=SCHEDULE)
wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, 32, 8, 128, PAGE,
             num_pages=pool.num_pages, causal=True, q_data_type="bfloat16", kv_splits=SPLITS)
o = torch.empty_like(d.q)
for _ in range(2):
    wrapper.run(d.q, pool.k, pool.v, out=o)
torch.cuda.synchronize()
print("ran", w.name, SCHEDULE, file=sys.stderr)
