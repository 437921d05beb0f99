// run_prefill: checks the tensors against the plan, encodes the tensor maps
// and launches the kernel of the plan's head dim, then, with split-KV, the
// merge of its chunks. Nothing is allocated or copied here, so a run can be
// captured in a CUDA graph.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>

#include "merge_states_params.hpp"
#include "prefill_launch.hpp"
#include "prefill_plan.hpp"
#include "ptx/tma_host.hpp"
#include "status.hpp"
#include "validate.hpp"
#include "wait_timeout.hpp"

namespace ptxattn {
namespace {

using detail::PrefillLaunch;

constexpr float kLog2e = 1.4426950408889634f;

// A row stride of q or o as given (PrefillTensors), 0 resolved to contiguous.
int64_t row_stride(const PrefillConfig& c, int64_t stride) {
  return stride != 0 ? stride : int64_t(c.num_qo_heads) * c.head_dim;
}

// The stride of k and v from one page (paged) or row (ragged) to the next,
// 0 resolved to contiguous.
int64_t kv_stride(const PrefillConfig& c, int64_t stride) {
  if (stride != 0) return stride;
  return (c.kv_format == KvFormat::kPaged ? int64_t(c.page_size) : 1) * c.num_kv_heads * c.head_dim;
}

CUtensorMapDataType tensor_map_type(DType dtype) {
  return dtype == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
}

// q: dims (d, head, token), one box = a tile's query rows: its tokens of its
// 1 << heads_log2 heads (prefill_params.hpp describes the boxes).
Status encode_q_map(const PrefillConfig& c, int32_t heads_log2, const PrefillTensors& t, CUtensorMap* map) {
  const uint64_t elem = 2, d = uint64_t(c.head_dim), heads = uint64_t(c.num_qo_heads);
  ptx::TensorMapSpec spec;
  spec.data_type = tensor_map_type(c.dtype);
  spec.rank = 3;
  spec.global_address = t.q;
  spec.dims[0] = d, spec.dims[1] = heads, spec.dims[2] = uint64_t(t.num_q_tokens);
  spec.byte_strides[1] = d * elem, spec.byte_strides[2] = uint64_t(row_stride(c, t.q_row_stride)) * elem;
  spec.box[0] = detail::kTmaBoxCols, spec.box[1] = 1u << heads_log2, spec.box[2] = uint32_t(detail::tile_tokens(heads_log2));
  return ptx::encode_tensor_map(spec, map);
}

// K or V: paged NHD dims (d, head, slot, page), HND (d, slot, head, page), one
// box per page (or per block of a large page); ragged (d, head, row).
Status encode_kv_map(const PrefillConfig& c, int32_t block_kv, const PrefillTensors& t, const void* base,
                     CUtensorMap* map) {
  const uint64_t elem = 2, d = uint64_t(c.head_dim), heads = uint64_t(c.num_kv_heads);
  const bool paged = c.kv_format != KvFormat::kRagged;
  const uint32_t rows_per_box = uint32_t(detail::kv_box_rows(block_kv, paged, c.page_size));
  ptx::TensorMapSpec spec;
  spec.data_type = tensor_map_type(c.dtype);
  spec.global_address = base;
  spec.dims[0] = d, spec.box[0] = detail::kTmaBoxCols;
  if (!paged) {
    spec.rank = 3;
    spec.dims[1] = heads, spec.dims[2] = uint64_t(t.num_kv_rows);
    spec.byte_strides[1] = d * elem, spec.byte_strides[2] = uint64_t(kv_stride(c, t.kv_stride)) * elem;
    spec.box[1] = 1, spec.box[2] = rows_per_box;
    return ptx::encode_tensor_map(spec, map);
  }
  const uint64_t page = uint64_t(c.page_size);
  spec.rank = 4;
  spec.dims[3] = uint64_t(t.num_kv_rows);
  spec.byte_strides[3] = uint64_t(kv_stride(c, t.kv_stride)) * elem;
  if (c.kv_layout == KvLayout::kNHD) {
    spec.dims[1] = heads, spec.dims[2] = page;
    spec.byte_strides[1] = d * elem, spec.byte_strides[2] = heads * d * elem;
    spec.box[1] = 1, spec.box[2] = rows_per_box;
  } else {
    spec.dims[1] = page, spec.dims[2] = heads;
    spec.byte_strides[1] = d * elem, spec.byte_strides[2] = page * d * elem;
    spec.box[1] = rows_per_box, spec.box[2] = 1;
  }
  spec.box[3] = 1;
  return ptx::encode_tensor_map(spec, map);
}

detail::PrefillParams make_params(const PrefillPlanImpl& plan, const PrefillTensors& t) {
  const PrefillConfig& c = plan.config;
  const PrefillOptions& o = c.options;
  detail::PrefillParams p{};
  p.q = t.q, p.k = t.k, p.v = t.v, p.o = t.o;
  p.o_row_stride = row_stride(c, t.o_row_stride);
  p.lse = o.return_lse ? t.lse : nullptr;
  const detail::PlanLayout& at = plan.layout;
  p.requests = plan.region<const detail::RequestInfo>(at.requests);
  p.tiles = plan.region<const detail::WorkTile>(at.tiles);
  // A graph plan's launch is the same for every batch, its empty ones too.
  if (plan.items_listed || plan.graph) p.cta_work_items = plan.region<const int32_t>(at.items);
  if (plan.schedule == WorkSchedule::kPersistent) p.cta_work_indptr = plan.region<const int32_t>(at.cta_indptr);
  p.kv_indices = plan.device_page_table ? t.kv_indices : plan.region<const int32_t>(at.kv_entries);
  p.num_pages = c.num_pages;
  p.page_table_error = plan.region<unsigned long long>(at.page_table_error);
  if (plan.schedule == WorkSchedule::kDynamic) {
    p.work_counter = plan.region<int32_t>(at.work_counter);
    p.num_items = int32_t(plan.num_items);
  }
  p.kv_splits = plan.kv_splits;
  if (plan.kv_splits > 1) {
    p.partial_o = plan.region<float>(at.partial_o);
    p.partial_lse = plan.region<float>(at.partial_lse);
  }
  p.num_qo_heads = c.num_qo_heads;
  p.group_size = c.num_qo_heads / c.num_kv_heads;
  p.heads_log2 = plan.heads_log2;
  p.item_heads = c.num_qo_heads >> plan.heads_log2;
  p.paged = c.kv_format == KvFormat::kPaged;
  p.page_size = p.paged ? c.page_size : 0;
  p.hnd = p.paged && c.kv_layout == KvLayout::kHND;
  const int64_t d = c.head_dim, heads = c.num_kv_heads, page = p.page_size;
  p.page_stride = kv_stride(c, t.kv_stride);  // a page (paged) or a row (ragged)
  if (!p.paged) {
    p.slot_stride = 0, p.head_stride = d;
  } else if (p.hnd) {
    p.slot_stride = d, p.head_stride = page * d;
  } else {
    p.slot_stride = heads * d, p.head_stride = d;
  }
  p.causal = o.causal;
  p.window_left = plan.window_left;
  const float sm_scale = o.sm_scale > 0.f ? o.sm_scale : 1.f / std::sqrt(float(c.head_dim));
  p.soft_cap = o.logits_soft_cap > 0.f;
  // Soft cap: s = cap * tanh(q.k * sm_scale / cap); the softmax then needs cap * log2(e).
  p.score_prescale = p.soft_cap ? sm_scale / o.logits_soft_cap : 1.f;
  p.score_scale_log2 = (p.soft_cap ? o.logits_soft_cap : sm_scale) * kLog2e;
  return p;
}

cudaError_t launch_for_head_dim(int32_t head_dim, const PrefillLaunch& l, cudaStream_t stream) {
  switch (head_dim) {
#if defined(PTXATTN_ENABLE_HD64)
    case 64: return detail::launch_prefill<64>(l, stream);
#endif
#if defined(PTXATTN_ENABLE_HD128)
    case 128: return detail::launch_prefill<128>(l, stream);
#endif
#if defined(PTXATTN_ENABLE_HD256)
    case 256: return detail::launch_prefill<256>(l, stream);
#endif
    default: return cudaErrorNotSupported;  // unreachable: the plan rejects head dims not built
  }
}

// Split-KV: the kernel has written every chunk's state of every (token, head)
// into the plan's workspace; merge_states turns them into o (and lse),
// finding each token's through the plan's state_indptr where tiles have
// different counts.
Status merge_chunks(const PrefillPlanImpl& plan, const PrefillTensors& t, cudaStream_t stream) {
  const PrefillConfig& c = plan.config;
  MergeStatesTensors m;
  m.v_dtype = StateDType::kFP32;
  m.out_dtype = c.dtype == DType::kBF16 ? StateDType::kBF16 : StateDType::kFP16;
  m.num_states = plan.kv_splits;
  m.num_heads = c.num_qo_heads;
  m.head_dim = c.head_dim;
  m.num_tokens = plan.num_q_tokens;
  m.v = plan.region<const float>(plan.layout.partial_o);
  m.lse = plan.region<const float>(plan.layout.partial_lse);
  m.v_out = t.o;
  m.lse_out = c.options.return_lse ? t.lse : nullptr;
  detail::MergeOfTokens tokens;
  if (plan.graph) tokens.live_tokens = plan.region<const int64_t>(plan.layout.live_q_tokens);
  if (plan.state_indptr) {
    tokens.state_indptr = plan.region<const int32_t>(plan.layout.state_indptr);
    tokens.state_rows = plan.state_rows;
  }
  return detail::merge_states_of_tokens(m, tokens, row_stride(c, t.o_row_stride), stream);
}

}  // namespace

Status check_page_table_errors(const PrefillPlan& plan, cudaStream_t stream) {
  if (!plan.valid())
    return detail::invalid_argument("plan: not made (plan_prefill has not succeeded on this plan)");
  const PrefillPlanImpl& impl = *plan.impl();
  if (!impl.device_page_table || impl.num_tiles == 0 || impl.num_kv_rows == 0)
    return Status::Ok();  // no table the kernel checks
  PTXATTN_RETURN_IF_ERROR(impl.check_device());
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream, &capturing));
  if (capturing != cudaStreamCaptureStatusNone)
    return detail::invalid_argument("check_page_table_errors waits for the stream, which is being captured: call "
                                    "it outside the capture");
  unsigned long long code = detail::kNoPageTableError;
  auto* record = impl.region<unsigned long long>(impl.layout.page_table_error);
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&code, record, sizeof(code), cudaMemcpyDeviceToHost, stream));
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (code == detail::kNoPageTableError) return Status::Ok();
  const unsigned long long none = detail::kNoPageTableError;
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(record, &none, sizeof(none), cudaMemcpyHostToDevice, stream));
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // `none` is on this stack
  const int32_t entry = int32_t(code >> 32), value = int32_t(uint32_t(code));
  // The request whose pages hold the entry: the last b with kv_indptr[b] <= entry.
  const auto owner = std::upper_bound(impl.kv_indptr.begin(), impl.kv_indptr.end(), entry) - 1;
  const int64_t request = owner - impl.kv_indptr.begin();
  return detail::invalid_argument("tensors.kv_indices[", entry, "] = ", value, " (request ", request, ", its page ",
                                  entry - *owner, ") is outside the page pool [0, ", impl.config.num_pages,
                                  ") (config.num_pages): the run read page 0 in its place, so request ", request,
                                  "'s output is wrong");
}

Status run_prefill(const PrefillPlan& plan, const PrefillTensors& tensors, cudaStream_t stream) {
  if (!plan.valid())
    return detail::invalid_argument("plan: not made (plan_prefill has not succeeded on this plan)");
  const PrefillPlanImpl& impl = *plan.impl();
  const PrefillConfig& c = impl.config;
  PTXATTN_RETURN_IF_ERROR(
      validate_prefill_tensors(c, impl.num_q_tokens, impl.num_kv_rows, tensors, impl.device_page_table));
  // No query rows: nothing to write (a graph plan launches all the same,
  // since a replay of it may serve a batch that has some).
  if (impl.num_tiles == 0 && !impl.graph) return Status::Ok();
  PTXATTN_RETURN_IF_ERROR(impl.check_device());

  PrefillLaunch l{};
  l.params = make_params(impl, tensors);
#if PTXATTN_BOUNDED_WAITS
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::current_device_wait_timeout_record(&l.params.wait_timeout));
#endif
  l.dtype = c.dtype;
  l.tma = impl.load_path == KvLoadPath::kTma;
  l.block_kv = impl.block_kv;
  l.kv_stages = impl.kv_stages;
  l.num_ctas = uint32_t(impl.num_ctas);
  PTXATTN_RETURN_IF_ERROR(encode_q_map(c, impl.heads_log2, tensors, &l.q_map));
  if (l.tma && tensors.num_kv_rows > 0) {  // no rows: no block is ever loaded
    PTXATTN_RETURN_IF_ERROR(encode_kv_map(c, impl.block_kv, tensors, tensors.k, &l.k_map));
    PTXATTN_RETURN_IF_ERROR(encode_kv_map(c, impl.block_kv, tensors, tensors.v, &l.v_map));
  }
  // The dynamic schedule's claim counter starts at 0 in every run: a count
  // left in the workspace (the last run's, or whatever else wrote there)
  // would have the CTAs skip items, or claim outside the list.
#ifndef PTXATTN_INJECT_BUG_DYNAMIC_COUNT_KEPT
  if (l.params.work_counter != nullptr)
    PTXATTN_CUDA_RETURN_IF_ERROR(detail::zero_work_counter(l.params.work_counter, stream));
#endif
  PTXATTN_CUDA_RETURN_IF_ERROR(launch_for_head_dim(c.head_dim, l, stream));
  if (impl.kv_splits > 1) return merge_chunks(impl, tensors, stream);
  return Status::Ok();
}

}  // namespace ptxattn
