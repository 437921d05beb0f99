// Argument validation for the prefill entry points. The public checks
// (validate_prefill_config, validate_batch_indices) are declared in
// ptxattn.hpp; this header adds the run-time tensor check, the limits the
// kernels rely on, and the checks that the prefill, RoPE and append entry
// points share (ptxattn::detail). README "Validation" lists every rule.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn {

// NOTES: the kernels index tokens, per-request lengths and (token, head) rows
// with int32 and compute element offsets in int64; these limits keep every
// int32 index in range. Page sizes above kMaxPageSize are not tested.
inline constexpr int32_t kMaxPageSize = 1024;
inline constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();
// NOTES: per-request lengths (qo_len, kv_len) and the batch's query tokens and
// ragged K/V rows stay at or below 2^30, half of INT32_MAX. That headroom lets
// the plan and the kernel round lengths up to whole blocks and subtract a
// window from a position (pos - window_left - key, each below 2^30) in int32
// without wrapping.
inline constexpr int64_t kMaxTokens = int64_t(1) << 30;
// Every device pointer (q, k, v, o, lse) must be 16-byte aligned: TMA and
// 16-byte vector accesses need it (cudaMalloc gives 256).
inline constexpr uintptr_t kTensorAlignment = 16;

// Whether this build compiled kernels for the head dim / dtype (meson options head_dims, dtypes).
bool head_dim_is_built(int32_t head_dim);
bool dtype_is_built(DType dtype);

// Checks the tensors of run_prefill against the plan they are used with:
// plan_num_q_tokens = plan.num_q_tokens(), plan_num_kv_rows = plan.num_kv_rows().
// tensors.num_q_tokens must equal the plan's; tensors.num_kv_rows must equal
// config.num_pages (paged) or be at least the plan's K/V rows (ragged), else kPlanMismatch.
// Pointers must be non-null (unless their tensor is empty), 16-byte aligned,
// and the outputs (o, lse) must not overlap each other or an input.
// tensors.kv_indices is required (4-byte aligned) when the plan takes the
// page table at run (device_page_table: paged, planned without host
// kv_indices, plan_num_kv_rows > 0 pages listed) and must be null otherwise.
// `config` is the plan's (already validated) config.
Status validate_prefill_tensors(const PrefillConfig& config, int64_t plan_num_q_tokens, int64_t plan_num_kv_rows,
                                const PrefillTensors& tensors, bool device_page_table = false);

namespace detail {

// Where request b's K/V lie, from indices validate_batch_indices accepted:
// its first page-table entry (paged; the CSR position kv_indptr[b], or b *
// block_table_stride) or ragged row, and its kv_len.
struct RequestKv {
  int32_t start;
  int32_t len;
};
RequestKv request_kv(const PrefillConfig& config, const BatchIndices& indices, int32_t b);

// Page-table entries a paged batch's table holds (kv_indptr[num_requests],
// or num_requests * block_table_stride), or a ragged batch's K/V rows.
int64_t kv_units(const BatchIndices& indices);

// Whether indices are in the block-table form (either of its fields set).
inline bool block_table_form(const BatchIndices& indices) {
  return indices.block_table_stride != 0 || indices.kv_lens != nullptr;
}

// indptr (named `name`) is non-null, indptr[0] == 0 and non-decreasing over num_requests + 1 entries.
Status check_indptr(const char* name, const int32_t* indptr, int32_t num_requests);

// The pages listed in indices.kv_indices (kv_indptr[num_requests] of them,
// kv_indptr already checked) lie in the pool [0, num_pages), and
// indices.kv_last_page_len is present. A null kv_indices passes when
// `table_at_run` (the table then comes at run). Messages name the indices.* fields.
Status check_page_table(int32_t num_pages, int32_t num_requests, const int32_t* kv_indptr, const int32_t* kv_indices,
                        const int32_t* kv_last_page_len, bool table_at_run = false);

// Null only when it holds no elements; aligned to `alignment` bytes.
Status check_device_pointer(const char* name, const void* ptr, int64_t elements, uintptr_t alignment);

struct TensorRange {
  const char* name;
  const void* ptr;
  int64_t bytes;
  bool overlaps(const TensorRange& other) const;
};

struct OutputRange {
  TensorRange range;
  TensorRange own_input;  // the one input this output may coincide with exactly (in place); name null: none
};

// Each output overlaps no input other than exactly its own, and no other output.
Status check_aliasing(std::initializer_list<OutputRange> outputs, std::initializer_list<TensorRange> inputs);

}  // namespace detail
}  // namespace ptxattn
