# B=1 decode (qo 1, kv 131072, 32/8 heads, page 16): per-call times of ptxattn and FA3, interleaved blocks,
# with the compare.py timing (L2 flush + sleep before each call), and the SM clock read by NVML around each block.
import sys, time, statistics
sys.path.insert(0, "bench")
import torch, compare, ptxattn
fa3 = compare.import_fa3()
label = sys.argv[1]
try:
    import pynvml; pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
    clk = lambda: (pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM), pynvml.nvmlDeviceGetPowerUsage(h) // 1000,
                   pynvml.nvmlDeviceGetTemperature(h, 0))
except Exception as e:
    clk = lambda: ()
def ours_fn(w, d, page):
    pool = d.pools[page]
    wr = ptxattn.BatchPrefillWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"), "NHD")
    wr.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads, w.head_dim,
            page, num_pages=pool.num_pages, causal=True, q_data_type="bfloat16")
    o = torch.empty_like(d.q)
    return lambda: wr.run(d.q, pool.k, pool.v, out=o)
flush = torch.empty(4 * (64 << 20), dtype=torch.uint8, device="cuda")
def times(fn, n, do_flush=True):
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for a, b in ev:
        if do_flush: flush.zero_()
        torch.cuda._sleep(1000000); a.record(); fn(); b.record()
    torch.cuda.synchronize()
    return [a.elapsed_time(b) * 1000 for a, b in ev]
def work(qo, kv, page):
    w = compare.Workload("p", "decode", None, True, qo, kv, 32, 8, (page,))
    return w, compare.WorkloadData(w, 1, False)
w1, d1 = work([1], [131072], 16)
ours, theirs = ours_fn(w1, d1, 16), compare.fa3_paged(fa3, w1, d1, 16)
w64, d64 = work([1] * 64, [32768] * 64, 16)
heavy = ours_fn(w64, d64, 16)
for f in (ours, theirs, heavy): f(); f()
torch.cuda.synchronize()
def show(tag, fn, **kw):
    c0 = clk(); t = times(fn, 30, **kw); c1 = clk()
    q = sorted(t)
    print(f"{label} {tag:28s} us min {q[0]:.1f} p25 {q[7]:.1f} med {statistics.median(t):.1f} p75 {q[22]:.1f} max {q[-1]:.1f}  clk {c0}->{c1}  first8 {' '.join(f'{x:.0f}' for x in t[:8])}", flush=True)
for r in range(2):
    time.sleep(1.0)
    show("ptx after idle", ours); show("fa3", theirs)
    t_end = time.time() + 1.0
    while time.time() < t_end: heavy()
    show("ptx after 1 s of B=64", ours); show("fa3", theirs)
    show("ptx no flush", ours, do_flush=False); show("fa3 no flush", theirs, do_flush=False)
