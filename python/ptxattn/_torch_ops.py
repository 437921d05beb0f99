"""torch custom ops over ptxattn's kernels, registered when torch imports.

The package's functions call these for torch tensors, so torch.compile traces
through them (each has a fake implementation: it only mutates the outputs it is
given, which the caller allocated) and a CUDA graph captures the launch. An op
runs on `stream` when it is >= 0, else on torch's current stream of the
tensors' device (the capturing stream, under graph capture).

An attention op names its plan by an integer id (`register_wrapper`): the
wrapper's plan at the time the op runs, as with FlashInfer's wrappers. A CUDA
graph, though, replays the launch as it was captured (grid, tensor maps, the
plan's device buffers): re-planning a captured wrapper for another batch
reaches the graph only for a wrapper made with use_cuda_graph=True (its plans
keep one layout in its workspace), and the wrapper must outlive the graph.
append_paged_kv_cache is not an op: it plans on the host at every call.
"""

import itertools
import weakref
from typing import Optional

import torch

from . import _ptxattn

_WRAPPERS = weakref.WeakValueDictionary()  # plan id -> attention wrapper
_NEXT_ID = itertools.count(1)


def register_wrapper(wrapper):
    """A plan id for `wrapper`, valid while it lives."""
    plan_id = next(_NEXT_ID)
    _WRAPPERS[plan_id] = wrapper
    return plan_id


def _detached(*tensors):
    """The tensors without autograd (DLPack refuses a tensor that requires grad; the ops have no backward)."""
    return tuple(None if t is None else t.detach() for t in tensors)


def _stream(tensor, stream):
    return stream if stream >= 0 else torch.cuda.current_stream(tensor.device).cuda_stream


@torch.library.custom_op("ptxattn::attention", mutates_args=("out", "lse"))
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: Optional[torch.Tensor],
              plan_id: int, stream: int) -> None:
    wrapper = _WRAPPERS.get(plan_id)
    if wrapper is None:
        raise ValueError(f"plan id {plan_id} names no live attention wrapper")
    if not wrapper._planned:
        raise ValueError("run() before a successful plan()")
    q, k, v, out, lse = _detached(q, k, v, out, lse)
    handle = _stream(q, stream)
    wrapper._plan.run(q, k, v, out, lse, wrapper._kv_table, handle)
    if not torch.cuda.is_current_stream_capturing():  # a replayed graph is the caller's to order
        event = torch.cuda.Event()
        event.record(torch.cuda.ExternalStream(handle, device=q.device))
        wrapper._last_run = event  # the next plan() waits for it



@torch.library.custom_op("ptxattn::apply_rope", mutates_args=("q_out", "k_out"))
def apply_rope(q: torch.Tensor, k: torch.Tensor, q_out: torch.Tensor, k_out: torch.Tensor,
               pos_ids: Optional[torch.Tensor], indptr: Optional[torch.Tensor], offsets: Optional[torch.Tensor],
               rotary_dim: int, interleave: bool, theta: float, rope_scale: float, llama31: bool,
               low_freq_factor: float, high_freq_factor: float, old_context_len: int, stream: int) -> None:
    rope = _ptxattn.RopeConfig(rotary_dim, interleave, theta, rope_scale, llama31, low_freq_factor,
                               high_freq_factor, old_context_len)
    q, k, q_out, k_out, pos_ids, indptr, offsets = _detached(q, k, q_out, k_out, pos_ids, indptr, offsets)
    _ptxattn.apply_rope(q, k, q_out, k_out, pos_ids, indptr, offsets, rope, _stream(q, stream))



@torch.library.custom_op("ptxattn::apply_rope_inplace", mutates_args=("q", "k"))
def apply_rope_inplace(q: torch.Tensor, k: torch.Tensor, pos_ids: Optional[torch.Tensor],
                       indptr: Optional[torch.Tensor], offsets: Optional[torch.Tensor], rotary_dim: int,
                       interleave: bool, theta: float, rope_scale: float, llama31: bool, low_freq_factor: float,
                       high_freq_factor: float, old_context_len: int, stream: int) -> None:
    rope = _ptxattn.RopeConfig(rotary_dim, interleave, theta, rope_scale, llama31, low_freq_factor,
                               high_freq_factor, old_context_len)
    q, k, pos_ids, indptr, offsets = _detached(q, k, pos_ids, indptr, offsets)
    _ptxattn.apply_rope(q, k, q, k, pos_ids, indptr, offsets, rope, _stream(q, stream))



@torch.library.custom_op("ptxattn::apply_rope_with_cos_sin_cache", mutates_args=("q_out", "k_out"))
def apply_rope_with_cos_sin_cache(q: torch.Tensor, k: torch.Tensor, q_out: torch.Tensor, k_out: torch.Tensor,
                                  positions: torch.Tensor, cos_sin_cache: torch.Tensor, interleave: bool,
                                  stream: int) -> None:
    q, k, q_out, k_out, positions, cos_sin_cache = _detached(q, k, q_out, k_out, positions, cos_sin_cache)
    _ptxattn.apply_rope_with_cos_sin_cache(q, k, q_out, k_out, positions, cos_sin_cache, interleave,
                                           _stream(q, stream))



@torch.library.custom_op("ptxattn::apply_rope_with_cos_sin_cache_inplace", mutates_args=("q", "k"))
def apply_rope_with_cos_sin_cache_inplace(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
                                          cos_sin_cache: torch.Tensor, interleave: bool, stream: int) -> None:
    q, k, positions, cos_sin_cache = _detached(q, k, positions, cos_sin_cache)
    _ptxattn.apply_rope_with_cos_sin_cache(q, k, q, k, positions, cos_sin_cache, interleave, _stream(q, stream))



@torch.library.custom_op("ptxattn::build_rope_cos_sin_cache", mutates_args=("out",))
def build_rope_cos_sin_cache(out: torch.Tensor, max_position: int, rotary_dim: int, theta: float,
                             rope_scale: float, llama31: bool, low_freq_factor: float, high_freq_factor: float,
                             old_context_len: int, stream: int) -> None:
    rope = _ptxattn.RopeConfig(rotary_dim, False, theta, rope_scale, llama31, low_freq_factor, high_freq_factor,
                               old_context_len)
    _ptxattn.build_rope_cos_sin_cache(out.detach(), max_position, rope, _stream(out, stream))


@torch.library.custom_op("ptxattn::merge_states", mutates_args=("v_out", "s_out"))
def merge_states(v: torch.Tensor, s: torch.Tensor, v_out: torch.Tensor, s_out: torch.Tensor, stream: int) -> None:
    v, s, v_out, s_out = _detached(v, s, v_out, s_out)
    _ptxattn.merge_states(v, s, v_out, s_out, _stream(v, stream))


@torch.library.custom_op("ptxattn::merge_state", mutates_args=("v_out", "s_out"))
def merge_state(v_a: torch.Tensor, s_a: torch.Tensor, v_b: torch.Tensor, s_b: torch.Tensor, v_out: torch.Tensor,
                s_out: torch.Tensor, stream: int) -> None:
    v_a, s_a, v_b, s_b, v_out, s_out = _detached(v_a, s_a, v_b, s_b, v_out, s_out)
    _ptxattn.merge_state(v_a, s_a, v_b, s_b, v_out, s_out, _stream(v_a, stream))


# Every op only writes into tensors it was given: nothing to describe to the tracer.
for _op in (attention, apply_rope, apply_rope_inplace, apply_rope_with_cos_sin_cache,
            apply_rope_with_cos_sin_cache_inplace, build_rope_cos_sin_cache, merge_states, merge_state):
    _op.register_fake(lambda *args: None)
