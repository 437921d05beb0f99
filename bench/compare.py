#!/usr/bin/env python3
"""ptxattn against its peers: one process, the same tensors, the same GPU, the same run.

Workloads are W1, W2 and the decode rows of docs/benchmarks.md (bf16, head_dim
128). For each one the script builds the tensors once with torch on the GPU
(ragged/dense Q, K, V and paged pools, pages randomly permuted in the pool: page
sizes 16 and 64 for W1, 1, 7, 16 and 64 for W2, 16 for decode) and runs every
available system on them:

  ptxattn          ragged and paged, through the ptxattn Python package (its wrappers,
                   plans in one workspace buffer, on torch's current stream)
  FA3              flash_attn_func / flash_attn_varlen_func (dense) and
                   flash_attn_with_kvcache with page_table (paged), when
                   flash_attn_interface (FlashAttention-3, hopper/ build) imports
  FlashInfer       BatchPrefillWithPagedKVCacheWrapper, backends fa3 and fa2,
                   when flashinfer imports
  cuDNN, FA2       torch scaled_dot_product_attention with the backend pinned
                   (equal-length batches only: W1)

Every ptxattn configuration is first checked against a float32 torch
reference on sampled query rows of every request; one that fails is reported
and never timed. Every peer's output is compared with the validated ptxattn
output (max |difference| is reported, and a peer over the tolerance is flagged).

Timing: CUDA events around one call, median over repetitions after warm-up; the
L2 is flushed before each call (every workload here is far larger than L2) and
a GPU sleep is queued in front of the start event so the host's launch cost is
not timed. Each system's cell starts from a GPU that no longer holds its clock
down: a memory-bound step draws the board to its power limit, the SM clock
drops (to 900-1400 MHz of 1980 on the H200 after a second of the 64-request
decode row) and recovers over about a second, so whichever system came right
after a heavy cell would run slower. Before each cell the script waits, through
NVML, until no power or thermal limit holds the clock (--settle-max-s), and
records the SM clock at the start and the end of the cell. TFLOP/s as docs/benchmarks.md defines it (unmasked score entries only);
for decode rows also the K/V read bandwidth (K and V bytes of every request's
kv_len, each read once, over the time), next to the same run's copy bandwidth.
The same run measures the ceilings of the roofline note: a large bf16
torch.matmul, the device-to-device copy bandwidth and the MUFU exp2 bound.

Writes compare.json (everything), compare.md (tables) and compare.png
(TFLOP/s against sequence length, full and causal panels) to --out-dir.
Usage: python3 bench/compare.py [--out-dir DIR]   (with the ptxattn package importable)
"""

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F


W1_TOKENS = 16384
W1_HEADS = 16
HEAD_DIM = 128
W2_QO_LENS = [1857, 916, 1680, 1951, 989, 210, 658, 1175, 1123, 957, 2008, 1733, 1827, 749, 1104, 861]
W2_KV_LENS = [3646, 2056, 3988, 3095, 1765, 2262, 1861, 3715, 1932, 1561, 4712, 5600, 2651, 3647, 4660, 3451]
W2_QO_HEADS, W2_KV_HEADS = 32, 8
W1_PAGE_SIZES = (16, 64)
# W2 also at page sizes 1 and 7 (no multiple of any tile size; 16 and 64 as in W1).
W2_PAGE_SIZES = (1, 7, 16, 64)
# Decode and speculative verification (issue #12's targets): (qo_len, kv_len,
# requests), heads 32/8 as W2, pages of 16, causal (bottom-right aligned).
DECODE_SHAPES = [(1, 32768, 64), (1, 131072, 1), (4, 8192, 128)]
DECODE_QO_HEADS, DECODE_KV_HEADS = 32, 8
DECODE_PAGE_SIZES = (16,)
ELEMENT_BYTES = 2  # bf16

# Validation of ptxattn against the float32 reference (bf16 output rounding plus
# P rounded to bf16 before P·V stay far below this), and the flag for peers.
VALIDATION_ATOL, VALIDATION_RTOL = 5e-3, 2e-2
CROSS_CHECK_TOLERANCE = 2e-2
ROWS_PER_END = 16  # validated rows per request: first, last and random ones
EXTRA_POOL_PAGES = 3
WARMUP_CALLS = 3
SLEEP_CYCLES = 1_000_000  # ~0.5 ms of GPU sleep before each start event
# NVML clock event reasons that hold the SM clock below what it would run at:
# software power cap, hardware slowdown, software and hardware thermal slowdown,
# hardware power brake (nvml.h, nvmlClocksEventReason*).
CLOCK_LIMIT_REASONS = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
# CUDA C++ Programming Guide, throughput of native arithmetic instructions:
# compute capability 9.0 runs 16 MUFU ex2 results per clock per SM.
MUFU_EX2_PER_CLOCK_PER_SM = 16


class Unavailable(Exception):
    """A system that cannot run this workload (missing package, unsupported shape)."""


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------
class Workload:
    def __init__(self, name, family, seq_len, causal, qo_lens, kv_lens, qo_heads, kv_heads, page_sizes):
        self.name, self.family, self.seq_len, self.causal = name, family, seq_len, causal
        self.qo_lens, self.kv_lens = qo_lens, kv_lens
        self.qo_heads, self.kv_heads, self.head_dim = qo_heads, kv_heads, HEAD_DIM
        self.page_sizes = page_sizes
        self.equal_lengths = len(set(qo_lens)) == 1 and qo_lens == kv_lens

    @property
    def num_requests(self):
        return len(self.qo_lens)

    def kv_bytes(self):
        """K and V of every request's kv_len, read once: the decode bandwidth numerator."""
        return 2 * sum(self.kv_lens) * self.kv_heads * self.head_dim * ELEMENT_BYTES

    def flops(self):
        """docs/benchmarks.md: 4·H_qo·D·pairs per request, causal pairs bottom-right aligned."""
        total = 0
        for qo, kv in zip(self.qo_lens, self.kv_lens):
            pairs = qo * (kv - qo) + qo * (qo + 1) // 2 if self.causal else qo * kv
            total += 4 * self.qo_heads * self.head_dim * pairs
        return total


def make_workloads(seq_lens, families):
    workloads = []
    if "w1" in families:
        for seq_len in seq_lens:
            for causal in (False, True):
                count = W1_TOKENS // seq_len
                workloads.append(Workload(f"W1 S={seq_len} {'causal' if causal else 'full'}", "W1", seq_len, causal,
                                          [seq_len] * count, [seq_len] * count, W1_HEADS, W1_HEADS, W1_PAGE_SIZES))
    if "w2" in families:
        workloads.append(Workload("W2 causal", "W2", None, True, W2_QO_LENS, W2_KV_LENS,
                                  W2_QO_HEADS, W2_KV_HEADS, W2_PAGE_SIZES))
    if "decode" in families:
        for qo, kv, batch in DECODE_SHAPES:
            workloads.append(Workload(f"decode qo={qo} kv={kv} B={batch}", "decode", None, True, [qo] * batch,
                                      [kv] * batch, DECODE_QO_HEADS, DECODE_KV_HEADS, DECODE_PAGE_SIZES))
    return workloads


def prefix_sums(lengths):
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


class PagedPool:
    """K/V of every request in pages of `page_size`, pages randomly permuted in the pool."""

    def __init__(self, w, k, v, kv_starts, page_size, poison, generator):
        self.page_size = page_size
        pages_per_request = [-(-kv // page_size) for kv in w.kv_lens]
        used = sum(pages_per_request)
        self.num_pages = used + EXTRA_POOL_PAGES
        order = torch.randperm(self.num_pages, generator=generator)[:used].tolist()
        fill = float("nan") if poison else 0.0
        shape = (self.num_pages, page_size, w.kv_heads, w.head_dim)
        self.k = torch.full(shape, fill, dtype=k.dtype, device=k.device)
        self.v = torch.full(shape, fill, dtype=v.dtype, device=v.device)
        self.indptr = prefix_sums(pages_per_request)
        self.indices = order
        self.last_page_len = [kv - page_size * (n - 1) if n else 0 for kv, n in zip(w.kv_lens, pages_per_request)]
        for b, kv in enumerate(w.kv_lens):
            pages = torch.tensor(order[self.indptr[b]:self.indptr[b + 1]], device=k.device)
            for src, dst in ((k, self.k), (v, self.v)):
                rows = src[kv_starts[b]:kv_starts[b] + kv]
                full = kv // page_size
                if full:
                    dst[pages[:full]] = rows[:full * page_size].view(full, page_size, w.kv_heads, w.head_dim)
                if kv % page_size:
                    dst[pages[full], :kv % page_size] = rows[full * page_size:]
        dev = k.device
        self.indptr_dev = torch.tensor(self.indptr, dtype=torch.int32, device=dev)
        self.indices_dev = torch.tensor(self.indices, dtype=torch.int32, device=dev)
        self.last_page_len_dev = torch.tensor(self.last_page_len, dtype=torch.int32, device=dev)
        max_pages = max(pages_per_request)
        table = torch.zeros(w.num_requests, max_pages, dtype=torch.int32)
        for b in range(w.num_requests):
            row = order[self.indptr[b]:self.indptr[b + 1]]
            table[b, :len(row)] = torch.tensor(row, dtype=torch.int32)
        self.page_table = table.to(dev)


class WorkloadData:
    def __init__(self, w, seed, poison):
        dev = torch.device("cuda")
        generator = torch.Generator().manual_seed(seed)  # page order and sampled rows
        values = torch.Generator(device=dev).manual_seed(seed)
        self.qo_starts, self.kv_starts = prefix_sums(w.qo_lens), prefix_sums(w.kv_lens)
        num_q, num_kv = self.qo_starts[-1], self.kv_starts[-1]

        def uniform(rows, heads):  # U(-1, 1) rounded to bf16, drawn on the GPU
            t = torch.empty(rows, heads, w.head_dim, dtype=torch.float32, device=dev)
            return t.uniform_(-1.0, 1.0, generator=values).to(torch.bfloat16)

        self.q, self.k, self.v = uniform(num_q, w.qo_heads), uniform(num_kv, w.kv_heads), uniform(num_kv, w.kv_heads)
        self.qo_indptr_dev = torch.tensor(self.qo_starts, dtype=torch.int32, device=dev)
        self.kv_indptr_dev = torch.tensor(self.kv_starts, dtype=torch.int32, device=dev)
        self.kv_lens_dev = torch.tensor(w.kv_lens, dtype=torch.int32, device=dev)
        self.pools = {p: PagedPool(w, self.k, self.v, self.kv_starts, p, poison, generator) for p in w.page_sizes}
        self.validation_rows = []
        for qo in w.qo_lens:
            picks = set(range(min(qo, ROWS_PER_END))) | set(range(max(0, qo - ROWS_PER_END), qo))
            picks |= set(torch.randint(qo, (ROWS_PER_END,), generator=generator).tolist()) if qo else set()
            self.validation_rows.append(torch.tensor(sorted(picks), dtype=torch.long, device=dev))


def reference_rows(w, d, b):
    """float32 attention of request b's sampled query rows: [rows, H_qo, D]."""
    rows = d.validation_rows[b]
    qo, kv = w.qo_lens[b], w.kv_lens[b]
    q = d.q[d.qo_starts[b] + rows].float()
    group = w.qo_heads // w.kv_heads
    k = d.k[d.kv_starts[b]:d.kv_starts[b] + kv].float().repeat_interleave(group, dim=1)
    v = d.v[d.kv_starts[b]:d.kv_starts[b] + kv].float().repeat_interleave(group, dim=1)
    scores = torch.einsum("nhd,khd->hnk", q, k) / math.sqrt(w.head_dim)
    if w.causal:
        position = kv - qo + rows  # bottom-right aligned
        visible = torch.arange(kv, device=q.device)[None, :] <= position[:, None]
        scores = scores.masked_fill(~visible[None], float("-inf"))
    return torch.einsum("hnk,khd->nhd", torch.softmax(scores, dim=-1), v)


def validate_against_reference(w, d, out):
    """(passed, max |out - reference|) over the sampled rows of every request."""
    worst, passed = 0.0, True
    for b in range(w.num_requests):
        if w.qo_lens[b] == 0:
            continue
        ref = reference_rows(w, d, b)
        got = out[d.qo_starts[b] + d.validation_rows[b]].float()
        if not torch.isfinite(got).all():
            return False, float("nan")
        err = (got - ref).abs()
        worst = max(worst, err.max().item())
        passed &= bool((err <= VALIDATION_ATOL + VALIDATION_RTOL * ref.abs()).all())
    return passed, worst


# --------------------------------------------------------------------------
# ptxattn through its C API (include/ptxattn/ptxattn.h)
# --------------------------------------------------------------------------
class Ptxattn:
    """ptxattn through its Python package (python/ptxattn: `pip install .`, or PYTHONPATH to a built one)."""

    def __init__(self, kv_splits=0, gqa_packing="auto", schedule="auto", kv_stages=0):
        import ptxattn  # ImportError: the caller reports ptxattn unavailable
        self.package = ptxattn
        self.path = os.path.dirname(ptxattn.__file__)
        self.kv_splits, self.gqa_packing, self.schedule = kv_splits or "auto", gqa_packing, schedule
        self.kv_stages = kv_stages or "auto"
        # One workspace for every plan (each plan is timed alone): plans upload on the stream, never waiting.
        self.workspace = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")

    def prepare(self, w, d, page_size):
        """A callable running one ptxattn prefill into its own output, on torch's current stream."""
        options = dict(causal=w.causal, q_data_type="bfloat16", kv_splits=self.kv_splits,
                       gqa_packing=self.gqa_packing)

        def plan(kv_stages):
            if page_size:
                pool = d.pools[page_size]
                wrapper = self.package.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD", schedule=self.schedule)
                wrapper.plan(d.qo_starts, pool.indptr, pool.indices, pool.last_page_len, w.qo_heads, w.kv_heads,
                             w.head_dim, page_size, num_pages=pool.num_pages, kv_stages=kv_stages, **options)
                return wrapper, (pool.k, pool.v)
            wrapper = self.package.BatchPrefillWithRaggedKVCacheWrapper(self.workspace, "NHD", schedule=self.schedule)
            wrapper.plan(d.qo_starts, d.kv_starts, w.qo_heads, w.kv_heads, w.head_dim, kv_stages=kv_stages, **options)
            return wrapper, (d.k, d.v)

        try:
            try:
                wrapper, kv = plan(self.kv_stages)
            except ValueError as e:  # a forced ring this row's kernel does not have: the row keeps its own
                if self.kv_stages == "auto" or "kv_stages" not in str(e):
                    raise
                wrapper, kv = plan("auto")
        except (ValueError, RuntimeError) as e:
            raise Unavailable(str(e))
        out = torch.empty_like(d.q)

        def run():
            return wrapper.run(d.q, *kv, out=out)

        run.release = lambda: None
        run.plan_choices = dict(load_path=wrapper.chosen_load_path, schedule=wrapper.chosen_schedule,
                                kv_splits=wrapper.chosen_kv_splits, kv_stages=wrapper.chosen_kv_stages)
        return run


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------
def import_fa3():
    import flash_attn_interface  # FlashAttention-3, hopper/ build
    return flash_attn_interface


def import_flashinfer():
    import flashinfer
    return flashinfer


def fa3_dense(fa3, w, d):
    if w.equal_lengths:
        shape = (w.num_requests, w.qo_lens[0], w.qo_heads, w.head_dim)
        kv_shape = (w.num_requests, w.kv_lens[0], w.kv_heads, w.head_dim)
        q, k, v = d.q.view(shape), d.k.view(kv_shape), d.v.view(kv_shape)
        return lambda: fa3.flash_attn_func(q, k, v, causal=w.causal).view(d.q.shape)
    max_q, max_k = max(w.qo_lens), max(w.kv_lens)
    return lambda: fa3.flash_attn_varlen_func(d.q, d.k, d.v, d.qo_indptr_dev, d.kv_indptr_dev, max_q, max_k,
                                              causal=w.causal)


def fa3_paged(fa3, w, d, page_size):
    pool = d.pools[page_size]
    max_q = max(w.qo_lens)
    return lambda: fa3.flash_attn_with_kvcache(d.q, pool.k, pool.v, cache_seqlens=d.kv_lens_dev,
                                               page_table=pool.page_table, cu_seqlens_q=d.qo_indptr_dev,
                                               max_seqlen_q=max_q, causal=w.causal)


def flashinfer_paged(fi, w, d, page_size, backend, workspace):
    pool = d.pools[page_size]
    wrapper = fi.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD", backend=backend)
    wrapper.plan(d.qo_indptr_dev, pool.indptr_dev, pool.indices_dev, pool.last_page_len_dev,
                 w.qo_heads, w.kv_heads, w.head_dim, page_size, causal=w.causal,
                 q_data_type=torch.bfloat16, kv_data_type=torch.bfloat16)
    out = torch.empty_like(d.q)
    return lambda: wrapper.run(d.q, (pool.k, pool.v), out=out)


def sdpa_dense(w, d, backend):
    from torch.nn.attention import sdpa_kernel
    if not w.equal_lengths:
        raise Unavailable("SDPA has no variable-length batches (W1 only)")
    q = d.q.view(w.num_requests, w.qo_lens[0], w.qo_heads, w.head_dim).transpose(1, 2)  # [B, H, S, D] views
    k, v = (t.view(w.num_requests, w.kv_lens[0], w.kv_heads, w.head_dim).transpose(1, 2) for t in (d.k, d.v))
    gqa = w.qo_heads != w.kv_heads

    def run():
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=w.causal, enable_gqa=gqa)
        return out.transpose(1, 2).reshape(d.q.shape)
    return run


def systems_for(w, d, peers, ptx, workspace):
    """(name, family, builder) for every system; builder() returns the callable or raises Unavailable."""
    from torch.nn.attention import SDPBackend
    out = []
    if ptx is not None:
        out.append(("ptxattn ragged", "ptxattn", lambda: ptx.prepare(w, d, 0)))
        for p in w.page_sizes:
            out.append((f"ptxattn paged{p}", "ptxattn", lambda p=p: ptx.prepare(w, d, p)))
    fa3, fi = peers.get("FA3"), peers.get("FlashInfer")
    out.append(("FA3 dense", "FA3", lambda: fa3_dense(fa3, w, d) if fa3 else unavailable_peer(peers, "FA3")))
    for p in w.page_sizes:
        out.append((f"FA3 paged{p}", "FA3",
                    lambda p=p: fa3_paged(fa3, w, d, p) if fa3 else unavailable_peer(peers, "FA3")))
    for backend in ("fa3", "fa2"):
        for p in w.page_sizes:
            out.append((f"FlashInfer-{backend} paged{p}", "FlashInfer",
                        lambda p=p, backend=backend: flashinfer_paged(fi, w, d, p, backend, workspace)
                        if fi else unavailable_peer(peers, "FlashInfer")))
    out.append(("cuDNN dense (SDPA)", "SDPA", lambda: sdpa_dense(w, d, SDPBackend.CUDNN_ATTENTION)))
    out.append(("FA2 dense (SDPA)", "SDPA", lambda: sdpa_dense(w, d, SDPBackend.FLASH_ATTENTION)))
    return out


def unavailable_peer(peers, name):
    raise Unavailable(f"{name} not importable: {peers['missing'][name]}")


# --------------------------------------------------------------------------
# Timing and ceilings
# --------------------------------------------------------------------------
class Clock:
    """The SM clock and whether a power or thermal limit holds it down, through NVML (without NVML: unknown, and
    nothing is waited for)."""

    def __init__(self):
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            self.reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
                pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        except Exception:
            self.nvml = None

    def mhz(self):
        return self.nvml.nvmlDeviceGetClockInfo(self.handle, self.nvml.NVML_CLOCK_SM) if self.nvml else None

    def limited(self):
        return bool(self.nvml and self.reasons(self.handle) & CLOCK_LIMIT_REASONS)

    def settle(self, max_s):
        """Waits until no limit holds the clock, at most max_s seconds; returns the seconds waited."""
        t0 = time.perf_counter()
        torch.cuda.synchronize()
        while self.limited() and time.perf_counter() - t0 < max_s:
            time.sleep(0.02)
        return time.perf_counter() - t0


class Timer:
    def __init__(self, budget_s, min_reps, max_reps, settle_max_s=0.0):
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)
        self.flush = torch.empty(4 * max(l2, 64 << 20), dtype=torch.uint8, device="cuda")
        self.budget_s, self.min_reps, self.max_reps = budget_s, min_reps, max_reps
        self.clock, self.settle_max_s = Clock(), settle_max_s
        self.last_cell = {}

    def median_ms(self, fn):
        """The median time of fn in ms and the repetitions; last_cell then says how the clock stood."""
        settled_s = self.clock.settle(self.settle_max_s) if self.settle_max_s > 0 else 0.0
        self.last_cell = {"settle_s": settled_s, "sm_clock_start_mhz": self.clock.mhz()}
        for _ in range(WARMUP_CALLS):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        per_call = time.perf_counter() - t0 + 1e-3  # plus flush and sleep
        reps = max(self.min_reps, min(self.max_reps, int(self.budget_s / per_call)))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, stop in events:
            self.flush.zero_()
            torch.cuda._sleep(SLEEP_CYCLES)
            start.record()
            fn()
            stop.record()
        torch.cuda.synchronize()
        self.last_cell.update(sm_clock_end_mhz=self.clock.mhz(), clock_limited_at_end=self.clock.limited())
        return statistics.median(start.elapsed_time(stop) for start, stop in events), reps


def gemm_ms(timer, n):
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    return timer.median_ms(lambda: torch.matmul(a, b))[0]


def copy_ms(timer, size):
    src = torch.empty(size, dtype=torch.uint8, device="cuda").fill_(7)
    dst = torch.empty_like(src)
    return timer.median_ms(lambda: dst.copy_(src))[0]


def measure_ceilings(timer):
    n, size = 8192, 1 << 30
    gemm, copy = gemm_ms(timer, n), copy_ms(timer, size)
    props = torch.cuda.get_device_properties(0)
    sm_clock_mhz, clock_source = max_sm_clock_mhz()
    exp_rate = MUFU_EX2_PER_CLOCK_PER_SM * props.multi_processor_count * sm_clock_mhz * 1e6
    return {
        "bf16_gemm_tflops": 2 * n ** 3 / (gemm * 1e-3) * 1e-12,
        "bf16_gemm_shape": f"{n}x{n}x{n} torch.matmul",
        "copy_gb_s": 2 * size / (copy * 1e-3) * 1e-9,
        "copy_note": "1 GiB device-to-device copy, bytes read + written",
        "sm_clock_mhz": sm_clock_mhz,
        "sm_clock_source": clock_source,
        "mufu_ex2_per_s": exp_rate,
        # One exp2 per score entry and 4·D FLOPs per entry (QK^T and PV).
        "exp2_bound_tflops_d128": 4 * HEAD_DIM * exp_rate * 1e-12,
    }


def max_sm_clock_mhz():
    try:
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM), "NVML max SM clock"
    except Exception:  # no NVML: the clock torch reports, if any
        rate_khz = getattr(torch.cuda.get_device_properties(0), "clock_rate", 0)
        return rate_khz / 1000.0, "torch device properties"


def describe_environment(args, ptx, peers):
    props = torch.cuda.get_device_properties(0)
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda_torch": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "ptxattn_commit": args.commit or os.environ.get("PTXATTN_COMMIT", "unknown"),
        "ptxattn_package": ptx.path if ptx else None,
        "ptxattn_kv_splits": args.kv_splits,
        "ptxattn_kv_stages": args.kv_stages,
        "ptxattn_gqa_packing": args.gqa_packing,
        "ptxattn_schedule": args.schedule,
        "settle_max_s": args.settle_max_s,
        "python": sys.version.split()[0],
    }
    try:
        import pynvml
        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        env["driver"] = driver.decode() if isinstance(driver, bytes) else driver
    except Exception as e:  # the report says so rather than guessing
        env["driver"] = f"unknown ({e})"
    for name in ("FA3", "FlashInfer"):
        module = peers.get(name)
        env[f"{name}_version"] = getattr(module, "__version__", "present") if module else None
    env["missing_peers"] = peers["missing"]
    return env


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------
RATIOS = [("ptxattn paged16 / FA3 paged16", "ptxattn paged16", "FA3 paged16"),
          ("ptxattn paged64 / FA3 paged64", "ptxattn paged64", "FA3 paged64"),
          ("ptxattn paged16 / FA3 dense", "ptxattn paged16", "FA3 dense"),
          ("ptxattn paged1 / FA3 paged1", "ptxattn paged1", "FA3 paged1"),  # W2 only
          ("ptxattn paged7 / FA3 paged7", "ptxattn paged7", "FA3 paged7")]  # W2 only


DECODE_RATIOS = [("ptxattn paged16 / FA3 paged16", "ptxattn paged16", "FA3 paged16")]


def merge_systems(systems, names):
    """Adds a workload's system names to the column list, each new one right after the
    name before it in that workload's own order (W2's paged1/paged7 land before paged16)."""
    for i, name in enumerate(names):
        if name not in systems:
            before = [n for n in names[:i] if n in systems]
            systems.insert(systems.index(before[-1]) + 1 if before else 0, name)


def tflops_of(results, workload, system):
    r = results.get(workload, {}).get(system)
    return r.get("tflops") if r else None


def write_markdown(path, env, ceilings, workloads, systems, results):
    lines = [f"# ptxattn vs peers ({env['date']})", "",
             f"GPU {env['gpu']} ({env['sm_count']} SMs), driver {env['driver']}, torch {env['torch']} "
             f"(CUDA {env['cuda_torch']}, cuDNN {env['cudnn']}), ptxattn commit {env['ptxattn_commit']}.", ""]
    for name, why in env["missing_peers"].items():
        lines.append(f"**{name} missing**: {why}")
    lines += ["", "TFLOP/s (unmasked score entries only, as docs/benchmarks.md defines it; median). "
              f"✗: output differs from ptxattn by more than {CROSS_CHECK_TOLERANCE}; "
              "—: not run (see compare.json for why).", ""]
    header = ["workload"] + systems + [r[0] for r in RATIOS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for w in workloads:
        cells = [w.name]
        for s in systems:
            r = results[w.name].get(s, {})
            t = r.get("tflops")
            cells.append("—" if t is None else f"{t:.0f}" + (" ✗" if r.get("cross_check") == "mismatch" else ""))
        for _, num, den in RATIOS:
            a, b = tflops_of(results, w.name, num), tflops_of(results, w.name, den)
            cells.append(f"{a / b:.2f}" if a and b else "—")
        lines.append("| " + " | ".join(cells) + " |")
    decode = [w for w in workloads if w.family == "decode"]
    if decode:
        copy = ceilings["copy_gb_s"]
        lines += ["", f"Decode: K/V read bandwidth, GB/s (K and V of every request's kv_len read once, over the "
                  f"median time); the same run's device copy moves {copy:.0f} GB/s (read + write).", ""]
        decode_systems = [s for s in systems if any(results[w.name].get(s, {}).get("kv_gb_s") for w in decode)]
        header = ["workload"] + decode_systems + [r[0] for r in DECODE_RATIOS] + ["ptxattn paged16 / copy"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for w in decode:
            cells = [w.name]
            for s in decode_systems:
                g = results[w.name].get(s, {}).get("kv_gb_s")
                cells.append("—" if g is None else f"{g:.0f}")
            for _, num, den in DECODE_RATIOS:
                a, b = (results[w.name].get(n, {}).get("kv_gb_s") for n in (num, den))
                cells.append(f"{a / b:.2f}" if a and b else "—")
            own = results[w.name].get("ptxattn paged16", {}).get("kv_gb_s")
            cells.append(f"{own / copy:.2f}" if own else "—")
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Max |peer − ptxattn| over all outputs of all workloads:", ""]
    for s in systems:
        diffs = [results[w.name][s]["max_diff_vs_ptxattn"] for w in workloads
                 if results[w.name].get(s, {}).get("max_diff_vs_ptxattn") is not None]
        if diffs:
            lines.append(f"- {s}: {max(diffs):.3g}")
    lines += ["", "Ceilings measured in the same run:", "",
              f"- bf16 GEMM ({ceilings['bf16_gemm_shape']}): {ceilings['bf16_gemm_tflops']:.0f} TFLOP/s",
              f"- device copy ({ceilings['copy_note']}): {ceilings['copy_gb_s']:.0f} GB/s",
              f"- MUFU exp2 bound at D=128 ({MUFU_EX2_PER_CLOCK_PER_SM}/clk/SM at {ceilings['sm_clock_mhz']:.0f} MHz, "
              f"{ceilings['sm_clock_source']}): {ceilings['exp2_bound_tflops_d128']:.0f} TFLOP/s; with GEMM and exp2 "
              f"not overlapped: {serial_bound(ceilings):.0f} TFLOP/s", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def serial_bound(ceilings):
    return 1.0 / (1.0 / ceilings["bf16_gemm_tflops"] + 1.0 / ceilings["exp2_bound_tflops_d128"])


def write_plot(path, env, ceilings, workloads, systems, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"compare.py: no plot ({e})")
        return
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    for ax, causal in zip(axes, (False, True)):
        series = [w for w in workloads if w.family == "W1" and w.causal == causal]
        for s in systems:
            points = [(w.seq_len, tflops_of(results, w.name, s)) for w in series]
            points = [(x, y) for x, y in points if y]
            if points:
                style = "-o" if s.startswith("ptxattn") else "--."
                ax.plot(*zip(*points), style, label=s, linewidth=2 if s.startswith("ptxattn") else 1)
        ax.axhline(ceilings["bf16_gemm_tflops"], color="gray", linestyle=":", label="bf16 GEMM (same run)")
        ax.set_xscale("log", base=2)
        ax.set_xticks([w.seq_len for w in series], [str(w.seq_len) for w in series])
        ax.set_title(f"W1 {'causal' if causal else 'full'} (16k tokens, H=16, D=128, bf16)")
        ax.set_xlabel("sequence length S")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("TFLOP/s")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{env['gpu']}, {env['date'][:10]}, ptxattn {env['ptxattn_commit'][:12]}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------
def detect_peers():
    peers = {"missing": {}}
    for name, importer in (("FA3", import_fa3), ("FlashInfer", import_flashinfer)):
        try:
            peers[name] = importer()
        except Exception as e:  # any import failure means the peer is missing; say why
            peers["missing"][name] = f"{type(e).__name__}: {e}"
    return peers


def run_system(w, d, family, build, timer, reference):
    """Sets up, checks and times one system on one workload: (result row, its output or None)."""
    row = {"family": family}
    try:
        fn = build()
    except Unavailable as e:
        row["status"] = f"unavailable: {e}"
        return row, None
    except Exception as e:  # a peer that fails to set up is reported, not fatal
        row["status"] = f"setup failed: {type(e).__name__}: {e}"
        return row, None
    row.update(getattr(fn, "plan_choices", {}))
    try:
        out = fn()
        torch.cuda.synchronize()
        if family == "ptxattn":
            passed, err = validate_against_reference(w, d, out)
            row["validation_max_err"] = err
            if not passed:
                row["status"] = f"FAILED validation against the float32 reference (max err {err:.3g}): not timed"
                return row, None
        if reference is not None:
            diff = (out.float() - reference.float()).abs().max().item()
            row["max_diff_vs_ptxattn"] = diff
            row["cross_check"] = "ok" if diff <= CROSS_CHECK_TOLERANCE else "mismatch"
        ms, reps = timer.median_ms(fn)
        row.update(status="ok", median_ms=ms, reps=reps, tflops=w.flops() / (ms * 1e-3) * 1e-12,
                   kv_gb_s=w.kv_bytes() / (ms * 1e-3) * 1e-9, **timer.last_cell)
        return row, out
    except Exception as e:  # reported in the row; the next system still runs
        row["status"] = f"run failed: {type(e).__name__}: {e}"
        traceback.print_exc()
        return row, None
    finally:
        if hasattr(fn, "release"):
            fn.release()


def run_workload(w, args, ptx, peers, timer, workspace):
    d = WorkloadData(w, args.seed, args.poison_unused)
    rows, reference = {}, None  # reference: the first validated ptxattn output
    for name, family, build in systems_for(w, d, peers, ptx, workspace):
        row, out = run_system(w, d, family, build, timer, reference)
        if family == "ptxattn" and reference is None and out is not None:
            reference, row["cross_check"] = out.clone(), "reference"
        rows[name] = row
        print(f"  {name:28s} {row['status'][:70]:70s} {row.get('tflops', 0):6.1f} TFLOP/s"
              f"  max|d| {row.get('max_diff_vs_ptxattn', float('nan')):.3g}"
              f"  SM clock {row.get('sm_clock_start_mhz')}->{row.get('sm_clock_end_mhz')} MHz"
              f" after {row.get('settle_s', 0):.2f} s settling", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="compare-out")
    parser.add_argument("--seq-lens", default="512,1024,2048,4096,8192,16384")
    parser.add_argument("--workloads", default="w1,w2,decode", help="comma list of w1, w2, decode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--poison-unused", action="store_true",
                        help="NaN in every pool slot no request owns (reliability check; default zeros)")
    parser.add_argument("--time-per-system", type=float, default=0.25, help="seconds of timed calls per cell")
    parser.add_argument("--min-reps", type=int, default=10)
    parser.add_argument("--max-reps", type=int, default=50)
    parser.add_argument("--settle-max-s", type=float, default=5.0,
                        help="before each cell, wait up to this long for no power or thermal limit on the SM clock "
                             "(0: no wait)")
    parser.add_argument("--commit", default=None, help="ptxattn commit to record (default $PTXATTN_COMMIT)")
    parser.add_argument("--kv-splits", type=int, default=0,
                        help="ptxattn's PrefillConfig::kv_splits (0: the plan's rule, 1: no split, 2..64 forced)")
    parser.add_argument("--kv-stages", type=int, default=0,
                        help="ptxattn's PrefillConfig::kv_stages (0: the head dim's ring; 2 or 3 at head_dim 128 on "
                             "the gather path; other rows keep their kernel's count)")
    parser.add_argument("--gqa-packing", choices=["auto", "off", "on"], default="auto",
                        help="ptxattn's PrefillConfig::gqa_packing")
    parser.add_argument("--schedule", choices=["auto", "persistent", "one_item_per_cta", "dynamic"], default="auto",
                        help="ptxattn's PrefillConfig::schedule")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        sys.exit("compare.py: needs a CUDA GPU")
    torch.cuda.init()
    try:
        ptx = Ptxattn(args.kv_splits, args.gqa_packing, args.schedule, args.kv_stages)
    except ImportError as e:
        print(f"compare.py: ptxattn UNAVAILABLE, cannot import the ptxattn package: {e}; timing peers only",
              flush=True)
        ptx = None
    peers = detect_peers()
    for name, why in peers["missing"].items():
        print(f"compare.py: {name} MISSING ({why}); its columns stay empty", flush=True)
    env = describe_environment(args, ptx, peers)
    timer = Timer(args.time_per_system, args.min_reps, args.max_reps, args.settle_max_s)
    ceilings = measure_ceilings(timer)
    print(f"compare.py: {env['gpu']}, ceilings {json.dumps(ceilings)}", flush=True)

    workloads = make_workloads([int(s) for s in args.seq_lens.split(",")], args.workloads.lower().split(","))
    workspace = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")  # FlashInfer's float workspace
    os.makedirs(args.out_dir, exist_ok=True)
    results, systems, done = {}, [], []
    for w in workloads:
        print(f"{w.name}: {w.num_requests} requests, {w.flops() / 1e12:.2f} TFLOP", flush=True)
        results[w.name] = run_workload(w, args, ptx, peers, timer, workspace)
        merge_systems(systems, list(results[w.name]))
        done.append(w)
        write_outputs(args.out_dir, env, ceilings, done, systems, results)  # a killed run keeps what it measured
        torch.cuda.empty_cache()
    print(open(os.path.join(args.out_dir, "compare.md")).read())


def write_outputs(out_dir, env, ceilings, workloads, systems, results):
    record = {"environment": env, "ceilings": ceilings,
              "workloads": [{"name": w.name, "family": w.family, "seq_len": w.seq_len, "causal": w.causal,
                             "qo_lens": w.qo_lens, "kv_lens": w.kv_lens, "qo_heads": w.qo_heads,
                             "kv_heads": w.kv_heads, "head_dim": w.head_dim, "flops": w.flops()} for w in workloads],
              "results": results}
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump(record, f, indent=1)
    write_markdown(os.path.join(out_dir, "compare.md"), env, ceilings, workloads, systems, results)
    write_plot(os.path.join(out_dir, "compare.png"), env, ceilings, workloads, systems, results)


if __name__ == "__main__":
    main()
