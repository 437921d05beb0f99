"""ptxattn: hand-written SM90 (Hopper) attention and RoPE kernels, from Python.

Entry points shaped like FlashInfer's (README, "Python"):

- BatchPrefillWithPagedKVCacheWrapper: plan(...) once per batch, run(q, k_cache, v_cache) per layer;
  prefill, decode (qo_len 1) and speculative verification alike;
- BatchPrefillWithRaggedKVCacheWrapper: the same over ragged K/V;
- apply_rope, apply_rope_pos_ids, apply_rope_with_cos_sin_cache, build_rope_cos_sin_cache;
- append_paged_kv_cache;
- merge_state, merge_states (attention states: natural-log lse, where FlashInfer's is base 2).

Tensors come in through DLPack (torch, CuPy, JAX, ...), contiguous, on one CUDA
device; q and out of attention may be strided between tokens (q as a view into
a fused QKV projection), with each token's heads and head_dim contiguous. Work runs on the caller's stream: torch's current stream for torch
tensors, CuPy's current stream for CuPy arrays, else the `stream` argument (an
int cudaStream_t; 0 is the legacy default stream). Where an output is not
given, it is allocated with the input's framework (torch or CuPy). A bad
argument raises ValueError with the library's message; no usable GPU or a CUDA
failure raises RuntimeError. The log-sum-exp (lse) is the natural log.
"""

from . import _ptxattn

try:
    from . import _torch_ops  # torch custom ops, for torch tensors
except (ImportError, AttributeError):  # no torch, or one without torch.library.custom_op (before 2.4)
    _torch_ops = None

__version__ = _ptxattn.__version__

__all__ = [
    "BatchPrefillWithPagedKVCacheWrapper",
    "BatchPrefillWithRaggedKVCacheWrapper",
    "append_paged_kv_cache",
    "apply_rope",
    "apply_rope_pos_ids",
    "apply_rope_with_cos_sin_cache",
    "build_rope_cos_sin_cache",
    "merge_state",
    "merge_states",
]


# ---------------------------------------------------------------------------
# Streams, devices and allocation in the caller's framework
# ---------------------------------------------------------------------------
def _framework(tensor):
    return type(tensor).__module__.split(".")[0]


def _torch_op(tensor, stream):
    """torch.ops.ptxattn when `tensor` is a torch tensor (and its `stream` argument: -1 for torch's current
    stream), else None."""
    if _torch_ops is None or not isinstance(tensor, _torch_ops.torch.Tensor):
        return None
    return _torch_ops.torch.ops.ptxattn, (-1 if stream is None else _stream_handle(stream))


def _stream_handle(stream):
    """A cudaStream_t as an int, from an int, a torch.cuda.Stream (cuda_stream) or a CuPy stream (ptr)."""
    for attribute in ("cuda_stream", "ptr"):
        if hasattr(stream, attribute):
            return int(getattr(stream, attribute))
    return int(stream)


def _stream(tensor, stream):
    """The stream to run on: the argument if given, else the framework's current one."""
    if stream is not None:
        return _stream_handle(stream)
    framework = _framework(tensor)
    if framework == "torch":
        import torch
        return torch.cuda.current_stream(tensor.device).cuda_stream
    if framework == "cupy":
        import cupy
        return cupy.cuda.get_current_stream().ptr
    return 0


def _device(tensor, name):
    """The CUDA ordinal of a DLPack tensor (ValueError if it is not a CUDA tensor)."""
    if _torch_ops is not None and isinstance(tensor, _torch_ops.torch.Tensor):
        # torch.compile traces this check: torch's own device is traceable, the
        # DLPack device enum is not.
        if tensor.device.type != "cuda":
            raise ValueError(f"{name} must be a CUDA tensor (it is on {tensor.device.type})")
        return tensor.device.index
    if not hasattr(tensor, "__dlpack_device__"):
        raise ValueError(f"{name} must be a CUDA tensor (DLPack), not a {type(tensor).__name__}")
    device_type, ordinal = tensor.__dlpack_device__()
    if int(device_type) != 2:  # kDLCUDA
        raise ValueError(f"{name} must be a CUDA tensor (DLPack device type {int(device_type)})")
    return int(ordinal)


def _empty(like, shape, dtype=None):
    """An uninitialised tensor of `shape` in the framework and on the device of `like`."""
    framework = _framework(like)
    if framework == "torch":
        import torch
        return torch.empty(shape, dtype=dtype if dtype is not None else like.dtype, device=like.device)
    if framework == "cupy":
        import cupy
        with cupy.cuda.Device(like.device.id):
            return cupy.empty(shape, dtype=dtype if dtype is not None else like.dtype)
    raise ValueError(f"cannot allocate an output for a {type(like).__name__}: pass out= (and lse=)")


def _int32_dtype(like):
    framework = _framework(like)
    if framework == "torch":
        import torch
        return torch.int32
    return "int32"


def _float32(like):
    framework = _framework(like)
    if framework == "torch":
        import torch
        return torch.float32
    return "float32"


def _dtype_name(dtype):
    """'bfloat16' or 'float16' from a torch / NumPy / CuPy dtype or a string."""
    name = str(dtype).replace("torch.", "")
    return {"half": "float16", "bf16": "bfloat16", "fp16": "float16"}.get(name, name)


def _int32(values):
    """An index argument, copied to the host now: later changes to the caller's array do not reach the plan,
    and a device array is read in order with the work on its framework's current stream. Lists become int32
    NumPy arrays; arrays keep their dtype (C++ refuses one other than int32)."""
    framework = _framework(values)
    if framework == "torch":
        return values.detach().to("cpu", copy=True)  # waits for torch's current stream
    if framework == "cupy":
        import cupy
        return cupy.asnumpy(values)  # waits for CuPy's current stream
    if framework == "numpy":
        return values.copy()
    if hasattr(values, "__dlpack__"):
        return values  # another framework: copied by the extension when the plan is made
    import numpy
    return numpy.asarray(values, dtype=numpy.int32)


def _plan_device(index_array, device, workspace=None):
    """The device a plan is made for: the argument (an ordinal or a torch.device), else the index
    array's if it is on a GPU, else the workspace's, else the current one (-1)."""
    if device is not None:
        if isinstance(device, str):  # "cuda", "cuda:1"
            name, _, ordinal = device.partition(":")
            if name != "cuda" or not (ordinal == "" or ordinal.isdigit()):
                raise ValueError(f"device {device!r} is not a CUDA device")
            return int(ordinal) if ordinal else -1
        index = device if isinstance(device, int) else device.index
        return -1 if index is None else int(index)
    for array in (index_array, workspace):
        if hasattr(array, "__dlpack_device__"):
            device_type, ordinal = array.__dlpack_device__()
            if int(device_type) == 2:
                return int(ordinal)
    return -1  # the current CUDA device


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------
def _same_head_dims(head_dim_qk, head_dim_vo):
    if head_dim_vo is not None and int(head_dim_vo) != int(head_dim_qk):
        raise ValueError(f"head_dim_vo = {head_dim_vo} differs from head_dim_qk = {head_dim_qk}: ptxattn needs one "
                         "head dim for q, k and v")


class _Attention:
    """What the paged and ragged wrappers share: the workspace, options, the plan, run().

    float_workspace_buffer: a contiguous CUDA buffer (any dtype; torch.uint8 as FlashInfer's) the plan lives
    in; one buffer serves one wrapper at a time (each plan is laid out from its first byte: a run whose plan
    a later plan into an overlapping buffer has overwritten raises ValueError). With it, plan()
    stays at most one plan ahead of the stream: it uploads the schedule from pinned staging with one copy
    ordered on its stream (the `stream` argument, else the buffer's framework's current stream), so runs on
    that stream see it, and a re-plan on it is ordered after the runs before it. Runs on another stream
    are the caller's to order. A buffer too small is refused with the bytes needed. Without it, the plan owns
    its device memory and copies synchronously (after the last run has finished).

    use_cuda_graph=True makes a plan for a fixed capacity (max_batch_size requests, max_num_tokens query
    tokens, max_kv_units page-table entries or ragged K/V rows), so that a run captured in a CUDA graph once
    replays correctly after plan() has been called for any batch within it. It needs float_workspace_buffer,
    and the captured run's q and out hold max_num_tokens rows (the batch's tokens first; the rest is left as
    it is). kv_splits, gqa_packing and kv_block, chosen per batch otherwise, are fixed: kv_splits 1,
    gqa_packing "on" when the qo heads per KV head divide 128 (the tile's rows), and kv_block "standard", unless
    plan() names others. A paged graph plan needs plan(..., num_pages=).
    """

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD", use_cuda_graph=False, *, load_path="auto",
                 schedule="auto", max_ctas=0, max_batch_size=None, max_num_tokens=None, max_kv_units=None):
        if isinstance(float_workspace_buffer, str):  # the layout as the first argument, as before the workspace
            if kv_layout != "NHD":
                raise ValueError(f"the layout {float_workspace_buffer!r} came first, so {kv_layout!r} would be "
                                 "read as the layout: pass load_path and the options after it by keyword")
            float_workspace_buffer, kv_layout = None, float_workspace_buffer
        if float_workspace_buffer is not None:
            _device(float_workspace_buffer, "float_workspace_buffer")
        self._workspace = float_workspace_buffer
        self._capacity = None
        if use_cuda_graph:
            if float_workspace_buffer is None:
                raise ValueError("use_cuda_graph=True needs float_workspace_buffer (the plan of every batch lives in "
                                 "it, at the addresses the graph captures)")
            if None in (max_batch_size, max_num_tokens, max_kv_units):
                raise ValueError("use_cuda_graph=True needs the capacity: max_batch_size, max_num_tokens and "
                                 "max_kv_units")
            self._capacity = [int(max_batch_size), int(max_num_tokens), int(max_kv_units)]
        self._kv_layout = kv_layout
        self._load_path, self._schedule, self._max_ctas = load_path, schedule, max_ctas
        self._plan = _ptxattn.Prefill()
        self._planned = False
        self._kv_table = None  # the device page table runs read (paged plans given one on the device)
        self._graph_table_buffer = None  # a graph plan's page table (paged), made at its first plan
        self._last_run = None  # an event after the last run (torch and CuPy), which an owning plan() waits for
        self._plan_id = _torch_ops.register_wrapper(self) if _torch_ops else 0

    def _plan_after_runs(self, stream, **args):
        """Plans into the workspace buffer on `stream`, or, into the plan's own device buffers, once the last
        runs have finished: those copies are synchronous and not ordered with the run's stream."""
        if self._workspace is None:
            if self._last_run is not None:
                self._last_run.synchronize()
                self._last_run = None
            self._plan.plan(**args, workspace=None, capacity=None, stream=0)
        else:
            self._plan.plan(**args, workspace=self._workspace, capacity=self._capacity,
                            stream=_stream(self._workspace, stream))

    def _options(self, causal, sm_scale, window_left, logits_soft_cap, q_data_type, kv_data_type, return_lse,
                 kv_block, kv_splits, gqa_packing, kv_stages, num_qo_heads, num_kv_heads):
        group = int(num_qo_heads) // int(num_kv_heads) if int(num_kv_heads) > 0 else 0
        packable = group > 1 and int(num_qo_heads) % int(num_kv_heads) == 0 and 128 % group == 0
        dtype = _dtype_name(q_data_type)
        if kv_data_type is not None and _dtype_name(kv_data_type) != dtype:
            raise ValueError(f"kv_data_type {_dtype_name(kv_data_type)} differs from q_data_type {dtype}: "
                             "ptxattn needs one dtype for q, k and v")
        if self._capacity is not None:  # a graph plan fixes what the plan would choose per batch
            kv_block = "standard" if kv_block == "auto" else kv_block
            kv_splits = 1 if kv_splits == "auto" else kv_splits
            gqa_packing = ("on" if packable else "off") if gqa_packing == "auto" else gqa_packing
        if isinstance(gqa_packing, bool):
            gqa_packing = "on" if gqa_packing else "off"
        return dict(dtype=dtype, causal=bool(causal), window_left=int(window_left),
                    logits_soft_cap=float(logits_soft_cap or 0.0), sm_scale=float(sm_scale or 0.0),
                    return_lse=bool(return_lse), kv_layout=self._kv_layout, load_path=self._load_path,
                    schedule=self._schedule, max_ctas=int(self._max_ctas), kv_block=kv_block,
                    kv_splits=0 if kv_splits == "auto" else int(kv_splits), gqa_packing=str(gqa_packing),
                    kv_stages=0 if kv_stages == "auto" else int(kv_stages))

    def _run(self, q, k, v, out, lse, return_lse, stream):
        _device(q, "q")
        if not self._planned:
            raise ValueError("run() before a successful plan()")
        if return_lse and not self._return_lse:
            raise ValueError("return_lse=True, but the plan was made without it (plan(..., return_lse=True) makes "
                             "the kernel write lse)")
        if out is None:
            out = _empty(q, tuple(q.shape))
        if self._return_lse and lse is None:  # a plan with lse writes it, wanted or not
            lse = _empty(q, (q.shape[0], q.shape[1]), _float32(q))
        lse = lse if self._return_lse else None
        torch_op = _torch_op(q, stream)
        if torch_op:
            ops, op_stream = torch_op
            ops.attention(q, k, v, out, lse, self._plan_id, op_stream)
        else:
            handle = _stream(q, stream)
            self._plan.run(q, k, v, out, lse, self._kv_table, handle)
            if _framework(q) == "cupy":
                import cupy
                with cupy.cuda.Device(q.device.id):  # the event on q's device, as the stream
                    self._last_run = cupy.cuda.Event()
                    cupy.cuda.runtime.eventRecord(self._last_run.ptr, handle)  # a raw handle: no stream object
        return (out, lse) if return_lse else out

    @property
    def chosen_load_path(self):
        return self._plan.chosen_load_path

    @property
    def chosen_schedule(self):
        return self._plan.chosen_schedule

    @property
    def chosen_block_kv(self):
        return self._plan.chosen_block_kv

    @property
    def chosen_kv_splits(self):
        return self._plan.chosen_kv_splits

    @property
    def chosen_kv_stages(self):
        return self._plan.chosen_kv_stages

    @property
    def chosen_tile_heads(self):
        return self._plan.chosen_tile_heads


class BatchPrefillWithPagedKVCacheWrapper(_Attention):
    """Attention of ragged queries over a paged KV cache (FlashInfer's page table).

    Request b owns pages paged_kv_indices[paged_kv_indptr[b]:paged_kv_indptr[b+1]]; its
    kv_len is page_size * (pages - 1) + paged_kv_last_page_len[b]. Causal masking is
    bottom-right aligned (query i sees keys up to kv_len - qo_len + i). Decode is the case
    qo_len = 1. k_cache and v_cache are separate pools, [num_pages, page_size,
    num_kv_heads, head_dim] (NHD) or [num_pages, num_kv_heads, page_size, head_dim] (HND).
    The constructor's arguments are _Attention's (workspace, layout, CUDA graphs); with
    use_cuda_graph, max_kv_units is the most page-table entries a batch names.
    """

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads,
             num_kv_heads, head_dim_qk, page_size, *, head_dim_vo=None, num_pages=None, causal=False, sm_scale=None,
             window_left=-1, logits_soft_cap=None, q_data_type="bfloat16", kv_data_type=None, return_lse=False,
             device=None, kv_block="auto", kv_splits="auto", gqa_packing="auto", kv_stages="auto", stream=None):
        """Validates the batch and builds the schedule. Options after page_size are keyword-only.

        qo_indptr, paged_kv_indptr and paged_kv_last_page_len (int32) are read here, on the host (device
        arrays are copied to it, waiting for their framework's current stream). paged_kv_indices is either
        on the host, then checked and copied into the plan, or a CUDA array: the device page table, which
        is not copied but read by every run as it then is (an entry outside the pool is never used as an
        address: page_table_error() reports it). A graph plan copies it, from either side, into a table
        of max_kv_units entries it keeps, on the plan's stream.

        num_pages is the pool size (pages in k_cache and v_cache); without it the plan is
        validated and finished at the first run(), when the caches show it (that run then copies
        to the device: make it outside CUDA-graph capture).

        kv_block: "auto", "standard" or "wide", the KV block the kernel walks (ptxattn::KvBlock; paged K/V
        take only the standard block, so "wide" is refused). kv_splits: "auto" (the plan's rule) or 1 to
        64 KV chunks per query tile (merged after). gqa_packing: "auto", "on" (a tile holds the qo heads of
        one KV head) or "off" (one qo head per tile). kv_stages: "auto" (the head dim's ring) or the K/V stages
        of the kernel's shared-memory ring where a kernel with that ring is built (ptxattn::PrefillConfig::
        kv_stages: 3 at head_dim 128 on the gather path; for benchmarks and tests; every count gives the
        same bits); chosen_kv_stages says which was taken. stream: the upload's, with float_workspace_buffer.
        """
        self._planned = False
        self._lazy = False
        _same_head_dims(head_dim_qk, head_dim_vo)
        table = paged_kv_indices
        on_device = hasattr(table, "__dlpack_device__") and int(table.__dlpack_device__()[0]) == 2
        host_table = None if on_device else _int32(paged_kv_indices)
        if self._capacity is not None:
            if num_pages is None:
                raise ValueError("use_cuda_graph=True: plan() needs num_pages (a graph's replay never calls run(), "
                                 "which would otherwise finish the plan)")
            entries = int(_int32(paged_kv_indptr)[-1]) if len(paged_kv_indptr) > 0 else 0
            if len(table) < entries:
                raise ValueError(f"paged_kv_indices has {len(table)} entries; paged_kv_indptr names {entries}")
            table = table[:entries] if on_device else host_table[:entries]  # a host one is checked by the plan
            host_table = None if on_device else table
        self._args = dict(
            self._options(causal, sm_scale, window_left, logits_soft_cap, q_data_type, kv_data_type, return_lse,
                          kv_block, kv_splits, gqa_packing, kv_stages, num_qo_heads, num_kv_heads),
            num_qo_heads=int(num_qo_heads), num_kv_heads=int(num_kv_heads), head_dim=int(head_dim_qk),
            paged=True, page_size=int(page_size), qo_indptr=_int32(qo_indptr), kv_indptr=_int32(paged_kv_indptr),
            kv_indices=host_table,
            kv_last_page_len=_int32(paged_kv_last_page_len), table_at_run=on_device or self._capacity is not None,
            device=_plan_device(qo_indptr, device, self._workspace))
        self._plan_stream = stream
        self._kv_table = table if self._args["table_at_run"] else None
        self._return_lse = bool(return_lse)
        if num_pages is not None:
            self._make(int(num_pages))
            if self._capacity is not None:  # the batch is checked: its table goes where the graph reads one
                self._planned = False
                self._kv_table = self._graph_table(table, stream)
                self._planned = True
        else:
            self._lazy = True

    def _graph_table(self, indices, stream):
        """The graph plan's page table: the wrapper's buffer of max_kv_units entries (made once, on the
        workspace's device), holding `indices` from the plan's stream on."""
        if self._graph_table_buffer is None:
            self._graph_table_buffer = _empty(self._workspace, (self._capacity[2],), _int32_dtype(self._workspace))
        _ptxattn.copy_int32(self._graph_table_buffer, indices, _stream(self._workspace, stream))
        return self._graph_table_buffer

    def _make(self, num_pages):
        self._planned = False
        self._plan_after_runs(self._plan_stream, num_pages=num_pages, **self._args)
        self._planned = True

    def run(self, q, k_cache, v_cache=None, out=None, lse=None, return_lse=False, stream=None):
        """o = attention(q, K, V) for the planned batch; (o, lse) with return_lse.

        k_cache may also be FlashInfer's paged_kv_cache: a (k_cache, v_cache) tuple, or the combined cache
        [num_pages, 2, page_size, num_kv_heads, head_dim] (NHD; HND: [num_pages, 2, num_kv_heads, page_size,
        head_dim]), whose halves [:, 0] and [:, 1] are read in place (k and v may lie any stride apart
        between pages, each page contiguous).
        """
        if v_cache is None:
            if isinstance(k_cache, (tuple, list)) and len(k_cache) == 2:
                k_cache, v_cache = k_cache
            elif len(getattr(k_cache, "shape", ())) == 5 and k_cache.shape[1] == 2:
                k_cache, v_cache = k_cache[:, 0], k_cache[:, 1]
            else:
                raise ValueError("pass k_cache and v_cache, a (k_cache, v_cache) tuple, or the combined cache "
                                 "[num_pages, 2, ...]")
        _device(q, "q")
        if not hasattr(self, "_args"):
            raise ValueError("run() before plan()")
        if self._lazy and not self._planned:
            self._make(int(k_cache.shape[0]))
        return self._run(q, k_cache, v_cache, out, lse, return_lse, stream)

    def page_table_error(self, stream=None):
        """The page-table entry outside the pool (of the lowest position) that runs of this plan met since it
        was made or last checked, as a message naming its position, value and request; None when there was
        none. Only a device page table can hold one (plan() checks a host one, also in graph mode). Waits for `stream`
        (default: the current stream of the table's framework), on which the runs were issued; clears the
        record."""
        if not self._planned:
            raise ValueError("page_table_error() before a successful plan()")
        if self._kv_table is None:
            return None
        return self._plan.page_table_error(_stream(self._kv_table, stream))


class BatchPrefillWithRaggedKVCacheWrapper(_Attention):
    """Attention of ragged queries over ragged K/V: request b's keys are rows
    kv_indptr[b]:kv_indptr[b+1] of k and v ([num_kv_rows, num_kv_heads, head_dim])."""

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim_qk, *, head_dim_vo=None,
             causal=False, sm_scale=None, window_left=-1, logits_soft_cap=None, q_data_type="bfloat16",
             kv_data_type=None, return_lse=False, device=None, kv_block="auto", kv_splits="auto",
             gqa_packing="auto", kv_stages="auto", stream=None):
        """Validates the batch and builds the schedule (index arrays as the paged plan's); options after
        head_dim_qk are keyword-only.

        kv_block: "auto", "standard" (128 rows, 64 at head_dim 256) or "wide" (176 rows: head_dim 128
        without causal or a window shorter than the longest kv_len; refused elsewhere), the KV block the
        kernel walks (ptxattn::KvBlock). "auto" takes the wide block where it can and the batch's work lies
        in KV ranges of 8192 keys or more; forcing one is for benchmarks and tests. chosen_block_kv says which was
        taken. kv_splits, gqa_packing, kv_stages and stream: as the paged plan's. With use_cuda_graph, max_kv_units is the
        rows the captured k and v hold."""
        self._planned = False
        _same_head_dims(head_dim_qk, head_dim_vo)
        self._return_lse = bool(return_lse)
        self._plan_after_runs(stream, **self._options(causal, sm_scale, window_left, logits_soft_cap, q_data_type,
                                                      kv_data_type, return_lse, kv_block, kv_splits, gqa_packing,
                                                      kv_stages, num_qo_heads, num_kv_heads),
                              num_qo_heads=int(num_qo_heads), num_kv_heads=int(num_kv_heads), head_dim=int(head_dim_qk),
                              paged=False, page_size=0, num_pages=0, qo_indptr=_int32(qo_indptr),
                              kv_indptr=_int32(kv_indptr), kv_indices=None, kv_last_page_len=None,
                              table_at_run=False, device=_plan_device(qo_indptr, device, self._workspace))
        self._planned = True

    def run(self, q, k, v, out=None, lse=None, return_lse=False, stream=None):
        return self._run(q, k, v, out, lse, return_lse, stream)


# ---------------------------------------------------------------------------
# RoPE and appending to the paged cache
# ---------------------------------------------------------------------------
def _rope(rotary_dim, head_dim, interleave, rope_scale, rope_theta, llama31=None):
    """RopeConfig's fields in order. llama31: None, or a dict with low_freq_factor, high_freq_factor,
    old_context_len (rope_scale is then Llama's factor)."""
    llama = llama31 or {}
    return (int(rotary_dim if rotary_dim is not None else head_dim), bool(interleave), float(rope_theta),
            float(rope_scale), llama31 is not None, float(llama.get("low_freq_factor", 1.0)),
            float(llama.get("high_freq_factor", 4.0)), int(llama.get("old_context_len", 8192)))


def _apply_rope(q, k, pos_ids, indptr, offsets, rope, inplace, stream):
    torch_op = _torch_op(q, stream)
    if torch_op:
        ops, op_stream = torch_op
        if inplace:
            ops.apply_rope_inplace(q, k, pos_ids, indptr, offsets, *rope, op_stream)
            return q, k
        q_out, k_out = _empty(q, tuple(q.shape)), _empty(k, tuple(k.shape))
        ops.apply_rope(q, k, q_out, k_out, pos_ids, indptr, offsets, *rope, op_stream)
        return q_out, k_out
    q_out, k_out = (q, k) if inplace else (_empty(q, tuple(q.shape)), _empty(k, tuple(k.shape)))
    _ptxattn.apply_rope(q, k, q_out, k_out, pos_ids, indptr, offsets, _ptxattn.RopeConfig(*rope), _stream(q, stream))
    return q_out, k_out


def apply_rope(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=1.0, rope_theta=1e4,
               llama31=None, inplace=False, stream=None):
    """Rotates q [num_tokens, num_qo_heads, head_dim] and k [num_tokens, num_kv_heads, head_dim]; token t of
    request b (indptr[b] <= t < indptr[b+1], int32 on the device) sits at position offsets[b] + t - indptr[b].
    Returns (q_rope, k_rope): new tensors, or q and k themselves with inplace=True."""
    _device(q, "q")
    return _apply_rope(q, k, None, indptr, offsets, _rope(rotary_dim, q.shape[-1], interleave, rope_scale,
                                                           rope_theta, llama31), inplace, stream)


def apply_rope_pos_ids(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=1.0, rope_theta=1e4,
                       llama31=None, inplace=False, stream=None):
    """As apply_rope, with one int32 position per token (pos_ids, on the device)."""
    _device(q, "q")
    return _apply_rope(q, k, pos_ids, None, None, _rope(rotary_dim, q.shape[-1], interleave, rope_scale,
                                                         rope_theta, llama31), inplace, stream)


def build_rope_cos_sin_cache(max_position, rotary_dim, rope_scale=1.0, rope_theta=1e4, llama31=None, out=None,
                             like=None, stream=None):
    """float32 [max_position, rotary_dim]: cos of the rotary_dim / 2 frequencies, then sin. Written into out, or
    into a new tensor in the framework and on the device of `like` (a torch tensor or CuPy array)."""
    if out is None:
        if like is None:
            raise ValueError("pass out= (a float32 [max_position, rotary_dim] CUDA tensor) or like= (a tensor "
                             "whose framework and device the cache should have)")
        out = _empty(like, (int(max_position), int(rotary_dim)), _float32(like))
    _device(out, "out")
    rope = _rope(rotary_dim, rotary_dim, False, rope_scale, rope_theta, llama31)
    torch_op = _torch_op(out, stream)
    if torch_op:
        ops, op_stream = torch_op
        ops.build_rope_cos_sin_cache(out, int(max_position), rope[0], *rope[2:], op_stream)
    else:
        _ptxattn.build_rope_cos_sin_cache(out, int(max_position), _ptxattn.RopeConfig(*rope), _stream(out, stream))
    return out


def apply_rope_with_cos_sin_cache(positions, query, key, cos_sin_cache, is_neox=True, inplace=False, stream=None):
    """Rotates query [num_tokens, num_qo_heads, head_dim] and key [num_tokens, num_kv_heads, head_dim] at
    positions (int32, on the device) with a cache from build_rope_cos_sin_cache. A position outside the
    cache makes that token's rotary dims NaN. Returns (query_rope, key_rope): new tensors, or query and key
    themselves with inplace=True."""
    _device(query, "query")
    torch_op = _torch_op(query, stream)
    if torch_op:
        ops, op_stream = torch_op
        if inplace:
            ops.apply_rope_with_cos_sin_cache_inplace(query, key, positions, cos_sin_cache, not is_neox, op_stream)
            return query, key
        q_out, k_out = _empty(query, tuple(query.shape)), _empty(key, tuple(key.shape))
        ops.apply_rope_with_cos_sin_cache(query, key, q_out, k_out, positions, cos_sin_cache, not is_neox, op_stream)
        return q_out, k_out
    q_out, k_out = (query, key) if inplace else (_empty(query, tuple(query.shape)), _empty(key, tuple(key.shape)))
    _ptxattn.apply_rope_with_cos_sin_cache(query, key, q_out, k_out, positions, cos_sin_cache, not is_neox,
                                           _stream(query, stream))
    return q_out, k_out


def append_paged_kv_cache(append_key, append_value, append_indptr, paged_kv_cache, kv_indices, kv_indptr,
                          kv_last_page_len, kv_layout="NHD", rope=None, q=None, q_out=None, stream=None):
    """Copies append_key / append_value [num_append_tokens, num_kv_heads, head_dim] into the cache.

    Rows append_indptr[b]:append_indptr[b+1] are request b's LAST tokens: the page table
    (kv_indices, kv_indptr, kv_last_page_len, host or device int32) already counts them.
    paged_kv_cache is a (k_cache, v_cache) tuple. With rope (a dict of apply_rope's keyword
    arguments: rotary_dim, interleave, rope_scale, rope_theta, llama31) K is rotated at its
    position on the way in, and so is q [num_append_tokens, num_qo_heads, head_dim] into
    q_out (may be q) when given.
    """
    if not isinstance(paged_kv_cache, (tuple, list)) or len(paged_kv_cache) != 2:
        raise ValueError("paged_kv_cache must be a (k_cache, v_cache) tuple")
    k_cache, v_cache = paged_kv_cache
    if len(k_cache.shape) != 4:
        raise ValueError(f"k_cache must be 4-dimensional, has shape {tuple(k_cache.shape)}")
    head_dim = int(k_cache.shape[3])
    num_pages = int(k_cache.shape[0])
    page_size, num_kv_heads = ((k_cache.shape[1], k_cache.shape[2]) if kv_layout == "NHD"
                               else (k_cache.shape[2], k_cache.shape[1]))
    plan = _ptxattn.Append()
    plan.plan(_dtype_name(append_key.dtype), int(num_kv_heads), head_dim, kv_layout, int(page_size), num_pages,
              _int32(append_indptr), _int32(kv_indptr), _int32(kv_indices), _int32(kv_last_page_len),
              _plan_device(k_cache, None))
    rope_config = None if rope is None else _ptxattn.RopeConfig(*_rope(
        rope.get("rotary_dim"), head_dim, rope.get("interleave", False), rope.get("rope_scale", 1.0),
        rope.get("rope_theta", 1e4), rope.get("llama31")))
    plan.run(append_key, append_value, k_cache, v_cache, q, q_out, rope_config, _stream(append_key, stream))


# ---------------------------------------------------------------------------
# Merging attention states
# ---------------------------------------------------------------------------
def merge_states(v, s, *, out=None, s_out=None, stream=None):
    """Merges num_states attention states per token and head: v [num_tokens, num_states, num_heads, head_dim]
    (bfloat16, float16 or float32), s [num_tokens, num_states, num_heads] float32, the NATURAL log of each
    state's softmax denominator (FlashInfer's s is base 2: multiply it by ln 2). Returns (v_merged, s_merged):
    v_merged [num_tokens, num_heads, head_dim] in v's dtype (or out's), s_merged float32. A state with
    s = -inf is empty and skipped, whatever its v holds."""
    _device(v, "v")
    if len(v.shape) != 4:
        raise ValueError(f"v must be [num_tokens, num_states, num_heads, head_dim], not of shape {tuple(v.shape)}")
    if out is None:
        out = _empty(v, (v.shape[0], v.shape[2], v.shape[3]))
    if s_out is None:
        s_out = _empty(v, (v.shape[0], v.shape[2]), _float32(v))
    torch_op = _torch_op(v, stream)
    if torch_op:
        ops, op_stream = torch_op
        ops.merge_states(v, s, out, s_out, op_stream)
    else:
        _ptxattn.merge_states(v, s, out, s_out, _stream(v, stream))
    return out, s_out


def merge_state(v_a, s_a, v_b, s_b, *, out=None, s_out=None, stream=None):
    """Merges two attention states per token and head (FlashInfer's merge_state): v_a, v_b [num_tokens,
    num_heads, head_dim] of one dtype (bfloat16, float16 or float32), s_a, s_b [num_tokens, num_heads] float32,
    natural log. Returns (v_merged, s_merged), as merge_states does for the two stacked."""
    _device(v_a, "v_a")
    if len(v_a.shape) != 3 or len(s_a.shape) != 2:
        raise ValueError(f"v_a must be [num_tokens, num_heads, head_dim] and s_a [num_tokens, num_heads], not of "
                         f"shapes {tuple(v_a.shape)} and {tuple(s_a.shape)}")
    if out is None:
        out = _empty(v_a, tuple(v_a.shape))
    if s_out is None:
        s_out = _empty(v_a, tuple(s_a.shape), _float32(v_a))
    torch_op = _torch_op(v_a, stream)
    if torch_op:
        ops, op_stream = torch_op
        ops.merge_state(v_a, s_a, v_b, s_b, out, s_out, op_stream)
    else:
        _ptxattn.merge_state(v_a, s_a, v_b, s_b, out, s_out, _stream(v_a, stream))
    return out, s_out
