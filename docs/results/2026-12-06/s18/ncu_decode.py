# Runs ptxattn paged16 (package, given schedule) and FA3 paged16 once each after a warm-up, for ncu.
import sys
sys.path.insert(0, "bench")
import torch
import compare
schedule = sys.argv[1]
names = sys.argv[2:]
ptx = compare.Ptxattn(0, "auto", schedule)
fa3 = compare.import_fa3()
for w in compare.make_workloads([], ["decode"]):
    if w.name not in names:
        continue
    d = compare.WorkloadData(w, 1, False)
    for name, fn in [("ptxattn", ptx.prepare(w, d, 16)), ("fa3", compare.fa3_paged(fa3, w, d, 16))]:
        fn(); torch.cuda.synchronize()
        fn(); torch.cuda.synchronize()
    del d
    torch.cuda.empty_cache()
