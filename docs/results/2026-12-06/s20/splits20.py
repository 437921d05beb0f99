# Mixed-length decode batches: ptxattn with the split rule's choice and with forced kv_splits, against FA3
# paged, GB/s of K/V read, 3 interleaved rounds (median shown). Which split counts would the batch want?
import sys, gc, random
sys.path.insert(0, "bench")
import torch
import compare

fa3 = compare.import_fa3()
timer = compare.Timer(0.25, 5, 30)
rng = random.Random(20)
mixed32 = [rng.choice([512, 1024, 3000, 8192, 20000, 65536]) for _ in range(32)]
mixed8 = [rng.randint(1000, 100000) for _ in range(8)]
rng2 = random.Random(7)
mixed128 = [rng2.choice([256, 1024, 4096, 16384, 65536]) for _ in range(128)]
one_long = [131072] + [1024] * 63
shapes = [  # qo per request, kv per request, page
    ([1] * 32, mixed32, 16),
    ([1] * 8, mixed8, 16),
    ([5] * 32, mixed32, 64),
    ([1] * 128, mixed128, 16),
    ([1] * 64, one_long, 16),
    ([1] * 64, [32768] * 64, 16),
]
packs = {s: compare.Ptxattn(kv_splits=s) for s in (0, 2, 3, 4, 6, 8, 16)}
for qo, kv, page in shapes:
    name = f"qo={qo[0]} kv=({min(kv)}..{max(kv)}, sum {sum(kv)}) B={len(qo)} page {page}"
    w = compare.Workload(name, "decode", None, True, qo, kv, 32, 8, (page,))
    d = compare.WorkloadData(w, 1, False)
    systems = [("fa3", compare.fa3_paged(fa3, w, d, page))]
    for s, p in packs.items():
        try:
            systems.append((f"s{s}", p.prepare(w, d, page)))
        except Exception as e:
            print("  skip", s, e)
    ref = systems[0][1]().float()
    diffs = {n: (f().float() - ref).abs().max().item() for n, f in systems[1:]}
    res = {n: [] for n, _ in systems}
    for r in range(3):
        for n, f in (systems if r % 2 == 0 else systems[::-1]):
            res[n].append(w.kv_bytes() / timer.median_ms(f)[0] / 1e6)
    med = {n: sorted(v)[1] for n, v in res.items()}
    print(name, "  " + "  ".join(f"{n} {med[n]:.0f}" for n in res), "  max|diff| " +
          " ".join(f"{n}:{v:.0e}" for n, v in diffs.items()), flush=True)
    del systems, d
    gc.collect(); torch.cuda.empty_cache()
