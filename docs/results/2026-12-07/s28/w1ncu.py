# W1 full ragged at S = argv[1] (16 heads, D 128): ptxattn once after warm-up, for ncu.
import sys
sys.path.insert(0, "bench")
import torch, compare, ptxattn
S = int(sys.argv[1]); n = 16384 // S
w = compare.Workload(f"w{S}", "W1", S, False, [S] * n, [S] * n, 16, 16, ())
d = compare.WorkloadData(w, 1, False)
wr = ptxattn.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"), "NHD")
wr.plan(d.qo_starts, d.kv_starts, 16, 16, 128, q_data_type="bfloat16")
print("plan", wr.chosen_load_path, wr.chosen_schedule, wr.chosen_block_kv, wr.chosen_kv_stages, flush=True)
o = torch.empty_like(d.q)
for _ in range(3): wr.run(d.q, d.k, d.v, out=o)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
wr.run(d.q, d.k, d.v, out=o); torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
