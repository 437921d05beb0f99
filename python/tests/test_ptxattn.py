"""Tests of the Python package (python/ptxattn). Without a GPU (CI) the argument
checks run and every GPU test is skipped with its reason; with an SM90 GPU and
torch the GPU tests compare against a float32 torch reference, with NaN in
outputs and unused cache slots before each call (state pollution).

Run from outside the source tree, against the installed package:
  python -m pytest <repo>/python/tests
"""

import math
import os
import re

import numpy as np
import pytest

import ptxattn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def header_version():
    text = open(os.path.join(REPO, "include", "ptxattn", "ptxattn.h")).read()
    return re.search(r'#define PTXATTN_VERSION_STRING "([^"]*)"', text).group(1)


def gpu_reason():
    """Why the GPU tests cannot run here, or None when they can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if torch.cuda.get_device_capability() != (9, 0):
        return f"not an SM90 GPU ({torch.cuda.get_device_name()})"
    return None


needs_gpu = pytest.mark.skipif(gpu_reason() is not None, reason=f"GPU tests: {gpu_reason()}")
no_gpu_only = pytest.mark.skipif(gpu_reason() is None, reason="checks what happens without a GPU")

I32 = np.int32


def paged_plan_args(**overrides):
    """Two requests, 8 query heads over 2 KV heads, head_dim 128, pages of 16 in a pool of 8."""
    args = dict(qo_indptr=np.array([0, 5, 9], I32), paged_kv_indptr=np.array([0, 3, 4], I32),
                paged_kv_indices=np.array([5, 2, 7, 0], I32), paged_kv_last_page_len=np.array([5, 16], I32),
                num_qo_heads=8, num_kv_heads=2, head_dim_qk=128, page_size=16, num_pages=8, causal=True)
    args.update(overrides)
    return args


# ---------------------------------------------------------------------------
# Without a GPU: import, version, every class of bad argument
# ---------------------------------------------------------------------------
def test_version_is_the_headers():
    assert ptxattn.__version__ == header_version()


@pytest.mark.parametrize("overrides, message", [
    (dict(num_qo_heads=0), "num_qo_heads = 0"),
    (dict(num_qo_heads=6, num_kv_heads=4), "num_qo_heads"),
    (dict(head_dim_qk=96), "head_dim"),
    (dict(page_size=0), "page_size"),
    (dict(paged_kv_indices=np.array([5, 2, 8, 0], I32)), "kv_indices[2] = 8"),
    (dict(paged_kv_last_page_len=np.array([17, 16], I32)), "kv_last_page_len[0] = 17"),
    (dict(qo_indptr=np.array([0, 9, 5], I32)), "qo_indptr"),
    (dict(window_left=-5), "window_left"),
])
def test_plan_refuses_what_the_library_refuses(overrides, message):
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    with pytest.raises(ValueError, match=re.escape(message)):
        wrapper.plan(**paged_plan_args(**overrides))


@pytest.mark.parametrize("overrides, message", [
    (dict(q_data_type="float32"), "dtype 'float32' is not one of bfloat16, float16"),
    (dict(kv_data_type="float16"), "kv_data_type float16 differs from q_data_type bfloat16"),
    (dict(qo_indptr=np.array([0, 5, 9], np.int64)), "qo_indptr must have dtype int32"),
    (dict(paged_kv_indices=np.array([[5, 2], [7, 0]], I32)), "kv_indices must be one-dimensional"),
    (dict(paged_kv_indptr=np.array([0, 4], I32)), "qo_indptr has 3 entries, kv_indptr 2"),
    # The library reads kv_indptr[-1] page indices and one last-page length per request.
    (dict(paged_kv_indices=np.array([5, 2, 7], I32)), "kv_indices has 3 entries, but kv_indptr[-1] = 4 pages"),
    (dict(paged_kv_indices=np.array([5, 2, 7, 0, 1], I32)), "kv_indices has 5 entries, but kv_indptr[-1] = 4"),
    (dict(paged_kv_last_page_len=np.array([5], I32)), "kv_last_page_len has 1 entries, expected one per request (2)"),
    (dict(head_dim_vo=64), "head_dim_vo = 64 differs from head_dim_qk = 128"),
])
def test_plan_refuses_bad_python_arguments(overrides, message):
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    with pytest.raises(ValueError, match=re.escape(message)):
        wrapper.plan(**paged_plan_args(**overrides))


@pytest.mark.parametrize("overrides, message", [
    (dict(gqa_packing="sometimes"), "gqa_packing 'sometimes' is not auto, on or off"),
    (dict(kv_splits=65), "kv_splits"),
    (dict(kv_splits=-1), "kv_splits"),
    (dict(kv_stages=-1), "config.kv_stages = -1 is negative"),
    (dict(kv_stages=5), "kv_stages = 5 has no kernel at head_dim 128"),
])
def test_plan_options_are_checked(overrides, message):
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    with pytest.raises(ValueError, match=re.escape(message)):
        wrapper.plan(**paged_plan_args(**overrides))


def test_workspace_and_graph_mode_arguments_are_checked():
    host_buffer = np.zeros(1 << 20, np.uint8)
    with pytest.raises(ValueError, match="float_workspace_buffer must be a CUDA tensor"):
        ptxattn.BatchPrefillWithPagedKVCacheWrapper(host_buffer)
    with pytest.raises(ValueError, match="use_cuda_graph=True needs float_workspace_buffer"):
        ptxattn.BatchPrefillWithPagedKVCacheWrapper(None, "NHD", use_cuda_graph=True, max_batch_size=4,
                                                    max_num_tokens=64, max_kv_units=64)
    with pytest.raises(ValueError, match="use_cuda_graph=True needs float_workspace_buffer"):
        ptxattn.BatchPrefillWithRaggedKVCacheWrapper(use_cuda_graph=True)
    # The layout may still come first, as before the workspace argument existed, but then nothing after it
    # is taken by position.
    with pytest.raises(ValueError, match="pass load_path and the options after it by keyword"):
        ptxattn.BatchPrefillWithPagedKVCacheWrapper("HND", "gather")
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper("NDH")
    with pytest.raises(ValueError, match="kv_layout 'NDH' is not NHD or HND"):
        wrapper.plan(**paged_plan_args())


def test_a_host_table_is_checked_also_where_the_runs_read_a_device_copy():
    # A graph plan's host table: the wrapper copies it to its device table, and the plan checks it first.
    args = dict(dtype="bfloat16", num_qo_heads=8, num_kv_heads=2, head_dim=128, paged=True, kv_layout="NHD",
                page_size=16, num_pages=4, causal=True, window_left=-1, logits_soft_cap=0.0, sm_scale=0.0,
                return_lse=False, load_path="auto", schedule="auto", max_ctas=0, kv_block="auto", kv_splits=0,
                gqa_packing="auto", kv_stages=0, qo_indptr=np.array([0, 1], I32), kv_indptr=np.array([0, 2], I32),
                kv_indices=np.array([3, 4], I32), kv_last_page_len=np.array([5], I32), table_at_run=True,
                workspace=None, capacity=None, stream=0, device=-1)
    with pytest.raises(ValueError, match=re.escape("kv_indices[1] = 4 is outside the page pool [0, 4)")):
        ptxattn._ptxattn.Prefill().plan(**args)
    with pytest.raises(ValueError, match="kv_indices has 1 entries"):
        ptxattn._ptxattn.Prefill().plan(**dict(args, kv_indices=np.array([3], I32)))


def test_page_table_error_needs_a_plan():
    with pytest.raises(ValueError, match=re.escape("page_table_error() before a successful plan()")):
        ptxattn.BatchPrefillWithPagedKVCacheWrapper().page_table_error()


def test_bad_layout_is_refused():
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(kv_layout="NDH")
    with pytest.raises(ValueError, match="kv_layout 'NDH' is not NHD or HND"):
        wrapper.plan(**paged_plan_args())


def test_index_lists_are_accepted():
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    args = paged_plan_args(num_qo_heads=0)
    for key in ("qo_indptr", "paged_kv_indptr", "paged_kv_indices", "paged_kv_last_page_len"):
        args[key] = args[key].tolist()
    with pytest.raises(ValueError, match="num_qo_heads = 0"):  # reached the library's validator
        wrapper.plan(**args)
    # A strided host array is copied at plan time, so it need not be contiguous.
    args = paged_plan_args(num_qo_heads=0, paged_kv_indices=np.array([5, 9, 2, 9, 7, 9, 0, 9], I32)[::2])
    with pytest.raises(ValueError, match="num_qo_heads = 0"):
        wrapper.plan(**args)


def test_run_needs_cuda_tensors_and_a_cache_it_knows():
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    q = np.zeros((9, 8, 128), np.float16)
    with pytest.raises(ValueError, match="q must be a CUDA tensor"):
        wrapper.run(q, (q, q))
    with pytest.raises(ValueError, match="q must be a CUDA tensor"):
        wrapper.run([1, 2], (q, q))
    with pytest.raises(ValueError, match="combined"):
        wrapper.run(q, q)


def test_ragged_plan_refuses_what_the_library_refuses():
    wrapper = ptxattn.BatchPrefillWithRaggedKVCacheWrapper()
    with pytest.raises(ValueError, match="num_kv_heads = 0"):
        wrapper.plan(np.array([0, 4], I32), np.array([0, 6], I32), num_qo_heads=4, num_kv_heads=0, head_dim_qk=128)


def test_kv_block_is_checked_before_the_device():
    ragged = ptxattn.BatchPrefillWithRaggedKVCacheWrapper()
    args = dict(qo_indptr=np.array([0, 4], I32), kv_indptr=np.array([0, 600], I32), num_qo_heads=4, num_kv_heads=4,
                head_dim_qk=128)
    with pytest.raises(ValueError, match="kv_block 'narrow' is not auto, standard or wide"):
        ragged.plan(**args, kv_block="narrow")
    with pytest.raises(ValueError, match=re.escape("kv_block = kWide needs") + ".*causal is set"):
        ragged.plan(**args, causal=True, kv_block="wide")
    with pytest.raises(ValueError, match="window_left is below the batch's longest kv_len"):
        ragged.plan(**args, window_left=599, kv_block="wide")
    with pytest.raises(ValueError, match="kv_format is kPaged"):
        ptxattn.BatchPrefillWithPagedKVCacheWrapper().plan(**paged_plan_args(causal=False, kv_block="wide"))


def test_rope_needs_cuda_tensors():
    q = np.zeros((4, 2, 64), np.float16)
    k = np.zeros((4, 1, 64), np.float16)
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        ptxattn.apply_rope_pos_ids(q, k, np.zeros(4, I32), inplace=True)
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        ptxattn.build_rope_cos_sin_cache(16, 64, out=np.zeros((16, 64), np.float32))
    with pytest.raises(ValueError, match="pass out="):
        ptxattn.build_rope_cos_sin_cache(16, 64)


def test_append_refuses_what_the_library_refuses():
    cache = np.zeros((2, 16, 1, 128), np.float16)
    new = np.zeros((21, 1, 128), np.float16)
    with pytest.raises(ValueError, match="paged_kv_cache must be a"):
        ptxattn.append_paged_kv_cache(new, new, [0, 21], cache, [1, 0], [0, 2], [4])
    with pytest.raises(ValueError, match="append"):  # 21 tokens appended to a request of 20
        ptxattn.append_paged_kv_cache(new, new, [0, 21], (cache, cache), [1, 0], [0, 2], [4])


def test_append_refuses_a_page_table_shorter_than_its_indptr():
    cache = np.zeros((2, 16, 1, 128), np.float16)
    new = np.zeros((4, 1, 128), np.float16)
    with pytest.raises(ValueError, match=re.escape("kv_indices has 1 entries, but kv_indptr[-1] = 2 pages")):
        ptxattn.append_paged_kv_cache(new, new, [0, 4], (cache, cache), [1], [0, 2], [4])
    with pytest.raises(ValueError, match=re.escape("kv_last_page_len has 2 entries, expected one per request (1)")):
        ptxattn.append_paged_kv_cache(new, new, [0, 4], (cache, cache), [1, 0], [0, 2], [4, 4])


def test_options_are_keyword_only():
    # FlashInfer's plans take head_dim_vo in the next position; here it would land in an option.
    args = paged_plan_args()
    positional = [args.pop(k) for k in ("qo_indptr", "paged_kv_indptr", "paged_kv_indices", "paged_kv_last_page_len",
                                        "num_qo_heads", "num_kv_heads", "head_dim_qk", "page_size")]
    with pytest.raises(TypeError):
        ptxattn.BatchPrefillWithPagedKVCacheWrapper().plan(*positional, 128)
    with pytest.raises(TypeError):
        ptxattn.BatchPrefillWithRaggedKVCacheWrapper().plan(np.array([0, 4], I32), np.array([0, 6], I32), 4, 4, 128,
                                                            128)


def test_replanning_waits_for_the_last_run():
    class Event:
        synchronized = False

        def synchronize(self):
            Event.synchronized = True

    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper._last_run = Event()  # what run() leaves behind
    with pytest.raises(ValueError, match="num_qo_heads = 0"):
        wrapper.plan(**paged_plan_args(num_qo_heads=0))
    assert Event.synchronized and wrapper._last_run is None


def test_index_arrays_are_copied_at_plan_time():
    indices = np.array([5, 2, 7, 0], I32)
    copied = ptxattn._int32(indices)
    indices[0] = 99
    assert copied.tolist() == [5, 2, 7, 0]


def test_devices_and_streams_in_every_spelling():
    import types
    assert ptxattn._plan_device(None, "cuda:1") == 1
    assert ptxattn._plan_device(None, "cuda") == -1
    assert ptxattn._plan_device(None, 2) == 2
    with pytest.raises(ValueError, match="not a CUDA device"):
        ptxattn._plan_device(None, "cpu")
    assert ptxattn._stream_handle(types.SimpleNamespace(cuda_stream=7)) == 7  # torch.cuda.Stream
    assert ptxattn._stream_handle(types.SimpleNamespace(ptr=9)) == 9  # cupy.cuda.Stream
    assert ptxattn._stream_handle(11) == 11


@no_gpu_only
def test_a_valid_plan_without_a_gpu_says_so():
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    with pytest.raises(RuntimeError, match="no_device"):
        wrapper.plan(**paged_plan_args())
    ragged = ptxattn.BatchPrefillWithRaggedKVCacheWrapper()
    for kv_block in ("standard", "wide"):  # a block the batch can take passes the plan's checks
        with pytest.raises(RuntimeError, match="no_device"):
            ragged.plan(np.array([0, 4], I32), np.array([0, 600], I32), 4, 4, 128, window_left=600, kv_block=kv_block)


# ---------------------------------------------------------------------------
# torch custom ops (torch installed; no GPU needed: fake tensors)
# ---------------------------------------------------------------------------
def test_torch_ops_trace_with_fake_tensors():
    torch = pytest.importorskip("torch")
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    with FakeTensorMode():
        q = torch.empty(4, 2, 64, device="cuda", dtype=torch.bfloat16)
        k = torch.empty(4, 1, 64, device="cuda", dtype=torch.bfloat16)
        pos = torch.empty(4, device="cuda", dtype=torch.int32)
        q_rope, k_rope = ptxattn.apply_rope_pos_ids(q, k, pos)
        assert q_rope.shape == q.shape and k_rope.dtype == k.dtype and q_rope is not q
        assert ptxattn.apply_rope_pos_ids(q, k, pos, inplace=True)[0] is q
        cache = ptxattn.build_rope_cos_sin_cache(16, 64, like=q)
        assert cache.shape == (16, 64) and cache.dtype == torch.float32
        assert ptxattn.apply_rope_with_cos_sin_cache(pos, q, k, cache)[1].shape == k.shape
        out = torch.empty_like(q)
        torch.ops.ptxattn.attention(q, k, k, out, None, 0, -1)  # the fake runs no kernel and needs no plan
    graph = make_fx(lambda q, k, pos: ptxattn.apply_rope_pos_ids(q, k, pos), tracing_mode="fake")(q, k, pos)
    assert "torch.ops.ptxattn.apply_rope.default" in graph.code


def test_merge_ops_trace_with_fake_tensors():
    torch = pytest.importorskip("torch")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        v = torch.empty(5, 3, 4, 64, device="cuda", dtype=torch.float32)
        s = torch.empty(5, 3, 4, device="cuda")
        v_merged, s_merged = ptxattn.merge_states(v, s)
        assert v_merged.shape == (5, 4, 64) and v_merged.dtype == torch.float32 and s_merged.shape == (5, 4)
        a = torch.empty(5, 4, 64, device="cuda", dtype=torch.bfloat16)
        s_a = torch.empty(5, 4, device="cuda")
        out, s_out = ptxattn.merge_state(a, s_a, a, s_a, out=torch.empty(5, 4, 64, device="cuda",
                                                                        dtype=torch.float16))
        assert out.dtype == torch.float16 and s_out.dtype == torch.float32


def test_merge_needs_cuda_tensors():
    torch = pytest.importorskip("torch")
    v = torch.zeros(2, 2, 1, 8)
    with pytest.raises(ValueError, match="v must be a CUDA tensor"):
        ptxattn.merge_states(v, torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match="v_a must be a CUDA tensor"):
        ptxattn.merge_state(v[:, 0], v[:, 0, :, 0], v[:, 0], v[:, 0, :, 0])


def test_torch_cpu_tensors_are_refused():
    torch = pytest.importorskip("torch")
    q = torch.zeros(4, 2, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="q must be a CUDA tensor"):
        ptxattn.apply_rope_pos_ids(q, q[:, :1], torch.zeros(4, dtype=torch.int32))


# ---------------------------------------------------------------------------
# On an SM90 GPU (torch): against a float32 reference, under pollution
# ---------------------------------------------------------------------------
def reference_attention(q, k, v, causal, sm_scale):
    """q [qo, H, D], k/v [kv, Hkv, D] of one request; float32; causal bottom-right aligned."""
    import torch
    qo, heads, _ = q.shape
    kv, kv_heads, _ = k.shape
    group = heads // kv_heads
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    s = torch.einsum("qhd,khd->hqk", q.float(), k) * sm_scale
    if causal:
        pos = torch.arange(qo, device=q.device)[:, None] + (kv - qo)
        keys = torch.arange(kv, device=q.device)[None, :]
        s = s.masked_fill(keys > pos, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [H, qo]
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return torch.einsum("hqk,khd->qhd", p, v), lse.transpose(0, 1)


def paged_batch(torch, qo_lens, kv_lens, page_size, heads, kv_heads, head_dim, dtype):
    """Random q, a pool with pages shuffled and NaN in every slot no request owns."""
    gen = torch.Generator(device="cuda").manual_seed(1)
    pages_per = [max(1, math.ceil(n / page_size)) if n else 0 for n in kv_lens]
    num_pages = sum(pages_per) + 3
    order = torch.randperm(num_pages, generator=gen, device="cuda").tolist()
    shape = (num_pages, page_size, kv_heads, head_dim)
    k_cache = torch.full(shape, float("nan"), dtype=dtype, device="cuda")
    v_cache = torch.full(shape, float("nan"), dtype=dtype, device="cuda")
    indptr, indices, last, keys, values = [0], [], [], [], []
    for n, count in zip(kv_lens, pages_per):
        mine = [order.pop() for _ in range(count)]
        k = torch.randn((n, kv_heads, head_dim), generator=gen, device="cuda").to(dtype)
        v = torch.randn((n, kv_heads, head_dim), generator=gen, device="cuda").to(dtype)
        for i, page in enumerate(mine):
            rows = slice(i * page_size, min(n, (i + 1) * page_size))
            filled = rows.stop - rows.start
            k_cache[page, :filled] = k[rows]
            v_cache[page, :filled] = v[rows]
        indptr.append(indptr[-1] + count)
        indices += mine
        last.append(n - (count - 1) * page_size if count else 0)
        keys.append(k)
        values.append(v)
    qo_indptr = np.cumsum([0] + list(qo_lens)).astype(I32)
    q = torch.randn((int(qo_indptr[-1]), heads, head_dim), generator=gen, device="cuda").to(dtype)
    return dict(q=q, k_cache=k_cache, v_cache=v_cache, keys=keys, values=values, qo_indptr=qo_indptr,
                kv_indptr=np.array(indptr, I32), kv_indices=np.array(indices, I32), last=np.array(last, I32),
                num_pages=num_pages)


@needs_gpu
@pytest.mark.parametrize("qo_lens, kv_lens, page_size, causal", [
    ([5, 130, 1], [37, 200, 16], 16, True),   # prefill, mixed lengths
    ([1, 1, 1, 1], [33, 1, 512, 100], 16, False),  # decode
    ([4, 4], [300, 64], 1, True),              # speculative verification, pages of 1
    ([70], [70], 64, True),
])
def test_paged_matches_the_reference_under_pollution(qo_lens, kv_lens, page_size, causal):
    import torch
    heads, kv_heads, head_dim = 8, 2, 128
    b = paged_batch(torch, qo_lens, kv_lens, page_size, heads, kv_heads, head_dim, torch.bfloat16)
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size,
                 causal=causal, return_lse=True)
    out = torch.full_like(b["q"], float("nan"))
    lse = torch.full((b["q"].shape[0], heads), float("nan"), device="cuda")
    o, l = wrapper.run(b["q"], (b["k_cache"], b["v_cache"]), out=out, lse=lse, return_lse=True)
    torch.cuda.synchronize()
    for r in range(len(qo_lens)):
        rows = slice(int(b["qo_indptr"][r]), int(b["qo_indptr"][r + 1]))
        want_o, want_lse = reference_attention(b["q"][rows], b["keys"][r], b["values"][r], causal,
                                               1.0 / math.sqrt(head_dim))
        torch.testing.assert_close(o[rows].float(), want_o, atol=2e-2, rtol=2e-2)
        torch.testing.assert_close(l[rows], want_lse, atol=2e-3, rtol=2e-3)
    again = wrapper.run(b["q"], b["k_cache"], b["v_cache"])
    torch.cuda.synchronize()
    assert torch.equal(again, o), "two runs of one plan differ"


@needs_gpu
def test_a_device_page_table_is_read_at_run_and_checked():
    import torch
    heads, kv_heads, head_dim, page_size = 8, 2, 128, 16
    b = paged_batch(torch, [5, 1, 33], [70, 300, 40], page_size, heads, kv_heads, head_dim, torch.bfloat16)
    args = (b["qo_indptr"], b["kv_indptr"])
    host = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    host.plan(*args, b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size, causal=True)
    want = host.run(b["q"], b["k_cache"], b["v_cache"])
    table = torch.tensor(b["kv_indices"], device="cuda")
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper.plan(*args, table, b["last"], heads, kv_heads, head_dim, page_size, causal=True, num_pages=b["num_pages"])
    first = wrapper.run(b["q"], b["k_cache"], b["v_cache"])
    torch.testing.assert_close(first, want, atol=1e-2, rtol=1e-2)

    # The table is read at each run: move request 1's first page to a free slot, update the table only.
    spare = sorted(set(range(b["num_pages"])) - set(b["kv_indices"].tolist()))[0]
    entry = int(b["kv_indptr"][1])
    old = int(table[entry])
    for cache in (b["k_cache"], b["v_cache"]):
        cache[spare] = cache[old]
        cache[old] = float("nan")
    table[entry] = spare
    assert torch.equal(wrapper.run(b["q"], b["k_cache"], b["v_cache"]), first)
    assert wrapper.page_table_error() is None

    # An entry outside the pool is never used as an address, and is reported once.
    table[entry] = b["num_pages"] + 1000
    out = wrapper.run(b["q"], b["k_cache"], b["v_cache"])
    message = wrapper.page_table_error()
    assert message is not None and f"kv_indices[{entry}] = {b['num_pages'] + 1000}" in message and "request 1" in message
    assert wrapper.page_table_error() is None, "the error was not cleared"
    for r in (0, 2):  # the other requests are untouched
        rows = slice(int(b["qo_indptr"][r]), int(b["qo_indptr"][r + 1]))
        assert torch.equal(out[rows], first[rows])
    with pytest.raises(ValueError, match="the page table at run"):
        wrapper._plan.run(b["q"], b["k_cache"], b["v_cache"], out, None, table[:entry], 0)


def pooled_batch(torch, gen, qo_lens, kv_lens, page_size, num_pages, heads, head_dim, dtype):
    """Pages of one shared pool (k_cache, v_cache made by the caller) for each request, and random q."""
    order = torch.randperm(num_pages, generator=gen, device="cuda").tolist()
    indptr, indices, last = [0], [], []
    for n in kv_lens:
        count = max(1, math.ceil(n / page_size))
        indices += [order.pop() for _ in range(count)]
        indptr.append(indptr[-1] + count)
        last.append(n - (count - 1) * page_size)
    qo_indptr = np.cumsum([0] + list(qo_lens)).astype(I32)
    q = torch.randn((int(qo_indptr[-1]), heads, head_dim), generator=gen, device="cuda").to(dtype)
    return dict(q=q, qo_indptr=qo_indptr, kv_indptr=np.array(indptr, I32), kv_indices=np.array(indices, I32),
                last=np.array(last, I32))


def check_pooled(torch, b, out, lse, k_cache, v_cache, page_size, causal):
    """out (and lse) of batch b against the reference, gathering each request's K/V from the pool."""
    head_dim = k_cache.shape[-1]
    for r in range(len(b["last"])):
        pages = b["kv_indices"][b["kv_indptr"][r]:b["kv_indptr"][r + 1]].tolist()
        n = (len(pages) - 1) * page_size + int(b["last"][r])
        keys = k_cache[pages].flatten(0, 1)[:n]
        values = v_cache[pages].flatten(0, 1)[:n]
        rows = slice(int(b["qo_indptr"][r]), int(b["qo_indptr"][r + 1]))
        want_o, want_lse = reference_attention(b["q"][rows], keys, values, causal, 1.0 / math.sqrt(head_dim))
        torch.testing.assert_close(out[rows].float(), want_o, atol=2e-2, rtol=2e-2)
        if lse is not None:
            torch.testing.assert_close(lse[rows], want_lse, atol=2e-3, rtol=2e-3)


# Decode, speculative verification and prefill mixes, within 8 requests, 256 tokens and 256 pages.
BATCHES = [
    ([1] * 8, [1000, 33, 1, 512, 16, 17, 300, 2000]),
    ([4, 4, 4], [100, 4, 900]),
    ([100, 1, 60], [100, 700, 1500]),
    ([1], [4000]),
    ([256], [256]),
    ([3, 1, 7, 1, 2], [50, 60, 70, 80, 90]),
    ([1] * 6, [600] * 6),
    ([16, 16], [16, 32]),
    ([1, 120, 1, 1], [1, 1200, 2, 3]),
    ([30, 30, 30, 30, 30, 30, 30, 30], [30, 60, 90, 120, 150, 180, 210, 240]),
]


@needs_gpu
def test_plans_in_a_workspace_are_ordered_on_the_stream():
    import torch
    heads, kv_heads, head_dim, page_size, num_pages = 8, 2, 128, 16, 400
    gen = torch.Generator(device="cuda").manual_seed(5)
    k_cache = torch.randn((num_pages, page_size, kv_heads, head_dim), generator=gen, device="cuda").bfloat16()
    v_cache = torch.randn((num_pages, page_size, kv_heads, head_dim), generator=gen, device="cuda").bfloat16()
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(torch.empty(64 << 20, dtype=torch.uint8, device="cuda"))
    done = []
    for qo_lens, kv_lens in BATCHES[:6]:  # re-planned with no wait between the runs
        b = pooled_batch(torch, gen, qo_lens, kv_lens, page_size, num_pages, heads, head_dim, torch.bfloat16)
        wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim,
                     page_size, num_pages=num_pages, causal=True)
        done.append((b, wrapper.run(b["q"], (k_cache, v_cache), out=torch.full_like(b["q"], float("nan")))))
    torch.cuda.synchronize()
    for b, out in done:
        check_pooled(torch, b, out, None, k_cache, v_cache, page_size, True)
    with pytest.raises(ValueError, match="bytes"):  # a workspace too small says how much is needed
        small = ptxattn.BatchPrefillWithPagedKVCacheWrapper(torch.empty(1024, dtype=torch.uint8, device="cuda"))
        small.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size,
                   num_pages=num_pages, causal=True)


@needs_gpu
def test_a_plan_overwritten_through_a_shared_workspace_is_refused():
    import torch
    heads, kv_heads, head_dim, page_size = 8, 2, 128, 16
    b = paged_batch(torch, [3, 40], [50, 40], page_size, heads, kv_heads, head_dim, torch.bfloat16)
    caches = (b["k_cache"], b["v_cache"])
    args = (b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size)
    owner = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    owner.plan(*args, num_pages=b["num_pages"], causal=True)
    want = owner.run(b["q"], caches)
    shared = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    first = ptxattn.BatchPrefillWithPagedKVCacheWrapper(shared, "NHD")
    second = ptxattn.BatchPrefillWithPagedKVCacheWrapper(shared, "NHD")
    first.plan(*args, num_pages=b["num_pages"], causal=True)
    assert torch.equal(first.run(b["q"], caches), want)
    second.plan(*args, num_pages=b["num_pages"], causal=False)  # the same bytes: first's plan is gone
    with pytest.raises(ValueError, match="overwritten by a later plan"):
        first.run(b["q"], caches)
    second.run(b["q"], caches)
    first.plan(*args, num_pages=b["num_pages"], causal=True)  # planning again takes the bytes back
    assert torch.equal(first.run(b["q"], caches), want)
    with pytest.raises(ValueError, match="overwritten by a later plan"):
        second.run(b["q"], caches)
    # Disjoint parts of one buffer hold a plan each.
    half = shared.numel() // 2
    left = ptxattn.BatchPrefillWithPagedKVCacheWrapper(shared[:half], "NHD")
    right = ptxattn.BatchPrefillWithPagedKVCacheWrapper(shared[half:], "NHD")
    left.plan(*args, num_pages=b["num_pages"], causal=True)
    right.plan(*args, num_pages=b["num_pages"], causal=True)
    assert torch.equal(left.run(b["q"], caches), want) and torch.equal(right.run(b["q"], caches), want)


@needs_gpu
@pytest.mark.parametrize("kv_splits", [1, 3])
def test_a_graph_captured_once_replays_every_batch_within_capacity(kv_splits):
    import torch
    heads, kv_heads, head_dim, page_size, num_pages = 8, 2, 128, 16, 400
    max_requests, max_tokens, max_entries = 8, 256, 256
    gen = torch.Generator(device="cuda").manual_seed(7)
    k_cache = torch.randn((num_pages, page_size, kv_heads, head_dim), generator=gen, device="cuda").bfloat16()
    v_cache = torch.randn((num_pages, page_size, kv_heads, head_dim), generator=gen, device="cuda").bfloat16()
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper(
        torch.empty(64 << 20, dtype=torch.uint8, device="cuda"), "NHD", use_cuda_graph=True,
        max_batch_size=max_requests, max_num_tokens=max_tokens, max_kv_units=max_entries)
    q = torch.full((max_tokens, heads, head_dim), float("nan"), dtype=torch.bfloat16, device="cuda")
    out = torch.empty_like(q)
    lse = torch.empty((max_tokens, heads), device="cuda")

    def plan(qo_lens, kv_lens):
        b = pooled_batch(torch, gen, qo_lens, kv_lens, page_size, num_pages, heads, head_dim, torch.bfloat16)
        wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim,
                     page_size, num_pages=num_pages, causal=True, return_lse=True, kv_splits=kv_splits)
        q[:b["q"].shape[0]] = b["q"]
        return b

    plan(*BATCHES[-1])
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch asks
        wrapper.run(q, (k_cache, v_cache), out=out, lse=lse, return_lse=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(q, (k_cache, v_cache), out=out, lse=lse, return_lse=True)
    assert wrapper.chosen_kv_splits == kv_splits

    for qo_lens, kv_lens in BATCHES:
        b = plan(qo_lens, kv_lens)
        out.fill_(float("nan"))
        lse.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        check_pooled(torch, b, out, lse, k_cache, v_cache, page_size, True)
        tokens = b["q"].shape[0]
        assert torch.isnan(out[tokens:].float()).all(), "rows past the batch were written"
    assert wrapper.page_table_error() is None
    with pytest.raises(ValueError, match="capacity|max_kv_units|9 requests"):
        plan([1] * 9, [10] * 9)
    args = (b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size)
    with pytest.raises(ValueError, match="needs num_pages"):  # a replay would never finish the plan
        wrapper.plan(*args, causal=True)
    short = args[:2] + (b["kv_indices"][:-1],) + args[3:]
    with pytest.raises(ValueError, match=f"has {len(b['kv_indices']) - 1} entries"):
        wrapper.plan(*short, num_pages=num_pages, causal=True)
    outside = b["kv_indices"].copy()
    outside[-1] = num_pages
    with pytest.raises(ValueError, match=f"kv_indices\\[{len(outside) - 1}\\] = {num_pages} is outside the page pool"):
        wrapper.plan(*(args[:2] + (outside,) + args[3:]), num_pages=num_pages, causal=True)


@needs_gpu
def test_a_combined_cache_gives_the_bits_of_separate_ones():
    import torch
    heads, kv_heads, head_dim, page_size = 8, 2, 128, 16
    b = paged_batch(torch, [5, 1, 33], [70, 300, 40], page_size, heads, kv_heads, head_dim, torch.bfloat16)
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size,
                 causal=True, num_pages=b["num_pages"])
    want = wrapper.run(b["q"], b["k_cache"], b["v_cache"])
    combined = torch.stack((b["k_cache"], b["v_cache"]), dim=1)  # FlashInfer's [pages, 2, page_size, heads, dim]
    assert torch.equal(wrapper.run(b["q"], combined), want)
    with pytest.raises(ValueError, match="one stride between their pages"):
        wrapper.run(b["q"], combined[:, 0], b["v_cache"])
    one_page = b["k_cache"][:1].expand(b["k_cache"].shape)  # a broadcast: stride 0 between pages
    with pytest.raises(ValueError, match="has a stride of 0 between"):
        wrapper.run(b["q"], one_page, one_page)


@needs_gpu
def test_q_as_a_view_into_a_fused_qkv_projection():
    import torch
    heads, kv_heads, head_dim, page_size = 8, 2, 128, 16
    b = paged_batch(torch, [3, 40], [50, 300], page_size, heads, kv_heads, head_dim, torch.bfloat16)
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size,
                 causal=True)
    tokens = b["q"].shape[0]
    qkv = torch.full((tokens, (heads + 2 * kv_heads) * head_dim), float("nan"), dtype=torch.bfloat16, device="cuda")
    qkv[:, :heads * head_dim] = b["q"].reshape(tokens, -1)
    q_view = qkv[:, :heads * head_dim].view(tokens, heads, head_dim)
    assert not q_view.is_contiguous()
    padded = torch.full((tokens, heads * head_dim + 64), float("nan"), dtype=torch.bfloat16, device="cuda")
    out_view = padded[:, :heads * head_dim].view(tokens, heads, head_dim)
    want = wrapper.run(b["q"], b["k_cache"], b["v_cache"])
    wrapper.run(q_view, b["k_cache"], b["v_cache"], out=out_view)
    torch.cuda.synchronize()
    assert torch.equal(out_view, want), "strided q and out differ from contiguous ones"
    assert torch.isnan(padded[:, heads * head_dim:]).all(), "the padding of out was written"
    with pytest.raises(ValueError, match="strided between tokens only"):
        wrapper.run(b["q"].transpose(1, 2).contiguous().transpose(1, 2), b["k_cache"], b["v_cache"])


@needs_gpu
def test_merge_states_and_merge_state_match_the_reference():
    import torch
    gen = torch.Generator(device="cuda").manual_seed(3)
    tokens, states, heads, d = 37, 5, 4, 128
    v = torch.randn((tokens, states, heads, d), generator=gen, device="cuda")
    s = torch.randn((tokens, states, heads), generator=gen, device="cuda") * 4
    s[:, 1] = float("-inf")  # an empty state everywhere ...
    v[:, 1] = float("nan")   # ... whose v is never weighted
    s[0] = float("-inf")     # a token whose states are all empty
    v_merged, s_merged = ptxattn.merge_states(v, s, out=torch.full((tokens, heads, d), float("nan"), device="cuda"))
    torch.cuda.synchronize()
    weights = torch.softmax(s[1:], dim=1).nan_to_num(0.0)
    want_v = torch.einsum("tsh,tshd->thd", weights, v[1:].nan_to_num(0.0))
    torch.testing.assert_close(v_merged[1:], want_v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_merged[1:], torch.logsumexp(s[1:], dim=1), atol=1e-5, rtol=1e-5)
    assert torch.equal(v_merged[0], torch.zeros_like(v_merged[0])) and torch.isneginf(s_merged[0]).all()
    # Two states in separate tensors give the bits of the two stacked, in bf16 out too.
    a, b = v[:, 2].to(torch.bfloat16), v[:, 3].to(torch.bfloat16)
    pair, pair_s = ptxattn.merge_state(a, s[:, 2].contiguous(), b, s[:, 3].contiguous())
    stacked, stacked_s = ptxattn.merge_states(torch.stack([a, b], dim=1), s[:, 2:4].contiguous())
    torch.cuda.synchronize()
    assert pair.dtype == torch.bfloat16
    assert torch.equal(pair, stacked) and torch.equal(pair_s, stacked_s)


@needs_gpu
def test_ragged_matches_the_reference():
    import torch
    gen = torch.Generator(device="cuda").manual_seed(2)
    qo_lens, kv_lens, heads, kv_heads, head_dim = [3, 200], [40, 260], 4, 4, 64
    q = torch.randn((sum(qo_lens), heads, head_dim), generator=gen, device="cuda").half()
    k = torch.randn((sum(kv_lens), kv_heads, head_dim), generator=gen, device="cuda").half()
    v = torch.randn((sum(kv_lens), kv_heads, head_dim), generator=gen, device="cuda").half()
    qo_indptr, kv_indptr = np.cumsum([0] + qo_lens).astype(I32), np.cumsum([0] + kv_lens).astype(I32)
    wrapper = ptxattn.BatchPrefillWithRaggedKVCacheWrapper()
    wrapper.plan(torch.from_numpy(qo_indptr).cuda(), kv_indptr, heads, kv_heads, head_dim, causal=True,
                 q_data_type=torch.float16)
    o = wrapper.run(q, k, v)
    torch.cuda.synchronize()
    for r in range(2):
        rows = slice(int(qo_indptr[r]), int(qo_indptr[r + 1]))
        keys = slice(int(kv_indptr[r]), int(kv_indptr[r + 1]))
        want, _ = reference_attention(q[rows], k[keys], v[keys], True, 1.0 / math.sqrt(head_dim))
        torch.testing.assert_close(o[rows].float(), want, atol=2e-2, rtol=2e-2)


@needs_gpu
@pytest.mark.parametrize("kv_block, block_kv", [("standard", 128), ("wide", 176)])
def test_each_kv_block_matches_the_reference(kv_block, block_kv):
    import torch
    gen = torch.Generator(device="cuda").manual_seed(4)
    qo_lens, kv_lens, heads, head_dim = [130, 7], [500, 177], 2, 128
    q = torch.randn((sum(qo_lens), heads, head_dim), generator=gen, device="cuda").bfloat16()
    k = torch.randn((sum(kv_lens), heads, head_dim), generator=gen, device="cuda").bfloat16()
    v = torch.randn((sum(kv_lens), heads, head_dim), generator=gen, device="cuda").bfloat16()
    qo_indptr, kv_indptr = np.cumsum([0] + qo_lens).astype(I32), np.cumsum([0] + kv_lens).astype(I32)
    wrapper = ptxattn.BatchPrefillWithRaggedKVCacheWrapper()
    wrapper.plan(qo_indptr, kv_indptr, heads, heads, head_dim, kv_block=kv_block)
    assert wrapper.chosen_block_kv == block_kv
    o = wrapper.run(q, k, v)
    torch.cuda.synchronize()
    for r in range(2):
        rows = slice(int(qo_indptr[r]), int(qo_indptr[r + 1]))
        keys = slice(int(kv_indptr[r]), int(kv_indptr[r + 1]))
        want, _ = reference_attention(q[rows], k[keys], v[keys], False, 1.0 / math.sqrt(head_dim))
        torch.testing.assert_close(o[rows].float(), want, atol=2e-2, rtol=2e-2)


@needs_gpu
def test_rope_and_its_cache_agree():
    import torch
    gen = torch.Generator(device="cuda").manual_seed(3)
    q = torch.randn((6, 4, 128), generator=gen, device="cuda").bfloat16()
    k = torch.randn((6, 2, 128), generator=gen, device="cuda").bfloat16()
    pos = torch.tensor([0, 1, 2, 7, 100, 4095], dtype=torch.int32, device="cuda")
    q1, k1 = ptxattn.apply_rope_pos_ids(q, k, pos)
    cache = ptxattn.build_rope_cos_sin_cache(4096, 128, like=q)
    q2, k2 = ptxattn.apply_rope_with_cos_sin_cache(pos, q, k, cache)
    indptr = torch.tensor([0, 6], dtype=torch.int32, device="cuda")
    offsets = torch.tensor([0], dtype=torch.int32, device="cuda")
    q3, _ = ptxattn.apply_rope(q, k, indptr, offsets)
    torch.cuda.synchronize()
    torch.testing.assert_close(q1.float(), q2.float(), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(k1.float(), k2.float(), atol=1e-2, rtol=1e-2)
    assert torch.equal(q3[:3], q1[:3])  # positions 0, 1, 2 are the tokens' indices
    # Position 0 rotates nothing.
    assert torch.equal(q1[0], q[0])


@needs_gpu
def test_append_writes_the_slots_the_page_table_names():
    import torch
    kv_heads, head_dim, page_size = 2, 64, 16
    k_cache = torch.full((4, page_size, kv_heads, head_dim), float("nan"), device="cuda").half()
    v_cache = torch.full_like(k_cache, float("nan"))
    new_k = torch.randn((5, kv_heads, head_dim), device="cuda").half()
    new_v = torch.randn((5, kv_heads, head_dim), device="cuda").half()
    # One request of 20 keys in pages 3 and 1; its last 5 tokens are the new ones (positions 15..19).
    ptxattn.append_paged_kv_cache(new_k, new_v, [0, 5], (k_cache, v_cache), [3, 1], [0, 2], [4])
    torch.cuda.synchronize()
    assert torch.equal(k_cache[3, 15], new_k[0])
    assert torch.equal(k_cache[1, :4], new_k[1:])
    assert torch.equal(v_cache[1, :4], new_v[1:])
    assert torch.isnan(k_cache[1, 4:].float()).all(), "slots after the appended tokens stay as they were"


@needs_gpu
def test_compiled_and_graph_captured_runs_equal_the_eager_one():
    import torch
    heads, kv_heads, head_dim, page_size = 8, 2, 128, 16
    b = paged_batch(torch, [3, 40], [50, 40], page_size, heads, kv_heads, head_dim, torch.bfloat16)
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size,
                 num_pages=b["num_pages"], causal=True)
    caches = (b["k_cache"], b["v_cache"])
    eager = wrapper.run(b["q"], caches)

    compiled = torch.compile(lambda q: wrapper.run(q, caches))
    assert torch.equal(compiled(b["q"]), eager)

    out = torch.full_like(b["q"], float("nan"))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch asks
        wrapper.run(b["q"], caches, out=out)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(b["q"], caches, out=out)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)


@needs_gpu
def test_cupy_arrays_work_too():
    cupy = pytest.importorskip("cupy")
    import torch
    heads, kv_heads, head_dim, page_size = 4, 4, 128, 16
    b = paged_batch(torch, [7], [30], page_size, heads, kv_heads, head_dim, torch.float16)
    wrapper = ptxattn.BatchPrefillWithPagedKVCacheWrapper()
    wrapper.plan(b["qo_indptr"], b["kv_indptr"], b["kv_indices"], b["last"], heads, kv_heads, head_dim, page_size,
                 q_data_type="float16")
    from_torch = wrapper.run(b["q"], (b["k_cache"], b["v_cache"]))
    as_cupy = [cupy.from_dlpack(t) for t in (b["q"], b["k_cache"], b["v_cache"])]
    from_cupy = wrapper.run(as_cupy[0], (as_cupy[1], as_cupy[2]))
    cupy.cuda.get_current_stream().synchronize()
    torch.cuda.synchronize()
    assert torch.equal(torch.from_dlpack(from_cupy), from_torch)


@needs_gpu
def test_the_readme_quick_start_gives_the_reference_output(monkeypatch):
    """The README's Python example, run as a newcomer would copy it, against the reference."""
    import torch
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index("\n## Python\n"):]
    example = section[section.index("```python\n") + len("```python\n"):]
    example = example[:example.index("```")]
    planned = {}
    plan = ptxattn.BatchPrefillWithPagedKVCacheWrapper.plan

    def recording_plan(self, *args, **kwargs):
        assert not args, "the quick start names every plan argument"
        planned.update(kwargs)
        return plan(self, **kwargs)

    monkeypatch.setattr(ptxattn.BatchPrefillWithPagedKVCacheWrapper, "plan", recording_plan)
    scope = {}
    exec(compile(example, "README.md (Python quick start)", "exec"), scope)
    torch.cuda.synchronize()
    o, q, k_cache, v_cache = scope["o"], scope["q"], scope["k_cache"], scope["v_cache"]
    page_size, group = planned["page_size"], planned["num_qo_heads"] // planned["num_kv_heads"]
    assert o.shape == q.shape and group * k_cache.shape[2] == q.shape[1]
    qo_indptr, kv_indptr = planned["qo_indptr"], planned["paged_kv_indptr"]
    for r in range(len(qo_indptr) - 1):
        pages = planned["paged_kv_indices"][kv_indptr[r]:kv_indptr[r + 1]]
        kv_len = (len(pages) - 1) * page_size + planned["paged_kv_last_page_len"][r]
        keys = k_cache[pages].flatten(0, 1)[:kv_len]
        values = v_cache[pages].flatten(0, 1)[:kv_len]
        rows = slice(qo_indptr[r], qo_indptr[r + 1])
        want, _ = reference_attention(q[rows], keys, values, planned["causal"], 1.0 / math.sqrt(q.shape[2]))
        torch.testing.assert_close(o[rows].float(), want, atol=2e-2, rtol=2e-2)
